"""contrib/prometheus/nabat-rules.yml: well-formed alert rules over metrics the hub exports.

The exported names come from the /metrics of an in-process hub, plus the federation families
(present only on a federated hub) rendered from the same collector code with a stand-in hub.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml
from nabat.testing import load_config_text, run_api, run_hub

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "nabat-rules.yml"
PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself for every target."""

CONFIG = """
[hub]
name = "rules-test"
data_dir = "data"
[plugins.watch]
enabled = false
[plugins.eventlog]
enabled = false
"""

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_DURATION = re.compile(r"^\d+[smhdwy]$")


def _names(exposition: str) -> set[str]:
    """Series names in Prometheus text: each ``# TYPE`` family (with a histogram's and a
    counter's suffixes) and each sample's name."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _federation_exposition() -> str:
    from nabat.api import metrics
    from prometheus_client import CollectorRegistry, generate_latest

    link = SimpleNamespace(connected=True)
    hub = SimpleNamespace(
        uplink=SimpleNamespace(connection=link, published=1),
        follower=SimpleNamespace(
            connection=link, received=1, stored=1, rejected=0, reachable={"sochi": True}
        ),
    )

    class Federation:
        def collect(self):
            yield from metrics._federation(hub)

    registry = CollectorRegistry()
    registry.register(Federation())
    return generate_latest(registry).decode()


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label
    matchers, ranges and grouping clauses are taken out, other than functions and keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        if match.group(2) is None and match.group(1) not in _KEYWORDS:
            found.add(match.group(1))
    return found


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and set(doc) == {"groups"}
    rules = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        assert group["rules"], f"group {group['name']} has no rules"
        rules += group["rules"]
    return rules


@pytest.fixture
async def exported(tmp_path) -> set[str]:
    loaded = load_config_text(CONFIG, tmp_path)
    async with run_hub(loaded, discover_installed=False) as hub, run_api(hub) as server:
        token, _ = await server.state.tokens.create("prometheus", ["ops:read"])
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
            r = await http.get("/metrics")
    assert r.status_code == 200
    return _names(r.text) | _names(_federation_exposition())


def test_the_parser_finds_metric_names():
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{route="/x"}[5m]))) > 1'
        " and on (instance) b_total / ignoring(x) c offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_rules_are_well_formed():
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Nabat[A-Z]\w+", rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert "for" not in rule or _DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_every_metric_in_the_rules_is_exported(exported):
    assert "nabat_federation_site_reachable" in exported  # the stand-in hub rendered
    unknown = {
        rule["alert"]: sorted(metric_names(rule["expr"]) - exported - PROMETHEUS_OWN)
        for rule in _rules()
    }
    assert not {k: v for k, v in unknown.items() if v}, "metrics the hub does not export"
    used = set().union(*(metric_names(r["expr"]) for r in _rules()))
    assert len(used - PROMETHEUS_OWN) >= 10


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules():
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
