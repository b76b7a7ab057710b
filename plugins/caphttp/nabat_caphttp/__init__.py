"""Nabat driver for warning devices and gateways that take CAP 1.2 over HTTP."""
