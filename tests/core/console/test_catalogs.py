"""Every string the console shows comes from the catalogs, in both languages.

The sources are read for ``t("key")`` calls; keys built from a value (``t(`state.${state}`)``)
are checked for every value the hub can produce."""

from __future__ import annotations

import re
from pathlib import Path

from nabat.alerts.model import AlertPhase, DeviceOutcome, SiteState
from nabat.duty import ClockName
from nabat.events import Severity
from nabat.i18n import catalog
from nabat.interfaces import DeviceState, HealthState, UnitState
from nabat.interfaces.incident import SERVICES

SOURCES = Path(__file__).parents[3] / "console" / "src"
CALL = re.compile(r"""\bt\(\s*(["'])([a-z0-9_.]+)\1""")
TEMPLATE = re.compile(r"\bt\(\s*`([^`]*)`")


def _keys() -> tuple[set[str], set[str]]:
    literal: set[str] = set()
    templates: set[str] = set()
    for path in SOURCES.rglob("*.js*"):
        text = path.read_text(encoding="utf-8")
        literal |= {m[2] for m in CALL.finditer(text)}
        templates |= {m[1] for m in TEMPLATE.finditer(text)}
    return literal, templates


# Every reason code the hub's probes, its watch and the simulator give (CameraHealth.reason_code).
REASON_CODES = [
    "picture_changing",
    "black_picture",
    "frozen_picture",
    "no_frames",
    "too_few_frames",
    "stream_ended",
    "stream_stalled",
    "stream_not_found",
    "undecodable",
    "stream_error",
    "no_video",
    "no_decoder",
    "credentials_rejected",
    "access_forbidden",
    "connection_refused",
    "connection_reset",
    "no_answer",
    "no_valid_answer",
    "host_unreachable",
    "network_error",
    "probe_timeout",
    "probe_error",
    "destination_refused",
]
# Event types the hub and its first-party plugins publish that have a text of their own.
EVENT_TYPES = [
    "incident.created",
    "incident.updated",
    "incident.closed",
    "alert.issued",
    "alert.confirmation_required",
    "alert.rejected",
    "alert.cancelled",
    "alert.completed",
    "alert.confirmation_expired",
    "siren.readiness.completed",
    "police.hotlist.hit",
    "system112.ack.accepted",
    "system112.ack.rejected",
    "system112.ack.overdue",
    "camera.clock.drift",
    "camera.clock.ok",
    "hub.job.claimed",
]
# Driver instance states the wall shows instead of a stale probe (Wall.jsx STOPPED and the rest).
INSTANCE_STATES = ["needs_auth", "failed", "stopped", "retrying", "starting"]

EXPANSIONS = {
    "state": [s.value for s in HealthState]
    + ["ok", "degraded", "offline", "unknown"]
    + INSTANCE_STATES,
    "reason": REASON_CODES,
    "event_type": EVENT_TYPES,
    "siren_state": [s.value for s in DeviceState],
    "unit_state": [s.value for s in UnitState if s.value != "disabled"],
    "severity": [s.value for s in Severity],
    "events.group": ["camera", "incident", "alert", "siren", "police", "system112", "hub"],
    "wall.role": ["probe", "snapshot", "live"],
    "incident_type": [
        "road_accident",
        "traffic_accident",
        "fire",
        "flooding",
        "gas_smell",
        "public_order",
    ],
    "alerts.phase": [p.value for p in AlertPhase],
    "alerts.outcome": [o.value for o in DeviceOutcome],
    "alerts.site_state": [s.value for s in SiteState],
    "ptz": ["left", "right", "up", "down", "home"],
    "alerts.status": ["Actual", "Exercise", "Test"],
    "nav": [
        "overview",
        "wall",
        "events",
        "incidents",
        "alerts",
        "map",
        "reports",
        "shift",
        "admin",
        "sites",
    ],
    "role": ["operator", "supervisor", "admin"],
    "service": list(SERVICES),
    "incidents": ["open", "closed"],
    "map": ["cameras", "sirens", "incidents"],
    "duty": ["done", "late"],  # a stopped clock: in time or late
    "duty.clock": [c.value for c in ClockName],
    "admin.tab": ["accounts", "roster", "norms"],
}


def _expand(template: str) -> list[str]:
    """``state.${state}`` → every state; ``alerts.template.${k}.event`` → every template."""
    prefix, _, rest = template.partition("${")
    suffix = rest.partition("}")[2]
    values = EXPANSIONS.get(prefix.rstrip("."))
    assert values is not None, f"no known values for the catalog key template {template!r}"
    return [f"{prefix}{v}{suffix}" for v in values]


def test_every_console_string_is_in_both_catalogs():
    literal, templates = _keys()
    assert len(literal) > 50 and templates  # the scan found the console's strings
    wanted = literal | {key for template in templates for key in _expand(template)}
    for language in ("ru", "en"):
        strings = catalog(language)
        missing = sorted(k for k in wanted if f"console.{k}" not in strings)
        assert not missing, f"{language}: {missing}"


def test_the_pages_hold_no_words_of_their_own():
    # Text between tags in JSX must come from t(): a literal Russian or English word there is
    # a string that escaped the catalogs.
    words = re.compile(r"(?<![=\-])>\s*([A-Za-zА-Яа-яЁё]{3,}[^<>{}();=]*?)\s*</")
    for path in SOURCES.rglob("*.jsx"):
        found = [m[1].strip() for m in words.finditer(path.read_text(encoding="utf-8"))]
        assert not found, f"{path.name}: {found}"
