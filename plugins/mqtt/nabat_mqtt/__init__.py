"""Nabat driver for warning devices that speak MQTT."""
