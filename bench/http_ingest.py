"""HTTP ingest benchmark: POST /api/v1/events against a bare Litestar endpoint (issue 4).

What is measured, each as a ratio to a bare endpoint in the same run:

* **Single events**: ``--concurrency`` (default 50) keep-alive connections each POST one
  CloudEvent (``application/cloudevents+json``, ~450 bytes, a distinct id per request) as
  fast as the answers come back, for ``--duration`` seconds. Reported: requests/s and the
  p50/p99 latency (request sent to answer read) over every request of the run.
* **Batches**: ``--batch-clients`` (default 4) connections each POST ``--batch-size``
  (default 1,000) events as one ``application/cloudevents-batch+json`` array, every event
  with a distinct id. Reported: events/s (requests/s × batch size) and the request latency.

Our side is a real hub in its own process: a durable SQLite journal (WAL,
``synchronous=FULL``) in a fresh directory on disk, the built-in plugins off (``watch``,
``eventlog``), no simulator, and :class:`nabat.api.ApiServer` on 127.0.0.1 port 0 with
everything a production request goes through (request id, bounded body read, access-log line
as JSON to a file, token authentication, rate limit, scope, audit entry, idempotent durable
append, bus fan-out, metrics). The token has ``events:write`` and a rate limit high enough
never to answer 429.

The baseline is a bare Litestar app served by uvicorn with the same settings (httptools,
no access log, no lifespan, asyncio loop) in a process of its own: one POST route that reads
the body, runs the same decode as our handler (:func:`nabat.api.ingest.parse_events`, which
calls :func:`nabat.events.decode_event` per item and checks type and municipality) and
answers 202 with the JSON list of the ids. No authentication, no journal, nothing durable.
Its listening socket is made with ``IPPROTO_TCP``, as ``loop.create_server(host, port)`` makes
it, so asyncio turns Nagle off (``TCP_NODELAY``) on every accepted connection.

The load generator is ``wrk`` (one thread, C, a Lua script that gives each request and each
event a distinct id), a process of its own, so neither server shares a GIL or a loop with
the client. Install it with ``apt-get install -y wrk``; the benchmark stops with a message
if it is missing. Each measured run starts a fresh server process, warms it up for
``--warmup`` seconds, then measures. Baseline and hub runs are interleaved (the order
alternates between repetitions), each runs ``--repeats`` times and the median is reported.
Every run fails loudly on any non-2xx answer or socket error, and unless the server saw at
least as many events as wrk counted answers (at most the requests still in flight more).

Run: ``uv run python bench/http_ingest.py`` (``--quick`` for a smoke run; ``--profile DIR``
records a py-spy profile of each hub server during its measured runs, raw collapsed stacks
per thread; ``--nodelay`` is a diagnostic that sets ``TCP_NODELAY`` on the hub API's
connections, see :func:`_force_nodelay`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post
from nabat.events import CONTENT_TYPE, CONTENT_TYPE_BATCH, EventTypes, encode_event
from workload import make_events

GOAL_SINGLE_RATIO = 0.5  # single events, durable SQLite, ours / bare
GOAL_BATCH_EVENTS = 50_000.0  # events/s, batch ingest
PATH = "/api/v1/events"
RESULT_MARK = "BENCH_RESULT "

HUB_CONFIG = """
[hub]
name = "bench-http"
data_dir = "{data_dir}"
log_level = "info"
log_format = "json"
[storage]
url = "sqlite:///journal.sqlite3"
[plugins.watch]
enabled = false
[plugins.eventlog]
enabled = false
[api]
listen = "127.0.0.1:0"
"""


# -- the workload ----------------------------------------------------------------------------
def event_template() -> tuple[str, str]:
    """The journal benchmarks' camera health payload (~450 bytes) as the JSON text before and
    after its id (the load generator puts a distinct id in between); its municipality is a
    real slug of the region, as ingest checks it."""
    # The type and source are an agency's own: ingest refuses the hub's own (camera.>,
    # /nabat/…) from callers; the payload stays the same size.
    event = make_events(1)[0].replace(
        id="@ID@",
        municipality="krasnodar",
        type="agency.camera.offline",
        source="urn:agency:cams-01",
    )
    before, after = encode_event(event).decode().split("@ID@")
    return before, after


LUA = """
local before = [==[{before}]==]
local after = [==[{after}]==]
local batch = {batch}
local run = "{run}"
local counter = 0
local threads = 0
tid = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "{content_type}"
  {auth}
