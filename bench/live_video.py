"""Live video capacity benchmark: the hub's restreamer against a bare PyAV remux (issue 16).

Everything runs on loopback against the GStreamer RTSP test server
(``tests/fixtures/rtsp_server.py`` under Debian's ``/usr/bin/python3``, as the test fixture
starts it). The server's ``/live`` mount is *shared*: every client of one URL gets the same
pipeline. gst-rtsp-server keys shared media by the whole request URI, query string included,
so ``/live?cam=1`` ... ``/live?cam=N`` are N independent pipelines (N x264 encodes, 320x240 at
10 fps, a key frame every 15 frames) on the one mount. An anchor process (``rtspsrc ! fakesink``
per URL, under ``/usr/bin/python3``) holds every URL open for the whole run, so no pipeline is
torn down and built again between the phases (GStreamer 1.22's server can abort then).

Phases, each ``--warmup`` seconds then ``--duration`` seconds measured, alternating order
between ``--repeats``:

* **raw**: one process, a thread per stream: ``av.open(url)`` (RTSP over TCP), every packet
  muxed unchanged (``codec copy``) into FFmpeg's ``mp4`` muxer in fragmented mode (the hub's
  ``movflags`` and ``frag_duration``) writing into memory (the bytes are copied and counted,
  then dropped). No viewers, no event loop.
* **hub**: a real hub in its own process (:func:`nabat.testing.run_hub` and ``run_api``, the
  API on 127.0.0.1 port 0, ``[plugins.rtsp]`` with one ``rtsp.camera`` per URL), and
  ``--viewers`` WebSocket viewers per camera (``GET /api/v1/cameras/{id}/live``, a bearer
  token with ``cameras:read``) in the benchmark's own process, each counting bytes and
  fragments and the longest gap between two fragments. The hub reports its own CPU time
  (``resource.getrusage``, and per thread group from ``/proc/self/task``: the event loop, the
  upstream threads, the rest) and RSS through a pipe, over ``--duration`` seconds with nothing
  of the benchmark's running in it; then, for ``--probe`` seconds more (the viewers still
  streaming), an event-loop lag probe (``asyncio.sleep(0.01)``'s overshoot, continuously) and
  a bus probe (an event published every 20 ms to a subscriber of ours: publish-to-handler
  latency). The probes get a window of their own because they cost the hub more CPU than
  restreaming 32 cameras to one viewer each (their cost, measured idle, is reported).
  ``BENCH_HUB_EXTRA`` adds lines to the hub's ``[hub]`` table (e.g.
  ``switch_interval = 0.005``), ``BENCH_VIDEO_EXTRA`` to its ``[video]`` table (e.g.
  ``workers = 0``: the upstreams as threads in the hub's process).

Reported per phase: CPU per upstream (CPU seconds per wall second, in % of one core), per
viewer stream for the hub, RSS delta per upstream, fragments/s and bytes/s delivered, the
longest gap a stream/viewer saw (hub: over both windows). **ratio = raw CPU per upstream /
hub CPU per upstream** (hub upstreams each serving ``--viewers`` viewers): 1.0 means the hub
costs no more than the bare remux; goal >= 0.7. Goals: loop lag p99 < 10 ms, bus publish
p99 < 10 ms, no stalls (no viewer without a fragment for more than ``STALL_S``).

Run: ``uv run python bench/live_video.py`` (32 cameras x 4 viewers, ~4 min); ``--quick`` for a
smoke run (4 cameras x 2 viewers, ~30 s); ``--cameras 8 --viewers 4`` etc.
"""

from __future__ import annotations

