"""Nabat driver for warning devices behind Modbus TCP."""
