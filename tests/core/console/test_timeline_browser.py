"""Recorded footage in a real browser: Debian's Chromium (Playwright) opens a recorded camera's
large view, sees its timeline with the footage, clicks into it and plays the recording
through Media Source Extensions — asserted from the video element (decoded frames rising,
``currentTime`` advancing) while the page shows the recorded moment, not live — on into the
next segment, and goes back to live. Screenshots go to ``test-artifacts/console/``."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from datetime import UTC, datetime
from pathlib import Path

from nabat.recording import recorder as recorder_module
from nabat.testing import eventually, load_config_text, run_api, run_hub

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
[recording]
segment_seconds = 5
sync_seconds = 1
[[recording.storage]]
path = "video"
quota_gb = 1
min_free_gb = 0
[[recording.policy]]
name = "always"
cameras = ["krd-rec"]
retention_days = 7

[instances.krd-rec]
kind = "rtsp.camera"
name = "Красная, 1"
municipality = "krasnodar"
lat = 45.0356
lon = 38.9754
settings = {{ url = "{rtsp_server.url("/live?cam=timeline")}" }}
"""


VIDEO = """() => {
  const v = document.querySelector('[data-testid=playback-video] video');
  if (!v) return null;
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
  return {frames: q ? q.totalVideoFrames : 0, time: v.currentTime, width: v.videoWidth,
          paused: v.paused};
}"""


async def _segments(hub, n: int):
    found = [s async for s in hub.footage.all("krd-rec")]
    return found if len(found) >= n else None


async def test_the_timeline_shows_footage_and_plays_it_from_a_moment(
    tmp_path, rtsp_server, monkeypatch
):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    # The recorder's first look at the camera finds its instance starting: look again after
    # 0.2 s, not 2 s. And 3 s segments (two key frames of the test server), below the
    # configuration's 5 s floor (6 s of wall time each): the recorder rotates alike for any
    # value, and four of them (12 s) are a bar one can click on the hour scale.
    monkeypatch.setattr(recorder_module, "RETRY_MIN_S", 0.2)
    loaded = load_config_text(config(rtsp_server), tmp_path)
    loaded.config.recording.segment_seconds = 3.0
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
                # The browser started and signed in while the camera was being recorded.
                found = await eventually(
                    lambda: _segments(hub, 4), timeout=60, what="four segments"
                )
                await page.goto(f"{server.url}/console/wall/krd-rec")
                view = page.get_by_test_id("camera-view")
                await expect(view.get_by_test_id("live-video")).to_have_attribute(
                    "data-state", "live", timeout=20_000
                )
                timeline = view.get_by_test_id("timeline")
                await expect(timeline).to_contain_text("Архив")
                await expect(view.get_by_test_id("go-live")).to_be_disabled()
                # The last hour: the few seconds recorded are a bar one can click.
                await view.get_by_test_id("zoom-1h").click()
                bars = timeline.get_by_test_id("footage")
                await expect(bars.first).to_be_visible(timeout=10_000)
                await shot(page, "40-timeline-live")

                box = await bars.first.bounding_box()
                await page.mouse.click(box["x"] + min(2, box["width"] / 2), box["y"] + 4)
                player = view.get_by_test_id("playback-video")
                await expect(player).to_have_attribute("data-state", "playing", timeout=15_000)
                await expect(view.get_by_test_id("live-video")).to_have_count(0)
                first = await _plays(page)
                played = view.get_by_test_id("played-time")
                await expect(played).to_contain_text("запись:")
                at = datetime.fromisoformat(await played.get_attribute("data-at"))
                # A recorded moment: within the footage, not now.
                assert found[0].start <= at <= found[-1].end, (at, found[0].start)
                assert (datetime.now(UTC) - at).total_seconds() > 3
                await expect(view.get_by_test_id("playhead")).to_have_count(1)
                await expect(view.get_by_test_id("go-live")).to_be_enabled()
                await shot(page, "41-timeline-playing")

                # It plays on into the next segment: the moment shown passes the end of the one
                # it started in (and frames go on being decoded across the boundary).
                now_known = [s async for s in hub.footage.all("krd-rec")]
                started_in = next(s for s in now_known if s.end > at)

                async def past_first_segment():
                    shown = await played.get_attribute("data-at")
                    return shown and datetime.fromisoformat(shown) > started_in.end + _s(1)

                await eventually(past_first_segment, timeout=20, what="into the next segment")

                async def decoding_on() -> dict | None:
                    # Frames counted as the browser decodes them: a busy machine decodes fewer
                    # per second, so wait for them rather than count at one moment.
                    now = await page.evaluate(VIDEO)
                    more = now["frames"] > first["frames"] + 10 and now["time"] > first["time"] + 1
                    return now if more else None

                later = await eventually(decoding_on, timeout=20, what="frames across the boundary")
                assert not later["paused"]

                # «в эфире»: back to live.
                await view.get_by_test_id("go-live").click()
                await expect(view.get_by_test_id("live-video")).to_have_attribute(
                    "data-state", "live", timeout=20_000
                )
                await expect(view.get_by_test_id("playback-video")).to_have_count(0)

                # An incident's page plays its cameras' footage from a minute before the report.
                from nabat.interfaces import GeoPoint, Incident

                reported = found[1].start + _s(62)
                await hub.incidents.report(
                    "inc-rec",
                    Incident(
                        title="ДТП на Красной",
                        location=GeoPoint(45.0357, 38.9755),
                        reported_at=reported,
                    ),
                    source="urn:test",
                )
                await page.goto(f"{server.url}/console/incidents/inc-rec")
                await page.get_by_test_id("incident-footage-krd-rec").click()
                view = page.get_by_test_id("camera-view")
                await expect(view.get_by_test_id("playback-video")).to_have_attribute(
                    "data-state", "playing", timeout=15_000
                )
                await _plays(page)
                played = view.get_by_test_id("played-time")
                await expect(played).to_have_attribute("data-at", re.compile(r"\d{4}-"))
                at = datetime.fromisoformat(await played.get_attribute("data-at"))
                assert found[1].start - _s(1) <= at <= found[1].end + _s(8), (at, found[1])
                await shot(page, "42-incident-footage")

                # The reports page shows the district's archive depth.
                await page.goto(f"{server.url}/console/reports")
                archive = page.get_by_test_id("archive-krasnodar")
                await expect(archive).to_be_visible(timeout=15_000)
                await expect(archive).to_contain_text("Краснодар")
                assert errors == []
            finally:
                await browser.close()


def _s(seconds: float):
    from datetime import timedelta

    return timedelta(seconds=seconds)


async def _plays(page) -> dict:
    for _ in range(150):
        first = await page.evaluate(VIDEO)
        if first and first["frames"] > 5 and first["time"] > 0:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the recording did not start: {first}")
    for _ in range(100):
        await asyncio.sleep(0.1)
        later = await page.evaluate(VIDEO)
        if later["frames"] >= first["frames"] + 10 and later["time"] >= first["time"] + 1.0:
            break
    else:
        raise AssertionError(f"the recording does not play on: {first} -> {later}")
    assert later["width"] == 320 and not later["paused"]
    return later
