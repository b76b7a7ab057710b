"""Every string the console shows comes from the catalogs, in both languages.

The sources are read for ``t("key")`` calls; keys built from a value (``t(`state.${state}`)``)
are checked for every value the hub can produce."""

from __future__ import annotations

import re
from pathlib import Path

from nabat.alerts.model import AlertPhase, DeviceOutcome
from nabat.i18n import catalog
from nabat.interfaces import HealthState
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


EXPANSIONS = {
    "state": [s.value for s in HealthState] + ["ok", "degraded", "offline", "unknown"],
    "alerts.phase": [p.value for p in AlertPhase],
    "alerts.outcome": [o.value for o in DeviceOutcome],
    "alerts.status": ["Actual", "Exercise", "Test"],
    "nav": ["overview", "wall", "events", "incidents", "alerts", "map", "reports"],
    "role": ["operator", "supervisor", "admin"],
    "service": list(SERVICES),
    "incidents": ["open", "closed"],
    "map": ["cameras", "sirens", "incidents"],
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
