"""/health, /ready and /metrics as a monitoring system sees them."""

from __future__ import annotations

import re

import httpx
import pytest
from nabat.hookspecs import hookimpl
from nabat.interfaces import TransientError
from nabat.runtime import malloc_usage


class Flaky:
    @hookimpl
    async def startup(self, hub, settings):
        raise TransientError("the vendor's gateway is down")


class Fine:
    @hookimpl
    async def startup(self, hub, settings):
        return None


@pytest.fixture
def api_base(api_base):
    """Its subscriptions point at a closed loopback port, which must be listed to be allowed."""
    return api_base + 'webhook_destinations = ["127.0.0.1/32"]\n'


@pytest.fixture
def api_plugins():
    return {"flaky": Flaky(), "fine": Fine()}


def sample(text: str, metric_name: str, **labels: str) -> float:
    """The value of one Prometheus sample; AssertionError if it is not there."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(metric_name):
            continue
        metric, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if metric.split("{")[0] == metric_name and all(
            found.get(k) == v for k, v in labels.items()
        ):
            return float(value)
    raise AssertionError(f"no sample {metric_name} {labels}")


async def test_health_is_public_and_ready_lists_units(api):
    async with httpx.AsyncClient(base_url=api.url) as http:
        r = await http.get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok", "hub": "api-test"}
        assert (await http.get("/ready")).status_code == 401
    async with await api.client("ops:read") as http:
        r = await http.get("/ready")
    assert r.status_code == 200
    ready = r.json()
    assert ready["ready"] is True and ready["journal"] == "ok"
    units = {(u["kind"], u["name"]): u for u in ready["units"]}
    assert units[("plugin", "fine")]["state"] == "running"
    assert units[("plugin", "flaky")]["state"] == "retrying"
    assert "gateway is down" in units[("plugin", "flaky")]["reason"]
    assert ready["degraded"] == ["plugin:flaky"]


async def test_ready_is_503_when_the_journal_is_gone(api):
    async with await api.client("ops:read") as http:
        assert (await http.get("/ready")).status_code == 200  # the token is checked (cached)
        await api.hub.journal.close()
        r = await http.get("/ready")
    assert r.status_code == 503
    assert r.json()["ready"] is False and r.json()["journal"].startswith("unavailable")


async def test_metrics_count_events_queues_deliveries_units_and_latency(api, ce):
    async with await api.client("events:write", "events:read") as http:
        assert (
            await http.post("/api/v1/events", json=[ce(i) for i in range(5)])
        ).status_code == 202
        sub = await http.post(
            "/api/v1/subscriptions",
            json={"url": "http://127.0.0.1:9/unreachable", "types": ["incident.>"]},
        )
        assert sub.status_code == 201
        assert (await http.post("/api/v1/events", json=[ce(9)])).status_code == 202
    await api.hub.bus.drain()
    async with await api.client("ops:read") as http:
        r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert sample(text, "nabat_events_appended_total") >= 6
    assert sample(text, "nabat_asyncio_tasks") >= 1  # this scrape's own request task at least
    assert sample(text, "nabat_python_allocated_blocks") > 10_000  # an interpreter holds more
    if malloc_usage() is not None:  # glibc 2.33+
        assert sample(text, "nabat_process_malloc_bytes", state="in_use") > 1_000_000
    assert sample(text, "nabat_api_events_ingested_total", outcome="new") == 6
    assert sample(text, "nabat_unit_state", kind="plugin", name="flaky", state="retrying") == 1
    assert sample(text, "nabat_unit_state", kind="plugin", name="flaky", state="running") == 0
    assert (
        sample(
            text, "nabat_http_request_duration_seconds_count", method="POST", route="/api/v1/events"
        )
        == 2
    )
    assert sample(text, "nabat_http_requests_total", route="/api/v1/events", status="202") == 2
    delivery = f"webhook:{sub.json()['id']}"
    assert sample(text, "nabat_delivery_lag_events", subscription=delivery) >= 0
    assert "nabat_delivery_failed_attempts_total" in text
    assert "nabat_bus_queue_depth" in text or api.hub.bus.stats() == []
