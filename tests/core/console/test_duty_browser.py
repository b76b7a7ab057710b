"""The duty shift in a real browser (Debian's Chromium through Playwright): an incident arrives
and the operator's console shows it with its clock counting down; nobody takes it, so the
norm is missed and the supervisor's escalation e-mail arrives at a real SMTP server; the
supervisor signs in, acknowledges in the console, the escalation stops and the incident shows
the chain — as the audit log does; the operator hands the shift over and the incoming one,
warned she signed in before her shift, accepts it. Screenshots in
``test-artifacts/console/duty-*.png``."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from nabat.interfaces.incident import Incident
from nabat.testing import eventually, load_config_text, run_api, run_hub

_spec = importlib.util.spec_from_file_location(
    "_console_browser", Path(__file__).with_name("test_browser.py")
)
_browser = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_browser)
CHROMIUM, CHROMIUM_ARGS, PASSWORD = _browser.CHROMIUM, _browser.CHROMIUM_ARGS, _browser.PASSWORD
_browser_or_skip, shot = _browser._browser_or_skip, _browser.shot

pytestmark = pytest.mark.timeout(180)


def config(smtp_port: int) -> str:
    return f"""
[hub]
language = "ru"
data_dir = "data"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.apprise]
[notifications]
backoff_initial = 0.2

[instances.duty-mail]
kind = "apprise.notifier"
[instances.duty-mail.settings]
language = "ru"
[[instances.duty-mail.settings.targets]]
name = "mail"
url = "mailto://localhost:{smtp_port}?from=nabat@edds.example&to={{recipient}}"