end

function request()
  counter = counter + 1
  local base = run .. "-" .. tid .. "-" .. counter
  local body
  if batch == 0 then
    body = before .. base .. after
  else
    local parts = {{}}
    for i = 1, batch do
      parts[i] = before .. base .. "-" .. i .. after
    end
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# -- the servers (each in a process of its own) ----------------------------------------------
def _bare_types() -> EventTypes:
    """The event types a hub without plugins knows (so the decode does the same work)."""
    from nabat.interfaces.payloads import UnitStatus

    types = EventTypes()
    types.register("hub.unit.*", UnitStatus, owner="core")
    return types


_BARE: dict[str, Any] = {}


@post(PATH, status_code=202)
async def bare_ingest(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The baseline: read the body, decode every event as our handler does, list the ids."""
    from nabat.api.ingest import parse_events

    body = await request.body()
    events = parse_events(
        body,
        request.headers.get("content-type"),
        types=_BARE["types"],
        max_batch=_BARE["max_batch"],
        municipalities=_BARE["municipalities"],
    )
    _BARE["count"] += len(events)
    return Response(
        content=msgspec.json.encode([e.id for e in events]),
        status_code=202,
        media_type="application/json",
    )


def _bind() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _control(conn: Any, count: Any) -> None:
    """Answer the orchestrator's "count" requests until it says "stop"."""
    loop = asyncio.get_running_loop()
    while True:
        message = await loop.run_in_executor(None, conn.recv)
        conn.send(await count())
        if message == "stop":
            return


async def _serve_bare(conn: Any) -> None:
    import uvicorn
    from nabat.config.model import ApiSettings
    from nabat.regions import load_region

    _BARE.update(
        types=_bare_types(),
        max_batch=ApiSettings().max_batch,
        municipalities=frozenset(load_region("krasnodar-krai").municipalities),
        count=0,
    )
    app = Litestar(route_handlers=[bare_ingest], openapi_config=None, logging_config=None)
    sock = _bind()
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="asyncio",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    main = asyncio.get_running_loop().create_task(server.main_loop())
    port = sock.getsockname()[1]
    conn.send(("ready", f"http://127.0.0.1:{port}", None, os.getpid()))

    async def count() -> int:
        return _BARE["count"]

    await _control(conn, count)
    server.should_exit = True
    await main
    await server.shutdown(sockets=[sock])


def _log_file(path: Path) -> Any:
    return path.open("a", encoding="utf-8")


def _force_nodelay() -> None:
    """Diagnostic (``--nodelay``): set TCP_NODELAY on every connection the hub's API accepts.

    Until ``ApiServer._bind`` passed ``IPPROTO_TCP``, its socket had ``proto`` 0 and asyncio's
    ``_set_nodelay`` (which checks ``proto == IPPROTO_TCP``) left Nagle on for the accepted
    connections. uvicorn writes a response's head and body in two sends, so on a keep-alive
    connection the body waited for the client's delayed ACK (~40 ms on Linux). This patch
    measures older revisions as if fixed; on the fixed code it changes nothing."""
    from nabat.api import server

    original = server._HeaderDeadline.connection_made

    def connection_made(self: Any, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        original(self, transport)

    server._HeaderDeadline.connection_made = connection_made  # type: ignore[method-assign]


async def _serve_hub(conn: Any, directory: str, nodelay: bool) -> None:
    from nabat.api.server import ApiServer
    from nabat.logs import configure_logging
    from nabat.runtime import apply_runtime_settings
    from nabat.testing import load_config_text, run_hub

    if nodelay:
        _force_nodelay()
    data = Path(directory) / "data"
    loaded = load_config_text(HUB_CONFIG.format(data_dir=data), Path(directory))
    with _log_file(Path(directory) / "hub.log") as log_file:
        configure_logging("info", "json", stream=log_file)  # as `nabat run` does, to a file
        apply_runtime_settings(loaded.config.hub)  # as `nabat run` does
        async with run_hub(loaded, discover_installed=False) as hub:
            server = ApiServer(hub, listen="127.0.0.1:0")
            await server.start()
            try:
                secret, _ = await server.state.tokens.create(
                    "bench", ["events:write"], rate=1e9, burst=1_000_000_000
                )
                start = await hub.journal.last_seq()
                conn.send(("ready", server.url, secret, os.getpid()))

                async def count() -> int:
                    return await hub.journal.last_seq() - start

                await _control(conn, count)
            finally:
                await server.stop()


def server_main(kind: str, conn: Any, directory: str, nodelay: bool) -> None:
    if kind == "bare":
        asyncio.run(_serve_bare(conn))
    else:
        asyncio.run(_serve_hub(conn, directory, nodelay))


# -- the orchestrator ------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int


class Server:
    """A server process under test: started, counted, stopped."""

    def __init__(self, kind: str, directory: Path, *, nodelay: bool = False) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.directory = Path(tempfile.mkdtemp(prefix=f"http-{kind}-", dir=directory))
        self.process = ctx.Process(
            target=server_main, args=(kind, child, str(self.directory), nodelay), daemon=True
        )

    def __enter__(self) -> Server:
        self.process.start()
        if not self.conn.poll(60):
            raise RuntimeError("the server did not start within 60 s")
        _, self.url, self.token, self.pid = self.conn.recv()
        return self

    def count(self, message: str = "count") -> int:
        self.conn.send(message)
        if not self.conn.poll(60):
            raise RuntimeError("the server did not answer within 60 s")
        return self.conn.recv()

    def __exit__(self, *exc: object) -> None:
        try:
            if self.process.is_alive() and exc[0] is None:
                self.count("stop")
            self.process.join(30)
        finally:
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            shutil.rmtree(self.directory, ignore_errors=True)


def wrk(
    server: Server,
    *,
    run: str,
    batch: int,
    connections: int,
    seconds: float,
    script_dir: Path,
) -> dict[str, Any]:
    before, after = event_template()
    auth = (
        f'wrk.headers["Authorization"] = "Bearer {server.token}"' if server.token else "-- no auth"
    )
    script = script_dir / f"{run}.lua"
    script.write_text(
        LUA.format(
            before=before,
            after=after,
            batch=batch,
            run=run,
            content_type=CONTENT_TYPE_BATCH if batch else CONTENT_TYPE,
            auth=auth,
            mark=RESULT_MARK,
        )
    )
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "60s",
        "-s",
        str(script),
        server.url + PATH,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    errors = {k: result[k] for k in ("connect", "read", "write", "status", "timeout") if result[k]}
    if errors:
        raise RuntimeError(f"{run}: wrk saw errors {errors} (non-2xx answers count as status)")
    return result


def measure(
    kind: str,
    mode: str,
    rep: int,
    args: argparse.Namespace,
    work: Path,
) -> Run:
    batch = args.batch_size if mode == "batch" else 0
    connections = args.batch_clients if mode == "batch" else args.concurrency
    per_request = max(batch, 1)
    run = f"{kind}{mode[0]}{rep}{os.getpid() % 1000}"
    with Server(kind, work, nodelay=args.nodelay) as server:
        if args.warmup > 0:
            wrk(
                server,
                run=run + "w",
                batch=batch,
                connections=connections,
                seconds=args.warmup,
                script_dir=server.directory,
            )
        time.sleep(0.5)  # let the warm-up's requests still in flight finish
        before = server.count()
        profiler = None
        if args.profile and kind == "hub":
            out = Path(args.profile) / f"{kind}-{mode}-{rep}.txt"
            profiler = subprocess.Popen(
                [
                    *args.py_spy,
                    "record",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(max(1, round(args.duration))),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--idle",
                    "--threads",
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        result = wrk(
            server,
            run=run,
            batch=batch,
            connections=connections,
            seconds=args.duration,
            script_dir=server.directory,
        )
        if profiler is not None:
            profiler.wait()
        seen = server.count() - before
    answered = result["requests"] * per_request
    if not answered <= seen <= answered + connections * per_request:
        raise RuntimeError(
            f"{kind} {mode}: the server stored/decoded {seen} events, wrk counted {answered} "
            f"answered (plus at most {connections * per_request} in flight)"
        )
    seconds = result["duration_us"] / 1e6
    rps = result["requests"] / seconds
    return Run(
        requests_per_s=rps,
        events_per_s=rps * per_request,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        requests=result["requests"],
    )


def median_run(runs: list[Run]) -> Run:
    return Run(
        requests_per_s=statistics.median(r.requests_per_s for r in runs),
        events_per_s=statistics.median(r.events_per_s for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        requests=round(statistics.median(r.requests for r in runs)),
    )


def describe_machine(work: Path) -> str:
    load = os.getloadavg()
    fs = subprocess.run(
        ["df", "--output=fstype", str(work)], capture_output=True, text=True, check=False
    ).stdout.split()[-1:]
    return (
        f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"CPython {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"journal on {fs[0] if fs else '?'}, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each run")
    parser.add_argument("--concurrency", type=int, default=50, help="single-event connections")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch POST")
    parser.add_argument("--batch-clients", type=int, default=4, help="batch connections")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--modes", default="single,batch", help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 repeat: smoke test")
    parser.add_argument("--dir", default=None, help="directory for the journals (on disk)")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="record a py-spy profile (raw, collapsed stacks) of each hub run into DIR; "
        "the sampling slows the hub, so do not quote such a run's figures",
    )
    parser.add_argument(
        "--nodelay",
        action="store_true",
        help="diagnostic: set TCP_NODELAY on the hub API's connections (see _force_nodelay)",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.repeats = 2.0, 1.0, 1
    if shutil.which("wrk") is None:
        sys.exit(
            "bench/http_ingest.py needs the wrk load generator (a C program, so the client "
            "is never the bottleneck): apt-get install -y wrk"
        )
    if args.profile:
        py_spy = shutil.which("py-spy")
        args.py_spy = [py_spy] if py_spy else ["uvx", "py-spy"]
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    work = Path(args.dir or tempfile.gettempdir())
    work.mkdir(parents=True, exist_ok=True)

    print(f"machine: {describe_machine(work)}")
    print(
        f"single: {args.concurrency} connections; batch: {args.batch_clients} connections x "
        f"{args.batch_size} events; {args.duration:g} s per run after {args.warmup:g} s warm-up, "
        f"median of {args.repeats}; load generator: wrk, 1 thread"
    )
    runs: dict[tuple[str, str], list[Run]] = {}
    started = time.perf_counter()
    for rep in range(args.repeats):
        order = ["bare", "hub"] if rep % 2 == 0 else ["hub", "bare"]
        for mode in modes:
            for kind in order:
                result = measure(kind, mode, rep, args, work)
                runs.setdefault((mode, kind), []).append(result)
                print(
                    f"  rep {rep + 1} {mode:6} {kind:4}: {result.requests_per_s:9,.0f} req/s "
                    f"{result.events_per_s:10,.0f} events/s  p50 {result.p50_ms:7.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms",
                    flush=True,
                )
    print(f"({time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")
    print()
    header = (
        f"| {'mode':6} | {'server':10} | {'req/s':>9} | {'events/s':>9} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'ratio':>5} |"
    )
    print(header)
    print("| ------ | ---------- | --------: | --------: | ------: | ------: | ----: |")
    summary = []
    for mode in modes:
        bare = median_run(runs[(mode, "bare")])
        hub = median_run(runs[(mode, "hub")])
        for name, run in (("bare", bare), ("hub sqlite", hub)):
            ratio = run.events_per_s / bare.events_per_s
            print(
                f"| {mode:6} | {name:10} | {run.requests_per_s:9,.0f} | "
                f"{run.events_per_s:9,.0f} | {run.p50_ms:7.2f} | {run.p99_ms:7.2f} | "
                f"{ratio:5.2f} |"
            )
        ratio = hub.events_per_s / bare.events_per_s
        if mode == "single":
            met = ratio >= GOAL_SINGLE_RATIO
            summary.append(
                f"single events: {hub.requests_per_s:,.0f} req/s, p99 {hub.p99_ms:.1f} ms at "
                f"concurrency {args.concurrency} = {ratio:.2f} x bare "
                f"({bare.requests_per_s:,.0f} req/s, p99 {bare.p99_ms:.1f} ms); "
                f"goal >= {GOAL_SINGLE_RATIO} x bare: {'met' if met else 'NOT met'}"
            )
        else:
            met = hub.events_per_s >= GOAL_BATCH_EVENTS
            summary.append(
                f"batch ingest: {hub.events_per_s:,.0f} events/s in batches of "
                f"{args.batch_size} = {ratio:.2f} x bare ({bare.events_per_s:,.0f} events/s); "
                f"goal >= {GOAL_BATCH_EVENTS:,.0f} events/s: {'met' if met else 'NOT met'}"
            )
    print()
    print("ratio = events/s over the bare Litestar endpoint's (same decode, no auth, no journal)")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
