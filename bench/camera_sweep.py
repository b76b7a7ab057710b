"""Camera sweep benchmark: probes/s, CPU per probe and memory of the ``watch`` sweep.

Everything runs against a loopback RTSP server, ``tests/fixtures/rtsp_server.py`` under
Debian's ``/usr/bin/python3``, mount ``/live`` (H.264 320x240 at 10 fps, a key frame every
15 frames). Per watch concurrency ``C`` (``--concurrency``, default 32 and 64; 64 is the
product's default) a fresh server and a fresh hub are started and measured in rounds (``--repeats``,
median reported); in each round, one run of every variant, each doing ``--cameras`` (256)
probes of ``/live``:

* **raw** — the baseline: bare PyAV in a fresh ``ThreadPoolExecutor`` of ``C`` threads, in the
  hub's process (same interpreter, same GIL, same ``switch_interval``, the idle hub alongside):
  ``av.open`` with the options and timeouts :func:`nabat.cameras.probe.probe_stream` uses (RTSP
  over TCP, 100 ms ``analyzeduration``, 32-byte ``probesize``, 10 s socket timeout, open/read
  timeouts 5 s), decode ``warmup_frames + sample_frames`` (3 + 5) frames, close. Nothing else.
* **raw, own proc** — the same raw pool in a process of its own (this file with
  ``--pool-child``): what the probes cost when they do not share the hub's interpreter.
* **probe_stream** — our probe function alone in the same kind of pool in the hub's process:
  the raw work plus a 64x36 luma thumbnail, its statistics and the verdict per sampled frame.
* **hub sweep** — the product: the hub (:func:`nabat.testing.run_hub`, SQLite journal on disk,
  ``eventlog`` off, logging to a file and ``switch_interval`` as ``nabat run`` sets them) has
  ``--cameras`` ``rtsp.camera`` cameras in its inventory (``hub.inventory.import_rows``, then
  ``hub.sync_inventory()``), all on ``/live``, and ``[plugins.watch.settings] concurrency =
  C``. Before the rounds, every camera is running and its first probe (the watch probes each
  camera as it starts) has finished. A run calls ``Watcher.sweep_cameras()`` and waits for
  every probe; its time is the sweep's own (its progress record's ``started`` to
  ``finished``, what ``watch.sweep_finished`` logs as ``per_second``). With ``fail_after =
  recover_after = 1`` a failed probe is published at once, and the run fails on it: every
  probe of every variant must find the stream ``ok`` (raw: all 8 frames decoded).

Reported per variant and concurrency:

* **probes/s** and **ratio** = probes/s over raw's at the same concurrency, same round.
* **slot s** = ``C`` x run time / probes: how long a slot of the pool spends per probe. When
  this is the probe's own duration, the sweep is latency-bound: RTSP handshake and first
  frame (~0.23 s alone), then 7 more frames at the stream's 10 fps (0.7 s).
* **CPU ms/probe** — user+system CPU of the measuring process (``getrusage(RUSAGE_SELF)``, all
  threads) over the run, per probe, net of what the idle hub with the publisher and monitor
  burns over the same time (measured in the round's idle window; ``gross``: not net). For
  ``raw, own proc`` the child's own CPU over its probes.
* **server ms/probe** — CPU of the RTSP server process (``/proc/<pid>/stat``) over the run, net
  of its idle rate (it encodes ``/live`` continuously), per probe.
* **10k sweep** — 10,000 / probes/s, the time a sweep of 10,000 such cameras would take.

A round starts with an idle window of ``--idle`` seconds (the hub doing nothing). Throughout
the round a publisher calls ``await hub.publish(Event(...))`` ``--rate`` (100) times per second
(a task per event, started on a fixed schedule; latency from the call to its return: durable
journal append plus bus fan-out), and a monitor task sleeps 10 ms in a loop and records by how
much each sleep overshot (**loop lag**). Their p50/p99/max are reported per window: idle, and
during each variant's run.

**Memory**, each hub in a fresh process (``spawn``) so that its RSS is clean: a hub with the
same configuration and 0 cameras (RSS after start, and after ``import av``: the FFmpeg
libraries every probe loads), which then imports ``--memory-cameras`` (10,000) ``rtsp.camera``
rows whose URLs point at a closed loopback port; then a fresh hub on that journal: the time
from ``hub.start()`` until every camera is ``running`` and until every camera has been probed
and reported (probes are refused at once, so the first probe of all 10,000 takes seconds; with
``fail_after = 1`` each is reported ``unreachable``, so every camera has a state), its RSS
then, then one more full ``sweep_cameras()`` of the 10,000 (time and rate: the hub's own
overhead per probe, the probe itself costing almost nothing) and RSS and peak RSS (``VmHWM``)
after it. RSS is ``VmRSS`` from ``/proc/self/status`` after ``gc.collect()``.

``/live`` is a *shared* media factory: one GStreamer pipeline (test source, ``x264enc``
ultrafast/zerolatency, RTP payloader) serves every client at once, so the server encodes once
whatever the number of probes; per probe it only handles the RTSP session and sends packets.
A client holds ``/live`` open for the whole benchmark (the "anchor", a process of its own that
only demuxes): GStreamer 1.22's RTSP server aborts (``gst_rtsp_media_get_rates: assertion
failed``) as soon as a few clients start playing a shared media whose pipeline is being
(re)started, which happens whenever its last client has left. With the pipeline running,
probes join it like viewers of a live camera. All clients of the one pipeline get each frame
at the same instant, so their threads wake together: a worst case for contention, where real
cameras' frames arrive at independent times. After some thousands of sessions the server
sometimes stops serving new ones without exiting (every open fails or times out); a run whose
probes fail is then void: the server is restarted on the same port, the hub's cameras are
swept back to ``ok``, and the run is redone (at most twice). The count of redone runs is
printed; no figure comes from a run with a failed probe.

Goals (issue): 10,000 cameras swept in <= 5 minutes on this 2-core machine (>= 34 probes/s)
while the bus publish p99 stays < 10 ms during the sweep; RSS with 10,000 cameras < 300 MB.

Run: ``uv run python bench/camera_sweep.py`` (``--quick``: 64 probes, concurrency 32, one
round, a smoke run; ``--concurrency 32,64``; ``--parts sweep`` or ``--parts memory``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import platform
import resource
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workload import percentile

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = ROOT / "tests" / "fixtures" / "rtsp_server.py"
MOUNT = "/live"
TARGET_CAMERAS = 10_000
GOAL_SWEEP_S = 300.0  # 10,000 cameras in 5 minutes ...
GOAL_RATE = 34.0  # ... i.e. >= 34 probes/s (the figure; 10,000 / 300 s = 33.3)
GOAL_PUBLISH_P99_MS = 10.0
GOAL_RSS_MB = 300.0
WARMUP_FRAMES, SAMPLE_FRAMES = 3, 5  # ProbeSettings' defaults (and rtsp.camera's)
LAG_TICK = 0.010  # the loop-lag monitor's sleep
RESULT_MARK = "BENCH_RESULT "
RETRIES = 2  # runs redone after restarting a wedged RTSP server

clock = time.perf_counter

HUB_CONFIG = """
[hub]
language = "en"
data_dir = "data"
log_level = "info"
log_format = "json"

