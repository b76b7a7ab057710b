"""Live video latency benchmark: glass-to-glass and click-to-first-frame in Chromium, against a
bare PyAV client reading the same camera in the same run (issue 16).

Everything runs on loopback. The camera is the GStreamer RTSP test server's ``/clock`` mount
(``tests/fixtures/rtsp_server.py`` under Debian's ``/usr/bin/python3``): frames made by the
server's own Python (I420 320x240, 20 fps, live), each showing the wall-clock time at which it
was made (milliseconds since the epoch as 48 bits of large black/white blocks plus a 16-bit
check word), H.264 ``tune=zerolatency speed-preset=ultrafast``, a key frame every 40 frames
(2 s). The mount is shared and held open by the server itself, as a real camera keeps
encoding whether anybody watches or not. Every reader below decodes the stamp from the
picture it got, so latency is measured on the picture itself, with one clock (one machine).

Phases:

* **raw**: in this process, ``av.open(url)`` (RTSP over TCP, the hub's probe options),
  decoding every frame and reading the stamp from the decoded Y plane: **stamp → decoded**
  (the floor of encoder + RTSP + FFmpeg's demuxer and decoder, ``time.time()`` when the frame
  leaves the decoder), and ``--opens`` times **time to first frame**: from ``av.open`` to the
  first decoded picture whose stamp reads (a complete picture, as a browser shows from a key
  frame; the first frame FFmpeg outputs at all, gray where no key frame was seen yet, too),
  each open after a random 0-2 s pause (a client joins at a random point of the GOP: opened
  back to back, each would wait a whole GOP).
* **hub**, once per ``--fragments`` value (the hub's ``[video] fragment_duration``): a real hub
  in its own process (:func:`nabat.testing.run_hub` + ``run_api``, the console on it, a
  console operator, one ``rtsp.camera`` on ``/clock``), and Debian's Chromium driven by
  Playwright in this process, signed in as that operator:

  - **glass-to-glass**: the camera's large view (``/console/wall/<camera>``), once it plays
    and ``--warmup`` seconds on, for ``--duration`` seconds: ``requestVideoFrameCallback`` on
    the view's ``<video>``; each presented frame is drawn to a canvas and its stamp read;
    **latency = performance.timeOrigin + metadata.expectedDisplayTime - stamp** (the time the
    compositor expects the frame to be visible; ``presentationTime``, when it was handed to
    the compositor, is reported beside it). Also per frame: how much video the
    ``SourceBuffer`` holds ahead of the presented frame (``buffered.end - mediaTime``: the
    player's own buffering) and the ``waiting`` events (buffer ran dry: a stall) meanwhile.
  - **click to first frame**: on the wall (``/console/wall``), a click on the camera's tile,
    timed in the page from just before the click to the first frame the large view presents
    (its ``requestVideoFrameCallback``, ``presentationTime``), ``--clicks`` times each
    **cold** (the view closed and the hub's upstream gone: waited until the hub reports no
    upstream, ``[video] idle_close`` is ``IDLE_CLOSE`` s here, then a random pause of up to
    a GOP) and **warm** (the view closed
    and opened again ``WARM_GAP`` s later: the upstream still open, its last GOP sent at
    once). The stamp of that first frame gives its age; **click to first live frame** is
    the time to the first frame at most ``FRESH_S`` old (a warm view that first shows the
    cached GOP's old pictures is not live yet).

Reported: p50/p95/p99/max, and **ratio = hub figure / raw figure** (glass-to-glass p50 /
stamp-to-decoded p50; click-to-first-frame p50 / time-to-first-frame p50). Goals:
glass-to-glass p50 < 0.8 s and p99 < 1.5 s; click to first frame p50 < 1.5 s.

Run: ``uv run python bench/live_latency.py`` (fragment durations 0.5, 0.25, 0.1 and 1 s,
~9 min; with ``--clicks 8 --opens 10``, as in bench/README.md, ~12 min); ``--quick`` for a
smoke run (0.5 s only, 10 s measured, 3 clicks each, ~1.5 min); ``--fragments 0.5,0.1
--duration 60`` etc.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import random
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = ROOT / "tests" / "fixtures" / "rtsp_server.py"
MOUNT = "/clock"
CAMERA = "krd-clock"
LOGIN, PASSWORD = "latency", "correct horse battery"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as tests/core/console/test_browser.py launches it
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "500000", "probesize": "500000"}
IDLE_CLOSE = 2.0  # [video] idle_close: the cold clicks wait this long (and for the hub)
WARM_GAP = 0.5  # seconds between closing the view and the warm click
GOP_S = 2.0  # the /clock mount's key frame interval
FRESH_S = 1.0  # a frame at most this old is "live" (click to the first live frame)
CLICK_WAIT_S = 6.0  # after a click, a live frame is waited for this long
GOAL_P50_S, GOAL_P99_S, GOAL_CLICK_S = 0.8, 1.5, 1.5

# The /clock picture (tests/fixtures/rtsp_server.py, clock_frame): 8x8 blocks of 40x30
# pixels, row by row, 4 words of 16 bits, most significant bit first; the 4th word is the
# other three XORed with 0x5A5A.
COLS, ROWS, BW, BH, CHECK = 8, 8, 40, 30, 0x5A5A

HUB_CONFIG = """
[hub]
name = "bench-latency"
language = "ru"
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
idle_close = {idle_close}
fragment_duration = {fragment}
stall_timeout = 3.0
reconnect_initial = 0.2

