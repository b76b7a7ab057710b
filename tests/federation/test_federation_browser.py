"""The regional console in a real browser (Debian's Chromium through Playwright), over real
NATS servers and three hubs (two districts, the region): the Sites page shows each district
reachable, a remote camera's picture comes from its own site and it turns home; an exercise
alert over both districts shows each site's answer and its sirens' results; a district whose
link is cut is shown cut off, and its cameras say so instead of an empty list. Screenshots go
to ``test-artifacts/console/federation-*.png``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from federation_config import district_config, region_config
from nabat.evidence.keys import load_or_create_key
from nabat.federation import follower as follower_module
from nabat.testing import audited, eventually, load_config_text, run_api, run_hub

_spec = importlib.util.spec_from_file_location(
    "_console_browser", Path(__file__).parents[1] / "core" / "console" / "test_browser.py"
)
_browser = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_browser)
CHROMIUM, CHROMIUM_ARGS, PASSWORD = _browser.CHROMIUM, _browser.CHROMIUM_ARGS, _browser.PASSWORD
_browser_or_skip, shot = _browser._browser_or_skip, _browser.shot

pytestmark = pytest.mark.timeout(240)

SITES = {"site-a": "abinsky", "site-b": "anapa"}

# The picture the browser shows, as decoded: a broken or empty image has no natural size.
IMAGE_SIZE = "(img) => img.complete ? [img.naturalWidth, img.naturalHeight] : null"


async def _connected(*components) -> bool:
    return all(c.connection.connected for c in components)


async def test_the_regional_console_sees_commands_and_loses_a_site(
    tmp_path, nats_federation, monkeypatch
):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    monkeypatch.setattr(follower_module, "LINK_CHECK_S", 0.5)
    key = load_or_create_key(tmp_path / "data-region").public_key
    links = {site: nats_federation.site(site) for site in SITES}
    districts = [
        load_config_text(
            district_config(
                site,
                municipality,
                links[site].url,
                camera=True,
                data_dir=f"data-{site}",
                storage=f"sqlite:///journal-{site}.sqlite3",
                federation=f'commands_from = "region"\ncommand_keys = ["{key}"]',
            ),
            tmp_path,
        )
        for site, municipality in SITES.items()
    ]
    region_text = region_config(
        nats_federation.region.url,
        {site: [municipality] for site, municipality in SITES.items()},
        data_dir="data-region",
        storage="sqlite:///journal-region.sqlite3",
        hub='language = "en"\n[api]\nlisten = "127.0.0.1:0"',
        federation="call_timeout = 3",
    )
    async with (
        run_hub(districts[0]) as edge_a,
        run_hub(districts[1]) as edge_b,
        run_hub(load_config_text(region_text, tmp_path)) as region,
        run_api(region) as server,
    ):
        await eventually(
            lambda: _connected(edge_a.commands, edge_b.commands, region.dispatcher),
            timeout=20,
            what="every hub connected to its NATS",
        )
        await server.state.console.users.create(
            "kovalenko", PASSWORD, role="supervisor", name="Коваленко В."
        )
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport={"width": 1400, "height": 900})
                page = await context.new_page()
                await page.goto(f"{server.url}/console/")
                await page.fill("input[name=login]", "kovalenko")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await expect(page.get_by_test_id("who")).to_be_visible()

                # Both districts reachable; a remote camera's picture, asked of its own site.
                await page.get_by_test_id("nav-sites").click()
                for site in SITES:
                    await expect(page.get_by_test_id(f"site-row-{site}")).to_have_attribute(
                        "data-reachable", "true", timeout=20_000
                    )
                await expect(page.get_by_test_id("site-row-site-a")).to_contain_text("Абинский")
                await page.get_by_test_id("site-open-site-a").click()
                camera = page.get_by_test_id("remote-cam-site-a")
                await expect(camera).to_be_visible()
                await page.get_by_test_id("remote-snapshot-cam-site-a").click()
                image = page.get_by_test_id("remote-image-cam-site-a")
                await expect(image).to_be_visible(timeout=15_000)
                width, height = await image.evaluate(IMAGE_SIZE)
                assert width > 0 and height > 0
                # PTZ home goes to the camera at site-a, whose audit log names the operator.
                await page.get_by_test_id("remote-ptz-home-cam-site-a").click()
                await eventually(
                    lambda: audited(edge_a, "federation camera.ptz", "kovalenko"),
                    timeout=10,
                    what="the home move in site-a's audit log",
                )
                await expect(page.get_by_test_id("remote-error-cam-site-a")).to_have_count(0)
                await shot(page, "federation-1-sites")

                # An exercise alert over both districts: each site's answer and its siren.
                await page.get_by_test_id("nav-alerts").click()
                form = page.get_by_test_id("alert-form")
                for municipality in SITES.values():
                    await form.locator(f"input[name=municipality][value={municipality}]").check()
                await page.get_by_test_id("alert-submit").click()
                await page.get_by_test_id("alert-confirm-yes").click()
                results = page.get_by_test_id("alert-results")
                for site in SITES:
                    answer = results.get_by_test_id(f"site-{site}")
                    done = expect(answer)
                    await done.to_have_attribute("data-state", "completed", timeout=30_000)
                    siren = results.get_by_test_id(f"device-{site}-siren-{site}")
                    await expect(siren).to_have_attribute("data-outcome", "activated")
                await shot(page, "federation-2-alert")
                [record] = await region.alerts.recent(limit=5)
                assert record.alert.status.value == "Exercise"
                assert record.sites == {site: [m] for site, m in SITES.items()}

                # Site B's link is cut: the Sites page says so, and its cameras say why.
                links["site-b"].link.cut()
                links["site-b"].wait_unlinked()
                await page.get_by_test_id("nav-sites").click()
                await expect(page.get_by_test_id("site-row-site-b")).to_have_attribute(
                    "data-reachable", "false", timeout=20_000
                )
                await expect(page.get_by_test_id("site-row-site-a")).to_have_attribute(
                    "data-reachable", "true"
                )
                await page.get_by_test_id("site-open-site-b").click()
                # In the operator's language, from the catalog (not the API's English detail).
                await expect(page.get_by_test_id("site-error-site-b")).to_contain_text(
                    "Площадка site-b не отвечает", timeout=15_000
                )
                await shot(page, "federation-3-cut")
            finally:
                await browser.close()
