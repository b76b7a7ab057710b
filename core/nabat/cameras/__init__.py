"""Cameras: stream health probing, hysteresis, snapshots and the inventory."""
