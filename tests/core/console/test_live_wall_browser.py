"""The live wall in a real browser (Debian's Chromium): four live tiles over one WebSocket, the
layout kept per person, tiles off screen or in a hidden tab stopping their streams, a large view
pausing the wall, an incident's cameras in one click, and follow mode bringing an incident's
cameras onto the wall by itself. Playback is asserted from each video element (decoded frames
rising, ``currentTime`` advancing); streams from the hub's own counts. Screenshots go to
``test-artifacts/console/``."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from nabat.testing import eventually, load_config_text, run_api, run_hub

_spec = importlib.util.spec_from_file_location(
    "_console_browser", Path(__file__).with_name("test_browser.py")
)
_browser = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_browser)
CHROMIUM, CHROMIUM_ARGS, PASSWORD = _browser.CHROMIUM, _browser.CHROMIUM_ARGS, _browser.PASSWORD
_browser_or_skip, shot = _browser._browser_or_skip, _browser.shot

# Around Krasnaya St, 1 in Krasnodar; each camera its own pipeline of the shared /live mount.
PLACES = {
    "krd-a": ("Красная, 1", 45.0356, 38.9754),
    "krd-b": ("Красная, 3", 45.0360, 38.9760),
    "krd-c": ("Советская, 2", 45.0349, 38.9744),
    "krd-d": ("Мира, 5", 45.0370, 38.9770),
    "krd-far": ("Северная, 300", 45.0800, 39.0300),
}


def config(rtsp_server) -> str:
    text = """
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
"""
    for cid, (name, lat, lon) in PLACES.items():
        text += f"""
[instances.{cid}]
kind = "rtsp.camera"
name = "{name}"
municipality = "krasnodar"
lat = {lat}
lon = {lon}
settings = {{ url = "{rtsp_server.url(f"/live?cam={cid}")}" }}
"""
    return text


# Every live tile's video element, as the element itself reports it.
TILES = """() => Array.from(document.querySelectorAll('.live-tile[data-camera]')).map((t) => {
  const v = t.querySelector('video');
  const q = v.getVideoPlaybackQuality();
  return {camera: t.dataset.camera, state: t.dataset.state, frames: q.totalVideoFrames,
          time: v.currentTime, width: v.videoWidth};
})"""

HIDE = """(hidden) => {
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


async def _tiles_play(page, cameras: set[str]) -> None:
    """Each of ``cameras``' tiles decodes frames and its playhead moves on."""
    first = None
    for _ in range(200):
        first = {t["camera"]: t for t in await page.evaluate(TILES)}
        if all(c in first and first[c]["frames"] > 5 and first[c]["time"] > 0 for c in cameras):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"not all of {cameras} started: {first}")
    for _ in range(100):
        await asyncio.sleep(0.1)
        later = {t["camera"]: t for t in await page.evaluate(TILES)}
        if all(
            later[c]["frames"] >= first[c]["frames"] + 5 and later[c]["time"] > first[c]["time"]
            for c in cameras
        ):
            assert all(later[c]["width"] == 320 for c in cameras)
            return
    raise AssertionError(f"not all of {cameras} play on: {first} -> {later}")


def _viewers(hub) -> dict[str, int]:
    return {cid: n for cid in PLACES if (n := hub.video.viewers_of(cid))}