import argparse
import asyncio
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = ROOT / "tests" / "fixtures" / "rtsp_server.py"
# /fanout: one H.264 encode in the server, its packets sent to every ?cam=N (each an RTSP
# media of its own): the server's 64 x264 encodes of /live took 1.3-2 of the 2 cores and
# starved what is measured; BENCH_MOUNT=/live for independent encodes.
MOUNT = os.environ.get("BENCH_MOUNT") or "/fanout"
GOAL_RATIO = 0.7
GOAL_LAG_MS = 10.0
GOAL_BUS_MS = 10.0
IDLE_S = 3.0  # the hub's idle CPU is measured this long before the viewers connect
STALL_S = 3.0  # a GOP is 1.5 s, fragments at most 0.5 s apart: 3 s without one is a stall
# The raw remux's muxer cuts fragments as the hub's does (nabat/video/remux.py: MUX_FRAGMENT,
# 0.1 s since the cold-click fix); BENCH_RAW_FRAGMENT (seconds) overrides it, e.g. 0.5 for the
# figures taken before that fix.
RAW_FRAGMENT_S = float(os.environ.get("BENCH_RAW_FRAGMENT") or 0.1)
FRAG_OPTIONS = {
    "movflags": "empty_moov+default_base_moof+frag_keyframe",
    "frag_duration": str(int(RAW_FRAGMENT_S * 1_000_000)),
}
IN_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "500000", "probesize": "500000"}

ANCHOR = """
import signal, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst
Gst.init(None)
pipes = []
for url in sys.argv[1:]:
    p = Gst.parse_launch(f"rtspsrc location={url} protocols=tcp latency=0 ! fakesink sync=false")
    p.set_state(Gst.State.PLAYING)
    pipes.append(p)
loop = GLib.MainLoop()
for s in (signal.SIGTERM, signal.SIGINT):
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, s, loop.quit)
print("ANCHORED", flush=True)
loop.run()
for p in pipes:
    p.set_state(Gst.State.NULL)
"""

HUB_CONFIG = """
[hub]
name = "bench-live"
{hub_extra}
data_dir = "{data_dir}"
log_level = "info"
log_format = "json"
[api]
listen = "127.0.0.1:0"
[api.rate_limit]
# One token stands for every viewer here; at 64 x 8 its connects exceed the default burst.
burst = {burst}
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.rtsp]
enabled = true
[video]
max_upstreams = {cameras}
max_viewers_per_camera = {viewers}
max_streams_per_user = {streams}
{video_extra}
"""


def _camera(cid: str, url: str) -> str:
    return f"""
[instances.{cid}]
kind = "rtsp.camera"
municipality = "sochi"
settings = {{ url = "{url}" }}
"""


def _video_workers() -> list[int]:
    """The hub's video worker processes (``nabat.video.workers``) among this process's
    descendants: the upstreams run there, so the hub's CPU is theirs plus this process's."""
    found, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:
                continue
            todo += kids
            for kid in kids:
                try:
                    if b"nabat.video.workers" in Path(f"/proc/{kid}/cmdline").read_bytes():
                        found.append(kid)
                except OSError:
                    pass
    return found


def _stat_cpu(path: str) -> float:
    """User + system CPU seconds from a ``/proc/.../stat`` file (a process or a thread); 0
    when it has ended meanwhile."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workers_cpu() -> float:
    return sum(_stat_cpu(f"/proc/{pid}/stat") for pid in _video_workers())


def _cpu() -> float:
    """CPU seconds of the hub so far: this process and its video workers."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + _workers_cpu()


def _rss() -> int:
    """Resident bytes of the hub: this process and its video workers."""
    total = 0
    for pid in ["self", *_video_workers()]:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # ended meanwhile
            pass
    return total


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per group of this process's threads (from ``/proc/self/task``): ``loop``
    (the main thread: the event loop), ``upstreams`` (remux threads in this process: raw's,
    or the hub's with ``[video] workers = 0``), ``readers`` (the hub's side of each video
    worker), ``other`` (the journal's and executors' threads, FFmpeg's own); and ``workers``:
    the video worker processes, where the hub's upstreams run."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    groups = {"loop": 0.0, "upstreams": 0.0, "readers": 0.0, "other": 0.0}
    for tid in os.listdir("/proc/self/task"):
        cpu = _stat_cpu(f"/proc/self/task/{tid}/stat")
        name = names.get(int(tid), "")
        group = (
            "loop"
            if int(tid) == main
            else "upstreams"
            if name.startswith(("video:", "remux"))
            else "readers"
            if name == "video-worker-reader"
            else "other"
        )
        groups[group] += cpu
    groups["workers"] = _workers_cpu()
    return groups


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a.get(k, 0.0) for k in b}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


