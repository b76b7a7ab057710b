"""Soak test (issue 20, item 5): a real hub for ``--minutes`` under steady mixed load.

The hub is ``nabat run`` in a process of its own (so its RSS, fds and tasks are its own) with
its journal on PostgreSQL (a fresh schema, dropped afterwards) or SQLite (``--backend``),
and glibc's malloc arenas capped and its heap trimmed as ``nabat run`` does
(``--malloc-arenas 0 --malloc-trim 0``: glibc's defaults, for comparison).
For the whole run, at the same time:

* **ingest**: ``--rate`` (1,000) events/s, one CloudEvent per ``POST /api/v1/events`` with a
  bearer token (``events:write``), from a load generator in a process of its own (raw asyncio
  keep-alive connections, at most 64). Each event has a distinct id and one of the region's 44
  municipalities in turn; its latency is from its slot in the schedule to the answer read (a
  wait for a free connection counts). Every event answered 202 is *acknowledged*. When the
  hub falls 5 s behind (that many events queued unsent), slots are skipped and counted.
* **camera sweeps**: ``--cameras`` (500) ``simulator.camera`` cameras imported into the
  inventory, probed by the ``watch`` every 15 s; each walks into and out of faults at random
  (fault 10 % per probe, recovery 40 %), so some are always failing and health events flow.
* **alerts**: an ``Exercise`` alert (:func:`nabat.testing.exercise_alert`, as CAP XML to
  ``POST /api/v1/alerts/cap?wait=30``) every ``--alert-every`` (60) s to 10 simulated sirens,
  one in ten refusing at random; the simulator's 112 incidents every 20 s.
* **SSE clients**: three readers of ``GET /api/v1/events/stream``, two of every event and one
  of ``alert.>``, ``camera.>`` and ``incident.>``; each drops its connection every 20-90 s and
  resumes with ``Last-Event-ID``.
* **webhooks**: three subscriptions (``POST /api/v1/subscriptions``) to receivers on
  127.0.0.1 (``[api] webhook_destinations`` lists loopback), raw asyncio HTTP servers that
  verify each request's Standard Webhooks signature: ``region`` (every event of 4
  municipalities, ~9 % of the ingest, parallel), ``district`` (agency, camera and incident
  events of 2 municipalities, parallel) and ``alerts`` (alert, camera and incident events,
  ordered). Each receiver fails ``--fail``
  (15 %) of requests at random: 60 % of those with a 500, 40 % by dropping the connection
  unanswered; and it hangs one request (no answer for 15 s, past the hub's 10 s attempt
  limit) every ``--hang-every`` (120) s on average. An event counts as received only when
  the receiver answered it 2xx.

Sampled every 10 s: the hub's VmRSS, open fds (``/proc/PID/fd``), threads, asyncio tasks
(``nabat_asyncio_tasks`` on ``/metrics``), delivery lag and CPU. After a warm-up (the first
2 minutes) each gets a least-squares slope per hour and a verdict: flat when the slope stays
under the stated threshold. Progress is printed every minute.

At the end, with the ingest stopped: the run waits until every subscription's cursor has
passed the last event and no retry is left, and every SSE client has read to the end, then
checks, from the journal's own tables: every acknowledged event is in the journal; every
event each subscription matches reached its receiver at least once (dead letters counted
and listed with their error); each SSE client saw every matching event from its first one on.

Baseline, in the same run (before and after the soak, ``--baseline-seconds`` each): the same
load generator at the same rate against ``bench/http_ingest.py``'s bare Litestar endpoint
(same decode, no auth, no journal). Reported: the hub's ingest latency as a ratio to it.

Run: ``uv run python bench/soak.py`` (30 minutes; ``--quick``: ~60 s smoke run;
``--backend sqlite``; ``--minutes``, ``--rate``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from camera_sweep import camera_rows, cpu_of, quantiles_ms
from delivery import DEFAULT_DSN, Receiver, pg_problem
from federation import HubProcess, free_port  # free_port: tests/fixtures' nats_cluster
from http_ingest import Server, _control, describe_machine, event_template
from nabat.config import HubSettings
from nabat.regions import load_region
from nabat.store import decode_cursor
from nabat.subjects import matches
from nabat.webhooks import WebhookVerificationError, WebhookVerifier

SOURCE = "urn:agency:cams-01"  # event_template's
MAX_CONNECTIONS = 64  # load generator
SAMPLE_EVERY = 10.0
WARMUP_S = 120.0
HANG_S = 15.0  # a hung receiver answers nothing for this long (the hub gives up after 10 s)
SIREN_MUNICIPALITY = "anapa"
SIRENS = 10
# Flat: the least-squares slope after the warm-up is below these per hour. A leak of one task
# per alert would be 60/h; per request or event, millions.
THRESHOLDS = {"rss_mib": 10.0, "fds": 10.0, "tasks": 20.0, "threads": 2.0}
# What a rising RSS is made of (/metrics): Python objects, and glibc's heap in use or free
# (resident, or given back by malloc_trim). A leak raises the first two.
MEMORY_PARTS = (  # key, label, unit
    ("nabat_python_allocated_blocks", "Python blocks (thousands)", 1000.0),
    ("nabat_process_malloc_bytes|in_use", "malloc in use MiB", 1024.0 * 1024),
    ("nabat_process_malloc_bytes|free", "malloc free MiB", 1024.0 * 1024),
)

clock = time.perf_counter

HUB_CONFIG = """
[hub]
name = "bench-soak"
language = "en"
data_dir = "data"
log_level = "info"
log_format = "json"
malloc_arenas = {arenas}
malloc_trim_interval = {trim}
[storage]
url = "{url}"
{schema}
[api]
listen = "127.0.0.1:{port}"
webhook_destinations = ["127.0.0.1/32"]
[cameras]
destinations = ["127.0.0.1/32"]  # the simulated cameras' (unused) URLs
[plugins.eventlog]
enabled = false
[plugins.watch.settings]
camera_interval = 15.0
device_interval = 30.0
[plugins.simulator]
enabled = true
settings = {{ incident_every = 20.0, exercise_every = 0 }}
"""
SIREN = """
[instances.soak-siren-{i:02d}]
kind = "simulator.siren"
municipality = "{municipality}"
settings = {{ response_delay = 0.05, failure_rate = 0.1, mains_failure_rate = 0.02, \
time_scale = 60.0 }}
"""


# -- the load generator (a process of its own) -----------------------------------------------
ACKED, REFUSED, FAILED, SKIPPED = 1, 2, 3, 4  # answered 202, another status, no answer, not sent
BACKLOG_S = 5.0  # the load generator skips an event's slot while this much is queued unsent


class Load:
    """Paced single-event POSTs over keep-alive connections; per-window latency and counts."""

    def __init__(self, url: str, token: str | None, rate: float, seconds: float, run: str):
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.rate, self.n, self.run = rate, int(rate * seconds), run
        self.status = bytearray(self.n)
        slugs = sorted(load_region("krasnodar-krai").municipalities)
        before, after = event_template()
        here = '"municipality":"krasnodar"'
        assert here in before + after, "the event template's municipality moved"
        self.templates = [
            (
                before.replace(here, f'"municipality":"{m}"').encode(),
                after.replace(here, f'"municipality":"{m}"').encode(),
            )
            for m in slugs
        ]
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.head = (
            "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/cloudevents+json\r\n{auth}"
        ).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.window: list[float] = []
        self.window_counts: collections.Counter[str] = collections.Counter()
        self.totals: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.start = self.last_answer = 0.0
        self.finished = False
        self.tasks: set[asyncio.Task[None]] = set()

    def event_id(self, i: int) -> str:
        return f"{self.run}-{i:08d}"

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            pair = self.idle.pop()
            # The hub closes a connection idle past its keep-alive timeout (30 s); a client that
            # sent on it would lose the request to that race, as HTTP clients know to avoid.
            if not pair[0].at_eof() and not pair[1].is_closing():
                return pair
            pair[1].close()
            self.opened -= 1
        if self.opened < MAX_CONNECTIONS:
            self.opened += 1
            try:
                return await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.opened -= 1
                raise
        waiter = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        return await waiter

    def _release(self, pair: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if pair is None:
            self.opened -= 1
            return
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(pair)
                return
        self.idle.append(pair)

    async def post(self, i: int, due: float) -> None:
        before, after = self.templates[i % len(self.templates)]
        body = before + self.event_id(i).encode() + after
        outcome = "error"
        pair = None
        try:
            pair = await self._connection()
            reader, writer = pair
            async with asyncio.timeout(30):
                writer.write(self.head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length, close = 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                if length:
                    await reader.readexactly(length)
            outcome = str(status)
            self.status[i] = ACKED if status == 202 else REFUSED
            if close:
                writer.close()
                pair = None
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            outcome = f"error: {type(exc).__name__}"
            self.status[i] = FAILED
            if pair is not None:
                pair[1].close()
                pair = None
        finally:
            self._release(pair)
        self.last_answer = clock()
        self.window.append(self.last_answer - due)
        self.window_counts[outcome] += 1
        self.totals[outcome] += 1

    async def run_load(self) -> None:
        start = self.start = clock() + 0.05
        while self.sent < self.n:
            due = min(self.n, int((clock() - start) * self.rate) + 1)
            while self.sent < due:
                i = self.sent
                self.sent += 1
                if len(self.tasks) >= self.rate * BACKLOG_S:  # the hub is far behind: shed
                    self.status[i] = SKIPPED
                    self.window_counts["skipped"] += 1
                    self.totals["skipped"] += 1
                    continue
                task = asyncio.create_task(self.post(i, start + i / self.rate))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(0.002)
        while self.tasks:
            await asyncio.gather(*list(self.tasks))
        for _, writer in self.idle:
            writer.close()
        self.finished = True

    async def report(self) -> dict[str, Any]:
        latencies, self.window = sorted(self.window), []
        counts, self.window_counts = dict(self.window_counts), collections.Counter()
        p50, p99, top = quantiles_ms(latencies)
        out = {
            "answered": len(latencies),
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": top,
            "counts": counts,
            "totals": dict(self.totals),
            "sent": self.sent,
            "in_flight": len(self.tasks),
            "cpu_s": cpu_of(os.getpid()),
            "finished": self.finished,
            "elapsed_s": self.last_answer - self.start,
            "started_ago_s": clock() - self.start,  # the first slot, seconds before now
            "latencies": latencies if self.keep_latencies else None,
        }
        if self.finished:
            out["status"] = bytes(self.status)
        return out

    keep_latencies = True


async def _load_main(conn: Any, url: str, token: str | None, rate: float, seconds: float, run: str):
    load = Load(url, token, rate, seconds, run)
    task = asyncio.create_task(load.run_load())
    await _control(conn, load.report)
    if not task.done():
        task.cancel()


def load_main(conn: Any, url: str, token: str | None, rate: float, seconds: float, run: str):
    asyncio.run(_load_main(conn, url, token, rate, seconds, run))


class LoadProcess:
    """The load generator's process, asked for its figures through a pipe."""

    def __init__(self, url: str, token: str | None, rate: float, seconds: float, run: str):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=load_main, args=(child, url, token, rate, seconds, run), daemon=True
        )
        self.process.start()
        self.pid = self.process.pid

    def _ask(self, message: str) -> dict[str, Any]:
        self.conn.send(message)
        if not self.conn.poll(120):
            raise RuntimeError("the load generator did not answer within 120 s")
        return self.conn.recv()

    async def ask(self, message: str = "count") -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(None, self._ask, message)

    async def finish(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Wait for the schedule's end; the final report (with every event's status) and the
        windows reported meanwhile."""
        windows = []
        while True:
            report = await self.ask()
            windows.append(report)
            if report["finished"]:
                await self.ask("stop")
                self.process.join(30)
                return report, windows
            await asyncio.sleep(1)


def merge_windows(windows: list[dict[str, Any]]) -> dict[str, float]:
    """Latency over several report windows."""
    latencies = sorted(x for w in windows for x in (w["latencies"] or ()))
    p50, p99, top = quantiles_ms(latencies)
    return {"answered": len(latencies), "p50_ms": p50, "p99_ms": p99, "max_ms": top}


async def baseline(rate: float, seconds: float, work: Path, label: str) -> dict[str, Any]:
    """The load generator at ``rate`` against http_ingest.py's bare Litestar endpoint."""
    with Server("bare", work) as server:
        load = LoadProcess(server.url, None, rate, seconds, f"bare{label}{os.getpid()}")
        final, windows = await load.finish()
        decoded = server.count()
    status = final["status"]
    acked = status.count(ACKED)
    if acked != len(status) or decoded < acked:
        raise RuntimeError(f"bare baseline: {acked} of {len(status)} acked, {decoded} decoded")
    out = merge_windows(windows)
    out.update(rate=acked / final["elapsed_s"], events=acked)
    return out


