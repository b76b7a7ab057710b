"""Live video in a real browser: Debian's Chromium (Playwright) plays a camera of the GStreamer
RTSP test server in the console's large view through Media Source Extensions.

Playback is asserted from the video element itself (decoded frames rising, ``currentTime``
advancing), not from the page's own flags; two browsers on one camera share one upstream; an
operator of another district is refused; a hidden tab and a closed view stop the stream, and
the upstream closes after the last viewer. Screenshots go to ``test-artifacts/console/``."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from nabat.testing import eventually, load_config_text, run_api, run_hub

# The console's browser test's launch arguments, skip rule and screenshots (tests here are not
# a package: loaded by path).
_spec = importlib.util.spec_from_file_location(
    "_console_browser", Path(__file__).with_name("test_browser.py")
)
_browser = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_browser)
CHROMIUM, CHROMIUM_ARGS, PASSWORD = _browser.CHROMIUM, _browser.CHROMIUM_ARGS, _browser.PASSWORD
_browser_or_skip, shot = _browser._browser_or_skip, _browser.shot


def config(rtsp_server) -> str:
    return f"""
[hub]
language = "ru"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.rtsp]
[video]
idle_close = 0.5
stall_timeout = 3.0
reconnect_initial = 0.2

[instances.krd-live]
kind = "rtsp.camera"
name = "Красная, 1"
municipality = "krasnodar"
settings = {{ url = "{rtsp_server.url("/live")}" }}

