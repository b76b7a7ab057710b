"""Nabat System-112 connector."""