# -- webhook receivers -----------------------------------------------------------------------
class FlakyReceiver(Receiver):
    """delivery.py's loopback receiver, failing at random; counts what it answered 2xx."""

    def __init__(
        self,
        name: str,
        prefix: str,
        fail: float,
        hang_every: float,
        rng: random.Random,
    ) -> None:
        super().__init__()
        self.name, self.prefix, self.fail, self.hang_every = name, prefix, fail, hang_every
        self.rng = rng
        self.ok = bytearray()  # per soak event index: times answered 2xx (capped at 255)
        self.other: dict[str, int] = {}  # the hub's own events: id -> times answered 2xx
        self.counts: collections.Counter[str] = collections.Counter()
        self.verifier: WebhookVerifier | None = None
        self.next_hang = time.monotonic() + self._gap()

    def _gap(self) -> float:
        return self.rng.expovariate(1 / self.hang_every) if self.hang_every > 0 else math.inf

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{self.name}"

    def _record(self, msg_id: str) -> None:
        if msg_id.startswith(self.prefix):
            i = int(msg_id[len(self.prefix) :])
            if i >= len(self.ok):
                self.ok.extend(bytes(i + 100_000 - len(self.ok)))
            if self.ok[i]:
                self.counts["duplicates"] += 1
            self.ok[i] = min(255, self.ok[i] + 1)
        else:
            if msg_id in self.other:
                self.counts["duplicates"] += 1
            self.other[msg_id] = self.other.get(msg_id, 0) + 1

    def received(self, msg_id: str) -> bool:
        if msg_id.startswith(self.prefix):
            i = int(msg_id[len(self.prefix) :])
            return i < len(self.ok) and self.ok[i] > 0
        return msg_id in self.other

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower().decode()] = value.strip().decode()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.counts["requests"] += 1
                now = time.monotonic()
                if now >= self.next_hang:
                    self.next_hang = now + self._gap()
                    self.counts["hung"] += 1
                    try:
                        await asyncio.sleep(HANG_S)
                    except asyncio.CancelledError:
                        pass  # the run is over
                    return
                draw = self.rng.random()
                if draw < self.fail * 0.6:
                    self.counts["http_500"] += 1
                    writer.write(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!"
                    )
                    await writer.drain()
                    continue
                if draw < self.fail:
                    self.counts["dropped"] += 1
                    writer.transport.abort()
                    return
                assert self.verifier is not None
                try:
                    msg_id = self.verifier.verify(headers, body)
                except WebhookVerificationError as exc:
                    self.counts[f"bad signature: {exc.reason}"] += 1
                    writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                self.counts["ok"] += 1
                self._record(msg_id)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass(frozen=True)