[duty]
check_interval = 0.2
[[duty.norms]]
name = "dtp"
types = ["traffic_accident"]
acknowledge = 6
dispatch = 600
report = 1800
escalation = "edds"
checklist = ["Уточнить число пострадавших", "Передать в 02 и 03"]
[[duty.escalation.edds]]
name = "Старший оперативный дежурный"
notify = "duty-mail"
recipients = ["petrov@edds.example"]
[[duty.escalation.edds]]
name = "Начальник ЕДДС"
after = 600
notify = "duty-mail"
recipients = ["head@edds.example"]
"""


async def test_an_unacknowledged_incident_escalates_and_the_supervisor_takes_it(tmp_path, smtp):
    _browser_or_skip()
    from playwright.async_api import async_playwright, expect

    loaded = load_config_text(config(smtp.port), tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users = server.state.console.users
        await users.create(
            "ivanova", PASSWORD, role="operator", name="Иванова А.", municipalities=["krasnodar"]
        )
        await users.create("petrov", PASSWORD, role="supervisor", name="Петров Б.")
        await users.create(
            "sidorova", PASSWORD, role="operator", name="Сидорова В.", municipalities=["krasnodar"]
        )
        # Ivanova's shift ends in half an hour; Sidorova's begins then.
        now = datetime.now(UTC)
        change = now + timedelta(minutes=30)
        for login, start, end in (
            ("ivanova", now - timedelta(hours=7), change),
            ("sidorova", change, change + timedelta(hours=12)),
        ):
            await hub.roster.add(
                municipality="krasnodar", post="edds", login=login, start=start, end=end, by="test"
            )
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
                await operator.get_by_test_id("nav-incidents").click()
                # A 112 card arrives; the list shows it with its clock running.
                await hub.incidents.report(
                    "112-77",
                    Incident(title="ДТП, ул. Северная, 10", type="traffic_accident"),
                    source="/test/112",
                    municipality="krasnodar",
                    severity="severe",
                )
                clock = operator.get_by_test_id("list-clock-112-77")
                await expect(clock).to_have_attribute("data-state", "running", timeout=10_000)
                await expect(clock).to_contain_text("осталось")
                await operator.get_by_test_id("incident-row-112-77").click()
                take = operator.get_by_test_id("clock-acknowledge")
                await expect(take).to_have_attribute("data-state", "running")
                await expect(operator.get_by_test_id("step-0")).to_contain_text("пострадавших")
                await shot(operator, "duty-1-clock")

                # Nobody takes it: the clock runs out, the escalation starts and the
                # supervisor's mail arrives.
                await expect(take).to_have_attribute("data-state", "missed", timeout=15_000)
                # The sweep that starts it runs every 5 s (later on a loaded machine), and the
                # page asks again every few seconds.
                await expect(operator.get_by_test_id("escalation-step-0")).to_contain_text(
                    "Старший оперативный дежурный", timeout=30_000
                )
                [mail] = await eventually(
                    lambda: smtp.to("petrov@edds.example"), timeout=20, what="the supervisor's mail"
                )
                assert "ДТП, ул. Северная, 10" in mail["Subject"]
                assert "откройте его в консоли" in smtp.text(mail)
                await shot(operator, "duty-2-escalated")

                # The supervisor opens it and acknowledges: the escalation stops, and the
                # operator's page shows who stopped it.
                supervisor = await signed_in("petrov")
                await supervisor.goto(f"{server.url}/console/incidents/112-77")
                acknowledge = supervisor.get_by_test_id("handling-acknowledge")
                await expect(acknowledge).to_contain_text("остановить эскалацию")
                await acknowledge.click()
                await expect(supervisor.get_by_test_id("escalation-stopped")).to_contain_text(
                    "petrov"
                )
                await expect(supervisor.get_by_test_id("clock-acknowledge")).to_have_attribute(
                    "data-state", "late"
                )
                await expect(operator.get_by_test_id("escalation")).to_have_attribute(
                    "data-stopped", "true", timeout=20_000
                )
                await expect(operator.get_by_test_id("clock-acknowledge-by")).to_contain_text(
                    "petrov"
                )
                # The operator ticks a step of the checklist.
                await operator.get_by_test_id("step-1").locator("input").check()
                await expect(operator.get_by_test_id("step-1")).to_have_attribute(
                    "data-done", "true"
                )
                await shot(supervisor, "duty-3-acknowledged")

                # Ivanova hands the shift over with a note; what is open goes with it.
                await operator.get_by_test_id("nav-shift").click()
                await operator.fill("textarea[name=notes]", "Камера на Северной не работает")
                await operator.get_by_test_id("handover-create").click()
                [made] = await eventually(lambda: hub.handovers.list(), what="the handover")
                handover = operator.get_by_test_id(f"handover-{made.id}")
                await expect(handover.get_by_test_id("handover-incidents")).to_contain_text(
                    "ДТП, ул. Северная, 10"
                )
                await expect(handover.get_by_test_id("handover-accept")).to_have_count(0)
                # Sidorova signs in early (before her shift: warned, not kept out), reads it
                # and accepts.
                incoming = await signed_in("sidorova")
                await expect(incoming.get_by_test_id("off-shift")).to_be_visible()
                await incoming.get_by_test_id("nav-shift").click()
                theirs = incoming.get_by_test_id(f"handover-{made.id}")
                await expect(theirs).to_contain_text("Камера на Северной не работает")
                await expect(theirs).to_contain_text("sidorova")  # the incoming, from the roster
                await theirs.get_by_test_id("handover-accept").click()
                await expect(theirs).to_have_attribute("data-accepted", "true")
                await expect(theirs.get_by_test_id("handover-accepted")).to_contain_text("sidorova")
                await shot(incoming, "duty-4-handover")
                await expect(operator.get_by_test_id("off-shift")).to_have_count(0)
            finally:
                await browser.close()
        # The audit log tells the chain, in order.
        await server.state.audit.flush()
        entries = sorted(
            [msgspec.json.decode(r.body) async for r in hub.journal.all_records("audit")],
            key=lambda e: e["id"],
        )
        chain = [(e["actor"].split(" ")[0], e["action"]) for e in entries if "duty." in e["action"]]
        assert chain == [
            ("hub:duty", "duty.norm.missed"),
            ("hub:duty", "duty.escalation.notified"),
            ("user:petrov", "duty.incident.acknowledged"),
            ("user:petrov", "duty.escalation.stopped"),
            ("user:ivanova", "duty.checklist.ticked"),
        ]
        assert smtp.to("head@edds.example") == []  # stopped before its step
