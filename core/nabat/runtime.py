"""Process-wide settings `nabat run` applies before it starts the hub.

Kept apart from :class:`nabat.hub.Hub` so that embedding a hub (tests, a host application)
never changes the interpreter behind the host's back.
"""

from __future__ import annotations

import sys

from .config import HubSettings

__all__ = ["apply_runtime_settings"]


def apply_runtime_settings(hub: HubSettings) -> None:
    # The GIL hand-over interval: see HubSettings.switch_interval (bench/http_ingest.py).
    sys.setswitchinterval(hub.switch_interval)