class Hook:
    name: str
    types: tuple[str, ...]
    order: str
    municipalities: tuple[str, ...] = ()


# Every event of 4 of the 44 municipalities: ~9 % of the ingest (plus the hub's own events
# there). A webhook POST costs the hub far more than an ingested event (see bench/README.md).
REGION = ("abinsky", "gelendzhik", "kanevskoy", "krasnodar")
DISTRICT = ("sochi", "krasnodar")
HOOKS = (
    Hook("region", (">",), "parallel", REGION),
    Hook("district", ("agency.>", "camera.>", "incident.>"), "parallel", DISTRICT),
    Hook("alerts", ("alert.>", "camera.>", "incident.>"), "ordered"),
)


# -- SSE clients -----------------------------------------------------------------------------
class SseClient:
    """Follows the event stream, drops the connection every now and then and resumes with
    Last-Event-ID; marks each seq it saw."""

    def __init__(
        self, name: str, url: str, token: str, types: tuple[str, ...], every: tuple[float, float]
    ) -> None:
        self.name, self.url, self.token, self.types, self.every = name, url, token, types, every
        self.rng = random.Random(name)
        self.seen = bytearray()
        self.first_seq: int | None = None
        self.max_seq = 0
        self.events = 0
        self.duplicates = 0
        self.connects = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.last: str | None = None
        self.ready = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    def _mark(self, cursor: str) -> None:
        seq = decode_cursor(cursor)
        if seq >= len(self.seen):
            self.seen.extend(bytes(seq + 100_000 - len(self.seen)))
        if self.seen[seq]:
            self.duplicates += 1
        else:
            self.seen[seq] = 1
            self.events += 1
        if self.first_seq is None:
            self.first_seq = seq
        self.max_seq = max(self.max_seq, seq)
        self.last = cursor

    async def _run(self) -> None:
        params = [("type", t) for t in self.types]
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
            while True:
                headers = {"Authorization": f"Bearer {self.token}"}
                if self.last is not None:
                    headers["Last-Event-ID"] = self.last
                try:
                    async with asyncio.timeout(self.rng.uniform(*self.every)):
                        async with http.stream(
                            "GET", self.url, headers=headers, params=params
                        ) as response:
                            response.raise_for_status()
                            self.connects += 1
                            self.ready.set()
                            async for line in response.aiter_lines():
                                if line.startswith("id:"):
                                    self._mark(line[3:].strip())
                except TimeoutError:
                    continue  # our own drop: reconnect at once
                except httpx.HTTPError as exc:
                    self.errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.5)

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