[instances.{camera}]
kind = "rtsp.camera"
name = "Часы"
municipality = "krasnodar"
settings = {{ url = "{url}" }}
"""

# In the page: the stamp of what the video element shows, read from a canvas.
READ_JS = """
  const canvas = document.createElement('canvas');
  canvas.width = 320; canvas.height = 240;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const read = (v) => {
    ctx.drawImage(v, 0, 0, 320, 240);
    const d = ctx.getImageData(0, 0, 320, 240).data;
    const w = [0, 0, 0, 0];
    for (let i = 0; i < 64; i++) {
      const x = (i % 8) * 40 + 20, y = Math.floor(i / 8) * 30 + 15, p = (y * 320 + x) * 4;
      w[i >> 4] = (w[i >> 4] << 1) | (d[p] + d[p + 1] + d[p + 2] > 384 ? 1 : 0);
    }
    if (((w[0] ^ w[1] ^ w[2] ^ 0x5A5A) & 0xffff) !== w[3]) return null;
    return w[0] * 4294967296 + w[1] * 65536 + w[2];
  };
"""

GLASS_JS = (
    "async (seconds) => {"
    + READ_JS
    + """
  const v = document.querySelector('[data-testid=live-video] video');
  let waiting = 0;
  const onWaiting = () => { waiting++; };
  v.addEventListener('waiting', onWaiting);
  const q0 = v.getVideoPlaybackQuality();
  const skew = Date.now() - (performance.timeOrigin + performance.now());
  const samples = [];
  let unread = 0, frames = 0;
  return await new Promise((done) => {
    const end = performance.now() + seconds * 1000;
    const step = (now, meta) => {
      frames++;
      const stamp = read(v);
      const b = v.buffered;
      if (stamp === null) unread++;
      else samples.push([
        performance.timeOrigin + meta.expectedDisplayTime - stamp,
        performance.timeOrigin + meta.presentationTime - stamp,
        b.length ? b.end(b.length - 1) - meta.mediaTime : NaN,
      ]);
      if (now < end) { v.requestVideoFrameCallback(step); return; }
      v.removeEventListener('waiting', onWaiting);
      const q1 = v.getVideoPlaybackQuality();
      done({samples, unread, frames, waiting, skew, seconds,
            dropped: q1.droppedVideoFrames - q0.droppedVideoFrames,
            decoded: q1.totalVideoFrames - q0.totalVideoFrames});
    };
    v.requestVideoFrameCallback(step);
  });
}"""
)

CLICK_JS = (
    "async ([camera, fresh, wait]) => {"
    + READ_JS
    + """
  const tile = document.querySelector(`[data-testid="tile-${camera}"]`);
  if (!tile) throw new Error(`no tile for ${camera}`);
  return await new Promise((done, fail) => {
    let t0 = 0, seen = null, first = null;
    // No frame at all: an error; frames but none live within `wait`: fresh is null.
    const timer = setTimeout(() => {
      observer.disconnect();
      if (first) done({...first, fresh: null, freshAge: null});
      else fail(new Error('no frame within the time'));
    }, wait);
    const watch = () => {
      const v = document.querySelector('[data-testid=live-video] video');
      if (!v || v === seen) return;
      seen = v;
      const step = (now, meta) => {
        const stamp = read(v);
        const age = stamp === null ? null : performance.timeOrigin + meta.presentationTime - stamp;
        first = first || {first: meta.presentationTime - t0, age};
        if (age === null || age > fresh) { v.requestVideoFrameCallback(step); return; }
        clearTimeout(timer);
        observer.disconnect();
        done({...first, fresh: meta.presentationTime - t0, freshAge: age});
      };
      v.requestVideoFrameCallback(step);
    };
    const observer = new MutationObserver(watch);
    observer.observe(document.body, {childList: true, subtree: true});
    t0 = performance.now();
    tile.click();
    watch();
  });
}"""
)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline().strip()


class RtspServer:
    def __init__(self, work: Path) -> None:
        self.stderr = work / "rtsp-server.stderr"
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{MOUNT}"

    def __enter__(self) -> RtspServer:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            sys.exit(f"{SYSTEM_PYTHON} not found: the RTSP test server needs Debian's Python")
        with self.stderr.open("a") as err:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        line = _read_line(self.proc, 20.0)
        if not line.startswith("READY "):
            self.__exit__()
            sys.exit(f"the RTSP test server did not start: {self.stderr.read_text()[-500:]}")
        self.port = int(line.split()[1])
        time.sleep(2.0)  # its own clients (the anchors) are in and every mount encodes
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- raw: a bare PyAV client --------------------------------------------------------------------
def stamp_of(frame: Any) -> int | None:
    """The /clock stamp (ms since the epoch) a decoded frame shows, or None if it does not read
    (a picture decoded before any key frame, or torn)."""
    plane = frame.planes[0]
    data, stride = bytes(plane), plane.line_size
    words = [0, 0, 0, 0]
    for i in range(COLS * ROWS):
        y, x = (i // COLS) * BH + BH // 2, (i % COLS) * BW + BW // 2
        words[i >> 4] = (words[i >> 4] << 1) | (data[y * stride + x] > 128)
    if words[0] ^ words[1] ^ words[2] ^ CHECK != words[3]:
        return None
    return (words[0] << 32) | (words[1] << 16) | words[2]


def raw_first_frame(url: str) -> tuple[float, float]:
    """Seconds from ``av.open`` to the first decoded frame, and to the first one that reads."""
    import av

    time.sleep(random.uniform(0, GOP_S))  # joins at a random point of the camera's GOP
    t0 = time.perf_counter()
    first = None
    with av.open(url, options=IN_OPTIONS, timeout=(10.0, 5.0)) as container:
        for frame in container.decode(container.streams.video[0]):
            now = time.perf_counter() - t0
            first = now if first is None else first
            if stamp_of(frame) is not None:
                return first, now
    raise RuntimeError("raw: the stream ended before a readable frame")


def raw_latency(url: str, seconds: float) -> dict[str, Any]:
    """Stamp → decoded latency of every frame for ``seconds`` (after the first readable one)."""
    import av

    latencies: list[float] = []
    unread = 0
    with av.open(url, options=IN_OPTIONS, timeout=(10.0, 5.0)) as container:
        end = None
        for frame in container.decode(container.streams.video[0]):
            now_ms = time.time() * 1000
            stamp = stamp_of(frame)
            if stamp is None:
                unread += 1 if end is not None else 0
                continue
            end = end or time.monotonic() + seconds
            latencies.append((now_ms - stamp) / 1000)
            if time.monotonic() > end:
                break
    return {"latency": latencies, "unread": unread}


# -- the hub, in its own process ----------------------------------------------------------------
async def _hub(conn: Any, directory: str, url: str, fragment: float) -> None:
    from nabat.logs import configure_logging
    from nabat.runtime import apply_runtime_settings
    from nabat.testing import load_config_text, run_api, run_hub

    text = HUB_CONFIG.format(
        data_dir=Path(directory) / "data",
        idle_close=IDLE_CLOSE,
        fragment=fragment,
        camera=CAMERA,
        url=url,
    )
    loaded = load_config_text(text, Path(directory))
    loop = asyncio.get_running_loop()
    with (Path(directory) / "hub.log").open("a", encoding="utf-8") as log_file:
        configure_logging("info", "json", stream=log_file)  # as `nabat run` does, to a file
        apply_runtime_settings(loaded.config.hub)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            await server.state.console.users.create(
                LOGIN, PASSWORD, role="operator", name=LOGIN, municipalities=["krasnodar"]
            )
            conn.send(("ready", server.url))
            while True:
                message = await loop.run_in_executor(None, conn.recv)
                if message == "upstreams":
                    conn.send(len(hub.video.upstreams))
                elif message == "stop":
                    conn.send("stopped")
                    return


def hub_main(conn: Any, directory: str, url: str, fragment: float) -> None:
    asyncio.run(_hub(conn, directory, url, fragment))


class Hub:
    def __init__(self, work: Path, url: str, fragment: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.directory = Path(tempfile.mkdtemp(prefix="latency-hub-", dir=work))
        self.process = ctx.Process(
            target=hub_main, args=(child, str(self.directory), url, fragment), daemon=True
        )

    def ask(self, message: str, timeout: float = 30.0) -> Any:
        self.conn.send(message)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the hub did not answer {message!r} within {timeout:g} s")
        return self.conn.recv()

    def __enter__(self) -> Hub:
        self.process.start()
        if not self.conn.poll(120):
            raise RuntimeError("the hub did not start within 120 s")
        _, self.url = self.conn.recv()
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


# -- the browser ------------------------------------------------------------------------------
async def _signed_in(browser: Any, url: str) -> Any:
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(f"{url}/console/")
    await page.fill("input[name=login]", LOGIN)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.get_by_test_id("who")).to_be_visible()
    return page


async def _live(page: Any) -> None:
    from playwright.async_api import expect

    player = page.get_by_test_id("live-video")
    await expect(player).to_have_attribute("data-state", "live", timeout=30_000)


async def glass_to_glass(browser: Any, hub: Hub, args: argparse.Namespace) -> dict[str, Any]:
    page = await _signed_in(browser, hub.url)
    try:
        await page.goto(f"{hub.url}/console/wall/{CAMERA}")
        await _live(page)
        await asyncio.sleep(args.warmup)
        result = await page.evaluate(GLASS_JS, args.duration)
        result["errors"] = page.errors
        return result
    finally:
        await page.context.close()


async def _closed(page: Any) -> None:
    from playwright.async_api import expect

    await page.keyboard.press("Escape")
    await expect(page.get_by_test_id("camera-view")).to_have_count(0)


async def _click(page: Any) -> dict[str, Any]:
    return await page.evaluate(CLICK_JS, [CAMERA, FRESH_S * 1000, CLICK_WAIT_S * 1000])


async def clicks(browser: Any, hub: Hub, args: argparse.Namespace) -> dict[str, list[dict]]:
    page = await _signed_in(browser, hub.url)
    found: dict[str, list[dict]] = {"cold": [], "warm": []}
    try:
        await page.goto(f"{hub.url}/console/wall")
        await page.get_by_test_id(f"tile-{CAMERA}").wait_for()
        await asyncio.sleep(1.0)  # the wall's first snapshots are in
        for _ in range(args.clicks):
            # Cold: no upstream at the hub.
            deadline = time.monotonic() + IDLE_CLOSE + 15
            while await asyncio.to_thread(hub.ask, "upstreams"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the hub's upstream did not close")
                await asyncio.sleep(0.2)
            await asyncio.sleep(random.uniform(0.3, 0.3 + GOP_S))  # a random GOP phase
            found["cold"].append(await _click(page))
            await asyncio.sleep(1.0)
            await _closed(page)
            # Warm: back within idle_close, the upstream (and its last GOP) still there.
            await asyncio.sleep(WARM_GAP)
            assert await asyncio.to_thread(hub.ask, "upstreams") == 1
            found["warm"].append(await _click(page))
            await asyncio.sleep(1.0)
            await _closed(page)
        if page.errors:
            raise RuntimeError(f"errors in the page: {page.errors[:3]}")
        return found
    finally:
        await page.context.close()


async def measure_hub(
    browser: Any, rtsp: RtspServer, fragment: float, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    with Hub(work, rtsp.url, fragment) as hub:
        glass = await glass_to_glass(browser, hub, args)
        clicked = await clicks(browser, hub, args) if args.clicks else {"cold": [], "warm": []}
    return {"glass": glass, "clicks": clicked}


def describe_machine() -> str:
    import av

    load = os.getloadavg()
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout
    return (
        f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"CPython {platform.python_version()}, PyAV {av.__version__} "
        f"(FFmpeg {av.library_versions['libavformat']}), {chromium.strip()}, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


async def run(args: argparse.Namespace, work: Path) -> None:
    from playwright.async_api import async_playwright

    with RtspServer(work) as rtsp:
        # raw first, then the hub once per fragment duration.
        opens = [await asyncio.to_thread(raw_first_frame, rtsp.url) for _ in range(args.opens)]
        raw = await asyncio.to_thread(raw_latency, rtsp.url, args.duration)
        lat = raw["latency"]
        ttff = [o[1] for o in opens]
        print(
            f"raw: stamp→decoded p50 {_ms(pct(lat, 50))} ms p99 {_ms(pct(lat, 99))} ms "
            f"({len(lat)} frames); time to first readable frame p50 {_ms(pct(ttff, 50))} ms "
            f"(first frame at all p50 {_ms(pct([o[0] for o in opens], 50))} ms)",
            flush=True,
        )
        hubs: dict[float, dict[str, Any]] = {}
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for fragment in args.fragments:
                    r = await measure_hub(browser, rtsp, fragment, args, work)
                    if not rtsp.alive():
                        raise RuntimeError("the RTSP test server died")
                    hubs[fragment] = r
                    g = [s[0] for s in r["glass"]["samples"]]
                    cold = [c["first"] / 1000 for c in r["clicks"]["cold"]]
                    warm = [c["first"] / 1000 for c in r["clicks"]["warm"]]
                    print(
                        f"hub fragment_duration {fragment:g} s: glass-to-glass p50 "
                        f"{_ms(pct(g, 50) / 1000)} ms p99 {_ms(pct(g, 99) / 1000)} ms "
                        f"({len(g)} frames, {r['glass']['waiting']} stalls); click cold p50 "
                        f"{_ms(pct(cold, 50))} ms warm p50 {_ms(pct(warm, 50))} ms",
                        flush=True,
                    )
            finally:
                await browser.close()
    report(args, raw, opens, hubs)


def report(
    args: argparse.Namespace,
    raw: dict[str, Any],
    opens: list[tuple[float, float]],
    hubs: dict[float, dict[str, Any]],
) -> None:
    lat = raw["latency"]
    ttff = [o[1] for o in opens]
    raw_p50, raw_ttff = pct(lat, 50), pct(ttff, 50)

    def row(name: str, values: list[float], base: float, extra: str = "") -> str:
        return (
            f"| {name} | {len(values)} | {_ms(pct(values, 50))} | {_ms(pct(values, 95))} | "
            f"{_ms(pct(values, 99))} | {_ms(max(values, default=float('nan')))} | "
            f"{pct(values, 50) / base:.1f} | {extra} |"
        )

    print()
    print("| figure | n | p50 ms | p95 ms | p99 ms | max ms | ratio p50 / raw | notes |")
    print("| ------ | -: | -----: | -----: | -----: | -----: | --------------: | ----- |")
    print(row("raw: stamp → decoded (PyAV)", lat, raw_p50, f"{raw['unread']} unread"))
    print(
        row(
            "raw: av.open → first readable frame",
            ttff,
            raw_ttff,
            f"first frame at all p50 {_ms(pct([o[0] for o in opens], 50))} ms",
        )
    )
    for fragment, r in hubs.items():
        glass = r["glass"]
        g = [s[0] / 1000 for s in glass["samples"]]
        presented = [s[1] / 1000 for s in glass["samples"]]
        ahead = [s[2] for s in glass["samples"] if s[2] == s[2]]
        notes = (
            f"presentationTime p50 {_ms(pct(presented, 50))} ms; buffered ahead p50 "
            f"{_ms(pct(ahead, 50))} ms; {glass['waiting']} stalls, "
            f"{glass['frames'] / glass['seconds']:.1f} frames/s presented, "
            f"{glass['dropped']} dropped, {glass['unread']} unread; clock skew "
            f"{glass['skew']:.1f} ms"
        )
        print(row(f"glass-to-glass, fragment {fragment:g} s", g, raw_p50, notes))
        for kind in ("cold", "warm"):
            c = r["clicks"][kind]
            if not c:
                continue
            first = [x["first"] / 1000 for x in c]
            ages = [x["age"] / 1000 for x in c if x["age"] is not None]
            # A click without a live frame within CLICK_WAIT_S counts as that long.
            fresh = [(x["fresh"] or CLICK_WAIT_S * 1000) / 1000 for x in c]
            fresh_ages = [x["freshAge"] / 1000 for x in c if x["freshAge"] is not None]
            late = sum(1 for x in c if x["fresh"] is None)
            print(
                row(
                    f"click → first frame, {kind}, fragment {fragment:g} s",
                    first,
                    raw_ttff,
                    f"that frame's age p50 {_ms(pct(ages, 50))} ms",
                )
            )
            print(
                row(
                    f"click → first live frame (age ≤ {FRESH_S:g} s), {kind}, fragment "
                    f"{fragment:g} s",
                    fresh,
                    raw_ttff,
                    f"its age p50 {_ms(pct(fresh_ages, 50))} ms; {late} clicks without one "
                    f"within {CLICK_WAIT_S:g} s",
                )
            )
    print()
    print(
        "ratio: glass-to-glass / raw stamp→decoded, click→first frame / raw av.open→first "
        "readable frame (p50s). Glass-to-glass = performance.timeOrigin + "
        "expectedDisplayTime - stamp."
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for fragment, r in hubs.items():
        g = [s[0] / 1000 for s in r["glass"]["samples"]]
        cold = [x["first"] / 1000 for x in r["clicks"]["cold"]]
        warm = [x["first"] / 1000 for x in r["clicks"]["warm"]]
        line = (
            f"fragment_duration {fragment:g} s: glass-to-glass p50 {pct(g, 50):.2f} s (goal < "
            f"{GOAL_P50_S:g}: {verdict(pct(g, 50) < GOAL_P50_S)}), p99 {pct(g, 99):.2f} s "
            f"(goal < {GOAL_P99_S:g}: {verdict(pct(g, 99) < GOAL_P99_S)})"
        )
        if cold:
            both = pct(cold, 50) < GOAL_CLICK_S and pct(warm, 50) < GOAL_CLICK_S
            line += (
                f"; click to first frame p50 cold {pct(cold, 50):.2f} s, warm "
                f"{pct(warm, 50):.2f} s (goal < {GOAL_CLICK_S:g}: {verdict(both)})"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fragments",
        default="0.5,0.25,0.1,1.0",
        help="the hub's [video] fragment_duration values to measure, comma-separated",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of play first")
    parser.add_argument("--clicks", type=int, default=6, help="clicks each cold and warm")
    parser.add_argument("--opens", type=int, default=8, help="raw av.open → first frame runs")
    parser.add_argument("--quick", action="store_true", help="0.5 s fragments, 10 s, 3 clicks")
    args = parser.parse_args()
    if args.quick:
        args.fragments, args.duration, args.clicks, args.opens = "0.5", 10.0, 3, 3
    args.fragments = [float(f) for f in args.fragments.split(",") if f.strip()]
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    print(f"machine: {describe_machine()}")
    print(
        f"camera {MOUNT}: 320x240 20 fps H.264 zerolatency, GOP 2 s; fragment durations "
        f"{', '.join(f'{f:g}' for f in args.fragments)} s; {args.duration:g} s measured after "
        f"{args.warmup:g} s; {args.clicks} clicks cold and warm (idle_close {IDLE_CLOSE:g} s)"
    )
    started = time.perf_counter()
    try:
        asyncio.run(run(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"({time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
