"""Nabat driver for ONVIF cameras."""
