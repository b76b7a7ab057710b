"""Administration over the real HTTP API and in a real browser: accounts (create, change role
and municipalities, disable — which ends the sessions —, reset a password, unlock), the roster
and the handling norms, for admins only; a console write without its CSRF token is refused;
an admin cannot lock themselves out; every change is audited and no password is."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
from nabat.interfaces.incident import Incident
from nabat.testing import eventually, load_config_text, run_api, run_hub

_spec = importlib.util.spec_from_file_location(
    "_console_browser", Path(__file__).with_name("test_browser.py")
)
_browser = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_browser)
CHROMIUM, CHROMIUM_ARGS = _browser.CHROMIUM, _browser.CHROMIUM_ARGS
_browser_or_skip, shot = _browser._browser_or_skip, _browser.shot

pytestmark = pytest.mark.timeout(120)
PASSWORD = "correct horse battery"

CONFIG = """
[hub]
language = "en"
data_dir = "data"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.apprise]
[instances.pager]
kind = "apprise.notifier"
[[instances.pager.settings.targets]]
name = "sms"
url = "json://127.0.0.1:9/sms"
[[duty.norms]]
name = "slow"
acknowledge = 3600
"""


async def _session(server, login: str, password: str = PASSWORD) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=server.url)
    answer = await client.post("/console/api/sign-in", json={"login": login, "password": password})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.json()["csrf"]
    return client


async def test_accounts_and_norms_for_admins_only(tmp_path):
    loaded = load_config_text(CONFIG, tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users = server.state.console.users
        await users.create("root", PASSWORD, role="admin", name="Администратор")
        await users.create("ivanova", PASSWORD, role="operator", municipalities=["sochi"])
        admin = await _session(server, "root")
        operator = await _session(server, "ivanova")

        # Not for an operator; not without the session's CSRF token.
        assert (await operator.get("/api/v1/users")).status_code == 403
        refused = await operator.post("/api/v1/users/ivanova", json={"role": "admin"})
        assert refused.status_code == 403
        forged = await admin.post(
            "/api/v1/users/ivanova", json={"disabled": True}, headers={"X-CSRF-Token": "x"}
        )
        assert forged.status_code == 403

        # Create; refuse a short password, an unknown municipality, a second login.
        made = await admin.post(
            "/api/v1/users",
            json={
                "login": "petrov",
                "password": PASSWORD,
                "role": "operator",
                "municipalities": ["anapa"],
                "name": "Петров",
            },
        )
        assert made.status_code == 201, made.text
        assert made.json()["municipalities"] == ["anapa"] and "password" not in made.text
        short = await admin.post(
            "/api/v1/users", json={"login": "x2", "password": "short", "role": "admin"}
        )
        assert short.status_code == 422 and "at least" in short.json()["detail"]
        nowhere = await admin.post(
            "/api/v1/users",
            json={
                "login": "x3",
                "password": PASSWORD,
                "role": "operator",
                "municipalities": ["atlantis"],
            },
        )
        assert nowhere.status_code == 422 and "atlantis" in nowhere.json()["detail"]
        again = await admin.post(
            "/api/v1/users", json={"login": "petrov", "password": PASSWORD, "role": "admin"}
        )
        assert again.status_code == 409

        # A supervisor now: the whole region. Then disabled: her session ends at once.
        up = await admin.post(
            "/api/v1/users/ivanova", json={"role": "supervisor", "municipalities": []}
        )
        assert up.status_code == 200 and up.json()["municipalities"] == []
        off = await admin.post("/api/v1/users/ivanova", json={"disabled": True})
        assert off.json()["disabled"] is True
        assert (await operator.get("/console/api/session")).status_code == 401
        # An admin cannot disable or demote themselves.
        self_off = await admin.post("/api/v1/users/root", json={"disabled": True})
        assert self_off.status_code == 409
        self_down = await admin.post(
            "/api/v1/users/root", json={"role": "operator", "municipalities": ["sochi"]}
        )
        assert self_down.status_code == 409
        # Locked after failed sign-ins, unlocked; a reset password works, the old does not.
        for _ in range(6):
            await httpx.AsyncClient(base_url=server.url).post(
                "/console/api/sign-in", json={"login": "petrov", "password": "wrong password!"}
            )
        listed = {a["login"]: a for a in (await admin.get("/api/v1/users")).json()}
        assert listed["petrov"]["locked_until"] is not None
        unlocked = await admin.post("/api/v1/users/petrov/unlock")
        assert unlocked.json()["locked_until"] is None
        reset = await admin.post(
            "/api/v1/users/petrov/password", json={"password": "a new long passphrase"}
        )
        assert reset.status_code == 200
        petrov = await _session(server, "petrov", "a new long passphrase")
        await petrov.aclose()

        # Norms: a chain that does not exist and a notifier that does not are refused; a
        # valid set is in force for the next incident, and the configuration's comes back.
        in_force = (await admin.get("/api/v1/duty/norms")).json()
        assert in_force["source"] == "configuration" and in_force["norms"][0]["name"] == "slow"
        bad_chain = await admin.post(
            "/api/v1/duty/norms",
            json={"norms": [{"name": "fast", "acknowledge": 60, "escalation": "nope"}]},
        )
        assert bad_chain.status_code == 422 and "nope" in bad_chain.json()["detail"]
        bad_notifier = await admin.post(
            "/api/v1/duty/norms",
            json={
                "norms": [{"name": "fast", "acknowledge": 60, "escalation": "edds"}],
                "escalation": {"edds": [{"name": "Старший", "notify": "nobody"}]},
            },
        )
        assert bad_notifier.status_code == 422 and "nobody" in bad_notifier.json()["detail"]
        fast = await admin.post(
            "/api/v1/duty/norms",
            json={
                "norms": [
                    {"name": "fast", "types": ["fire"], "acknowledge": 60, "escalation": "edds"}
                ],
                "escalation": {
                    "edds": [{"name": "Старший", "notify": "pager", "recipients": ["+79990000000"]}]
                },
            },
        )
        assert fast.status_code == 200, fast.text
        assert fast.json()["source"] == "console" and fast.json()["by"].startswith("user:root")
        await hub.incidents.report(
            "f-1", Incident(title="Пожар", type="fire"), source="/test", municipality="sochi"
        )
        handling = await eventually(lambda: hub.duty.get("f-1"), what="the new norm applied")
        assert handling.norm == "fast"
        back = await admin.post("/api/v1/duty/norms/reset")
        assert back.json()["source"] == "configuration"
        await admin.aclose()
        await operator.aclose()

        await server.state.audit.flush()
        entries = [msgspec.json.decode(r.body) async for r in hub.journal.all_records("audit")]
        assert not any(PASSWORD in str(e) or "a new long passphrase" in str(e) for e in entries)
        actions = {e["action"] for e in entries}
        assert {
            "POST /api/v1/users",
            "POST /api/v1/users/petrov/password",
            "POST /api/v1/users/petrov/unlock",
            "POST /api/v1/duty/norms",
        } <= actions


async def test_the_admin_page_in_a_browser(tmp_path):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    loaded = load_config_text(CONFIG, tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users = server.state.console.users
        await users.create("root", PASSWORD, role="admin", name="Администратор")
        await users.create("ivanova", PASSWORD, role="operator", municipalities=["sochi"])
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
                await expect(operator.get_by_test_id("nav-admin")).to_have_count(0)
                page = await signed_in("root")
                await page.get_by_test_id("nav-admin").click()
                # A new operator account.
                form = page.get_by_test_id("account-form")
                await form.locator("input[name=login]").fill("sidorova")
                await form.locator("input[name=name]").fill("Сидорова В.")
                await form.locator("input[name=municipalities]").fill("sochi")
                await form.locator("input[name=password]").fill(PASSWORD)
                await page.get_by_test_id("account-create").click()
                await expect(page.get_by_test_id("account-sidorova")).to_contain_text("Сочи")
                # Ivanova disabled: her console is signed out on its next request.
                await page.get_by_test_id("toggle-ivanova").click()
                await expect(page.get_by_test_id("account-ivanova")).to_have_attribute(
                    "data-disabled", "true"
                )
                assert (await users.get("ivanova")).disabled
                await shot(page, "admin-1-accounts")
                # A shift for Sidorova on the roster.
                await page.get_by_test_id("admin-tab-roster").click()
                shift = page.get_by_test_id("shift-form")
                await shift.locator("select[name=municipality]").select_option("sochi")
                await shift.locator("select[name=post]").select_option("edds")
                await shift.locator("input[name=login]").fill("sidorova")
                day = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
                await shift.locator("input[name=start]").fill(f"{day}T08:00")
                await shift.locator("input[name=end]").fill(f"{day}T20:00")
                await page.get_by_test_id("shift-add").click()
                await expect(page.get_by_test_id("shift-sidorova")).to_be_visible()
                [made] = await hub.roster.shifts(logins=["sidorova"])
                assert (made.end - made.start).total_seconds() == 12 * 3600
                # The norms: a broken edit says why; the configuration's stay in force.
                await page.get_by_test_id("admin-tab-norms").click()
                norms = page.get_by_test_id("admin-norms")
                await expect(norms).to_have_attribute("data-source", "configuration")
                await expect(page.get_by_test_id("norm-slow")).to_contain_text("3600")
                await page.fill(
                    "textarea[name=norms]", '{"norms": [{"name": "x", "escalation": "nope"}]}'
                )
                await page.get_by_test_id("norms-save").click()
                await expect(page.get_by_test_id("norms-error")).to_contain_text("nope")
                await expect(norms).to_have_attribute("data-source", "configuration")
                await page.fill(
                    "textarea[name=norms]", '{"norms": [{"name": "quick", "acknowledge": 90}]}'
                )
                await page.get_by_test_id("norms-save").click()
                await expect(norms).to_have_attribute("data-source", "console")
                await expect(page.get_by_test_id("norm-quick")).to_contain_text("90")
                await shot(page, "admin-2-norms")
            finally:
                await browser.close()
