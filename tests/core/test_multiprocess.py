"""Several hub processes on one PostgreSQL: shared work, live events everywhere, each job run
once per schedule, and a survivor that takes over when a process is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

from nabat.store import EventQuery, decode_cursor
from nabat.testing import connect_when_ready, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from producers import Forwarded, ingest_lines

PG_DSN = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def log_shows(path: Path, wanted: str, timeout: float = 10) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if wanted in await asyncio.to_thread(path.read_text, errors="replace"):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_two_hubs_share_one_postgresql(tmp_path, test_plugins, pg_schema):
    receiver = Forwarded()
    receiver_port = free_port()
    hubs: dict[str, dict] = {}
    env = {**os.environ, "NABAT_LANG": "en", "PYTHONPATH": str(test_plugins)}
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        port = free_port()
        (workdir / "plugins.toml").write_text(f"""
[hub]
name = "hub-{name}"
log_format = "json"

[storage]
url = "{PG_DSN}"
schema = "{pg_schema}"
lease_ttl = 1.5
poll_interval = 0.2

[plugins.tp_ingest]
[plugins.tp_ticker]
[plugins.eventlog.settings]
patterns = ["ingest.>"]

[instances.listener]
kind = "tp_ingest.listener"
settings = {{ port = {port} }}

[instances.forwarder]
kind = "tp_ingest.forwarder"
delivery = {{ backoff_initial = 0.05, backoff_max = 0.3 }}
settings = {{ port = {receiver_port} }}
""")
        hubs[name] = {"dir": workdir, "port": port, "log": workdir / "hub.log"}

    server = await asyncio.start_server(receiver.handle, "127.0.0.1", receiver_port)
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        async with server:
            for name, hub in hubs.items():
                with hub["log"].open("wb") as log:
                    procs[name] = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "nabat",
                        "run",
                        cwd=hub["dir"],
                        env=env,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=log,
                    )
            # Both hubs up before anything is ingested: a hub follows the journal from where
            # it stood when it started, so a B started late would rightly miss A's events.
            for _, writer in await asyncio.gather(
                *(connect_when_ready(hub["port"]) for hub in hubs.values())
            ):
                writer.close()
            # Both take events; the one durable subscription delivers all of them, from
            # whichever process holds its lease.
            ids_a = await ingest_lines(hubs["a"]["port"], range(0, 50))
            ids_b = await ingest_lines(hubs["b"]["port"], range(50, 100))
            await receiver.wait_for(set(ids_a + ids_b), timeout=30)

            # Live events reach listeners in every process: B logs what A ingested.
            assert await log_shows(hubs["b"]["log"], ids_a[0]), "hub B never saw A's event"
            assert await log_shows(hubs["a"]["log"], ids_b[0]), "hub A never saw B's event"

            # Kill the lease holder; the survivor takes over after the lease expires.
            conn = await __import__("asyncpg").connect(PG_DSN)
            holder = await conn.fetchval(
                f'SELECT lease_owner FROM "{pg_schema}".subscriptions WHERE id = $1',
                "instance:forwarder",
            )
            await conn.close()
            victim = next(n for n, p in procs.items() if holder and f":{p.pid}:" in holder)
            survivor = "b" if victim == "a" else "a"
            procs[victim].send_signal(signal.SIGKILL)
            await procs[victim].wait()
            later = await ingest_lines(hubs[survivor]["port"], range(100, 130))
            await receiver.wait_for(set(later), timeout=30)
            conn = await __import__("asyncpg").connect(PG_DSN)
            new_holder = await conn.fetchval(
                f'SELECT lease_owner FROM "{pg_schema}".subscriptions WHERE id = $1',
                "instance:forwarder",
            )
            await conn.close()
            assert f":{procs[survivor].pid}:" in new_holder
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(20):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()

    # Each scheduled slot of the job ran once across both processes.
    from nabat.store.postgres import PostgresJournal

    journal = PostgresJournal(PG_DSN, schema=pg_schema)
    await journal.open()
    try:
        claims, ticks, after = [], [], None
        while True:
            page = await journal.query(
                EventQuery(types=("hub.job.claimed", "tp.tick"), after=after, limit=1000)
            )
            for s in page.events:
                (claims if s.event.type == "hub.job.claimed" else ticks).append(s.event)
            if page.next_cursor is None:
                break
            after = decode_cursor(page.next_cursor)
    finally:
        await journal.close()
    tick_claims = [c for c in claims if c.data["job"] == "tp_ticker:tick"]
    slots = Counter(c.data["slot"] for c in tick_claims)
    assert tick_claims and max(slots.values()) == 1
    assert len(ticks) == len(tick_claims)  # a run for every claimed slot, and no other
