"""The MQTT protocol between the hub and a warning device, as a vendor implements it.

Topics, under a prefix (default ``nabat/sirens``) and the device's id; payloads are UTF-8 JSON:

* ``<prefix>/<device>/cmd`` (hub → device, QoS 1, not retained):
  ``{"id", "action": "activate"|"cancel"|"self_test", "alert", "signal", "signal_seconds",
  "text", "audio", "repeat", "audible"}``;
* ``<prefix>/<device>/ack`` (device → hub, QoS 1): ``{"id", "alert", "outcome":
  "activated"|"cancelled"|"failed", "detail"}``; for ``self_test`` ``{"id", "passed",
  "detail"}``;
* ``<prefix>/<device>/status`` (device → hub, retained, on every change): ``{"state":
  "idle"|"active"|"fault", "mains_ok", "battery_pct", "tamper", "active_alert", "detail"}``;
* ``<prefix>/<device>/online`` (device → hub, retained): ``"1"`` on connect; the device's MQTT
  *last will* is ``"0"`` retained, so the broker reports it offline when it drops off.

A device must be idempotent per ``alert``: a repeated ``activate`` of an alert it already
sounds (the hub retries when an acknowledgement is late) answers the same ``ack`` without
starting the signal again.
"""

from __future__ import annotations

import msgspec

__all__ = ["TOPICS", "Ack", "Command", "Status"]

TOPICS = ("ack", "status", "online")


class Command(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    action: str
    alert: str | None = None
    signal: str | None = None
    signal_seconds: int | None = None
    text: str | None = None
    audio: str | None = None
    repeat: int | None = None
    audible: bool | None = None


class Ack(msgspec.Struct, kw_only=True):
    id: str
    alert: str | None = None
    outcome: str | None = None
    passed: bool | None = None
    detail: str = ""


class Status(msgspec.Struct, kw_only=True):
    state: str
    mains_ok: bool | None = None
    battery_pct: float | None = None
    tamper: bool | None = None
    active_alert: str | None = None
    detail: str = ""
