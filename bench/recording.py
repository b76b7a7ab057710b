"""Recording capacity benchmark: the hub's recorder against a bare PyAV remux to files (issue 17).

Everything runs on loopback against the GStreamer RTSP test server, as ``bench/live_video.py``
does (``tests/fixtures/rtsp_server.py`` under Debian's ``/usr/bin/python3``): ``/live?cam=0``
... ``/live?cam=N-1`` are N independent pipelines (gst-rtsp-server keys shared media by the
whole URI), 320x240 at 10 fps, a key frame every 15 frames; an anchor process
(``rtspsrc ! fakesink`` per URL) holds every URL open for the whole run. Footage goes to a
directory under the system's temporary directory (a real disk here, so ``fsync`` is real).

Phases, alternating order between ``--repeats``:

* **raw**: one process, a thread per stream, no event loop: ``av.open(url)`` (RTSP over TCP),
  every packet muxed unchanged (``codec copy``) into FFmpeg's ``mp4`` muxer in fragmented mode
  (the hub's ``movflags`` and ``frag_duration``, as ``nabat/video/remux.py`` sets them). The
  muxer writes into a Python object; after each ``mux()`` the whole fragments it produced are
  written (``os.write``) to the stream's current file, and a new file (the init segment, then
  fragments) starts at the first fragment that begins with a key frame once the file is
  ``--segment`` seconds old. Nothing else: no hash, no sidecar, no ``fsync``, no index.
* **hub**: a real hub in its own process (:func:`nabat.testing.run_hub` and ``run_api``, the
  API on 127.0.0.1 port 0, one ``rtsp.camera`` per URL) with ``[recording]``
  (``segment_seconds = --segment``, the default ``sync_seconds``), one
  ``[[recording.storage]]`` and one continuous ``[[recording.policy]]`` selecting every camera:
  the recorder records each camera as a system viewer of the live restreamer, writing fMP4
  segments (SHA-256, a sidecar line per fragment, ``fsync`` every ``sync_seconds``) indexed in
  the journal (``hub.footage``). No live viewer. The recorder's start is deferred (the bench
  wraps ``Recorder.start``) until the hub's idle cost and RSS are measured. The hub's CPU is
  taken with none of the benchmark's probes running (CPU per thread group from
  ``/proc/self/task``); then, for ``PROBE_S`` more seconds while recording goes on, the
  event-loop lag probe and the bus probe of ``bench/live_video.py`` run inside the hub
  process (they cost the idle hub more than recording a dozen cameras: charged to the hub,
  they would distort the ratio).

Both phases: bytes/s written (the growth of the footage directory, every file counted, over
the measured window), segments finished in the window, and — while recording goes on, after
the window — **playback**: ``--playback`` requests, round-robin over the cameras, each timed
from the request to the first decoded frame (PyAV, in the benchmark's own process). For the
hub a request asks the hub process for the camera's newest finished segment
(``hub.footage.last``), then fetches it over HTTP
(``GET /api/v1/cameras/{id}/recordings/{start_us}.mp4``, a bearer token with
``cameras:read``, FFmpeg's HTTP client) when the hub serves that route, else opens the file
the index names; for raw it asks the raw process for the stream's newest finished file and
opens it. Gaps: the hub's index is walked for holes between a camera's consecutive segments
(longer than ``GAP_SLACK_S``, the playback API's slack) and its chain verified; raw counts
the longest pause between two packets.

**ratio = raw CPU per camera / hub CPU per camera**: 1.0 would mean the hub records for no
more than the bare remux costs; goal >= 0.8. Goals: loop lag p99 < 10 ms (bus publish p99
< 10 ms as in live_video), playback to first frame p50 < 1 s, no gap.

Run: ``uv run python bench/recording.py`` (64 cameras, 10 s segments, ~3 min);
``--quick`` for a smoke run (8 cameras, ~1 min); ``--cameras 96 --segment 20`` etc.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_video import (  # the same server, anchor and probes' helpers
    FRAG_OPTIONS,
    IN_OPTIONS,
    RtspServer,
    _cpu,
    _delta,
    _rss,
    _stat_cpu,
    _workers_cpu,
    pct,
)

GOAL_RATIO = 0.8
GOAL_LAG_MS = 10.0
GOAL_BUS_MS = 10.0
GOAL_PLAYBACK_S = 1.0
IDLE_S = 3.0  # the hub's idle CPU is measured this long before the recorder starts
PROBE_S = 10.0  # the loop-lag and bus probes run this long after the CPU window
STALL_S = 3.0  # a GOP is 1.5 s, fragments at most 0.5 s apart: 3 s without a packet is a stall
SEGMENT_ROUTE = "/api/v1/cameras/{camera_id}/recordings/{file}"
GAP_SLACK_S = 2.0  # as the playback API (nabat.api.routes.recordings): shorter is the rotation

HUB_CONFIG = """
[hub]
name = "bench-recording"
data_dir = "{data_dir}"
log_level = "info"
log_format = "json"
[api]
listen = "127.0.0.1:0"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.rtsp]
enabled = true
[video]
max_upstreams = {cameras}
{video_extra}
[recording]
segment_seconds = {segment}
[[recording.storage]]
path = "video"
quota_gb = 1000
min_free_gb = 0
[[recording.policy]]
name = "bench"
municipalities = ["sochi"]
retention_days = 7
"""


class _Server(RtspServer):
    """live_video's server and anchor, on ``mount`` (``/live``; ``/noise``: snow, a far
    higher bitrate from the same encoder)."""

    def __init__(self, work: Path, cameras: int, mount: str) -> None:
        super().__init__(work, cameras)
        self.mount = mount

    def urls(self) -> list[str]:
        return [f"rtsp://127.0.0.1:{self.port}{self.mount}?cam={i}" for i in range(self.cameras)]


def _camera(cid: str, url: str) -> str:
    return f"""
