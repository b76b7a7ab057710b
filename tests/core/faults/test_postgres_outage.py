"""PostgreSQL goes away under a real hub taking events, and comes back.

The test runs its own PostgreSQL (initdb + pg_ctl, tests/fixtures/private_pg.py) so it can
crash it (``pg_ctl -m immediate``: mid group commit, as producers never stop) and restart it
cleanly (``-m fast``). Producers post batches over HTTP the whole time and retry a refused
batch with the same ids, as a real producer would. Meanwhile every answer is a 202 or a 503
problem with Retry-After (never a 500), /ready says what is paused, and after each outage the
hub reconnects by itself, tells of the outage in a ``hub.journal.recovered`` event, and every
acknowledged event is in the journal once and delivered by the durable subscription."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from nabat.testing import eventually, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures"))
from private_pg import find_bin, private_postgres
from producers import Forwarded, hub_under_load

PRODUCERS = 4


async def _journal_rows(dsn: str, schema: str) -> tuple[list[str], list[dict]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        ids = [
            r["id"]
            for r in await conn.fetch(
                f'SELECT id FROM "{schema}".events WHERE type = $1', "ingest.item"
            )
        ]
        outages = [
            json.loads(r["body"])
            for r in await conn.fetch(
                f'SELECT body FROM "{schema}".events WHERE type = $1', "hub.journal.recovered"
            )
        ]
    finally:
        await conn.close()
    return ids, outages


@pytest.fixture
def postgres():
    if find_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    with private_postgres(free_port()) as server:
        yield server


async def test_the_hub_rides_out_a_postgresql_crash_and_a_restart(tmp_path, test_plugins, postgres):
    api_port, forward_port = free_port(), free_port()
    schema = "nabat"
    (tmp_path / "plugins.toml").write_text(f"""
[hub]
name = "outage"
log_format = "json"

[storage]
url = "{postgres.dsn}"
schema = "{schema}"
poll_interval = 0.2

[api]
listen = "127.0.0.1:{api_port}"

[api.rate_limit]
rate = 10000
burst = 10000

[plugins.tp_ingest]

[instances.forwarder]
kind = "tp_ingest.forwarder"
delivery = {{ backoff_initial = 0.05, backoff_max = 0.5 }}
settings = {{ port = {forward_port} }}
""")
    env = {**os.environ, "NABAT_LANG": "en", "PYTHONPATH": str(test_plugins)}
    forwarded = Forwarded()
    server = await asyncio.start_server(forwarded.handle, "127.0.0.1", forward_port)
    async with (
        server,
        hub_under_load(tmp_path, env, api_port, producers=PRODUCERS) as (_, client, producers),
    ):
        for mode in ("immediate", "fast"):  # a crash mid group commit; a clean restart
            await producers.wait_acked(len(producers.acked) + 50)
            refused_before = producers.refused
            await asyncio.to_thread(postgres.stop, mode)
            await producers.wait_refused(refused_before + 1)
            ready = await client.get("/ready")
            assert ready.status_code == 503
            state = ready.json()
            assert state["ready"] is False and state["journal_down_since"]
            assert any("deliveries" in p for p in state["paused"])
            await asyncio.to_thread(postgres.start)
            # Back by itself: events are taken again, /ready says so.
            await producers.wait_acked(len(producers.acked) + 50)

            async def resumed() -> bool:
                return (await client.get("/ready")).json()["paused"] == []

            await eventually(resumed, timeout=30, what="/ready with nothing paused")
        await producers.finish()
        assert producers.wrong == []
        assert producers.refused > 0
        acked = set(producers.acked)
        await forwarded.wait_for(acked)  # deliveries resumed: every acked event out
    ids, outages = await _journal_rows(postgres.dsn, schema)
    assert acked <= set(ids), f"{len(acked - set(ids))} acknowledged events lost"
    assert len(ids) == len(set(ids))  # a retried batch is stored once
    assert len(outages) >= 2  # one per outage, told after it
    for outage in outages:
        data = outage["data"]
        assert data["failures"] >= 1 and data["seconds"] > 0 and data["error"]
    log_text = (tmp_path / "hub.log").read_text(errors="replace")
    # The outage is logged once each, not once per refused request.
    assert log_text.count('"event":"journal.unavailable"') == len(outages)
