"""Federation benchmark (issue 18): a district's events to the regional journal over NATS.

Real processes on loopback: a regional ``nats-server`` (JetStream domain ``region``) and a
site leaf node (domain ``site-a``) dialling it through a proxy the benchmark can cut — the
set-up of ``docs/federation.md`` and ``tests/fixtures/nats_cluster.py`` — then

* **raw**, the baseline: a bare nats-py client publishes the same encoded events (one
  ``js.publish`` awaited at a time, ``Nats-Msg-Id`` set) to a stream on the site, the region's
  JetStream *sources* it into a stream of its own, and a bare consumer there pulls batches of
  256 and acknowledges each message — what the hubs do, minus the hubs;
* **hub**: a district ``nabat run`` (SQLite journal) takes the events over HTTP
  (``POST /api/v1/events``, batches), its up-path publishes them from the journal, and the
  regional ``nabat run`` (PostgreSQL journal, a schema of its own) follows the site; arrival
  is read from the region's ``GET /api/v1/events/stream`` (SSE, fed from its journal after
  the commit).

Measured, each in the same run:

1. **Latency** at ``--rate`` (1,000 ev/s) for ``--seconds``: from just before the publish
   (raw) or the POST (hub) to the event's arrival at the region's consumer (raw) or its SSE
   stream (hub). Goal p99 < 100 ms.
2. **Throughput**: ``--burst`` events (20,000) sent as fast as they are taken, rate = events
   / (last arrival - first send). Goal hub >= 0.5 of raw.
3. **Catch-up** (hub): the leaf link cut for ``--cut`` seconds (600) while the district takes
   ``--cut-rate`` (500) ev/s; then the link back and production going on; how fast the region
   takes the backlog in. Goal: >= 5x the production rate.

Run: ``uv run python bench/federation.py`` (about 15 minutes; ``--quick``: 60 s cut, fewer
events).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

from federation_config import hub_config  # noqa: E402
from nabat.events import Event, encode_event  # noqa: E402
from nats_cluster import Federation, find_nats_server, free_port  # noqa: E402

PG_DSN = os.environ.get("NABAT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
TYPE = "bench.ping"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values_ms: list[float]) -> str:
    return (
        f"p50 {pct(values_ms, 0.5):.1f} ms  p99 {pct(values_ms, 0.99):.1f} ms  "
        f"max {max(values_ms, default=float('nan')):.1f} ms  (n={len(values_ms)})"
    )


def event(i: int, *, t: float | None = None) -> Event:
    return Event(
        type=TYPE,
        source="/bench/federation",
        id=f"ev-{i:08d}",
        subject=f"cam-{i % 97}",
        municipality="abinsky",
        data={"n": i, "t": t if t is not None else time.time(), "pad": "x" * 200},
    )


# -- raw ------------------------------------------------------------------------------------
class Raw:
    """A bare publisher on the site and a bare consumer on the region, over streams sourced
    exactly as the hubs' are."""

    def __init__(self, federation: Federation, site: Any) -> None:
        self.federation = federation
        self.site = site
        self.arrivals: dict[int, float] = {}
        self.latency: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import nats
        from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

        self.site_nc = await nats.connect(self.site.url)
        self.sjs = self.site_nc.jetstream()
        await self.sjs.add_stream(
            StreamConfig(
                name="RAW_site-a",
                subjects=["raw.site-a.>"],
                storage=StorageType.FILE,
                max_bytes=256 * 1024 * 1024,
                duplicate_window=120.0,
            )
        )
        self.region_nc = await nats.connect(self.federation.region.url)
        self.rjs = self.region_nc.jetstream()
        await self.rjs.add_stream(
            StreamConfig(
                name="RAWF_site-a",
                sources=[
                    StreamSource(
                        name="RAW_site-a",
                        external=ExternalStream(api="$JS.site-a.API", deliver="deliver.raw.site-a"),
                    )
                ],
                storage=StorageType.FILE,
                max_bytes=256 * 1024 * 1024,
                duplicate_window=1.0,
            )
        )
        self.subscription = await self.rjs.pull_subscribe("", durable="raw", stream="RAWF_site-a")
        self._task = asyncio.ensure_future(self._consume())

    async def _consume(self) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        idle = True  # the hub's consumers' way (nabat.federation.connection.consume)
        while True:
            try:
                messages = await self.subscription.fetch(
                    1 if idle else 256, timeout=1.0 if idle else 0.02
                )
            except (NatsTimeout, TimeoutError):
                idle = True
                continue
            idle = False
            now = time.time()
            for message in messages:
                data = msgspec.json.decode(message.data)["data"]
                self.arrivals.setdefault(data["n"], now)
                self.latency.append((now - data["t"]) * 1000)
                await message.ack()

    async def publish(self, i: int) -> None:
        e = event(i)
        await self.sjs.publish(
            f"raw.site-a.{TYPE}", encode_event(e), headers={"Nats-Msg-Id": f"{e.source} {e.id}"}
        )

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.site_nc.close()
        await self.region_nc.close()