[instances.{cid}]
kind = "rtsp.camera"
municipality = "sochi"
settings = {{ url = "{url}" }}
"""


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per group of this process's threads: ``loop`` (the main thread),
    ``upstreams`` (remux threads here: raw's ``remux-*``, the hub's with ``[video] workers =
    0``), ``readers`` (the hub's side of each video worker: the recorder's taps run on
    them), ``writers`` (the storage paths' ``recording:*`` threads and the default
    executor's ``asyncio_*`` threads), ``other``; and ``workers``: the video worker processes."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    groups = {"loop": 0.0, "upstreams": 0.0, "readers": 0.0, "writers": 0.0, "other": 0.0}
    for tid in os.listdir("/proc/self/task"):
        cpu = _stat_cpu(f"/proc/self/task/{tid}/stat")
        name = names.get(int(tid), "")
        if int(tid) == main:
            group = "loop"
        elif name.startswith(("video:", "remux")):
            group = "upstreams"
        elif name == "video-worker-reader":
            group = "readers"  # the taps (the recorder's segment writes) run here
        elif name.startswith(("asyncio_", "recording:")):
            group = "writers"
        else:
            group = "other"
        groups[group] += cpu
    groups["workers"] = _workers_cpu()
    return groups


def _near(at: list[float], lags: list[float], adds: list[tuple[float, float]]) -> str:
    """How many lag samples over 10 ms began within 1 s of a segment being indexed (the
    cameras rotate together), and the index adds' own time: what a lag spike lines up with."""
    big = [t for t, lag in zip(at, lags, strict=True) if lag > 0.01]
    near = sum(1 for t in big if any(a - 1.0 <= t <= a + d + 0.1 for a, d in adds))
    window = [d for a, d in adds if at and at[0] <= a <= at[-1]]
    return (
        f"{near} of {len(big)} lag samples > 10 ms near an index add; "
        f"{len(window)} adds in the probe window, p50 {pct(window, 50) * 1000:.1f} ms"
    )


def _du(root: Path) -> tuple[int, int]:
    """(bytes, finished ``.mp4`` files) under ``root``: every file's size counted."""
    total = files = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:  # renamed or removed meanwhile
                continue
            files += name.endswith(".mp4")
    return total, files


def _media_times(path: Path) -> tuple[float, float, float]:
    """(first, last fragment's decode time in s, longest step between two fragments) of an
    fMP4 file, from the ``mdhd`` timescale and each ``moof``'s ``tfdt``: the media's own
    clock, whatever the index says."""
    data = path.read_bytes()
    at = data.find(b"mdhd") + 4
    version = data[at]
    scale = int.from_bytes(data[at + (20 if version else 12) : at + (24 if version else 16)])
    values = []
    found = data.find(b"tfdt")
    while found >= 0:
        at = found + 4
        v = data[at]
        values.append(int.from_bytes(data[at + 4 : at + (12 if v else 8)]) / scale)
        found = data.find(b"tfdt", at)
    steps = [b - a for a, b in itertools.pairwise(values)]
    return values[0], values[-1], max(steps, default=0.0)