async def test_a_live_wall_of_four_over_one_socket_kept_per_person(tmp_path, rtsp_server):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    loaded = load_config_text(config(rtsp_server), tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users = server.state.console.users
        for login in ("ivanova", "smirnov"):
            await users.create(
                login, PASSWORD, role="operator", name=login, municipalities=["krasnodar"]
            )
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            errors: list[str] = []
            sockets: list[str] = []

            async def signed_in(login: str, height: int = 900):
                context = await browser.new_context(viewport={"width": 1400, "height": height})
                page = await context.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("websocket", lambda ws: sockets.append(ws.url))
                await page.goto(f"{server.url}/console/")
                await page.fill("input[name=login]", login)
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await expect(page.get_by_test_id("who")).to_be_visible()
                return page

            try:
                page = await signed_in("ivanova")
                await page.get_by_test_id("nav-wall").click()
                await page.get_by_test_id("mode-live").click()
                await page.get_by_test_id("layout-4").click()
                grid = page.get_by_test_id("live-grid")
                await expect(grid).to_have_attribute("data-size", "4")
                four = ["krd-a", "krd-b", "krd-c", "krd-d"]
                for index, camera in enumerate(four):
                    await page.get_by_test_id(f"live-pick-{index}").select_option(camera)
                for index, camera in enumerate(four):
                    tile = page.get_by_test_id(f"live-tile-{index}")
                    await expect(tile).to_have_attribute("data-camera", camera)
                    await expect(tile).to_have_attribute("data-state", "live", timeout=20_000)
                await _tiles_play(page, set(four))
                # Four cameras, four upstreams, and the page holds one WebSocket for them all.
                assert _viewers(hub) == dict.fromkeys(four, 1)
                assert len(hub.video.upstreams) == 4
                assert [u for u in sockets if u.endswith("/api/v1/live")] == sockets
                assert len(sockets) == 1
                await shot(page, "30-live-wall-4")

                # A large view pauses the wall behind it: only its own stream stays.
                await page.get_by_test_id("live-tile-1").get_by_test_id("live-open").click()
                view = page.get_by_test_id("camera-view")
                await expect(view.get_by_test_id("live-video")).to_have_attribute(
                    "data-state", "live", timeout=20_000
                )
                await eventually(lambda: _viewers(hub) == {"krd-b": 1}, what="the wall paused")
                await page.keyboard.press("Escape")
                await eventually(
                    lambda: _viewers(hub) == dict.fromkeys(four, 1), what="the wall resumed"
                )
                await _tiles_play(page, set(four))

                # A hidden tab streams nothing; shown again, every tile plays.
                await page.evaluate(HIDE, True)
                await eventually(lambda: not _viewers(hub), what="hidden: no streams")
                await page.evaluate(HIDE, False)
                await eventually(lambda: len(_viewers(hub)) == 4, what="shown: streams back")
                await _tiles_play(page, set(four))

                # The layout is the person's: again on a short screen, where the second row
                # is off screen and streams nothing until scrolled to.
                short = await signed_in("ivanova", height=520)
                await page.context.close()
                await short.get_by_test_id("nav-wall").click()
                await expect(short.get_by_test_id("live-grid")).to_have_attribute("data-size", "4")
                for index, camera in enumerate(four):
                    await expect(short.get_by_test_id(f"live-tile-{index}")).to_have_attribute(
                        "data-camera", camera
                    )
                await _tiles_play(short, {"krd-a", "krd-b"})
                await eventually(
                    lambda: _viewers(hub) == {"krd-a": 1, "krd-b": 1}, what="first row only"
                )
                await expect(short.get_by_test_id("live-tile-3")).to_have_attribute(
                    "data-state", "paused"
                )
                await short.get_by_test_id("live-tile-3").scroll_into_view_if_needed()
                await eventually(lambda: "krd-d" in _viewers(hub), what="scrolled: krd-d")
                await _tiles_play(short, {"krd-d"})

                # Removing a tile keeps the rest; a colleague's wall is his own.
                await short.get_by_test_id("live-tile-3").get_by_test_id("live-clear").click()
                await expect(short.get_by_test_id("live-pick-3")).to_be_visible()
                await eventually(lambda: "krd-d" not in _viewers(hub), what="krd-d left")
                other = await signed_in("smirnov")
                await other.get_by_test_id("nav-wall").click()
                await expect(other.get_by_test_id("tiles")).to_be_visible()  # the grid
                await expect(other.get_by_test_id("live-grid")).to_have_count(0)
                await other.context.close()

                # Follow: an incident nearby brings its cameras onto the wall by itself.
                await short.set_viewport_size({"width": 1400, "height": 900})
                await short.get_by_test_id("follow").check()
                from nabat.interfaces import GeoPoint, Incident

                await hub.incidents.report(
                    "inc-live",
                    Incident(
                        title="ДТП на Мира",
                        location=GeoPoint(45.0371, 38.9771),
                        address="Краснодар, ул. Мира, 5",
                    ),
                    source="urn:test",
                )
                focus = short.get_by_test_id("focus-why").first
                await expect(focus).to_have_text("Инцидент: ДТП на Мира", timeout=15_000)
                tile = short.locator(".live-tile.focus").first
                await expect(tile).to_have_attribute("data-state", "live", timeout=20_000)
                # The nearest camera (krd-d) took the empty tile; the others were on the wall.
                await expect(short.get_by_test_id("live-tile-3")).to_have_attribute(
                    "data-camera", "krd-d"
                )
                await _tiles_play(short, {"krd-d"})
                await shot(short, "31-live-wall-follow")

                # The incident's page: its cameras live in one click, then back to the layout.
                await short.goto(f"{server.url}/console/incidents/inc-live")
                await short.get_by_test_id("incident-live").click()
                await expect(short.get_by_test_id("live-incident")).to_contain_text("ДТП на Мира")
                nearest = [c.id for c in (await hub.incidents.get("inc-live")).incident.cameras]
                assert nearest[0] == "krd-d" and "krd-far" not in nearest
                grid = short.get_by_test_id("live-grid")
                await expect(grid).to_have_attribute("data-size", "4")
                for index, camera in enumerate(nearest):
                    await expect(short.get_by_test_id(f"live-tile-{index}")).to_have_attribute(
                        "data-camera", camera
                    )
                await _tiles_play(short, set(nearest))
                await shot(short, "32-live-wall-incident")
                await short.get_by_test_id("live-back").click()
                await expect(short.get_by_test_id("live-incident")).to_have_count(0)
                await expect(short.get_by_test_id("live-pick-3")).to_be_visible()
                assert errors == []
            finally:
                await browser.close()
        await eventually(lambda: not hub.video.upstreams, timeout=10, what="all upstreams closed")