# -- the journal, read directly ------------------------------------------------------------
class JournalTables:
    """The hub's journal tables, read without the hub's code."""

    def __init__(self, backend: str, dsn: str, schema: str, sqlite_path: Path) -> None:
        self.backend, self.dsn, self.schema, self.path = backend, dsn, schema, sqlite_path

    async def _pg(self, sql: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql.replace("{s}", f'"{self.schema}".'), *args)
        finally:
            await conn.close()

    def _lite(self, sql: str, *args: Any) -> list[Any]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql.replace("{s}", "").replace("$1", "?"), args).fetchall()
        finally:
            conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        if self.backend == "postgres":
            return [tuple(r) for r in await self._pg(sql, *args)]
        return await asyncio.to_thread(self._lite, sql, *args)

    async def last_seq(self) -> int:
        [(seq,)] = await self.fetch("SELECT coalesce(max(seq), 0) FROM {s}events")
        return int(seq)

    async def cursors(self) -> dict[str, int]:
        return dict(await self.fetch("SELECT id, cursor FROM {s}subscriptions"))

    async def issues(self) -> list[tuple[str, int, str, str, int, str]]:
        return await self.fetch(
            "SELECT subscription, seq, event_id, state, attempts, last_error"
            " FROM {s}delivery_issues ORDER BY seq"
        )

    async def scan(self, after: int, until: int, chunk: int = 50_000):
        """(seq, id, source, type, municipality) of the events in (after, until], by chunks."""
        while after < until:
            rows = await self.fetch(
                "SELECT seq, id, source, type, municipality FROM {s}events"
                f" WHERE seq > $1 AND seq <= {until} ORDER BY seq LIMIT {chunk}",
                after,
            )
            if not rows:
                return
            yield rows
            after = rows[-1][0]


# -- sampling --------------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                values[key] = int(value.split()[0])
    return values


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text: each metric name's samples summed over labels, and a webhook
    subscription's own as ``<name>|webhook:<id>``."""
    out: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        name = metric.split("{", 1)[0]
        out[name] += float(value)
        if 'subscription="webhook:' in metric:
            sub = metric.split('subscription="', 1)[1].split('"', 1)[0]
            out[f"{name}|{sub}"] = float(value)
        elif 'state="' in metric and name == "nabat_process_malloc_bytes":
            state = metric.split('state="', 1)[1].split('"', 1)[0]
            out[f"{name}|{state}"] = float(value)
    return out


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_mib: float
    hwm_mib: float
    fds: int
    threads: int
    tasks: float
    hub_cpu_s: float
    metrics: dict[str, float]


@dataclass
class Soak:
    """Everything of one soak run the report needs."""

    args: argparse.Namespace
    samples: list[Sample] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    alerts: collections.Counter[str] = field(default_factory=collections.Counter)
    alert_seconds: list[float] = field(default_factory=list)