def _media_holes(paths: list[Path]) -> tuple[float, float]:
    """(longest step of media time across a rotation, longest within a file) over one
    camera's consecutive segments: equal when no fragment went missing between files."""
    spans = [_media_times(p) for p in paths]
    across = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    return max(across, default=0.0), max((s[2] for s in spans), default=0.0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- raw: a bare PyAV remux to segment files, a thread per stream --------------------------------
class _Files:
    """The muxer's output file: after each ``mux()`` the whole boxes it wrote are cut at each
    ``moof`` and written to the current segment file; a new file (init segment first) starts
    at a fragment that begins with a key frame once the file is ``segment_s`` old."""

    def __init__(self, directory: Path, segment_s: float) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.segment_s = segment_s
        self.pending = bytearray()
        self.init = b""
        self.fd = -1
        self.opened = 0.0
        self.path: Path | None = None
        self.finished: list[Path] = []
        self.spans: list[float] = []
        self.fragments = 0

    def write(self, data: Any) -> int:
        self.pending += data
        return len(data)

    def take(self, key: bool) -> None:
        """The fragment(s) the last ``mux()`` completed; ``key``: the first starts with a key
        frame (the first packet muxed since the previous output was one)."""
        buf = self.pending
        at, starts = 0, []
        while at + 8 <= len(buf):
            size = int.from_bytes(buf[at : at + 4], "big")
            if size < 8:
                raise ValueError(f"malformed MP4 box of size {size}")
            if at + size > len(buf):
                break  # a partial box: kept for the next call
            if buf[at + 4 : at + 8] == b"moof":
                starts.append(at)
            at += size
        whole = bytes(buf[:at])
        del buf[:at]
        if not self.init:
            first = starts[0] if starts else len(whole)
            self.init, whole = whole[:first], whole[first:]
            starts = [s - first for s in starts]
        for j, start in enumerate(starts):
            end = starts[j + 1] if j + 1 < len(starts) else len(whole)
            self._fragment(whole[start:end], key and j == 0)

    def _fragment(self, data: bytes, key: bool) -> None:
        now = time.monotonic()
        if key and (self.fd < 0 or now - self.opened >= self.segment_s):
            if self.fd >= 0:
                self.spans.append(now - self.opened)
            self.close()
            self.path = self.dir / f"{len(self.finished):05d}.mp4"
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            self.opened = now
            _write_all(self.fd, self.init)
        if self.fd >= 0:  # a file starts at a key frame
            _write_all(self.fd, data)
            self.fragments += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            assert self.path is not None
            self.finished.append(self.path)


@dataclass
class _RawStream:
    out: _Files
    packets: int = 0
    last: float = 0.0
    gap: float = 0.0
    error: str = ""
    first: threading.Event = field(default_factory=threading.Event)


def _remux(url: str, state: _RawStream, stop: threading.Event, measuring: threading.Event) -> None:
    import av

    try:
        inp = av.open(url, options=IN_OPTIONS, timeout=(10.0, 5.0))
        video = inp.streams.video[0]
        out = av.open(state.out, "w", format="mp4", options=FRAG_OPTIONS)
        ost = out.add_stream_from_template(video)
        last_dts: int | None = None
        keys: list[bool] = []
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
            key = bool(packet.is_keyframe)
            packet.stream = ost
            out.mux(packet)
            if state.out.pending:
                state.out.take(bool(keys and keys[0]))
                keys = []
            keys.append(key)
            now = time.perf_counter()
            if measuring.is_set():
                state.gap = max(state.gap, now - state.last)
            state.last = now
            state.packets += 1
            state.first.set()
    except Exception as exc:
        state.error = repr(exc)
        state.first.set()
    finally:
        state.out.close()


def raw_main(conn: Any, directory: str, urls: list[str], segment_s: float) -> None:
    import av  # noqa: F401  (imported before the RSS baseline)

    root = Path(directory)
    stop, measuring = threading.Event(), threading.Event()
    states = [_RawStream(_Files(root / f"cam-{i:03d}", segment_s)) for i in range(len(urls))]
    rss0 = _rss()
    threads = [
        threading.Thread(
            target=_remux, args=(u, s, stop, measuring), name=f"remux-{i}", daemon=True
        )
        for i, (u, s) in enumerate(zip(urls, states, strict=True))
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for s in states:
        s.first.wait(max(0.0, deadline - time.monotonic()))
    conn.send(("ready", [s.error for s in states if s.error]))
    mark: dict[str, Any] = {}
    while True:
        message = conn.recv()
        if message == "start":
            mark = {
                "du": _du(root),
                "packets": sum(s.packets for s in states),
                "finished": sum(len(s.out.finished) for s in states),
            }
            for s in states:
                s.last = time.perf_counter()
            mark.update(t0=time.perf_counter(), c0=_cpu(), th0=_thread_cpu())
            measuring.set()
            conn.send("started")
        elif message == "measure":
            c1, t1, th1 = _cpu(), time.perf_counter(), _thread_cpu()
            measuring.clear()
            end = time.perf_counter()
            size, _ = _du(root)
            gaps = [max(s.gap, end - s.last) for s in states]
            conn.send(
                {
                    "cpu": c1 - mark["c0"],
                    "wall": t1 - mark["t0"],
                    "threads": _delta(mark["th0"], th1),
                    "bytes": size - mark["du"][0],
                    "packets": sum(s.packets for s in states) - mark["packets"],
                    "segments": sum(len(s.out.finished) for s in states) - mark["finished"],
                    "fragments": sum(s.out.fragments for s in states),
                    "segment_s": statistics.mean(x for s in states for x in s.out.spans),
                    "rss_delta": _rss() - rss0,
                    "max_gap": max(gaps),
                    "stalled": sum(1 for g in gaps if g > STALL_S),
                    "errors": [s.error for s in states if s.error],
                }
            )
        elif isinstance(message, tuple) and message[0] == "newest":
            finished = states[message[1]].out.finished
            conn.send(str(finished[-1]) if finished else None)
        elif message == "stop":
            stop.set()
            conn.send("stopped")
            return


# -- hub: a real hub recording, probes inside ----------------------------------------------------
async def _hub(conn: Any, directory: str, urls: list[str], segment_s: float) -> None:
    from nabat.logs import configure_logging
    from nabat.recording import recorder as recorder_module
    from nabat.runtime import apply_runtime_settings
    from nabat.testing import load_config_text, run_api, run_hub
    from workload import make_events

    # The recorder starts with the hub; the bench starts it itself once the hub's idle cost
    # and RSS are measured (the hub's code is unchanged: the start is only deferred).
    deferred: list[Any] = []
    real_start = recorder_module.Recorder.start

    async def deferred_start(self: Any) -> None:
        deferred.append(self)

    recorder_module.Recorder.start = deferred_start  # type: ignore[method-assign]

    data = Path(directory) / "data"
    text = HUB_CONFIG.format(
        data_dir=data,
        cameras=len(urls),
        segment=segment_s,
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
            recorder = hub.recorder
            adds: list[tuple[float, float]] = []  # (start, seconds) of each index add
            real_add = recorder.index.add

            async def timed_add(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return await real_add(*a, **k)
                finally:
                    adds.append((t, time.perf_counter() - t))

            recorder.index.add = timed_add  # type: ignore[method-assign]
            storage = recorder.storages[0]
            conn.send(("ready", server.url, secret))
            lags: list[float] = []
            cpu_waits: list[float] = []
            """Per lag sample: how long the loop's thread waited for a CPU (the machine's
            other runnable threads: the RTSP server's, the upstreams')."""
            net_lags: list[float] = []
            lag_at: list[float] = []
            bus: list[float] = []
            measuring = asyncio.Event()
            sent: dict[str, float] = {}

            def on_probe(event: Any) -> None:
                bus.append(time.perf_counter() - sent.pop(event.id))

            hub.bus.subscribe("bench.probe", on_probe, name="bench-probe")
            template = make_events(1)[0].replace(type="bench.probe")

            schedstat = f"/proc/self/task/{threading.get_native_id()}/schedstat"

            def runqueue_wait() -> float:
                """Seconds the loop's thread has waited for a CPU (runnable, not running)."""
                with open(schedstat) as f:
                    return int(f.read().split()[1]) / 1e9

            async def lag_probe() -> None:
                await measuring.wait()
                while measuring.is_set():
                    t, w = time.perf_counter(), runqueue_wait()
                    await asyncio.sleep(0.01)
                    lag = time.perf_counter() - t - 0.01
                    lags.append(lag)
                    lag_at.append(t)
                    cpu_waits.append(runqueue_wait() - w)
                    net_lags.append(max(0.0, lag - cpu_waits[-1]))

            async def bus_probe() -> None:
                await measuring.wait()
                i = 0
                while measuring.is_set():
                    i += 1
                    event = template.replace(id=f"probe-{i}")
                    sent[event.id] = time.perf_counter()
                    await hub.bus.publish(event)
                    await asyncio.sleep(0.02)

            async def segments() -> list[Any]:
                return [s async for s in hub.footage.all()]

            result: dict[str, Any] = {}
            rss0 = _rss()
            while True:
                message = await loop.run_in_executor(None, conn.recv)
                if message == "idle":  # the hub's own cost, not recording, no probe
                    c0, t0 = _cpu(), time.perf_counter()
                    await asyncio.sleep(IDLE_S)
                    c1, t1 = _cpu(), time.perf_counter()
                    rss0 = _rss()
                    conn.send((c1 - c0) / (t1 - t0))
                elif message == "record":
                    await real_start(deferred[0])
                    conn.send("recording")
                elif message == "states":
                    conn.send([c["state"] for c in recorder.status()])
                elif message == "start":  # the CPU window: recording, no probe
                    result = {
                        "du": await asyncio.to_thread(_du, storage.root),
                        "segments0": len(await segments()),
                        "dropped0": hub.video.dropped,
                        "reconnects0": hub.video.reconnects,
                        "utc0": datetime.now(UTC),
                    }
                    result.update(t0=time.perf_counter(), c0=_cpu(), th0=_thread_cpu())
                    conn.send("started")
                elif message == "measure":
                    c1, t1, th1 = _cpu(), time.perf_counter(), _thread_cpu()
                    size, _ = await asyncio.to_thread(_du, storage.root)
                    in_window = len(await segments())
                    # The probe window: recording goes on, loop lag and bus latency measured.
                    tasks = [loop.create_task(lag_probe()), loop.create_task(bus_probe())]
                    measuring.set()
                    await asyncio.sleep(PROBE_S)
                    measuring.clear()
                    await asyncio.gather(*tasks)
                    await asyncio.sleep(0.1)  # the last probe events are delivered
                    found = await segments()
                    by_camera: dict[str, list[Any]] = {}
                    for s in found:
                        by_camera.setdefault(s.camera, []).append(s)
                    holes = []
                    for items in by_camera.values():
                        items.sort(key=lambda s: s.start)
                        holes += [
                            (b.start - a.end).total_seconds() for a, b in itertools.pairwise(items)
                        ]
                    media = [
                        await asyncio.to_thread(
                            _media_holes, [storage.root / s.name for s in items]
                        )
                        for items in by_camera.values()
                    ]
                    broken = 0
                    for camera in by_camera:
                        broken += len(await hub.footage.verify_chain(camera))
                    conn.send(
                        {
                            "cpu": c1 - result["c0"],
                            "wall": t1 - result["t0"],
                            "threads": _delta(result["th0"], th1),
                            "bytes": size - result["du"][0],
                            "segments": in_window - result["segments0"],
                            "segments_total": len(found),
                            "fragments": sum(s.fragments for s in found),
                            "recorded_s": sum((s.end - s.start).total_seconds() for s in found),
                            "segment_s": statistics.mean(
                                (s.end - s.start).total_seconds() for s in found
                            ),
                            "cameras_with_segments": len(by_camera),
                            "hole_max": max(holes, default=0.0),
                            "hole_p50": pct(holes, 50),
                            "gaps": sum(1 for h in holes if h > GAP_SLACK_S),
                            "media_across": max(m[0] for m in media),
                            "media_within": max(m[1] for m in media),
                            "chain_problems": broken,
                            "states": [c["state"] for c in recorder.status()],
                            "rss_delta": _rss() - rss0,
                            "lag_p50": pct(lags, 50),
                            "lag_p99": pct(lags, 99),
                            "lag_max": max(lags, default=float("nan")),
                            "cpu_wait_p99": pct(cpu_waits, 99),
                            "net_lag_p99": pct(net_lags, 99),
                            "lags_near_adds": _near(lag_at, lags, adds),
                            "bus_p50": pct(bus, 50),
                            "bus_p99": pct(bus, 99),
                            "bus_n": len(bus),
                            "upstreams": len(hub.video.upstreams),
                            "dropped": hub.video.dropped - result["dropped0"],
                            "reconnects": hub.video.reconnects - result["reconnects0"],
                        }
                    )
                elif isinstance(message, tuple) and message[0] == "newest":
                    segment = await hub.footage.last(message[1])
                    if segment is None:
                        conn.send(None)
                    else:
                        root = next(s.root for s in recorder.storages if s.name == segment.storage)
                        start_us = segment.key.rsplit("/", 1)[1]
                        conn.send((start_us, str(root / segment.name)))
                elif message == "stop":
                    conn.send("stopped")
                    return


def hub_main(conn: Any, directory: str, urls: list[str], segment_s: float) -> None:
    asyncio.run(_hub(conn, directory, urls, segment_s))


class _Phase:
    """A raw or hub process, driven through a pipe."""

    def __init__(self, target: Any, args: tuple, work: Path, prefix: str) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.directory = Path(tempfile.mkdtemp(prefix=prefix, dir=work))
        self.process = ctx.Process(
            target=target, args=(child, str(self.directory), *args), daemon=True
        )

    def ask(self, message: Any, timeout: float = 60.0) -> Any:
        self.conn.send(message)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"no answer to {message!r} within {timeout:g} s")
        return self.conn.recv()

    def __enter__(self) -> _Phase:
        self.process.start()
        if not self.conn.poll(120):
            raise RuntimeError("the process did not start within 120 s")
        self.hello = self.conn.recv()
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
            if not os.environ.get("BENCH_KEEP"):
                shutil.rmtree(self.directory, ignore_errors=True)


# -- playback: request to first decoded frame -----------------------------------------------------
def _first_frame(source: str, options: dict[str, str] | None = None) -> None:
    import av

    with av.open(source, options=options or {}, timeout=10.0) as container:
        for _ in container.decode(video=0):
            return
    raise RuntimeError(f"no frame in {source}")


def playback(phase: _Phase, n: int, cameras: int, hub_url: str = "", token: str = "") -> dict:
    """``n`` requests, round-robin over the cameras: (newest finished segment) -> first frame."""
    times: list[float] = []
    lookups: list[float] = []
    failures: list[str] = []
    mode = "file"
    if hub_url:  # does the hub serve the segment route? (another engineer is adding it)
        import httpx

        schema = httpx.get(
            f"{hub_url}/schema/openapi.json",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        ).json()
        if SEGMENT_ROUTE in schema.get("paths", {}):
            mode = "http"
    options = {"headers": f"Authorization: Bearer {token}\r\n"} if mode == "http" else None
    for i in range(n):
        cam = i % cameras
        t0 = time.perf_counter()
        found = phase.ask(("newest", f"cam-{cam:03d}" if hub_url else cam))
        lookups.append(time.perf_counter() - t0)
        if found is None:
            raise RuntimeError(f"camera {cam} has no finished segment yet")
        if not hub_url:
            source = found
        elif mode == "http":
            source = f"{hub_url}/api/v1/cameras/cam-{cam:03d}/recordings/{found[0]}.mp4"
        else:
            source = found[1]
        try:
            _first_frame(source, options)
        except Exception as exc:  # a request that fails (or times out, 10 s) is counted
            failures.append(f"{source}: {exc!r}")
            continue
        times.append(time.perf_counter() - t0)
    return {
        "mode": mode,
        "failures": failures,
        "p50": pct(times, 50),
        "p99": pct(times, 99),
        "max": max(times, default=float("nan")),
        "lookup_p50": pct(lookups, 50),
        "n": n,
    }


# -- the phases ------------------------------------------------------------------------------------
def measure_raw(urls: list[str], args: argparse.Namespace, work: Path) -> dict:
    with _Phase(raw_main, (urls, args.segment), work, "rec-raw-") as raw:
        _, errors = raw.hello
        if errors:
            raise RuntimeError(f"raw remux: {len(errors)} streams failed: {errors[:3]}")
        time.sleep(args.warmup)
        raw.ask("start")
        time.sleep(args.duration)
        result = raw.ask("measure")
        result["playback"] = playback(raw, args.playback, len(urls))
    if result["errors"]:
        raise RuntimeError(
            f"raw remux: {len(result['errors'])} streams failed: {result['errors'][:3]}"
        )
    return result


def measure_hub(urls: list[str], args: argparse.Namespace, work: Path) -> dict:
    with _Phase(hub_main, (urls, args.segment), work, "rec-hub-") as hub:
        _, url, token = hub.hello
        idle = hub.ask("idle")
        hub.ask("record")
        deadline = time.monotonic() + 60
        while True:
            states = hub.ask("states")
            if len(states) == len(urls) and all(s == "recording" for s in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every camera is recording: {states}")
            time.sleep(0.5)
        time.sleep(args.warmup)
        hub.ask("start")
        time.sleep(args.duration)
        result = hub.ask("measure", 120)
        result["idle"] = idle
        result["playback"] = playback(hub, args.playback, len(urls), url, token)
        log = (hub.directory / "hub.log").read_text(errors="replace").splitlines()
        result["log_warnings"] = sum(
            1
            for line in log
            if '"recording.' in line and ('"warning"' in line or '"error"' in line)
        )
    return result


def describe_machine() -> str:
    import av

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()
    return (
        f"{model}, nproc {os.cpu_count()}, CPython {platform.python_version()}, PyAV "
        f"{av.__version__} (FFmpeg {av.library_versions['libavformat']}), load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=64, help="RTSP streams recorded")
    parser.add_argument("--segment", type=float, default=10.0, help="segment_seconds (>= 5)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--playback", type=int, default=100, help="playback requests per phase")
    parser.add_argument("--repeats", type=int, default=2, help="runs per phase (median)")
    parser.add_argument(
        "--mount", default="/fanout", help="the test server's mount: /fanout, /live, /noise"
    )
    parser.add_argument("--quick", action="store_true", help="8 cameras, 5 s segments, once")
    args = parser.parse_args()
    if args.quick:
        args.cameras, args.segment, args.duration, args.warmup = 8, 5.0, 15.0, 3.0
        args.playback, args.repeats = 24, 1
    if args.duration <= args.segment:
        parser.error("--duration must exceed --segment (playback needs finished segments)")
    n = args.cameras
    work = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    print(f"machine: {describe_machine()}")
    print(
        f"{n} cameras ({args.mount}?cam=0..{n - 1}: 320x240 10 fps H.264 RTSP media "
        "pipelines), "
        f"{args.segment:g} s segments; {args.warmup:g} s warm-up + {args.duration:g} s measured "
        f"per phase, {args.playback} playback requests, median of {args.repeats}; footage "
        f"under {work}"
    )
    kinds = ["raw", "hub"]
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    started = time.perf_counter()
    try:
        with _Server(work, n, args.mount) as rtsp:
            urls = rtsp.urls()
            for rep in range(args.repeats):
                order = kinds if rep % 2 == 0 else kinds[::-1]
                for kind in order:
                    s0, w0 = rtsp.cpu(), time.perf_counter()
                    load = os.getloadavg()[0]
                    if kind == "raw":
                        r = measure_raw(urls, args, work)
                    else:
                        r = measure_hub(urls, args, work)
                    r["server_cpu"] = (rtsp.cpu() - s0) / (time.perf_counter() - w0)
                    r["load"] = load
                    if not rtsp.alive():
                        raise RuntimeError("the RTSP test server or its anchor died")
                    runs[kind].append(r)
                    per = r["cpu"] / r["wall"] / n * 100
                    split = "  ".join(
                        f"{k} {v / r['wall'] * 100:.1f}" for k, v in r["threads"].items()
                    )
                    pb = r["playback"]
                    extra = (
                        f"\n           lag p99 {r['lag_p99'] * 1000:.1f} ms (CPU wait p99 "
                        f"{r['cpu_wait_p99'] * 1000:.1f}, net {r['net_lag_p99'] * 1000:.1f}; "
                        f"{r['lags_near_adds']})"
                        "  bus p99 "
                        f"{r['bus_p99'] * 1000:.2f} ms  holes max {r['hole_max']:.2f} s  "
                        f"gaps {r['gaps']}  media step across files {r['media_across']:.2f} s "
                        f"(within {r['media_within']:.2f})  dropped {r['dropped']}  reconnects "
                        f"{r['reconnects']}  chain problems {r['chain_problems']}"
                        if kind == "hub"
                        else f"\n           max packet gap {r['max_gap']:.2f} s  stalled "
                        f"{r['stalled']}"
                    )
                    print(
                        f"  rep {rep + 1} {kind:4}: {per:5.2f} % core/camera  "
                        f"{r['bytes'] / r['wall'] / 1e6:6.3f} MB/s written  {r['segments']} "
                        f"segments  playback ({pb['mode']}) p50 {pb['p50'] * 1000:.0f} ms p99 "
                        f"{pb['p99'] * 1000:.0f} ms ({len(pb['failures'])} failed)  RTSP server "
                        f"{r['server_cpu'] * 100:.0f} % "
                        f"core  load {load:.2f}{extra}\n           threads (% core): {split}",
                        flush=True,
                    )
    finally:
        if os.environ.get("BENCH_KEEP"):  # to read the hub's log after a failed run
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"({time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    def med_pb(kind: str, key: str) -> float:
        return statistics.median(r["playback"][key] for r in runs[kind])

    def cpu(kind: str) -> float:
        return statistics.median(r["cpu"] / r["wall"] for r in runs[kind]) / n

    def rate(kind: str, key: str) -> float:
        return statistics.median(r[key] / r["wall"] for r in runs[kind])

    raw_cpu, hub_cpu = cpu("raw"), cpu("hub")
    ratio = raw_cpu / hub_cpu
    idle = med("hub", "idle")
    hub_net = hub_cpu - idle / n
    print()
    print(
        "| variant | cameras | CPU % core/camera | RSS MiB/camera | MB/s written | "
        "segments/min | playback p50 ms | playback p99 ms | ratio |"
    )
    print(
        "| ------- | ------: | ----------------: | -------------: | -----------: | "
        "-----------: | --------------: | --------------: | ----: |"
    )
    for kind in kinds:
        c = cpu(kind)
        print(
            f"| {kind:7} | {n:7} | {c * 100:17.2f} | {med(kind, 'rss_delta') / n / 2**20:14.2f} | "
            f"{rate(kind, 'bytes') / 1e6:12.3f} | {rate(kind, 'segments') * 60:12.1f} | "
            f"{med_pb(kind, 'p50') * 1000:15.0f} | {med_pb(kind, 'p99') * 1000:15.0f} | "
            f"{raw_cpu / c:5.2f} |"
        )
    print()
    hubs = runs["hub"]
    mode = hubs[0]["playback"]["mode"]
    print(
        "ratio = raw CPU per camera / hub CPU per camera; CPU = the process's user+system time "
        "over wall time, in % of one core; playback = request to first decoded frame "
        f"(hub: index lookup + {'GET over HTTP' if mode == 'http' else 'the file it names'}; "
        f"lookup alone p50 {med_pb('hub', 'lookup_p50') * 1000:.1f} ms)"
    )
    print(
        f"hub idle (API, bus, not recording): {idle * 100:.1f} % core; net of it "
        f"{hub_net * 100:.2f} % core/camera, ratio {raw_cpu / hub_net:.2f}"
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lag = med("hub", "lag_p99") * 1000
    bus = med("hub", "bus_p99") * 1000
    pb50 = med_pb("hub", "p50")
    gaps = sum(r["gaps"] for r in hubs)
    print(f"CPU ratio {ratio:.2f}; goal >= {GOAL_RATIO}: {verdict(ratio >= GOAL_RATIO)}")
    print(
        f"event-loop lag p99 {lag:.1f} ms (p50 {med('hub', 'lag_p50') * 1000:.1f}, max "
        f"{med('hub', 'lag_max') * 1000:.1f}); goal < {GOAL_LAG_MS:g} ms: "
        f"{verdict(lag < GOAL_LAG_MS)}"
    )
    print(
        f"  of it, the loop's thread waiting for a CPU (schedstat): p99 "
        f"{med('hub', 'cpu_wait_p99') * 1000:.1f} ms; lag net of that wait p99 "
        f"{med('hub', 'net_lag_p99') * 1000:.1f} ms"
    )
    print(
        f"bus publish-to-handler p99 {bus:.2f} ms (p50 {med('hub', 'bus_p50') * 1000:.2f}, "
        f"{statistics.median(r['bus_n'] for r in hubs):.0f} events); goal < "
        f"{GOAL_BUS_MS:g} ms: {verdict(bus < GOAL_BUS_MS)}"
    )
    print(
        f"playback to first frame p50 {pb50 * 1000:.0f} ms (raw {med_pb('raw', 'p50') * 1000:.0f}"
        f" ms; p99 {med_pb('hub', 'p99') * 1000:.0f}, raw {med_pb('raw', 'p99') * 1000:.0f}; "
        f"{sum(len(r['playback']['failures']) for r in hubs)} hub and "
        f"{sum(len(r['playback']['failures']) for r in runs['raw'])} raw requests failed); "
        f"goal < {GOAL_PLAYBACK_S:g} s: {verdict(pb50 < GOAL_PLAYBACK_S)}"
    )
    print(
        f"no gap: {verdict(gaps == 0)} ({gaps} holes > {GAP_SLACK_S:g} s between consecutive "
        f"segments; longest hole {max(r['hole_max'] for r in hubs):.2f} s, median "
        f"{med('hub', 'hole_p50'):.2f} s; {sum(r['dropped'] for r in hubs)} fragments skipped, "
        f"{sum(r['reconnects'] for r in hubs)} upstream reconnects, "
        f"{sum(r['chain_problems'] for r in hubs)} chain problems, "
        f"{sum(r['log_warnings'] for r in hubs)} recording warnings logged; in the files' own "
        f"media time (tfdt) the longest step across a rotation is "
        f"{max(r['media_across'] for r in hubs):.2f} s, within a file "
        f"{max(r['media_within'] for r in hubs):.2f} s; "
        f"raw: longest "
        f"pause between packets {max(r['max_gap'] for r in runs['raw']):.2f} s; every hub run)"
    )
    fr_hub = statistics.median(r["fragments"] / r["recorded_s"] for r in hubs)
    print(
        f"segments: hub {med('hub', 'segments'):.0f} finished per window, "
        f"{med('hub', 'segment_s'):.1f} s long as indexed (start to last fragment's arrival) "
        f"({statistics.median(r['segments_total'] for r in hubs):.0f} indexed per run, "
        f"{fr_hub:.2f} fragments per recorded second); raw {med('raw', 'segments'):.0f}, "
        f"{med('raw', 'segment_s'):.1f} s from file to file"
    )
    print(
        f"RTSP server: {med('raw', 'server_cpu') * 100:.0f} % core during raw, "
        f"{med('hub', 'server_cpu') * 100:.0f} % during hub phases (its {n} encodes compete "
        "for the same 2 cores); load average at each phase's start: "
        + ", ".join(f"{r['load']:.2f}" for kind in kinds for r in runs[kind])
    )


if __name__ == "__main__":
    main()