async def paced(rate: float, seconds: float, send, first: int = 0) -> int:
    """Call ``send(i)`` ``rate`` times a second for ``seconds`` (ticks of 10 ms); the count."""
    per_tick = rate / 100
    start = time.perf_counter()
    sent = 0
    tick = 0
    while time.perf_counter() - start < seconds:
        due = int(per_tick * (tick + 1))
        while sent < due:
            await send(first + sent)
            sent += 1
        tick += 1
        pause = start + tick * 0.01 - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
    return sent


async def wait_for(arrivals: dict[int, float], wanted: range, timeout: float) -> bool:
    """Whether every event of ``wanted`` arrived within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    missing = list(wanted)
    while time.monotonic() < deadline:
        missing = [i for i in missing if i not in arrivals]
        if not missing:
            return True
        await asyncio.sleep(0.05)
    return False


async def run_raw(federation: Federation, site: Any, args: argparse.Namespace) -> dict:
    raw = Raw(federation, site)
    await raw.start()
    try:
        await paced(100, 2, raw.publish, first=10_000_000)  # warm-up
        await asyncio.sleep(1)
        raw.latency.clear()
        n = await paced(args.rate, args.seconds, raw.publish)
        await wait_for(raw.arrivals, range(n), 30)
        latency = list(raw.latency)
        first = 1_000_000
        t0 = time.time()
        for i in range(first, first + args.burst):
            await raw.publish(i)
        ok = await wait_for(raw.arrivals, range(first, first + args.burst), 120)
        last = max(raw.arrivals[i] for i in range(first, first + args.burst) if i in raw.arrivals)
        rate = args.burst / (last - t0)
        return {"latency": latency, "sent": n, "throughput": rate, "complete": ok}
    finally:
        await raw.close()


# -- hub ------------------------------------------------------------------------------------
def _district(port: int, nats: str) -> str:
    return hub_config(
        name="bench-district",
        site="site-a",
        servers=nats,
        hub=f'log_format = "json"\n[api]\nlisten = "127.0.0.1:{port}"',
        federation='up = ["bench.>"]',
        stream_max_mb=512,
        timeouts=False,
    )


def _region(port: int, nats: str, schema: str) -> str:
    return hub_config(
        name="bench-region",
        site="region",
        servers=nats,
        storage=PG_DSN,
        schema=schema,
        hub=f'log_format = "json"\n[api]\nlisten = "127.0.0.1:{port}"',
        federation='up = []\nfollow = ["site-a"]',
        stream_max_mb=512,
        timeouts=False,
    )


class HubProcess:
    def __init__(self, directory: Path, config: str, port: int) -> None:
        self.directory = directory
        self.port = port
        directory.mkdir(parents=True)
        (directory / "plugins.toml").write_text(config)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def nabat(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nabat", *args],
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode:
            raise SystemExit(f"nabat {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def token(self, name: str, scopes: str) -> str:
        out = self.nabat(
            "tokens", "create", "--name", name, "--scopes", scopes,
            "--rate", "100000", "--burst", "100000", "--json",
        )  # fmt: skip
        return json.loads(out)["secret"]

    def spawn(self) -> None:
        with open(self.directory / "hub.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nabat", "run"], cwd=self.directory, stdout=log, stderr=log
            )

    async def start(self) -> None:
        self.spawn()
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise SystemExit(f"hub in {self.directory} did not start; see its hub.log")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Arrivals:
    """The region's SSE stream of bench events: when each arrived."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.at: dict[int, float] = {}
        self.latency: list[float] = []
        self.ready = asyncio.Event()
        self.resumed = 0
        self._task = asyncio.ensure_future(self._read())
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            print(f"  the region's event stream reader failed: {task.exception()!r}", flush=True)

    async def _read(self) -> None:
        """Follow the stream; when the hub ends it (a reader that falls behind is dropped),
        resume after the last event seen (``Last-Event-ID``), as a browser would."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        params = {"type": TYPE}
        last: str | None = None
        async with httpx.AsyncClient(timeout=None) as http:
            while True:
                if last is not None:
                    headers["Last-Event-ID"] = last
                    self.resumed += 1
                try:
                    async with http.stream(
                        "GET", f"{self.url}/api/v1/events/stream", headers=headers, params=params
                    ) as response:
                        response.raise_for_status()
                        self.ready.set()
                        async for line in response.aiter_lines():
                            if line.startswith("id:"):
                                last = line[3:].strip()
                            if not line.startswith("data:"):
                                continue
                            now = time.time()
                            data = json.loads(line[5:])["data"]
                            if data["n"] not in self.at:
                                self.at[data["n"]] = now
                                self.latency.append((now - data["t"]) * 1000)
                except httpx.HTTPError as exc:
                    print(f"  (region's event stream: {exc!r}; resuming)", flush=True)
                    await asyncio.sleep(0.2)

    def close(self) -> None:
        self._task.cancel()


class Producer:
    """POSTs bench events to the district: one batch per call."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/cloudevents-batch+json",
            },
            timeout=30,
        )

    async def send(self, first: int, count: int) -> None:
        now = time.time()
        body = msgspec.json.encode(
            [json.loads(encode_event(event(i, t=now))) for i in range(first, first + count)]
        )
        response = await self.http.post(f"{self.url}/api/v1/events", content=body)
        if response.status_code != 202:
            raise SystemExit(f"district ingest answered {response.status_code}: {response.text}")