def slope_per_hour(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of (seconds, value) per hour, and its standard error."""
    n = len(points)
    if n < 3:
        return math.nan, math.nan
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((t - mt) ** 2 for t, _ in points)
    b = sum((t - mt) * (y - my) for t, y in points) / sxx
    resid = sum((y - my - b * (t - mt)) ** 2 for t, y in points)
    se = math.sqrt(resid / (n - 2) / sxx)
    return b * 3600, se * 3600


# -- the run ---------------------------------------------------------------------------------
async def sampler(hub: HubProcess, http: httpx.AsyncClient, soak: Soak, t0: float) -> None:
    pid = hub.proc.pid  # type: ignore[union-attr]
    while True:
        try:
            status = proc_status(pid)
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            cpu = cpu_of(pid)
            metrics = parse_metrics((await http.get(f"{hub.url}/metrics")).text)
        except (OSError, httpx.HTTPError) as exc:
            print(f"  (sample failed: {exc!r})", flush=True)
        else:
            soak.samples.append(
                Sample(
                    t=time.monotonic() - t0,
                    rss_mib=status["VmRSS"] / 1024,
                    hwm_mib=status["VmHWM"] / 1024,
                    fds=fds,
                    threads=status["Threads"],
                    tasks=metrics.get("nabat_asyncio_tasks", math.nan),
                    hub_cpu_s=cpu,
                    metrics=dict(metrics),
                )
            )
        await asyncio.sleep(SAMPLE_EVERY)


async def alert_loop(hub: HubProcess, http: httpx.AsyncClient, soak: Soak, every: float) -> None:
    from nabat.cap.codec import to_cap
    from nabat.testing import exercise_alert

    while True:
        await asyncio.sleep(every)
        t = clock()
        try:
            r = await http.post(
                f"{hub.url}/api/v1/alerts/cap",
                params={"wait": 30},
                content=to_cap(exercise_alert(SIREN_MUNICIPALITY)),
                headers={"Content-Type": "application/cap+xml"},
                timeout=60,
            )
        except httpx.HTTPError as exc:
            soak.alerts[f"error {type(exc).__name__}"] += 1
            continue
        soak.alert_seconds.append(clock() - t)
        if r.status_code != 202:
            soak.alerts[f"HTTP {r.status_code}"] += 1
            continue
        record = r.json()
        soak.alerts[f"phase {record.get('phase')}"] += 1
        for device in record.get("devices", []):
            soak.alerts[f"device {device.get('outcome')}"] += 1


async def subscriptions(http: httpx.AsyncClient, url: str) -> dict[str, dict[str, Any]]:
    r = await http.get(f"{url}/api/v1/subscriptions")
    r.raise_for_status()
    return {s["description"]: s for s in r.json()}


def progress(soak: Soak, report: dict[str, Any], minute: float, previous: Sample | None) -> None:
    s = soak.samples[-1] if soak.samples else None
    counts = report["counts"]
    acked = counts.get("202", 0)
    skipped = counts.get("skipped", 0)
    bad = sum(v for k, v in counts.items() if k not in ("202", "skipped"))
    line = (
        f"  [{minute:5.1f} min] ingest {acked / max(1e-9, soak.args.progress):7.1f} ev/s"
        f" (other answers {bad}, skipped {skipped})"
        f" p50 {report['p50_ms']:6.2f} ms p99 {report['p99_ms']:7.2f} ms"
    )
    if s is not None:
        lag = sum(v for k, v in s.metrics.items() if k.startswith("nabat_delivery_lag_events|"))
        cpu = ""
        if previous is not None and s.t > previous.t:
            cpu = f" cpu {100 * (s.hub_cpu_s - previous.hub_cpu_s) / (s.t - previous.t):3.0f}%"
        line += (
            f" | RSS {s.rss_mib:6.1f} MiB fds {s.fds:4d} tasks {s.tasks:5.0f}"
            f" threads {s.threads:3d}{cpu} | webhook lag {lag:7,.0f}"
            f" dead {s.metrics.get('nabat_delivery_dead_total', 0):.0f}"
        )
    line += f" | load {os.getloadavg()[0]:.2f}"
    print(line, flush=True)


async def run_soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    schema = f"bench_soak_{uuid.uuid4().hex[:10]}"
    try:
        return await _run_soak(args, work, schema)
    finally:
        if args.backend == "postgres":
            conn = await asyncpg.connect(args.dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()


async def _run_soak(args: argparse.Namespace, work: Path, schema: str) -> dict[str, Any]:
    soak = Soak(args)
    seconds = args.minutes * 60
    run = f"soak{os.getpid()}"
    prefix = f"{run}-"
    port = free_port()
    if args.backend == "postgres":
        storage = (args.dsn, f'schema = "{schema}"')
    else:
        storage = ("sqlite:///journal.sqlite3", "")
    config = HUB_CONFIG.format(
        url=storage[0],
        schema=storage[1],
        port=port,
        arenas=args.malloc_arenas,
        trim=args.malloc_trim,
    ) + "".join(SIREN.format(i=i, municipality=SIREN_MUNICIPALITY) for i in range(SIRENS))
    hub = HubProcess(work / "hub", config, port)
    tables = JournalTables(args.backend, args.dsn, schema, hub.directory / "data/journal.sqlite3")
    rng = random.Random(args.seed)
    receivers = {
        h.name: FlakyReceiver(
            h.name, prefix, args.fail, args.hang_every, random.Random(rng.random())
        )
        for h in HOOKS
    }
    result: dict[str, Any] = {"soak": soak}
    clients: list[SseClient] = []
    background: list[asyncio.Task[None]] = []
    try:
        csv = hub.directory / "cameras.csv"
        rows = camera_rows(args.cameras, lambda i: f"rtsp://127.0.0.1:9/sim-{i}")
        csv.write_text(rows.replace(";rtsp.camera;", ";simulator.camera;"))
        print(f"  {hub.nabat('cameras', 'import', str(csv)).strip().splitlines()[-1]}")
        ingest_token = hub.token("soak-ingest", "events:write")
        ops_token = hub.token("soak-ops", "events:read,alerts:activate,ops:read")
        await hub.start()
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {ops_token}"}, timeout=30)
        for receiver in receivers.values():
            await receiver.start()
        starts: dict[str, int] = {}
        for h in HOOKS:
            r = await http.post(
                f"{hub.url}/api/v1/subscriptions",
                json={
                    "url": receivers[h.name].url,
                    "types": list(h.types),
                    "municipalities": list(h.municipalities),
                    "order": h.order,
                    "description": h.name,
                },
            )
            if r.status_code != 201:
                raise SystemExit(f"subscription {h.name}: {r.status_code} {r.text}")
            receivers[h.name].verifier = WebhookVerifier([r.json()["secret"]])
            starts[h.name] = await tables.last_seq()
        stream = f"{hub.url}/api/v1/events/stream"
        every = (5.0, 15.0) if args.quick else (20.0, 90.0)
        ops_types = ("alert.>", "camera.>", "incident.>")
        clients = [
            SseClient("sse-all-1", stream, ops_token, (), every),
            SseClient("sse-all-2", stream, ops_token, (), every),
            SseClient("sse-ops", stream, ops_token, ops_types, every),
        ]
        async with asyncio.timeout(30):
            for c in clients:
                await c.ready.wait()
        print(
            f"  hub pid {hub.proc.pid} on {hub.url}, journal {args.backend}; "  # type: ignore[union-attr]
            f"{len(HOOKS)} webhook subscriptions, {len(clients)} SSE clients; load starts",
            flush=True,
        )

        t0 = time.monotonic()
        load = LoadProcess(hub.url, ingest_token, args.rate, seconds, run)
        background = [
            asyncio.ensure_future(sampler(hub, http, soak, t0)),
            asyncio.ensure_future(alert_loop(hub, http, soak, args.alert_every)),
        ]
        previous: Sample | None = None
        while True:
            await asyncio.sleep(args.progress)
            report = await load.ask()
            soak.windows.append(report)
            progress(soak, report, (time.monotonic() - t0) / 60, previous)
            previous = soak.samples[-1] if soak.samples else None
            if report["finished"] or report["sent"] >= load_n(args):
                break
        final, rest = await load.finish()
        soak.windows.extend(rest)
        # The load's own window on the sampler's clock: its first slot to its last answer.
        load_start = time.monotonic() - t0 - final["started_ago_s"]
        load_end = load_start + final["elapsed_s"]
        result["load_elapsed"] = final["elapsed_s"]
        result["load_start"] = load_start
        background[1].cancel()
        end_seq = await tables.last_seq()
        result.update(load_end=load_end, end_seq=end_seq, status=final["status"])
        result["load_cpu_s"] = final["cpu_s"]
        result["totals"] = final["totals"]

        # Drain: every subscription past end_seq with no retry left, every SSE client there.
        print(f"  load over after {load_end:.0f} s; draining deliveries ...", flush=True)
        drain_t = time.monotonic()
        ids = {
            name: f"webhook:{s['id']}" for name, s in (await subscriptions(http, hub.url)).items()
        }
        drained = False
        while time.monotonic() - drain_t < args.drain:
            cursors = await tables.cursors()
            issues = await tables.issues()
            retrying = [i for i in issues if i[3] == "retry" and i[1] <= end_seq]
            behind = [n for n, i in ids.items() if cursors.get(i, 0) < end_seq]
            sse_behind = [c.name for c in clients if c.max_seq < end_seq and c.types == ()]
            if not behind and not retrying and not sse_behind:
                drained = True
                break
            await asyncio.sleep(2)
        result["drain_s"] = time.monotonic() - drain_t
        result["drained"] = drained
        if not drained:
            result["drain_state"] = {
                "behind": behind,
                "retrying": len(retrying),
                "sse_behind": sse_behind,
            }
        await asyncio.sleep(SAMPLE_EVERY)  # one more sample, idle
        background[0].cancel()
        result["views"] = await subscriptions(http, hub.url)
        result["final_metrics"] = parse_metrics((await http.get(f"{hub.url}/metrics")).text)
        for c in clients:
            await c.stop()
        result["issues"] = await tables.issues()
        result["ids"] = ids
        result["starts"] = starts
        result["hub_cpu_s"] = cpu_of(hub.proc.pid)  # type: ignore[union-attr]
        await http.aclose()
    finally:
        for task in background:
            task.cancel()
        for c in clients:
            await c.stop()
        if hub.proc is not None and hub.proc.poll() is None:
            hub.proc.send_signal(signal.SIGTERM)
            try:
                result["hub_exit"] = hub.proc.wait(60)
            except Exception:
                hub.proc.kill()
                result["hub_exit"] = "killed"
        for receiver in receivers.values():
            await receiver.stop()

    result["verify"] = await verify(result, tables, receivers, clients, prefix)
    result["log"] = scan_log(hub.directory / "hub.log")
    if args.keep_log:
        shutil.copy(hub.directory / "hub.log", args.keep_log)
    result["receivers"] = {n: dict(r.counts) for n, r in receivers.items()}
    result["sse"] = {
        c.name: {
            "events": c.events,
            "duplicates": c.duplicates,
            "connects": c.connects,
            "errors": dict(c.errors),
        }
        for c in clients
    }
    return result


def load_n(args: argparse.Namespace) -> int:
    return int(args.rate * args.minutes * 60)


async def verify(
    result: dict[str, Any],
    tables: JournalTables,
    receivers: dict[str, FlakyReceiver],
    clients: list[SseClient],
    prefix: str,
) -> dict[str, Any]:
    """Acknowledged events in the journal; each subscription's and SSE client's events
    received; from the journal's tables."""
    status: bytes = result["status"]
    end_seq: int = result["end_seq"]
    in_journal = bytearray(len(status))
    journal_soak = 0
    dead = {
        (sub, event_id): (attempts, error)
        for sub, _, event_id, state, attempts, error in result["issues"]
        if state == "dead"
    }
    hooks = {h.name: h for h in HOOKS}
    expected = collections.Counter()
    missing: dict[str, list[tuple[int, str, str]]] = collections.defaultdict(list)
    dead_seen = collections.Counter()
    sse_expected = collections.Counter()
    sse_missing: dict[str, list[int]] = collections.defaultdict(list)
    by_type = collections.Counter()
    async for rows in tables.scan(0, end_seq):
        for seq, event_id, source, type_, municipality in rows:
            soak_event = source == SOURCE and event_id.startswith(prefix)
            if soak_event:
                i = int(event_id[len(prefix) :])
                if i < len(in_journal):
                    in_journal[i] = 1
                    journal_soak += 1
            by_type[type_.split(".", 1)[0]] += 1
            for name, receiver in receivers.items():
                h = hooks[name]
                if seq <= result["starts"][name]:
                    continue
                if not any(matches(p, type_) for p in h.types):
                    continue
                if h.municipalities and municipality not in h.municipalities:
                    continue
                expected[name] += 1
                if receiver.received(event_id):
                    continue
                if (result["ids"][name], event_id) in dead:
                    dead_seen[name] += 1
                else:
                    missing[name].append((seq, event_id, type_))
            for c in clients:
                if c.first_seq is None or seq < c.first_seq:
                    continue
                if c.types and not any(matches(p, type_) for p in c.types):
                    continue
                sse_expected[c.name] += 1
                if seq >= len(c.seen) or not c.seen[seq]:
                    sse_missing[c.name].append(seq)
    acked = [i for i, s in enumerate(status) if s == ACKED]
    lost = [i for i in acked if not in_journal[i]]
    unacked_stored = sum(1 for i, s in enumerate(status) if s != ACKED and in_journal[i])
    return {
        "acked": len(acked),
        "not_acked": len(status) - len(acked),
        "skipped": status.count(SKIPPED),
        "unacked_stored": unacked_stored,
        "journal_soak": journal_soak,
        "lost": lost,
        "by_type": dict(by_type),
        "expected": dict(expected),
        "missing": dict(missing),
        "dead": dict(dead_seen),
        "dead_errors": collections.Counter(
            error.split(":")[0] for (_, _), (_, error) in dead.items()
        ),
        "sse_expected": dict(sse_expected),
        "sse_missing": dict(sse_missing),
    }


def scan_log(path: Path) -> dict[str, Any]:
    """The hub log's lines per level, and its warning and error events by name."""
    levels: collections.Counter[str] = collections.Counter()
    events: collections.Counter[str] = collections.Counter()
    other = 0
    try:
        with path.open("rb") as f:
            for raw in f:
                try:
                    line = json.loads(raw)
                except ValueError:
                    other += 1
                    continue
                level = str(line.get("level", "?"))
                levels[level] += 1
                if level in ("warning", "error", "critical"):
                    events[f"{level} {line.get('event')}"] += 1
        size = path.stat().st_size
    except OSError:
        return {}
    return {"levels": dict(levels), "events": events.most_common(12), "other": other, "size": size}


# -- the report ------------------------------------------------------------------------------
def report(args: argparse.Namespace, result: dict[str, Any], bases: list[dict[str, Any]]) -> None:
    soak: Soak = result["soak"]
    warm = WARMUP_S if not args.quick else 15.0
    end = result["load_end"]
    warm += result["load_start"]
    elapsed = result["load_elapsed"]  # the load generator's first slot to its last answer
    steady = [s for s in soak.samples if warm <= s.t <= end]
    hub_lat = merge_windows(soak.windows)
    acked = result["verify"]["acked"]
    print()
    print(
        f"ingest: {acked:,} of {load_n(args):,} events acknowledged (202) in {elapsed:.0f} s ="
        f" {acked / elapsed:,.1f} ev/s (schedule {args.rate:g})"
    )
    print()
    print("| ingest at the same paced rate | events | ev/s | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for i, b in enumerate(bases):
        when = "before" if i == 0 else "after"
        print(
            f"| bare Litestar ({when}) | {b['events']:,} | {b['rate']:,.1f} | {b['p50_ms']:.2f}"
            f" | {b['p99_ms']:.2f} | {b['max_ms']:.1f} |"
        )
    print(
        f"| hub, whole soak | {hub_lat['answered']:,} | {acked / elapsed:,.1f} |"
        f" {hub_lat['p50_ms']:.2f} | {hub_lat['p99_ms']:.2f} | {hub_lat['max_ms']:.1f} |"
    )
    bare_p50 = sum(b["p50_ms"] for b in bases) / len(bases)
    bare_p99 = sum(b["p99_ms"] for b in bases) / len(bases)
    bare_rate = sum(b["rate"] for b in bases) / len(bases)
    print(
        f"ratio hub / bare (mean of the baselines): rate {acked / elapsed / bare_rate:.3f},"
        f" p50 {hub_lat['p50_ms'] / bare_p50:.2f}x, p99 {hub_lat['p99_ms'] / bare_p99:.2f}x"
    )
    minutes = [w for w in soak.windows if w["answered"]]
    if minutes:
        worst = max(minutes, key=lambda w: w["p99_ms"])
        print(
            f"per-window ingest p99: {min(w['p99_ms'] for w in minutes):.2f}-"
            f"{worst['p99_ms']:.2f} ms (max {max(w['max_ms'] for w in minutes):.0f} ms)"
        )
    print()
    print(
        f"resources of the hub process, {len(steady)} samples from {warm:.0f} s to {end:.0f} s"
        f" (every {SAMPLE_EVERY:g} s):"
    )
    print(
        "| resource | first | last | min | max | slope per hour | ± s.e. | 2nd half's slope |"
        " threshold | verdict |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    verdicts = {}
    rows = [
        (key, label, [(s.t, float(getattr(s, key))) for s in steady])
        for key, label in (
            ("rss_mib", "RSS MiB"),
            ("fds", "open fds"),
            ("tasks", "asyncio tasks"),
            ("threads", "threads"),
        )
    ]
    rows += [  # what the RSS is made of: read, not judged
        (key, label, [(s.t, s.metrics[key] / unit) for s in steady if key in s.metrics])
        for key, label, unit in MEMORY_PARTS
    ]
    for key, label, points in rows:
        values = [y for _, y in points]
        slope, se = slope_per_hour(points)
        late, _ = slope_per_hour(points[len(points) // 2 :])  # warming levels off; a leak not
        if key in THRESHOLDS:
            flat = slope < THRESHOLDS[key] if not math.isnan(slope) else None  # a leak grows
            verdicts[key] = flat
            verdict = "n/a" if flat is None else ("flat" if flat else "NOT flat")
            judged = f" < {THRESHOLDS[key]:g}/h | {verdict} |"
        else:
            judged = " | read, not judged |"
        if values:
            print(
                f"| {label} | {values[0]:,.1f} | {values[-1]:,.1f} | {min(values):,.1f} |"
                f" {max(values):,.1f} | {slope:+,.1f} | {se:,.1f} | {late:+,.1f} |{judged}"
            )
    if args.quick:
        print("(quick run: slopes over a minute say little)")
    if len(steady) >= 2:
        cpu = (steady[-1].hub_cpu_s - steady[0].hub_cpu_s) / (steady[-1].t - steady[0].t)
        print(f"hub CPU in that window: {100 * cpu:.0f} % of a core")
    print(f"load generator CPU over the soak: {100 * result['load_cpu_s'] / end:.0f} % of a core")
    last = soak.samples[-1] if soak.samples else None
    if last is not None:
        print(
            f"after the drain (t = {last.t:.0f} s): RSS {last.rss_mib:.1f} MiB, fds {last.fds},"
            f" tasks {last.tasks:.0f}, threads {last.threads}; peak RSS (VmHWM)"
            f" {last.hwm_mib:.1f} MiB"
        )
    v = result["verify"]
    print()
    print(
        f"journal: {v['acked']:,} acknowledged, {len(v['lost'])} of them NOT in the journal;"
        f" {v['not_acked']:,} not acknowledged ({v['skipped']:,} of them never sent: the hub"
        f" was {BACKLOG_S:g} s behind; {v['unacked_stored']:,} stored anyway);"
        f" events by family: {v['by_type']}"
    )
    answers = {k: n for k, n in result.get("totals", {}).items() if k not in ("202", "skipped")}
    if answers:
        print(f"  not acknowledged, by answer: {answers}")
    if v["lost"]:
        print(f"  lost (first 10): {v['lost'][:10]}")
    print(
        f"drain: {'done' if result['drained'] else 'NOT done'} in {result['drain_s']:.0f} s"
        + ("" if result["drained"] else f" ({result.get('drain_state')})")
    )
    print(
        "| webhook | order | expected | missing | dead | requests | 2xx | 500 | dropped | hung |"
        " duplicates | failed attempts | bad signatures |"
    )
    print(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for h in HOOKS:
        c = result["receivers"][h.name]
        sub = result["ids"].get(h.name, "")
        failed = result["final_metrics"].get(f"nabat_delivery_failed_attempts_total|{sub}", 0)
        bad = sum(n for k, n in c.items() if k.startswith("bad signature"))
        print(
            f"| {h.name} | {h.order} | {v['expected'].get(h.name, 0):,} |"
            f" {len(v['missing'].get(h.name, [])):,} | {v['dead'].get(h.name, 0):,} |"
            f" {c.get('requests', 0):,} | {c.get('ok', 0):,} | {c.get('http_500', 0):,} |"
            f" {c.get('dropped', 0):,} | {c.get('hung', 0):,} | {c.get('duplicates', 0):,} |"
            f" {failed:,.0f} | {bad} |"
        )
        if v["missing"].get(h.name):
            print(f"    missing (first 5): {v['missing'][h.name][:5]}")
    if v["dead_errors"]:
        print(f"dead letters by error: {dict(v['dead_errors'])}")
    for name, view in result["views"].items():
        print(f"  subscription {name}: delivery {view.get('delivery')}")
    print(
        "| SSE client | filter | events expected | received | missing | duplicates | connects |"
        " errors |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, s in result["sse"].items():
        print(
            f"| {name} | {'ops types' if name == 'sse-ops' else 'all'} |"
            f" {v['sse_expected'].get(name, 0):,} | {s['events']:,} |"
            f" {len(v['sse_missing'].get(name, [])):,} | {s['duplicates']:,} |"
            f" {s['connects']} | {s['errors'] or '-'} |"
        )
        if v["sse_missing"].get(name):
            print(f"    missing seqs (first 10): {v['sse_missing'][name][:10]}")
    print(f"alerts: {dict(soak.alerts)}")
    if soak.alert_seconds:
        secs = sorted(soak.alert_seconds)
        print(
            f"  POST to completed answer: median {secs[len(secs) // 2]:.2f} s, max {secs[-1]:.2f} s"
        )
    log = result["log"]
    if log:
        print(
            f"hub log: {log['size'] / 2**20:.0f} MiB, lines per level {log['levels']}"
            f" (not JSON: {log['other']})"
        )
        for name, count in log["events"]:
            print(f"  {count:>9,}  {name}")
    print(f"hub exit status: {result.get('hub_exit')}")
    print()
    lossless = (
        not v["lost"] and not any(v["missing"].values()) and not any(v["sse_missing"].values())
    )
    flat = all(verdicts.values())
    print(
        f"verdict: resources {'flat' if flat else 'NOT flat'}"
        f" ({', '.join(f'{k} {x}' for k, x in verdicts.items())});"
        f" events {'none lost' if lossless else 'LOST (see above)'}"
    )


async def amain(args: argparse.Namespace) -> None:
    if args.backend == "postgres":
        problem = await pg_problem(args.dsn)
        if problem:
            raise SystemExit(f"PostgreSQL at {args.dsn}: {problem}")
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop cleanly: the hub, the schema, the files
        loop.add_signal_handler(sig, main_task.cancel)
    work = Path(tempfile.mkdtemp(prefix="bench-soak-", dir=args.dir))
    try:
        print(f"machine: {describe_machine(work)}")
        print(
            f"soak: {args.minutes:g} min at {args.rate:g} ev/s, journal {args.backend},"
            f" {args.cameras} simulated cameras, an alert every {args.alert_every:g} s,"
            f" webhook receivers failing {args.fail:.0%} + a hang every {args.hang_every:g} s"
        )
        arenas = os.environ.get("MALLOC_ARENA_MAX")
        print(
            f"hub's malloc arenas: {args.malloc_arenas or 'glibc default'} ([hub] malloc_arenas),"
            f" heap trimmed {f'every {args.malloc_trim:g} s' if args.malloc_trim else 'never'}"
            " ([hub] malloc_trim_interval)"
            + (f"; MALLOC_ARENA_MAX={arenas} in the environment wins" if arenas else "")
        )
        bases = [await baseline(args.rate, args.baseline_seconds, work, "a")]
        print(
            f"  baseline (bare Litestar) before: {bases[0]['rate']:.1f} ev/s,"
            f" p50 {bases[0]['p50_ms']:.2f} ms, p99 {bases[0]['p99_ms']:.2f} ms",
            flush=True,
        )
        result = await run_soak(args, work)
        bases.append(await baseline(args.rate, args.baseline_seconds, work, "b"))
        print(
            f"  baseline (bare Litestar) after: {bases[1]['rate']:.1f} ev/s,"
            f" p50 {bases[1]['p50_ms']:.2f} ms, p99 {bases[1]['p99_ms']:.2f} ms",
            flush=True,
        )
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        report(args, result, bases)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="ingested events/s")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--quick", action="store_true", help="a ~60 s smoke run")
    parser.add_argument("--cameras", type=int, default=500)
    parser.add_argument("--alert-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--fail", type=float, default=0.15, help="receivers' failure share")
    parser.add_argument("--hang-every", type=float, default=120.0, help="mean s between hangs")
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=900.0, help="max s to drain deliveries")
    parser.add_argument("--progress", type=float, default=60.0, help="s between progress lines")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL (env NABAT_BENCH_PG)")
    parser.add_argument("--dir", default=None, help="directory for the hub (on disk)")
    parser.add_argument(
        "--malloc-arenas",
        type=int,
        default=HubSettings().malloc_arenas,
        help="the hub's [hub] malloc_arenas (0: glibc's default, 8 per core)",
    )
    parser.add_argument(
        "--malloc-trim",
        type=float,
        default=HubSettings().malloc_trim_interval,
        help="the hub's [hub] malloc_trim_interval in s (0: never)",
    )
    parser.add_argument("--keep-log", default=None, metavar="FILE", help="copy the hub's log")
    args = parser.parse_args()
    if args.quick:
        given = set(sys.argv)
        for option, value in (
            ("--minutes", 1.0),
            ("--alert-every", 15.0),
            ("--hang-every", 30.0),
            ("--baseline-seconds", 5.0),
            ("--drain", 180.0),
            ("--progress", 10.0),
            ("--cameras", 100),
        ):
            if option not in given:
                setattr(args, option.lstrip("-").replace("-", "_"), value)
    global SAMPLE_EVERY
    if args.quick:
        SAMPLE_EVERY = 5.0
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