[cameras]
inventory_refresh = 3600.0

[plugins.eventlog]
enabled = false

[plugins.rtsp]
enabled = true

[plugins.watch.settings]
camera_interval = 3600.0
device_interval = 3600.0
jitter = 0.0
concurrency = {concurrency}
fail_after = 1
recover_after = 1
"""
HEADER = "id;name;municipality;driver;url;credentials"


# -- small helpers ---------------------------------------------------------------------------
def cpu_self() -> float:
    """CPU seconds of this process and of the hub's camera worker processes (where the probes
    decode since workers moved out of the hub's process)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime + workers_cpu()


def workers_cpu() -> float:
    try:
        from nabat.cameras import workers
    except ImportError:
        return 0.0
    total = 0.0
    for worker in list(getattr(workers._pool, "workers", ())):
        try:
            total += cpu_of(worker.process.pid)
        except OSError:
            pass
    return total


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User+system CPU seconds of process ``pid`` (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def workers_rss() -> float:
    """VmRSS (MB) of the hub's camera worker processes together."""
    from nabat.cameras import workers

    total = 0.0
    for worker in list(workers._pool.workers):
        with open(f"/proc/{worker.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def memory_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB, after a full collection."""
    gc.collect()
    values: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def quantiles_ms(values: list[float]) -> tuple[float, float, float]:
    """p50, p99, max of ``values`` (seconds) in milliseconds."""
    if not values:
        return (float("nan"),) * 3
    ordered = sorted(values)
    return (
        percentile(ordered, 50) * 1e3,
        percentile(ordered, 99) * 1e3,
        ordered[-1] * 1e3,
    )


def rtsp_options(transport: str = "tcp", read_timeout: float = 5.0) -> dict[str, str]:
    """The FFmpeg options probe_stream opens an RTSP stream with (written out again here, so
    the baseline does not depend on our code)."""
    return {
        "analyzeduration": "100000",
        "probesize": "32",
        "rtsp_transport": transport,
        "timeout": str(int(read_timeout * 2 * 1_000_000)),
    }


# -- the RTSP server and its anchor ----------------------------------------------------------
ANCHOR = """
import sys
import av
container = av.open(sys.argv[1], options={"rtsp_transport": "tcp"}, timeout=(5.0, 5.0))
print("ANCHORED", flush=True)
for _ in container.demux():
    pass
"""


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline().strip()


class ServerWedged(RuntimeError):
    """Probes failed: the test server stopped serving (see RtspServer)."""


class RtspServer:
    """The test RTSP server in its own process, with an anchor client on ``/live``.

    Under sustained load (thousands of sessions joining and leaving the shared ``/live``) the
    server sometimes stops serving new clients without exiting: every open then fails
    ("Invalid data found", "Operation not permitted") or times out. ``restart()`` replaces it
    on the same port, so the URLs in the hub's inventory stay valid."""

    def __init__(self, work: Path) -> None:
        self.stderr = work / "rtsp-server.stderr"
        self.proc: subprocess.Popen[str] | None = None
        self.anchor: subprocess.Popen[str] | None = None
        self.port = 0
        self.restarts = 0

    def __enter__(self) -> RtspServer:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            sys.exit(f"{SYSTEM_PYTHON} not found: the RTSP test server needs Debian's Python")
        try:
            self._start()
        except RuntimeError as exc:
            self._stop()
            sys.exit(
                f"{exc}. Install: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
                "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
            )
        return self

    def _start(self) -> None:
        deadline = time.monotonic() + 20.0
        while True:
            with self.stderr.open("a") as err:
                self.proc = subprocess.Popen(
                    [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
            line = _read_line(self.proc, 20.0)
            if line.startswith("READY "):
                break
            self._stop()
            if not self.port or time.monotonic() > deadline:
                raise RuntimeError(f"the RTSP test server did not start: {self.stderr_tail()}")
            time.sleep(0.5)  # the old server's port is not free yet
        self.port = int(line.split()[1])
        self.anchor = subprocess.Popen(
            [sys.executable, "-c", ANCHOR, self.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if _read_line(self.anchor, 20.0) != "ANCHORED":
            raise RuntimeError(f"could not open {self.url} ({self.stderr_tail()})")
        time.sleep(1.0)  # the pipeline is up and encoding

    def restart(self) -> None:
        self._stop()
        self.restarts += 1
        self._start()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{MOUNT}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        try:
            return cpu_of(self.pid)
        except OSError as exc:
            raise ServerWedged(f"the RTSP server is gone: {exc}") from None

    def stderr_tail(self) -> str:
        try:
            lines = self.stderr.read_text().strip().splitlines()
        except OSError:
            return "no stderr"
        return lines[-1] if lines else "no stderr"

    def check(self) -> None:
        assert self.proc is not None and self.anchor is not None
        if self.proc.poll() is not None:
            raise ServerWedged(f"the RTSP server died: {self.stderr_tail()}")
        if self.anchor.poll() is not None:
            raise ServerWedged("the anchor client of /live stopped")

    def _stop(self) -> None:
        for proc in (self.anchor, self.proc):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for proc in (self.anchor, self.proc):
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
        self.proc = self.anchor = None

    def __exit__(self, *exc: object) -> None:
        self._stop()


# -- results ---------------------------------------------------------------------------------
@dataclass
class Run:
    probes: int
    seconds: float
    cpu: float  # CPU seconds of the measuring process over the run (net of idle for the hub)
    cpu_gross: float
    server_cpu: float  # the RTSP server's CPU seconds over the run

    @property
    def per_second(self) -> float:
        return self.probes / self.seconds


@dataclass
class Window:
    """The publisher's and the lag monitor's samples over one window (idle, or one run)."""

    publish: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)


# -- raw and probe_stream: a pool of threads of their own -----------------------------------
def pool_probes(variant: str, url: str, concurrency: int, probes: int) -> list[str]:
    """``probes`` probes of ``url`` in a fresh pool of ``concurrency`` threads (blocking);
    returns what went wrong, one string per failed probe."""
    import av

    frames = WARMUP_FRAMES + SAMPLE_FRAMES
    options = rtsp_options()

    def bare(_: int) -> str | None:
        try:
            container = av.open(url, options=options, timeout=(5.0, 5.0))
        except Exception as exc:
            return f"open: {exc}"
        try:
            video = container.streams.video[0]
            got = 0
            for _frame in container.decode(video):
                got += 1
                if got >= frames:
                    return None
            return f"only {got} frames"
        except Exception as exc:
            return f"decode: {exc}"
        finally:
            container.close()

    def ours(_: int) -> str | None:
        from nabat.cameras.probe import probe_stream

        health = probe_stream(url)
        return None if health.state == "ok" else f"{health.state}: {health.reason}"

    probe: Callable[[int], str | None] = bare if variant == "raw" else ours
    with ThreadPoolExecutor(concurrency, thread_name_prefix=variant) as pool:
        return [r for r in pool.map(probe, range(probes)) if r is not None]


def pool_child(spec: str) -> None:
    """``--pool-child URL,C,N,SERVER_PID``: the raw pool in this process; prints the result."""
    url, concurrency, probes, server_pid = spec.rsplit(",", 3)
    sys.setswitchinterval(hub_switch_interval())  # as in the hub's process
    pool_probes("raw", url, 1, 1)  # untimed: FFmpeg's one-time set-up in this process
    cpu0, server0, start = cpu_self(), cpu_of(int(server_pid)), clock()
    failures = pool_probes("raw", url, int(concurrency), int(probes))
    seconds = clock() - start
    result = {
        "seconds": seconds,
        "cpu": cpu_self() - cpu0,
        "server_cpu": cpu_of(int(server_pid)) - server0,
        "failures": failures[:3],
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


def hub_switch_interval() -> float:
    from nabat.config import HubSettings

    return HubSettings().switch_interval


# -- the hub ---------------------------------------------------------------------------------
def camera_rows(count: int, url: Callable[[int], str]) -> str:
    from nabat.regions import load_region

    slugs = sorted(load_region("krasnodar-krai").municipalities)
    rows = [
        f"cam-{i:05d};Камера {i};{slugs[i % len(slugs)]};rtsp.camera;{url(i)};"
        for i in range(count)
    ]
    return "\n".join([HEADER, *rows]) + "\n"


async def import_cameras(hub: Any, count: int, url: Callable[[int], str]) -> None:
    from nabat.cameras.inventory import parse_csv
    from nabat.regions import load_region

    records, errors = parse_csv(
        camera_rows(count, url), load_region("krasnodar-krai").municipalities
    )
    assert not errors, errors[:3]
    report = await hub.inventory.import_rows(records)
    assert report.created == count, report


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def sweep_seconds(sweep: Any) -> float:
    """The duration of a finished sweep, as the watch measures and logs it."""
    run = getattr(sweep, "run", sweep)  # the sweep's progress record (older code: itself)
    assert run.finished is not None, "the sweep has not finished"
    return run.finished - run.started


def running_count(hub: Any) -> int:
    return sum(1 for rt in hub.units if hub.state_of(rt.id) == "running")


class Background:
    """A paced publisher and an event-loop lag monitor, recording into the current window."""

    def __init__(self, hub: Any, rate: float) -> None:
        self.hub = hub
        self.rate = rate
        self.window = Window()
        self.tasks: list[asyncio.Task[None]] = []
        self.inflight: set[asyncio.Task[None]] = set()
        self.count = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._publisher()), loop.create_task(self._monitor())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*self.inflight, return_exceptions=True)

    def swap(self) -> Window:
        """Start a new window; return the one that ends (publishes in flight still count
        into it when they return)."""
        ended, self.window = self.window, Window()
        return ended

    async def _publish_one(self) -> None:
        from nabat.events import Event

        self.count += 1
        window = self.window
        event = Event(
            type="bench.tick",
            source="/bench/publisher",
            subject="tick",
            data={"n": self.count},
        )
        start = clock()
        await self.hub.publish(event)
        window.publish.append(clock() - start)

    async def _publisher(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        due = clock()
        while True:
            due += interval
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(self._publish_one())
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _monitor(self) -> None:
        while True:
            start = clock()
            await asyncio.sleep(LAG_TICK)
            self.window.lag.append(max(0.0, clock() - start - LAG_TICK))  # the current window


@dataclass
class Round:
    """One repetition at one concurrency: each variant's run and the windows of samples."""

    runs: dict[str, Run]
    windows: dict[str, Window]  # "idle" and one per variant
    idle_cpu_rate: float  # CPU s per s of this process with the hub idle (publisher on)
    server_idle_rate: float


class SweepHub:
    """A running hub with ``cameras`` inventory cameras on /live, first probes done."""

    def __init__(self, server: RtspServer, concurrency: int, cameras: int, work: Path) -> None:
        self.server = server
        self.concurrency = concurrency
        self.cameras = cameras
        self.directory = Path(tempfile.mkdtemp(prefix=f"sweep-c{concurrency}-", dir=work))
        self._context: Any = None
        self.hub: Any = None
        self.health: Any = None
        self.setup_seconds = 0.0
        self.first_probe_seconds = 0.0
        self.restarts = 0  # runs redone after a server restart

    async def __aenter__(self) -> SweepHub:
        from nabat.testing import load_config_text, record, run_hub

        loaded = load_config_text(HUB_CONFIG.format(concurrency=self.concurrency), self.directory)
        start = clock()
        self._context = run_hub(loaded)
        self.hub = hub = await self._context.__aenter__()
        self.health = record(hub, "camera.health.*")
        await import_cameras(hub, self.cameras, lambda i: self.server.url)
        synced = clock()
        counts = await hub.sync_inventory()
        assert counts["added"] == self.cameras, counts
        watcher = self.watcher
        await wait_until(lambda: running_count(hub) == self.cameras, 120, "every camera running")
        await wait_until(
            lambda: len(watcher.trackers) == self.cameras and not watcher.in_flight,
            300,
            "the first probe of every camera",
        )
        await hub.bus.drain()
        self.first_probe_seconds = clock() - synced
        self.setup_seconds = clock() - start
        states = [e.type for e in self.health.events]
        ok = states.count("camera.health.ok")
        if ok != self.cameras:
            raise RuntimeError(f"first probes: {ok} of {self.cameras} ok ({set(states)})")
        self.server.check()
        return self

    @property
    def watcher(self) -> Any:
        return self.hub.plugins["watch"].obj.watcher

    async def measure(self, order: list[str], rate: float, idle_seconds: float) -> Round:
        """An idle window, then one run of each variant in ``order``, with the publisher and
        the lag monitor running throughout."""
        background = Background(self.hub, rate)
        background.start()
        runs: dict[str, Run] = {}
        windows: dict[str, Window] = {}
        try:
            await asyncio.sleep(0.5)  # warm-up, not recorded
            background.swap()
            gc.collect()
            cpu0, server0, start = cpu_self(), self.server.cpu(), clock()
            await asyncio.sleep(idle_seconds)
            idle_span = clock() - start
            idle_cpu = (cpu_self() - cpu0) / idle_span
            server_idle = (self.server.cpu() - server0) / idle_span
            windows["idle"] = background.swap()
            for variant in order:
                for attempt in range(1 + RETRIES):
                    try:
                        runs[variant] = await self._run(variant, idle_cpu)
                        break
                    except ServerWedged as exc:
                        background.swap()  # that window is void
                        print(f"  {variant}: {exc}", file=sys.stderr, flush=True)
                        if attempt == RETRIES:
                            raise
                        await self._restart_server()
                        self.restarts += 1
                        background.swap()  # nor are the samples of the recovery
                windows[variant] = background.swap()
        finally:
            await background.stop()
        return Round(runs, windows, idle_cpu, server_idle)

    async def _run(self, variant: str, idle_cpu: float) -> Run:
        gc.collect()
        cpu0, server0 = cpu_self(), self.server.cpu()
        if variant == "hub":
            seconds = await self._sweep()
        elif variant == "raw_proc":
            seconds, child_cpu, child_server = await self._pool_in_child()
            self.server.check()
            return Run(self.cameras, seconds, child_cpu, child_cpu, child_server)
        else:
            start = clock()
            failures = await asyncio.get_running_loop().run_in_executor(
                None, pool_probes, variant, self.server.url, self.concurrency, self.cameras
            )
            seconds = clock() - start
            if failures:
                raise ServerWedged(
                    f"{len(failures)} of {self.cameras} probes failed, e.g. {failures[0]}"
                )
        cpu, server_cpu = cpu_self() - cpu0, self.server.cpu() - server0
        self.server.check()
        return Run(
            probes=self.cameras,
            seconds=seconds,
            cpu=cpu - idle_cpu * seconds,
            cpu_gross=cpu,
            server_cpu=server_cpu,
        )

    async def _restart_server(self) -> None:
        """Replace a wedged server (same port), then sweep until every camera of the hub is
        ``ok`` again (failed probes of the void run reported them down)."""
        await asyncio.get_running_loop().run_in_executor(None, self.server.restart)
        print(f"  RTSP server restarted on port {self.server.port}", file=sys.stderr, flush=True)
        last: dict[str, str] = {}
        for event in self.health.events:
            last[event.subject] = event.type
        down = {camera for camera, state in last.items() if state != "camera.health.ok"}
        for _ in range(3):
            if not down:
                return
            before = len(self.health.events)
            await self.watcher.sweep_cameras()
            if self.watcher.tasks:
                await asyncio.wait(set(self.watcher.tasks))
            await self.hub.bus.drain()
            for event in self.health.events[before:]:
                if event.type == "camera.health.ok":
                    down.discard(event.subject)
                else:
                    down.add(event.subject)
        if down:
            raise RuntimeError(f"{len(down)} cameras still down after the server restart")

    async def _pool_in_child(self) -> tuple[float, float, float]:
        """The raw pool in a process of its own (this file with ``--pool-child``): seconds,
        its CPU and the server's over its probes."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--pool-child",
            f"{self.server.url},{self.concurrency},{self.cameras},{self.server.pid}",
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        lines = [x for x in out.decode().splitlines() if x.startswith(RESULT_MARK)]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"raw_proc failed ({proc.returncode}): {out.decode()[-500:]}")
        result = json.loads(lines[-1][len(RESULT_MARK) :])
        if result["failures"]:
            raise ServerWedged(f"probes failed, e.g. {result['failures'][0]}")
        return result["seconds"], result["cpu"], result["server_cpu"]

    async def _sweep(self) -> float:
        """One ``sweep_cameras()``, waited for; its duration as the watch measures it."""
        watcher = self.watcher
        events_before = len(self.health.events)
        await watcher.sweep_cameras()
        sweep = watcher.sweeps["camera"]
        if sweep.total != self.cameras:
            raise RuntimeError(f"the sweep saw {sweep.total} of {self.cameras} cameras")
        if watcher.tasks:
            await asyncio.wait(set(watcher.tasks))
        await self.hub.bus.drain()
        changes = self.health.events[events_before:]
        if changes:
            raise ServerWedged(
                f"{len(changes)} probes of the sweep were not ok, e.g. "
                f"{changes[0].type}: {changes[0].data.reason}"
            )
        return sweep_seconds(sweep)

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._context is not None:
                await self._context.__aexit__(*exc)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


# -- memory: hubs in fresh processes ---------------------------------------------------------
def memory_main(conn: Any, phase: str, directory: str, cameras: int, port: int) -> None:
    asyncio.run(_memory(conn, phase, Path(directory), cameras, port))


async def _memory(conn: Any, phase: str, directory: Path, cameras: int, port: int) -> None:
    from nabat.hub import Hub
    from nabat.logs import configure_logging
    from nabat.runtime import apply_runtime_settings
    from nabat.testing import load_config_text, run_hub

    loaded = load_config_text(HUB_CONFIG.format(concurrency=32), directory)
    out: dict[str, Any] = {}
    with (directory / f"hub-{phase}.log").open("a", encoding="utf-8") as log_file:
        configure_logging("info", "json", stream=log_file)  # as `nabat run` does, to a file
        apply_runtime_settings(loaded.config.hub)
        if phase == "base":
            out["rss_before"] = memory_mb()[0]
            async with run_hub(loaded) as hub:
                await asyncio.sleep(1.0)
                out["rss_started"] = memory_mb()[0]
                import av  # noqa: F401  (what a probe loads)

                out["rss_av"] = memory_mb()[0]
                start = clock()
                await import_cameras(hub, cameras, lambda i: f"rtsp://127.0.0.1:{port}/cam{i:05d}")
                out["import_seconds"] = clock() - start
        else:
            out["rss_before"] = memory_mb()[0]
            hub = Hub(loaded)
            start = clock()
            await hub.start(wait=False)
            out["start_returned"] = clock() - start
            await wait_until(lambda: running_count(hub) == cameras, 600, "every camera running")
            out["all_running"] = clock() - start
            watcher = hub.plugins["watch"].obj.watcher
            await wait_until(
                lambda: len(watcher.trackers) == cameras and not watcher.in_flight,
                600,
                "the first probe of every camera",
            )
            await hub.bus.drain()
            await wait_until(
                lambda: len(hub.camera_states.all()) == cameras, 60, "a state per camera"
            )
            out["all_probed"] = clock() - start
            out["states"] = sorted({s.state.value for s in hub.camera_states.all().values()})
            out["rss_started"], out["hwm_started"] = memory_mb()
            lags: list[float] = []
            monitor = asyncio.get_running_loop().create_task(_lag_monitor(lags))
            await asyncio.sleep(0.2)
            start = clock()
            await watcher.sweep_cameras()  # launches a task per camera, then returns
            out["sweep_call_ms"] = (clock() - start) * 1e3
            if watcher.tasks:
                await asyncio.wait(set(watcher.tasks))
            monitor.cancel()
            out["sweep_lag_ms"] = quantiles_ms(lags)
            sweep = watcher.sweeps["camera"]
            assert sweep.total == cameras, sweep.total
            out["sweep_seconds"] = sweep_seconds(sweep)
            await asyncio.sleep(1.5)  # the camera-state flush, if anything changed
            out["rss_swept"], out["hwm_swept"] = memory_mb()
            out["rss_workers"] = workers_rss()
            out["events"] = await hub.journal.last_seq()
            start = clock()
            await hub.stop()
            out["stop_seconds"] = clock() - start
    conn.send(out)


async def _lag_monitor(lags: list[float]) -> None:
    while True:
        start = clock()
        await asyncio.sleep(LAG_TICK)
        lags.append(max(0.0, clock() - start - LAG_TICK))


def run_memory(cameras: int, work: Path) -> dict[str, Any]:
    from nabat.testing import free_port

    directory = Path(tempfile.mkdtemp(prefix="memory-", dir=work))
    port = free_port()  # nothing listens there: every probe is refused at once
    results: dict[str, Any] = {"cameras": cameras}
    try:
        ctx = mp.get_context("spawn")
        for phase in ("base", "full"):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=memory_main, args=(child, phase, str(directory), cameras, port)
            )
            proc.start()
            if not parent.poll(900):
                proc.kill()
                raise RuntimeError(f"memory {phase}: no answer within 900 s")
            results[phase] = parent.recv()
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results


# -- the orchestrator ------------------------------------------------------------------------
Key = tuple[str, int]  # variant, concurrency


VARIANTS = ("raw", "raw_proc", "probe_stream", "hub")
LABELS = {
    "idle": "idle",
    "raw": "raw",
    "raw_proc": "raw, own proc",
    "probe_stream": "probe_stream",
    "hub": "hub sweep",
}


def median_run(runs: list[Run]) -> Run:
    return Run(
        probes=runs[0].probes,
        seconds=statistics.median(r.seconds for r in runs),
        cpu=statistics.median(r.cpu for r in runs),
        cpu_gross=statistics.median(r.cpu_gross for r in runs),
        server_cpu=statistics.median(r.server_cpu for r in runs),
    )


async def measure_sweeps(
    args: argparse.Namespace, work: Path
) -> tuple[dict[int, list[Round]], int]:
    """Per concurrency a fresh RTSP server and a fresh hub, then ``--repeats`` rounds; returns
    the rounds and how many runs were redone after a server restart."""
    rounds: dict[int, list[Round]] = {}
    redone = 0
    for concurrency in args.concurrency:
        with RtspServer(work) as server:
            async with SweepHub(server, concurrency, args.cameras, work) as sweep_hub:
                print(
                    f"  c={concurrency}: hub with {args.cameras} cameras set up in"
                    f" {sweep_hub.setup_seconds:.1f} s (first probes"
                    f" {sweep_hub.first_probe_seconds:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                for rep in range(args.repeats):
                    order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
                    result = await sweep_hub.measure(order, args.rate, args.idle)
                    rounds.setdefault(concurrency, []).append(result)
                    for variant in order:
                        print_run(rep, concurrency, variant, result)
                redone += sweep_hub.restarts
    return rounds, redone


def print_run(rep: int, concurrency: int, variant: str, result: Round) -> None:
    run = result.runs[variant]
    p99 = quantiles_ms(result.windows[variant].publish)[1]
    idle_p99 = quantiles_ms(result.windows["idle"].publish)[1]
    print(
        f"  rep {rep + 1} c={concurrency:<4} {variant:<13}"
        f" {run.per_second:7.1f} probes/s  cpu {run.cpu / run.probes * 1e3:6.2f} ms/probe"
        f"  server {run.server_cpu / run.probes * 1e3:5.2f} ms/probe  publish p99"
        f" {p99:6.2f} ms (idle {idle_p99:.2f})",
        file=sys.stderr,
        flush=True,
    )


def report_sweeps(args: argparse.Namespace, rounds: dict[int, list[Round]]) -> dict[Key, Run]:
    med = {
        (variant, c): median_run([r.runs[variant] for r in rs])
        for c, rs in rounds.items()
        for variant in VARIANTS
    }
    server_idle = statistics.median(r.server_idle_rate for rs in rounds.values() for r in rs)
    idle_cpu = statistics.median(r.idle_cpu_rate for rs in rounds.values() for r in rs)
    print(
        f"\nprobes ({args.cameras} per run, median of {args.repeats}; ratio = probes/s over raw"
        " at the same concurrency):"
    )
    print(
        f"{'variant':<15}{'conc':>5}{'probes/s':>10}{'ratio':>7}{'slot s':>8}"
        f"{'CPU ms/probe':>14}{'gross':>7}{'server ms/probe':>17}{'10k sweep':>12}"
    )
    for concurrency in rounds:
        raw = med["raw", concurrency]
        for variant in VARIANTS:
            m = med[variant, concurrency]
            server_net = (m.server_cpu - server_idle * m.seconds) / m.probes
            print(
                f"{LABELS[variant]:<15}{concurrency:>5}{m.per_second:>10.1f}"
                f"{m.per_second / raw.per_second:>7.2f}"
                f"{concurrency * m.seconds / m.probes:>8.2f}"
                f"{m.cpu / m.probes * 1e3:>14.2f}{m.cpu_gross / m.probes * 1e3:>7.2f}"
                f"{server_net * 1e3:>17.2f}"
                f"{TARGET_CAMERAS / m.per_second / 60:>8.1f} min"
            )
    print(
        f"CPU ms/probe: the hub's process, net of its idle rate with the publisher and monitor"
        f" running ({idle_cpu * 100:.1f} % of a core; 'gross': not); 'raw, own proc': that"
        f" process's own CPU. server ms/probe: the RTSP server, net of its idle rate"
        f" ({server_idle * 100:.1f} % of a core: encoding /live)."
    )
    print(
        f"\npublisher {args.rate:g} events/s (await hub.publish, durable) and loop-lag monitor"
        f" (sleep {LAG_TICK * 1e3:g} ms) in each window; ms, median over runs of each window's"
        " figure:"
    )
    print(
        f"{'conc':>5}  {'window':<14}{'publish p50':>12}{'p99':>8}{'max':>8}"
        f"{'lag p50':>10}{'p99':>8}{'max':>8}"
    )
    for concurrency, results in rounds.items():
        for name in ("idle", *VARIANTS):
            pub = [quantiles_ms(r.windows[name].publish) for r in results]
            lag = [quantiles_ms(r.windows[name].lag) for r in results]
            cells = [statistics.median(p[i] for p in pub) for i in range(3)]
            cells += [statistics.median(q[i] for q in lag) for i in range(3)]
            label = LABELS[name]
            print(
                f"{concurrency:>5}  {label:<14}{cells[0]:>12.2f}{cells[1]:>8.2f}{cells[2]:>8.2f}"
                f"{cells[3]:>10.2f}{cells[4]:>8.2f}{cells[5]:>8.2f}"
            )
    return med


def report_memory(mem: dict[str, Any]) -> tuple[float, float]:
    base, full = mem["base"], mem["full"]
    n = mem["cameras"]
    print("\nmemory (fresh processes; VmRSS after gc.collect(), MB):")
    print(f"  hub, 0 cameras, after start:                    {base['rss_started']:8.1f}")
    print(f"  hub, 0 cameras, after start + import av:         {base['rss_av']:8.1f}")
    print(
        f"  hub, {n:,} cameras running, each probed once:   {full['rss_started']:8.1f}"
        f"  (peak {full['hwm_started']:.1f})"
    )
    print(
        f"  same, after one more full sweep:                {full['rss_swept']:8.1f}"
        f"  (peak {full['hwm_swept']:.1f})"
    )
    workers = full.get("rss_workers", 0.0)
    print(
        f"  its camera worker process(es):                 {workers:8.1f}"
        f"  (hub + workers {full['rss_swept'] + workers:.1f})"
    )
    per_camera = (full["rss_swept"] - base["rss_started"]) * 1024 / n
    print(
        f"  per camera (over the 0-camera hub): {per_camera:.1f} KB; states reported:"
        f" {', '.join(full['states'])}; journal events {full['events']:,}"
    )
    print(
        f"  import of {n:,} rows {base['import_seconds']:.1f} s; start: hub.start() returned in"
        f" {full['start_returned']:.1f} s, all {n:,} running after {full['all_running']:.1f} s,"
        f" all probed and reported after {full['all_probed']:.1f} s; a full sweep of"
        f" {n:,} refused probes {full['sweep_seconds']:.1f} s"
        f" ({n / full['sweep_seconds']:.0f} probes/s); stop {full['stop_seconds']:.1f} s"
    )
    p50, p99, worst = full["sweep_lag_ms"]
    print(
        f"  that sweep: sweep_cameras() held the loop {full['sweep_call_ms']:.0f} ms;"
        f" loop lag during it p50 {p50:.1f} / p99 {p99:.1f} / max {worst:.1f} ms"
    )
    return full["rss_swept"], full["hwm_swept"]


def describe_machine() -> str:
    import av

    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else os.cpu_count()
    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, nproc {cpus}, CPython"
        f" {platform.python_version()}, PyAV {av.__version__} (FFmpeg"
        f" {'.'.join(map(str, av.library_versions['libavformat']))} libavformat), load"
        f" average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=256, help="probes per run")
    parser.add_argument(
        "--concurrency",
        default="32,64",
        help="watch concurrencies (pool sizes), comma-separated",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--rate", type=float, default=100.0, help="publisher events/s")
    parser.add_argument("--idle", type=float, default=2.0, help="idle window seconds")
    parser.add_argument("--memory-cameras", type=int, default=TARGET_CAMERAS)
    parser.add_argument("--parts", default="sweep,memory", help="sweep, memory or both")
    parser.add_argument("--quick", action="store_true", help="smoke run (~1 min)")
    parser.add_argument("--dir", default=None, help="directory for the journals (on disk)")
    parser.add_argument("--pool-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pool_child:
        pool_child(args.pool_child)
        return
    if args.quick:
        args.cameras, args.repeats, args.idle = 64, 1, 1.0
        args.concurrency = "32"
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    work = Path(tempfile.mkdtemp(prefix="nabat-camera-sweep-", dir=args.dir))

    print(f"machine: {describe_machine()}")
    started = clock()
    try:
        med: dict[Key, Run] = {}
        rounds: dict[int, list[Round]] = {}
        if "sweep" in parts:
            print(
                f"sweep: {args.cameras} probes of {MOUNT} per run (H.264 320x240, 10 fps, key"
                f" frame every 1.5 s), {WARMUP_FRAMES}+{SAMPLE_FRAMES} frames each,"
                f" concurrency {', '.join(map(str, args.concurrency))}, {args.repeats} reps"
            )
            rounds, redone = asyncio.run(_with_logging(args, work))
            med = report_sweeps(args, rounds)
            print(
                f"runs redone after restarting a wedged RTSP server: {redone}"
                + (" (see RtspServer)" if redone else "")
            )
        mem = None
        if "memory" in parts:
            print(f"\nmemory: {args.memory_cameras:,} cameras ...", file=sys.stderr, flush=True)
            mem = run_memory(args.memory_cameras, work)
            report_memory(mem)
        goals(args, med, rounds, mem)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n(total {clock() - started:.0f} s)")


async def _with_logging(args: argparse.Namespace, work: Path) -> tuple[dict[int, list[Round]], int]:
    """Log and set the interpreter up as ``nabat run`` does (logs to a file), then measure."""
    from nabat.config import HubSettings
    from nabat.logs import configure_logging
    from nabat.runtime import apply_runtime_settings

    with (work / "hub.log").open("a", encoding="utf-8") as log_file:
        configure_logging("info", "json", stream=log_file)
        apply_runtime_settings(HubSettings())
        return await measure_sweeps(args, work)


def goals(
    args: argparse.Namespace,
    med: dict[Key, Run],
    rounds: dict[int, list[Round]],
    mem: dict[str, Any] | None,
) -> None:
    print("\ngoals:")

    def line(text: str, value: str, ok: bool) -> None:
        print(f"  {text}: {value}, {'met' if ok else 'NOT met'}")

    for concurrency in args.concurrency:
        if ("hub", concurrency) not in med:
            continue
        rate = med["hub", concurrency].per_second
        line(
            f"10,000 cameras in <= {GOAL_SWEEP_S / 60:g} min (>= {GOAL_RATE:g} probes/s),"
            f" concurrency {concurrency}",
            f"{rate:.1f} probes/s, {TARGET_CAMERAS / rate / 60:.1f} min",
            rate >= GOAL_RATE,
        )
        p99 = statistics.median(
            quantiles_ms(r.windows["hub"].publish)[1] for r in rounds[concurrency]
        )
        line(
            f"publish p99 < {GOAL_PUBLISH_P99_MS:g} ms during the sweep, concurrency {concurrency}",
            f"{p99:.2f} ms",
            p99 < GOAL_PUBLISH_P99_MS,
        )
    if mem is not None:
        rss = max(mem["full"]["rss_swept"], mem["full"]["hwm_swept"])
        line(
            f"RSS with {mem['cameras']:,} cameras < {GOAL_RSS_MB:g} MB (peak)",
            f"{rss:.0f} MB",
            rss < GOAL_RSS_MB,
        )


if __name__ == "__main__":
    main()
