"""The console in a real browser: headless Chromium (Debian's) driven by Playwright, against a
hub with real RTSP cameras, a simulated siren and its HTTP API on loopback.

One operator's shift: sign in, the camera wall, a camera that dies while the wall is open turns
red by itself, an alert to the district's sirens with every siren's result, the offline map,
the reports, sign-out. A
screenshot of each page is kept in ``test-artifacts/console/`` (``NABAT_ARTIFACTS`` moves it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

import pytest
from nabat.testing import load_config_text, run_api, run_hub

PASSWORD = "correct horse battery"
ARTIFACTS = Path(os.environ.get("NABAT_ARTIFACTS", "test-artifacts")) / "console"
CHROMIUM = "/usr/bin/chromium"
# As the machine's notes say: without these, Chromium keeps dialling out of a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_or_skip() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        reason = "playwright is not installed"
    else:
        if os.access(CHROMIUM, os.X_OK):
            return
        reason = f"{CHROMIUM} is missing: apt-get install chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class Proxy:
    """A TCP relay in front of the RTSP server: closing it kills the camera as a cut cable
    would (connections refused, open sessions dropped)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.streams: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.streams |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.streams):
            writer.close()
        await self.server.wait_closed()


def config(rtsp_server, proxy: Proxy) -> str:
    return f"""
[hub]
language = "ru"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[plugins.eventlog]
enabled = false
[plugins.watch.settings]
camera_interval = 1
device_interval = 30
jitter = 0
fail_after = 1
recover_after = 1
[plugins.simulator]
[plugins.rtsp]

[instances.krd-live]
kind = "rtsp.camera"
name = "Красная, 1"
municipality = "krasnodar"
settings = {{ url = "rtsp://127.0.0.1:{proxy.port}/live" }}

[instances.krd-black]
kind = "rtsp.camera"
name = "Северная, 5"
municipality = "krasnodar"
settings = {{ url = "{rtsp_server.url("/black")}" }}

[instances.krd-locked]
kind = "rtsp.camera"
name = "Школьная, 3"
municipality = "krasnodar"
settings = {{ url = "{rtsp_server.secure_url(password="not-the-password")}" }}

[instances.sochi-live]
kind = "rtsp.camera"
name = "Сочи, Морской вокзал"
municipality = "sochi"
settings = {{ url = "{rtsp_server.url("/live")}" }}

[instances.krd-siren-1]
kind = "simulator.siren"
name = "Сирена, ул. Красная"
municipality = "krasnodar"
"""


