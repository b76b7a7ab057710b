"""Nabat drivers for cameras without ONVIF: ``rtsp.camera`` and ``rtsp.http_camera``."""