[instances.sochi-live]
kind = "rtsp.camera"
name = "Сочи, Морской вокзал"
municipality = "sochi"
settings = {{ url = "{rtsp_server.url("/noise")}" }}
"""


# What the video element itself says: frames decoded, the playhead, what is buffered.
PLAYBACK = """() => {
  const v = document.querySelector('[data-testid=live-video] video');
  if (!v) return null;
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
  const b = v.buffered;
  return {
    frames: q ? q.totalVideoFrames : v.webkitDecodedFrameCount,
    time: v.currentTime,
    width: v.videoWidth,
    paused: v.paused,
    buffered: b.length ? b.end(b.length - 1) - b.start(0) : 0,
    ranges: Array.from({length: b.length}, (_, i) => [b.start(i), b.end(i)]),
    ready: v.readyState,
  };
}"""


# The tab hidden or shown, as Page Visibility tells the page when the operator switches tabs.
HIDE = """(hidden) => {
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


async def _playback(page) -> dict:
    found = await page.evaluate(PLAYBACK)
    assert found is not None, "no video element in the large view"
    return found


async def _plays(page) -> dict:
    """Waits for frames to be decoded, then checks they keep coming and time moves on."""
    for _ in range(150):
        first = await _playback(page)
        if first["frames"] > 5 and first["time"] > 0:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the video did not start: {first}")
    # Then frames keep coming and the playhead moves on. A camera's snapshot taken meanwhile
    # (the wall's tiles) can hold the shared RTSP stream up a few seconds: allow for it.
    for _ in range(100):
        await asyncio.sleep(0.1)
        later = await _playback(page)
        if later["frames"] >= first["frames"] + 10 and later["time"] >= first["time"] + 1.0:
            break
    else:
        raise AssertionError(f"the video does not play on: {first} -> {later}")
    assert later["width"] == 320 and not later["paused"]
    return later


async def _metric(server, token: str, name: str) -> float:
    import httpx

    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
    response.raise_for_status()
    for line in response.text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_the_large_view_plays_live_video_from_one_shared_upstream(tmp_path, rtsp_server):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    loaded = load_config_text(config(rtsp_server), tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users = server.state.console.users
        for login, town in (
            ("ivanova", "krasnodar"),
            ("smirnov", "krasnodar"),
            ("orlova", "sochi"),
        ):
            await users.create(login, PASSWORD, role="operator", name=login, municipalities=[town])
        ops, _ = await server.state.tokens.create("ops", ["ops:read"])
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            errors: list[str] = []

            async def signed_in(login: str):
                context = await browser.new_context(viewport={"width": 1400, "height": 900})
                page = await context.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(f"{server.url}/console/")
                await page.fill("input[name=login]", login)
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await expect(page.get_by_test_id("who")).to_be_visible()
                return page

            try:
                # The browser can play what the hub sends (H.264 from the test server).
                one = await signed_in("ivanova")
                assert await one.evaluate(
                    """() => MediaSource.isTypeSupported('video/mp4; codecs="avc1.640028"')"""
                )
                await one.get_by_test_id("nav-wall").click()
                await one.get_by_test_id("tile-krd-live").click()
                view = one.get_by_test_id("camera-view")
                player = view.get_by_test_id("live-video")
                await expect(player).to_have_attribute("data-state", "live", timeout=20_000)
                await expect(view.get_by_test_id("video-state")).to_have_text("в эфире")
                await _plays(one)
                # The view's controls stay while watching (this camera cannot turn).
                await expect(view).to_contain_text("не поворачивается")
                await shot(one, "20-live-view")

                # A second browser on the same camera: one upstream, two viewers.
                two = await signed_in("smirnov")
                await two.goto(f"{server.url}/console/wall/krd-live")
                await expect(two.get_by_test_id("live-video")).to_have_attribute(
                    "data-state", "live", timeout=20_000
                )
                await _plays(two)
                assert len(hub.video.upstreams) == 1
                assert hub.video.viewers_of("krd-live") == 2
                assert await _metric(server, ops, "nabat_video_upstreams") == 1
                assert await _metric(server, ops, "nabat_video_viewers") == 2
                await _plays(one)  # the first goes on playing
                await shot(two, "21-live-second-viewer")

                # A hidden tab stops its stream (Page Visibility); shown again, it plays.
                await two.evaluate(HIDE, True)
                await eventually(
                    lambda: hub.video.viewers_of("krd-live") == 1, timeout=10, what="hidden: left"
                )
                await two.evaluate(HIDE, False)
                await eventually(
                    lambda: hub.video.viewers_of("krd-live") == 2, timeout=10, what="shown: back"
                )
                await _plays(two)

                # Another district's operator: the view says so and the WebSocket is refused.
                other = await signed_in("orlova")
                await other.goto(f"{server.url}/console/wall/krd-live")
                refused = other.get_by_test_id("live-video")
                await expect(refused).to_have_attribute("data-state", "unavailable", timeout=15_000)
                await expect(refused).to_have_attribute("data-reason", "no-access")
                await expect(refused.get_by_test_id("video-state")).to_have_text(
                    "видео недоступно: эта камера не относится к вашим районам"
                )
                assert (await _playback(other))["frames"] == 0
                # Nothing else of that camera is shown (no controls, no health history).
                await expect(other.get_by_test_id("camera-view")).not_to_contain_text("поворач")
                await expect(other.get_by_test_id("probes")).to_have_count(0)
                opened = await other.evaluate(
                    """() => new Promise((done) => {
                      const ws = new WebSocket(`ws://${location.host}/api/v1/cameras/krd-live/live`);
                      ws.onopen = () => { ws.close(); done('open'); };
                      ws.onclose = (e) => done(`closed ${e.code}`);
                    })"""
                )
                assert opened == "closed 1006"  # the handshake was refused
                assert hub.video.viewers_of("krd-live") == 2
                await shot(other, "22-live-other-district")

                # Both close the view: the upstream closes shortly after (idle_close).
                await one.keyboard.press("Escape")
                await expect(one.get_by_test_id("camera-view")).to_have_count(0)
                await eventually(
                    lambda: hub.video.viewers_of("krd-live") == 1, timeout=10, what="one left"
                )
                assert len(hub.video.upstreams) == 1
                await two.get_by_test_id("close").click()
                await eventually(
                    lambda: not hub.video.upstreams, timeout=10, what="the upstream closed"
                )
                assert await _metric(server, ops, "nabat_video_upstreams") == 0
                assert errors == []
            finally:
                await browser.close()


def _onvif_device_class():
    import sys

    name = "nabat_tests_onvif_device"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "fixtures" / "onvif_device.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name].OnvifDevice


async def test_ptz_while_watching_and_a_camera_restart_resumes_by_itself(
    tmp_path, rtsp_server, _rtsp_process, monkeypatch
):
    """An ONVIF PTZ camera streaming from the RTSP test server: the operator turns it from the
    large view and the video plays on; the camera's RTSP server goes away and comes back, and
    the same view plays again without a click."""
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    OnvifDevice = _onvif_device_class()
    async with OnvifDevice(rtsp_uri=rtsp_server.url("/live?cam=ptz"), ptz=True) as device:
        monkeypatch.setenv("PTZ_CAMERA_PASSWORD", device.password)
        text = f"""
[hub]
language = "ru"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.onvif]
[video]
idle_close = 0.5
stall_timeout = 2.0
reconnect_initial = 0.2
reconnect_max = 1.0

[instances.krd-ptz]
kind = "onvif.camera"
name = "Театральная площадь"
municipality = "krasnodar"
settings.host = "127.0.0.1"
settings.port = {device.port}
settings.username = "{device.username}"
settings.password = {{ env = "PTZ_CAMERA_PASSWORD" }}
"""
        loaded = load_config_text(text, tmp_path)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            await server.state.console.users.create(
                "ivanova", PASSWORD, role="operator", name="ivanova", municipalities=["krasnodar"]
            )
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                errors: list[str] = []
                try:
                    context = await browser.new_context(viewport={"width": 1400, "height": 900})
                    page = await context.new_page()
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    await page.goto(f"{server.url}/console/")
                    await page.fill("input[name=login]", "ivanova")
                    await page.fill("input[name=password]", PASSWORD)
                    await page.click("button[type=submit]")
                    await expect(page.get_by_test_id("who")).to_be_visible()
                    await page.goto(f"{server.url}/console/wall/krd-ptz")
                    player = page.get_by_test_id("live-video")
                    await expect(player).to_have_attribute("data-state", "live", timeout=20_000)
                    await _plays(page)

                    # Turning the camera while watching: the command reaches the camera and the
                    # picture plays on (one upstream, never reopened for it).
                    ptz = page.get_by_test_id("ptz")
                    await ptz.get_by_title("вправо").click()
                    await eventually(
                        lambda: any(c[0] == "RelativeMove" for c in device.calls),
                        timeout=10,
                        what="RelativeMove reached the camera",
                    )
                    await ptz.get_by_role("button", name="Preset 2").click()
                    await eventually(
                        lambda: (
                            ("GotoPreset", {"ProfileToken": "main", "PresetToken": "2"})
                            in device.calls
                        ),
                        timeout=10,
                        what="GotoPreset reached the camera",
                    )
                    opened = hub.video.opened
                    await _plays(page)
                    assert hub.video.opened == opened == 1
                    await shot(page, "23-live-ptz")

                    # The camera's stream goes away: the view says so and keeps waiting; it
                    # comes back on the same address and plays again by itself.
                    _rtsp_process.close()
                    try:
                        await expect(player).to_have_attribute(
                            "data-state", "stalled", timeout=20_000
                        )
                    finally:
                        await asyncio.to_thread(_rtsp_process.ensure)
                    await expect(player).to_have_attribute("data-state", "live", timeout=30_000)
                    await _plays(page)
                    assert hub.video.reconnects >= 1 and hub.video.opened == 1
                    assert errors == []
                finally:
                    await browser.close()