async def paced_batches(producer: Producer, rate: float, seconds: float, first: int) -> int:
    """``rate`` events/s as batches every 10 ms; the count sent."""
    per_tick = rate / 100
    start = time.perf_counter()
    sent, tick = 0, 0
    while time.perf_counter() - start < seconds:
        due = int(per_tick * (tick + 1))
        if due > sent:
            await producer.send(first + sent, due - sent)
            sent = due
        tick += 1
        pause = start + tick * 0.01 - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
    return sent


async def run_hub(federation: Federation, site: Any, args: argparse.Namespace, work: Path) -> dict:
    import asyncpg

    schema = f"bench_federation_{os.getpid()}"
    district_port, region_port = free_port(), free_port()
    district = HubProcess(work / "district", _district(district_port, site.url), district_port)
    region = HubProcess(
        work / "region",
        _region(region_port, federation.region.url, schema),
        region_port,
    )
    producer_token = district.token("producer", "events:write")
    reader_token = region.token("reader", "events:read")
    out: dict[str, Any] = {}
    try:
        await district.start()
        await region.start()
        producer = Producer(district.url, producer_token)
        arrivals = Arrivals(region.url, reader_token)
        await asyncio.wait_for(arrivals.ready.wait(), 30)
        # Warm-up, and the follower's consumer made.
        await paced_batches(producer, 100, 3, first=10_000_000)
        await asyncio.sleep(3)
        arrivals.latency.clear()

        # 1. latency at --rate
        n = await paced_batches(producer, args.rate, args.seconds, first=0)
        await wait_for(arrivals.at, range(n), 60)
        out["latency"] = list(arrivals.latency)
        out["sent"] = n
        out["received"] = sum(1 for i in range(n) if i in arrivals.at)

        # 2. throughput: a burst as fast as the district takes it
        first = 1_000_000
        t0 = time.time()
        for start in range(first, first + args.burst, 500):
            await producer.send(start, min(500, first + args.burst - start))
        ingest_s = time.time() - t0
        complete = await wait_for(arrivals.at, range(first, first + args.burst), 300)
        got = [arrivals.at[i] for i in range(first, first + args.burst) if i in arrivals.at]
        out["throughput"] = len(got) / (max(got) - t0)
        out["ingest_rate"] = args.burst / ingest_s
        out["burst_complete"] = complete

        # 3. catch-up after a cut
        site.link.cut()
        site.wait_unlinked()
        first = 2_000_000
        print(f"  link cut: {args.cut:g} s at {args.cut_rate:g} ev/s ...", flush=True)
        backlog = await paced_batches(producer, args.cut_rate, args.cut, first=first)
        arrived_during = sum(1 for i in range(first, first + backlog) if i in arrivals.at)
        site.link.restore()
        t_restore = time.time()
        site.wait_linked()
        # Production goes on while the region catches up.
        more = asyncio.ensure_future(
            paced_batches(producer, args.cut_rate, 3600, first=first + backlog)
        )
        cleared = await wait_for(arrivals.at, range(first, first + backlog), 1800)
        t_clear = time.time()
        more.cancel()
        taken = [arrivals.at[i] for i in range(first, first + backlog) if i in arrivals.at]
        first_after = min((t for t in taken if t >= t_restore), default=t_restore)
        out["cut"] = {
            "backlog": backlog,
            "arrived_during_cut": arrived_during,
            "cleared": cleared,
            "clear_s": t_clear - t_restore,
            "first_after_s": first_after - t_restore,
            "intake_rate": backlog / max(1e-9, t_clear - first_after),
            "production_rate": args.cut_rate,
        }
        arrivals.close()
        await producer.http.aclose()
    finally:
        district.stop()
        region.stop()
        connection = await asyncpg.connect(PG_DSN)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()
    return out


