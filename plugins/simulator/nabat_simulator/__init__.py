"""Nabat simulator: a living demo region for the hub, its tests and its benchmarks.

Cameras that go offline, black or frozen and come back; sirens that activate, report status
and sometimes lose mains power; synthetic 112 incidents and siren exercises. Every driver
implements the real interfaces, so the hub cannot tell it from hardware.
"""