# -- the RTSP server and its anchor ------------------------------------------------------------
def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline().strip()


class RtspServer:
    def __init__(self, work: Path, cameras: int) -> None:
        self.stderr = work / "rtsp-server.stderr"
        self.cameras = cameras
        self.procs: list[subprocess.Popen[str]] = []
        self.port = 0

    def urls(self) -> list[str]:
        return [f"rtsp://127.0.0.1:{self.port}{MOUNT}?cam={i}" for i in range(self.cameras)]

    def __enter__(self) -> RtspServer:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            sys.exit(f"{SYSTEM_PYTHON} not found: the RTSP test server needs Debian's Python")
        with self.stderr.open("a") as err:
            server = subprocess.Popen(
                [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.procs.append(server)
        line = _read_line(server, 20.0)
        if not line.startswith("READY "):
            self.__exit__()
            sys.exit(f"the RTSP test server did not start: {self.stderr.read_text()[-500:]}")
        self.port = int(line.split()[1])
        anchor = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", ANCHOR, *self.urls()],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.procs.append(anchor)
        if _read_line(anchor, 20.0) != "ANCHORED":
            self.__exit__()
            sys.exit("the anchor client did not start")
        time.sleep(2.0 + 0.1 * self.cameras)  # every pipeline is up and encoding
        return self

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def cpu(self) -> float:
        """CPU seconds of the server process so far (from /proc)."""
        return _stat_cpu(f"/proc/{self.procs[0].pid}/stat")

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


# -- raw: a bare PyAV remux, a thread per stream ------------------------------------------------
class _Counter:
    """The muxer's output file: bytes copied (as any consumer must), counted, dropped."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.bytes += len(chunk)
        return len(chunk)


@dataclass
class _RawStream:
    out: _Counter = field(default_factory=_Counter)
    packets: int = 0
    last: float = 0.0
    gap: float = 0.0
    error: str = ""


def _remux(url: str, state: _RawStream, stop: threading.Event, measuring: threading.Event) -> None:
    import av

    try:
        inp = av.open(url, options=IN_OPTIONS, timeout=(10.0, 5.0))
        video = inp.streams.video[0]
        out = av.open(state.out, "w", format="mp4", options=FRAG_OPTIONS)
        ost = out.add_stream_from_template(video)
        last_dts: int | None = None
        for packet in inp.demux(video):
            if stop.is_set():
                break
            if packet.size == 0 or packet.dts is None:
                continue
            if last_dts is None and not packet.is_keyframe:
                continue
            if last_dts is not None and packet.dts <= last_dts:
                continue
            last_dts = packet.dts
            packet.stream = ost
            out.mux(packet)
            now = time.perf_counter()
            if measuring.is_set():
                state.gap = max(state.gap, now - state.last)
            state.last = now
            state.packets += 1
    except Exception as exc:
        state.error = repr(exc)


def raw_main(conn: Any, urls: list[str], warmup: float, duration: float) -> None:
    import av  # noqa: F401  (imported before the RSS baseline)

    stop, measuring = threading.Event(), threading.Event()
    states = [_RawStream() for _ in urls]
    rss0 = _rss()
    threads = [
        threading.Thread(
            target=_remux, args=(u, s, stop, measuring), name=f"remux-{i}", daemon=True
        )
        for i, (u, s) in enumerate(zip(urls, states, strict=True))
    ]
    for t in threads:
        t.start()
    time.sleep(warmup)
    b0 = [s.out.bytes for s in states]
    p0 = [s.packets for s in states]
    for s in states:
        s.last = time.perf_counter()
    t0, c0, th0 = time.perf_counter(), _cpu(), _thread_cpu()
    measuring.set()
    time.sleep(duration)
    c1, t1, th1 = _cpu(), time.perf_counter(), _thread_cpu()
    rss1 = _rss()
    measuring.clear()
    end = time.perf_counter()
    gaps = [max(s.gap, end - s.last) for s in states]
    conn.send(
        {
            "cpu": c1 - c0,
            "wall": t1 - t0,
            "threads": _delta(th0, th1),
            "bytes": sum(s.out.bytes for s in states) - sum(b0),
            "packets": sum(s.packets for s in states) - sum(p0),
            "rss_delta": rss1 - rss0,
            "max_gap": max(gaps),
            "stalled": sum(1 for g in gaps if g > STALL_S),
            "errors": [s.error for s in states if s.error],
        }
    )
    stop.set()


# -- hub: a real hub with the API, probes inside ------------------------------------------------
async def _hub(conn: Any, directory: str, urls: list[str], viewers: int) -> None:
    from nabat.logs import configure_logging
    from nabat.runtime import apply_runtime_settings
    from nabat.testing import load_config_text, run_api, run_hub
    from workload import make_events

    data = Path(directory) / "data"
    text = HUB_CONFIG.format(
        data_dir=data,
        cameras=len(urls),
        viewers=viewers,
        streams=len(urls) * viewers,
        burst=max(200, 2 * len(urls) * viewers),
        hub_extra=os.environ.get("BENCH_HUB_EXTRA", ""),
        video_extra=os.environ.get("BENCH_VIDEO_EXTRA", ""),
    )
    text += "".join(_camera(f"cam-{i:03d}", u) for i, u in enumerate(urls))
    loaded = load_config_text(text, Path(directory))
    loop = asyncio.get_running_loop()
    with (Path(directory) / "hub.log").open("a", encoding="utf-8") as log_file:
        configure_logging("info", "json", stream=log_file)  # as `nabat run` does, to a file
        apply_runtime_settings(loaded.config.hub)  # as `nabat run` does
        async with run_hub(loaded, discover_installed=True) as hub, run_api(hub) as server:
            secret, _ = await server.state.tokens.create(
                "bench", ["cameras:read"], municipalities=("sochi",)
            )
            rss0 = _rss()
            conn.send(("ready", server.url, secret))
            lags: list[float] = []
            bus: list[float] = []
            measuring = asyncio.Event()
            sent: dict[str, float] = {}

            def on_probe(event: Any) -> None:
                bus.append(time.perf_counter() - sent.pop(event.id))

            hub.bus.subscribe("bench.probe", on_probe, name="bench-probe")
            template = make_events(1)[0].replace(type="bench.probe")

            async def lag_probe() -> None:
                await measuring.wait()
                while measuring.is_set():
                    t = time.perf_counter()
                    await asyncio.sleep(0.01)
                    lags.append(time.perf_counter() - t - 0.01)

            async def bus_probe() -> None:
                await measuring.wait()
                i = 0
                while measuring.is_set():
                    i += 1
                    event = template.replace(id=f"probe-{i}")
                    sent[event.id] = time.perf_counter()
                    await hub.bus.publish(event)
                    await asyncio.sleep(0.02)

            result: dict[str, Any] = {}
            while True:
                message = await loop.run_in_executor(None, conn.recv)
                if message == "idle":  # the hub's own cost, no viewer: without, then with probes
                    c0, t0 = _cpu(), time.perf_counter()
                    await asyncio.sleep(IDLE_S)
                    c1, t1 = _cpu(), time.perf_counter()
                    tasks = [loop.create_task(lag_probe()), loop.create_task(bus_probe())]
                    c2, t2 = _cpu(), time.perf_counter()
                    measuring.set()
                    await asyncio.sleep(IDLE_S)
                    c3, t3 = _cpu(), time.perf_counter()
                    measuring.clear()
                    await asyncio.gather(*tasks)
                    await asyncio.sleep(0.1)
                    lags.clear()
                    bus.clear()
                    conn.send(((c1 - c0) / (t1 - t0), (c3 - c2) / (t3 - t2)))
                elif message == "start":  # the CPU window: viewers streaming, no probe
                    result = {"t0": time.perf_counter(), "c0": _cpu(), "th0": _thread_cpu()}
                    v = hub.video
                    result["dropped0"], result["reconnects0"] = v.dropped, v.reconnects
                    conn.send("started")
                elif message == "probe":  # the CPU window ends; the probe window begins
                    result["c1"], result["t1"] = _cpu(), time.perf_counter()
                    result["th1"] = _thread_cpu()
                    tasks = [loop.create_task(lag_probe()), loop.create_task(bus_probe())]
                    measuring.set()
                    conn.send("probing")
                elif message == "measure":
                    c2, t2 = _cpu(), time.perf_counter()
                    measuring.clear()
                    await asyncio.gather(*tasks)
                    await asyncio.sleep(0.1)  # the last probe events are delivered
                    v = hub.video
                    conn.send(
                        {
                            "cpu": result["c1"] - result["c0"],
                            "wall": result["t1"] - result["t0"],
                            "threads": _delta(result["th0"], result["th1"]),
                            "cpu_probed": c2 - result["c1"],
                            "wall_probed": t2 - result["t1"],
                            "rss_delta": _rss() - rss0,
                            "lag_p50": pct(lags, 50),
                            "lag_p99": pct(lags, 99),
                            "lag_max": max(lags, default=float("nan")),
                            "bus_p50": pct(bus, 50),
                            "bus_p99": pct(bus, 99),
                            "bus_n": len(bus),
                            "upstreams": len(v.upstreams),
                            "connected": v.connected(),
                            "viewers": v.viewers(),
                            "dropped": v.dropped - result["dropped0"],
                            "reconnects": v.reconnects - result["reconnects0"],
                        }
                    )
                elif message == "stop":
                    conn.send("stopped")
                    return


def hub_main(conn: Any, directory: str, urls: list[str], viewers: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(_hub(conn, directory, urls, viewers))


# -- the viewers (in the benchmark's process) ---------------------------------------------------
@dataclass
class _Viewer:
    bytes: int = 0
    fragments: int = 0
    last: float = 0.0
    gap: float = 0.0
    statuses: int = 0
    measuring: bool = False
    first: asyncio.Event = field(default_factory=asyncio.Event)
    error: str = ""


async def _view(url: str, token: str, v: _Viewer, stop: asyncio.Event) -> None:
    import websockets

    try:
        async with websockets.connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=2**24,
            open_timeout=30,
        ) as ws:
            init = False
            while not stop.is_set():
                try:
                    message = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    continue
                if isinstance(message, str):
                    if json.loads(message).get("type") == "status":
                        v.statuses += 1
                    init = False if json.loads(message).get("type") == "stream" else init
                    continue
                if not init:
                    init = True  # the init segment follows a `stream` message
                    continue
                now = time.perf_counter()
                if v.measuring:
                    v.gap = max(v.gap, now - v.last)
                v.last = now
                v.bytes += len(message)
                v.fragments += 1
                v.first.set()
    except Exception as exc:
        v.error = repr(exc)
        v.first.set()


class Hub:
    def __init__(self, work: Path, urls: list[str], viewers: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.directory = Path(tempfile.mkdtemp(prefix="live-hub-", dir=work))
        self.process = ctx.Process(
            target=hub_main, args=(child, str(self.directory), urls, viewers), daemon=True
        )

    def ask(self, message: str, timeout: float = 60.0) -> Any:
        self.conn.send(message)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the hub did not answer {message!r} within {timeout:g} s")
        return self.conn.recv()

    def __enter__(self) -> Hub:
        self.process.start()
        if not self.conn.poll(120):
            raise RuntimeError("the hub did not start within 120 s")
        _, self.url, self.token = self.conn.recv()
        self.idle = self.ask("idle")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.process.is_alive():
                self.ask("stop")
            self.process.join(30)
        finally:
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            shutil.rmtree(self.directory, ignore_errors=True)


async def _hub_phase(hub: Hub, cameras: int, viewers: int, args: argparse.Namespace) -> dict:
    base = hub.url.replace("http://", "ws://")
    stop = asyncio.Event()
    vs = [_Viewer() for _ in range(cameras * viewers)]
    tasks = [
        asyncio.create_task(
            _view(f"{base}/api/v1/cameras/cam-{i // viewers:03d}/live", hub.token, v, stop)
        )
        for i, v in enumerate(vs)
    ]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(v.first.wait() for v in vs))
        errors = [v.error for v in vs if v.error]
        if errors:
            raise RuntimeError(f"{len(errors)} viewers failed: {errors[:3]}")
        await asyncio.sleep(args.warmup)
        b0 = [v.bytes for v in vs]
        f0 = [v.fragments for v in vs]
        await asyncio.to_thread(hub.ask, "start")
        for v in vs:
            v.last, v.measuring = time.perf_counter(), True
        t0 = time.perf_counter()
        await asyncio.sleep(args.duration)
        await asyncio.to_thread(hub.ask, "probe")
        await asyncio.sleep(args.probe)
        result = await asyncio.to_thread(hub.ask, "measure")
        wall = time.perf_counter() - t0
        end = time.perf_counter()
        for v in vs:
            v.measuring = False
        gaps = [max(v.gap, end - v.last) for v in vs]
        result.update(
            client_wall=wall,
            bytes=sum(v.bytes for v in vs) - sum(b0),
            fragments=sum(v.fragments for v in vs) - sum(f0),
            max_gap=max(gaps),
            stalled=sum(1 for g in gaps if g > STALL_S),
            statuses=sum(v.statuses for v in vs),
            errors=[v.error for v in vs if v.error],
        )
        return result
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


def measure_raw(urls: list[str], args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=raw_main, args=(child, urls, args.warmup, args.duration), daemon=True)
    proc.start()
    try:
        if not conn.poll(args.warmup + args.duration + 60):
            raise RuntimeError("the raw remux did not report in time")
        result = conn.recv()
    finally:
        proc.join(15)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if result["errors"]:
        raise RuntimeError(
            f"raw remux: {len(result['errors'])} streams failed: {result['errors'][:3]}"
        )
    return result


def measure_hub(urls: list[str], viewers: int, args: argparse.Namespace, work: Path) -> dict:
    with Hub(work, urls, viewers) as hub:
        result = asyncio.run(_hub_phase(hub, len(urls), viewers, args))
        result["idle"], result["idle_probed"] = hub.idle
    if result["errors"]:
        raise RuntimeError(f"hub: {len(result['errors'])} viewers failed: {result['errors'][:3]}")
    return result


def describe_machine() -> str:
    import av

    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"CPython {platform.python_version()}, PyAV {av.__version__} "
        f"(FFmpeg {av.library_versions['libavformat']}), load average {load[0]:.2f} "
        f"{load[1]:.2f} {load[2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=32, help="RTSP streams / hub upstreams")
    parser.add_argument("--viewers", type=int, default=4, help="WebSocket viewers per camera")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument(
        "--probe", type=float, default=10.0, help="seconds of loop-lag and bus probes per hub run"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per phase (median)")
    parser.add_argument("--quick", action="store_true", help="4 cameras x 2 viewers, 5 s, once")
    args = parser.parse_args()
    if args.quick:
        args.cameras, args.viewers, args.duration, args.warmup, args.repeats = 4, 2, 5.0, 3.0, 1
        args.probe = 3.0
    n, m = args.cameras, args.viewers
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    print(f"machine: {describe_machine()}")
    print(
        f"{n} cameras ({MOUNT}?cam=0..{n - 1}: 320x240 10 fps H.264 RTSP media), "
        f"{m} viewers each; {args.warmup:g} s warm-up + {args.duration:g} s measured per phase, "
        f"median of {args.repeats}"
    )
    kinds = ["raw", "hub1", "hub"] if m > 1 else ["raw", "hub"]
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    started = time.perf_counter()
    try:
        with RtspServer(work, n) as rtsp:
            urls = rtsp.urls()
            for rep in range(args.repeats):
                order = kinds if rep % 2 == 0 else kinds[::-1]
                for kind in order:
                    s0, w0 = rtsp.cpu(), time.perf_counter()
                    if kind == "raw":
                        r = measure_raw(urls, args)
                    else:
                        r = measure_hub(urls, 1 if kind == "hub1" else m, args, work)
                    r["server_cpu"] = (rtsp.cpu() - s0) / (time.perf_counter() - w0)
                    if not rtsp.alive():
                        raise RuntimeError("the RTSP test server or its anchor died")
                    runs[kind].append(r)
                    per = r["cpu"] / r["wall"] / n * 100
                    split = "  ".join(
                        f"{k} {v / r['wall'] * 100:.1f}" for k, v in r["threads"].items()
                    )
                    extra = (
                        f"  lag p99 {r['lag_p99'] * 1000:.1f} ms  bus p99 "
                        f"{r['bus_p99'] * 1000:.2f} ms  {r['fragments'] / r['client_wall']:.0f} "
                        "fragments/s"
                        if kind != "raw"
                        else ""
                    )
                    probed = (
                        f" ({r['cpu_probed'] / r['wall_probed'] / n * 100:.2f} with probes)"
                        if kind != "raw"
                        else ""
                    )
                    wall = r["wall"] if kind == "raw" else r["client_wall"]
                    print(
                        f"  rep {rep + 1} {kind:4}: {per:5.2f} % core/upstream{probed}  "
                        f"{r['bytes'] / wall / 1e6:6.2f} MB/s  max gap "
                        f"{r['max_gap']:.2f} s  RTSP server {r['server_cpu'] * 100:.0f} % core"
                        f"{extra}\n           threads (% core): {split}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"({time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    def med_rate(kind: str, key: str, wall: str = "wall") -> float:
        return statistics.median(r[key] / r[wall] for r in runs[kind])

    def cpu(kind: str) -> float:
        return statistics.median(r["cpu"] / r["wall"] for r in runs[kind]) / n

    raw_cpu, hub_cpu = cpu("raw"), cpu("hub")
    ratio = raw_cpu / hub_cpu
    idle = med("hub", "idle")
    hub_net = hub_cpu - idle / n
    print()
    print(
        "| variant | viewers | CPU % core/upstream | CPU % core/viewer | RSS MiB/upstream | "
        "fragments/s | MB/s delivered | max gap s | ratio |"
    )
    print(
        "| ------- | ------: | ------------------: | ----------------: | ---------------: | "
        "----------: | -------------: | --------: | ----: |"
    )
    print(
        f"| raw     | {'-':>7} | {raw_cpu * 100:19.2f} | {'-':>17} | "
        f"{med('raw', 'rss_delta') / n / 2**20:16.2f} | {'-':>11} | "
        f"{med_rate('raw', 'bytes') / 1e6:14.2f} | {med('raw', 'max_gap'):9.2f} | {1.0:5.2f} |"
    )
    for kind in kinds[1:]:
        per = 1 if kind == "hub1" else m
        c = cpu(kind)
        print(
            f"| {kind:7} | {f'{n}x{per}':>7} | {c * 100:19.2f} | {c / per * 100:17.2f} | "
            f"{med(kind, 'rss_delta') / n / 2**20:16.2f} | "
            f"{med_rate(kind, 'fragments', 'client_wall'):11.0f} | "
            f"{med_rate(kind, 'bytes', 'client_wall') / 1e6:14.2f} | "
            f"{med(kind, 'max_gap'):9.2f} | {raw_cpu / c:5.2f} |"
        )
    print()
    print(
        f"{n} upstreams; ratio = raw CPU per upstream / hub CPU per upstream (hub: each "
        f"upstream serving {m} WebSocket viewers; hub1: 1 viewer); CPU = the process's "
        "user+system time over wall time, in % of one core"
    )
    idle_probed = med("hub", "idle_probed")
    probed = statistics.median(r["cpu_probed"] / r["wall_probed"] for r in runs["hub"]) / n
    threads = {
        k: statistics.median(r["threads"][k] / r["wall"] for r in runs["hub"]) * 100
        for k in runs["hub"][0]["threads"]
    }
    raw_threads = statistics.median(r["threads"]["upstreams"] / r["wall"] for r in runs["raw"])
    print(
        f"hub ({n}x{m}) by thread, % core: "
        + ", ".join(f"{k} {v:.1f}" for k, v in threads.items())
        + f" (raw: its remux threads {raw_threads * 100:.1f})"
    )
    print(
        f"hub idle (API, bus, no viewer): {idle * 100:.1f} % core; net of it "
        f"{hub_net * 100:.2f} % core/upstream, ratio {raw_cpu / hub_net:.2f}"
    )
    print(
        f"the probes' own cost: hub idle with the loop-lag and bus probes running "
        f"{idle_probed * 100:.1f} % core; while streaming with them (how this bench measured "
        f"CPU until the probes got a window of their own) {probed * 100:.2f} % core/upstream, "
        f"ratio {raw_cpu / probed:.2f}"
    )
    lag = med("hub", "lag_p99") * 1000
    bus = med("hub", "bus_p99") * 1000
    hubs = [r for kind in kinds[1:] for r in runs[kind]]
    stalled = sum(r["stalled"] for r in hubs)
    dropped = sum(r["dropped"] for r in hubs)
    reconnects = sum(r["reconnects"] for r in hubs)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"CPU ratio {ratio:.2f}; goal >= {GOAL_RATIO}: {verdict(ratio >= GOAL_RATIO)}")
    print(
        f"event-loop lag p99 {lag:.1f} ms (p50 {med('hub', 'lag_p50') * 1000:.1f}, max "
        f"{med('hub', 'lag_max') * 1000:.1f}); goal < {GOAL_LAG_MS:g} ms: "
        f"{verdict(lag < GOAL_LAG_MS)}"
    )
    print(
        f"bus publish-to-handler p99 {bus:.2f} ms (p50 {med('hub', 'bus_p50') * 1000:.2f}, "
        f"{statistics.median(r['bus_n'] for r in runs['hub']):.0f} events); goal < "
        f"{GOAL_BUS_MS:g} ms: {verdict(bus < GOAL_BUS_MS)}"
    )
    print(
        f"every viewer kept receiving: {verdict(stalled == 0)} ({stalled} viewers without a "
        f"fragment for > {STALL_S:g} s; {dropped} fragments skipped for slow viewers, "
        f"{reconnects} upstream reconnects, "
        f"{sum(r['statuses'] for r in hubs)} status messages; every hub run)"
    )
    print(
        f"RTSP server: {med('raw', 'server_cpu') * 100:.0f} % core during raw, "
        f"{med('hub', 'server_cpu') * 100:.0f} % during hub phases (its {n} encodes compete "
        "for the same 2 cores)"
    )


if __name__ == "__main__":
    main()