def server_version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--cut", type=float, default=600.0)
    parser.add_argument("--cut-rate", type=float, default=500.0)
    parser.add_argument("--quick", action="store_true", help="60 s cut, 10 s latency, 5,000 burst")
    args = parser.parse_args()
    if args.quick:  # shorter, unless said otherwise
        given = set(sys.argv)
        if "--cut" not in given:
            args.cut = 60.0
        if "--seconds" not in given:
            args.seconds = 10.0
        if "--burst" not in given:
            args.burst = 5000
    binary = find_nats_server()
    if binary is None:
        raise SystemExit("nats-server not found (apt-get install nats-server)")
    version = server_version(binary)
    print(
        f"machine: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"CPython {platform.python_version()}, {version}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-federation-"))
    started = time.time()
    federation = Federation(binary, work / "nats")
    try:
        federation.start()
        site = federation.site("site-a")
        raw = await run_raw(federation, site, args)
        print(f"raw: latency at {args.rate:g} ev/s  {summary(raw['latency'])}")
        print(f"raw: throughput {raw['throughput']:.0f} ev/s ({args.burst} events)")
        hub = await run_hub(federation, site, args, work)
    finally:
        federation.close()
    print(
        f"hub: latency at {args.rate:g} ev/s  {summary(hub['latency'])}  "
        f"({hub['received']} of {hub['sent']} arrived)"
    )
    ratio = hub["throughput"] / raw["throughput"]
    print(
        f"hub: throughput {hub['throughput']:.0f} ev/s ({args.burst} events; the district "
        f"took them at {hub['ingest_rate']:.0f} ev/s over HTTP)  ratio to raw {ratio:.2f}"
    )
    cut = hub["cut"]
    factor = cut["intake_rate"] / cut["production_rate"]
    print(
        f"hub: catch-up after a {args.cut:g} s cut at {args.cut_rate:g} ev/s: backlog "
        f"{cut['backlog']} ({cut['arrived_during_cut']} arrived during the cut), first at the "
        f"region {cut['first_after_s']:.1f} s after the link returned, all in "
        f"{cut['clear_s']:.1f} s: intake {cut['intake_rate']:.0f} ev/s = {factor:.1f}x production"
        f"{'' if cut['cleared'] else ' (NOT all arrived)'}"
    )
    p99 = pct(hub["latency"], 0.99)
    print()
    print(f"latency p99 {p99:.1f} ms; goal < 100 ms: {'met' if p99 < 100 else 'NOT met'}")
    print(f"throughput ratio {ratio:.2f}; goal >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'}")
    print(f"catch-up {factor:.1f}x production; goal >= 5: {'met' if factor >= 5 else 'NOT met'}")
    median = statistics.median(raw["latency"])
    print(f"({time.time() - started:.0f} s; raw latency p50 {median:.1f} ms)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