async def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_an_operators_shift_in_the_browser(tmp_path, rtsp_server):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    proxy = Proxy(rtsp_server.host, rtsp_server.port)
    await proxy.start()
    loaded = load_config_text(config(rtsp_server, proxy), tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        await server.state.console.users.create(
            "ivanova", PASSWORD, role="operator", name="Иванова А.", municipalities=["krasnodar"]
        )
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            try:
                # Sign-in: a wrong password is refused with a message, the right one lets in.
                await page.goto(f"{server.url}/")
                await page.fill("input[name=login]", "ivanova")
                await page.fill("input[name=password]", "wrong password!")
                await page.click("button[type=submit]")
                await expect(page.get_by_test_id("sign-in-error")).to_contain_text("Неверный")
                await shot(page, "1-sign-in")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await expect(page.get_by_test_id("who")).to_contain_text("Иванова А.")
                await expect(page.get_by_test_id("card-cameras")).to_be_visible()
                await shot(page, "2-overview")

                # The wall: the district's two cameras (not Sochi's), honest states.
                await page.get_by_test_id("nav-wall").click()
                live = page.get_by_test_id("tile-krd-live")
                black = page.get_by_test_id("tile-krd-black")
                await expect(live).to_have_attribute("data-state", "ok", timeout=20_000)
                await expect(black).to_have_attribute("data-state", "black", timeout=20_000)
                # The badge has its own state's colour, the frame's amber, not a working green.
                badge = black.get_by_test_id("badge")
                await expect(badge).to_have_class(re.compile(r"\bstate-black\b"))
                await expect(badge).to_have_css("background-color", "rgb(224, 160, 0)")
                await expect(live.get_by_test_id("badge")).to_have_css(
                    "background-color", "rgb(46, 157, 91)"
                )
                # Rejected credentials: the camera says so, not «не проверена».
                locked = page.get_by_test_id("tile-krd-locked")
                await expect(locked).to_have_attribute("data-state", "needs_auth", timeout=20_000)
                await expect(locked.get_by_test_id("badge")).to_have_text("нужны учётные данные")
                await expect(page.get_by_test_id("tile-sochi-live")).to_have_count(0)
                await expect(live.locator("img")).to_be_visible(timeout=15_000)
                await expect(page.get_by_test_id("live")).to_have_class("live up")
                await shot(page, "3-wall")

                # The cable is cut while the wall is open: the tile turns red by itself.
                await proxy.cut()
                await expect(live).to_have_attribute("data-state", "unreachable", timeout=20_000)
                await expect(live.get_by_test_id("badge")).to_have_text("недоступна")
                # Offline: the cut camera and the one without credentials.
                await expect(page.get_by_test_id("count-offline")).to_contain_text("2")
                # Broken cameras come first.
                first = page.get_by_test_id("tiles").locator(".tile").first
                await expect(first).not_to_have_attribute("data-state", "ok")
                await shot(page, "4-wall-camera-offline")

                # The large view of the dead camera: the reason and the last health changes.
                await live.click()
                view = page.get_by_test_id("camera-view")
                await expect(view).to_be_visible()
                await expect(view.get_by_test_id("probes")).to_contain_text("недоступна")
                # The reason in Russian from the catalog; no internal address.
                reason = view.get_by_test_id("reason")
                # A cut relay refuses, times out, drops a connection it took, answers nothing
                # a stream would, or ends FFmpeg's read with a bare I/O error (the catalog's
                # «сетевая ошибка»): any of the five is the truth about a cut cable.
                await expect(reason).to_have_text(
                    re.compile(
                        "^(камера (отказала|не ответила|оборвала|отвечает не по протоколу)"
                        "|сетевая ошибка$)"
                    )
                )
                await expect(view).not_to_contain_text("127.0.0.1")
                await expect(view).not_to_contain_text("rtsp://")
                await shot(page, "5-camera")
                await page.keyboard.press("Escape")
                await expect(view).to_have_count(0)

                # The events page says what each event means and opens one's details.
                await page.get_by_test_id("nav-events").click()
                row = (
                    page.get_by_test_id("events")
                    .locator("tr[data-type='camera.health.black']")
                    .first
                )
                await expect(row).to_contain_text("Камера: чёрный экран", timeout=15_000)
                await row.click()
                detail = page.get_by_test_id("event-detail")
                await expect(detail).to_contain_text("camera.health.black")
                await expect(detail.get_by_test_id("event-reason")).to_have_text(
                    "чёрный экран: изображение почти без света"
                )
                await expect(detail.get_by_test_id("event-data")).to_contain_text('"krd-black"')
                await shot(page, "5b-event")
                await page.keyboard.press("Escape")
                await expect(detail).to_have_count(0)

                # An exercise alert to the district's sirens, confirmed, with the live result.
                await page.get_by_test_id("nav-alerts").click()
                form = page.get_by_test_id("alert-form")
                await form.locator("input[value=Exercise]").check()
                await page.get_by_test_id("alert-submit").click()
                confirm = page.get_by_test_id("alert-confirm")
                await expect(confirm).to_contain_text("Учебное")
                await expect(confirm).to_contain_text("Краснодар")
                await page.get_by_test_id("alert-confirm-yes").click()
                device = page.get_by_test_id("device-krd-siren-1")
                await expect(device).to_have_attribute("data-outcome", "activated", timeout=15_000)
                await shot(page, "6-alert")
                [record] = await hub.alerts.recent(limit=5)
                assert record.alert.status.value == "Exercise"
                assert record.created_by.startswith("token:user:ivanova")

                # The map draws the district without any tile server; the reports chart it.
                await page.get_by_test_id("nav-map").click()
                await expect(page.get_by_test_id("map").locator("canvas")).to_have_count(1)
                # The only credit is the outlines' source: no tile server's attribution.
                attribution = page.get_by_test_id("map").locator(".leaflet-control-attribution")
                await expect(attribution).to_have_text(
                    "Границы муниципалитетов: © участники OpenStreetMap, ODbL"
                )
                await shot(page, "7-map")
                await page.get_by_test_id("nav-reports").click()
                await expect(page.get_by_test_id("chart").locator("canvas")).to_be_visible()
                krasnodar = page.get_by_test_id("report-krasnodar")
                await expect(krasnodar).to_contain_text("город Краснодар")
                await expect(page.get_by_test_id("report-sochi")).to_have_count(0)
                await shot(page, "8-reports")

                # Sign-out: back to the form; the session is gone on the server too.
                await page.get_by_test_id("sign-out").click()
                await expect(page.get_by_test_id("sign-in")).to_be_visible()
                response = await page.request.get(f"{server.url}/api/v1/cameras")
                assert response.status == 401
                await shot(page, "9-signed-out")
                assert errors == []
            finally:
                await browser.close()


TWO_PERSON = """
[hub]
language = "ru"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[alerts]
two_person_rule = true
[plugins.eventlog]
enabled = false
[plugins.watch.settings]
camera_interval = 1
jitter = 0
fail_after = 1
recover_after = 1
[plugins.simulator]

[instances.krd-ptz]
kind = "simulator.camera"
name = "Поворотная, Красная"
municipality = "krasnodar"
lat = 45.0362
lon = 38.9753
settings = { fault_rate = 0.0, ptz = true }

[instances.krd-fixed]
kind = "simulator.camera"
name = "Неподвижная, Красная"
municipality = "krasnodar"
lat = 45.0370
lon = 38.9753
settings = { fault_rate = 0.0 }

[instances.krd-siren-1]
kind = "simulator.siren"
name = "Сирена, ул. Красная"
municipality = "krasnodar"
"""


async def test_incident_cameras_ptz_english_and_the_two_person_rule(tmp_path):
    _browser_or_skip()
    from nabat.interfaces import GeoPoint, Incident
    from playwright.async_api import async_playwright, expect

    loaded = load_config_text(TWO_PERSON, tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users = server.state.console.users
        await users.create(
            "ivanova", PASSWORD, role="operator", name="Иванова А.", municipalities=["krasnodar"]
        )
        await users.create("petrov", PASSWORD, role="supervisor", name="Петров Б.")
        _, record = await hub.incidents.report(
            "inc-1",
            Incident(
                title="ДТП, ул. Красная, 1",
                type="traffic_accident",
                address="Краснодар, ул. Красная, 1",
                location=GeoPoint(45.0355, 38.9753),
                services=["02", "03"],
                caller="+7 918 000-00-00",
            ),
            source="urn:test",
        )
        assert record.municipality == "krasnodar"
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:

                async def signed_in(login: str):
                    context = await browser.new_context(viewport={"width": 1400, "height": 900})
                    page = await context.new_page()
                    await page.goto(f"{server.url}/console/")
                    await page.fill("input[name=login]", login)
                    await page.fill("input[name=password]", PASSWORD)
                    await page.click("button[type=submit]")
                    await expect(page.get_by_test_id("who")).to_be_visible()
                    return page

                operator = await signed_in("ivanova")

                # The list: type, address and the services by name, not «02».
                await operator.get_by_test_id("nav-incidents").click()
                row = operator.get_by_test_id("incident-row-inc-1")
                await expect(row).to_contain_text("ДТП")
                await expect(row).to_contain_text("полиция (02), скорая помощь (03)")
                await expect(row).to_contain_text("ул. Красная, 1")
                # The incident with the snapshots its nearest cameras gave.
                await (
                    operator.get_by_test_id("incidents").get_by_text("ДТП, ул. Красная, 1").click()
                )
                incident = operator.get_by_test_id("incident")
                await expect(incident).to_contain_text("+7 918 000-00-00")
                for camera in ("krd-ptz", "krd-fixed"):
                    picture = operator.get_by_test_id(f"incident-camera-{camera}").locator("img")
                    await expect(picture).to_be_visible(timeout=15_000)
                await shot(operator, "10-incident")

                # PTZ for the camera that turns, none for the one that does not.
                await operator.get_by_test_id("nav-wall").click()
                await operator.get_by_test_id("tile-krd-fixed").click()
                await expect(operator.get_by_test_id("camera-view")).to_contain_text(
                    "не поворачивается"
                )
                await operator.keyboard.press("Escape")
                await operator.get_by_test_id("tile-krd-ptz").click()
                ptz = operator.get_by_test_id("ptz")
                await expect(ptz).to_be_visible()
                # The camera's media profiles (the API's `profiles`) with their sizes.
                profiles = operator.get_by_test_id("camera-view").get_by_test_id("profiles")
                await expect(profiles.get_by_test_id("profile-sub")).to_contain_text("640×360")
                await expect(operator.get_by_test_id("resolution")).to_contain_text("×")
                await ptz.get_by_title("исходное положение").click()
                await expect(ptz.locator(".error")).to_have_count(0)
                await shot(operator, "11-ptz")
                await operator.keyboard.press("Escape")

                # English with one click, every label from the catalog.
                await operator.get_by_role("button", name="EN").click()
                await expect(operator.get_by_test_id("nav-wall")).to_have_text("Cameras")
                await expect(operator.get_by_test_id("tile-krd-ptz")).to_contain_text("working")
                await shot(operator, "12-english")
                # The message the population hears stays in their language.
                await operator.get_by_test_id("nav-alerts").click()
                form = operator.get_by_test_id("alert-form")
                await expect(form).to_contain_text("Template")
                await expect(form.locator("select[name=template]")).to_contain_text("Наводнение")
                await expect(form.locator("textarea[name=text]")).to_have_value(
                    re.compile("^Внимание!")
                )
                await operator.get_by_role("button", name="RU").click()
                await expect(operator.get_by_test_id("nav-wall")).to_have_text("Камеры")

                # An Actual alert waits for a second person; the first cannot confirm it.
                await operator.get_by_test_id("nav-alerts").click()
                await operator.get_by_test_id("alert-form").locator("input[value=Actual]").check()
                await operator.get_by_test_id("alert-submit").click()
                await expect(operator.get_by_test_id("alert-confirm")).to_contain_text("РЕАЛЬНОЕ")
                await operator.get_by_test_id("alert-confirm-yes").click()
                results = operator.get_by_test_id("alert-results")
                await expect(results).to_have_attribute("data-phase", "pending_confirmation")
                await operator.get_by_test_id("alert-second-confirm").click()
                await expect(operator.get_by_test_id("alert-error")).to_contain_text("second")
                await shot(operator, "13-alert-waiting")

                # The supervisor sees it waiting and confirms it: the siren sounds.
                supervisor = await signed_in("petrov")
                await supervisor.get_by_test_id("nav-alerts").click()
                [pending] = await hub.alerts.recent(limit=5)
                await supervisor.get_by_test_id(f"alert-{pending.id}").click()
                await supervisor.get_by_test_id("alert-second-confirm").click()
                device = supervisor.get_by_test_id("device-krd-siren-1")
                await expect(device).to_have_attribute("data-outcome", "activated", timeout=15_000)
                # … and the operator's page follows live.
                await expect(operator.get_by_test_id("device-krd-siren-1")).to_have_attribute(
                    "data-outcome", "activated", timeout=15_000
                )
                await shot(supervisor, "14-alert-confirmed")
                record = await hub.alerts.get(pending.id)
                assert record.created_by.startswith("token:user:ivanova")
                assert record.confirmed_by.startswith("token:user:petrov")
            finally:
                await browser.close()
