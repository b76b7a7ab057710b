"""Incident handling norms in a running hub: an incident's clocks, its SOP checklist, a missed
norm's severe event and the escalation chain — each step a real e-mail (Apprise to a real SMTP
server on loopback) — until someone acknowledges; who did what, in the audit log; another
district's operator cannot touch it; two hub processes on one PostgreSQL journal take every
step once."""

from __future__ import annotations

import asyncio
import os

import httpx
import msgspec
import pytest
from nabat.duty import ClockName
from nabat.interfaces.incident import Incident
from nabat.store import EventQuery
from nabat.testing import eventually, load_config_text, record, run_api, run_hub

pytestmark = pytest.mark.timeout(120)


def config(smtp_port: int, *, acknowledge: float = 0.6, storage: str = "") -> str:
    return f"""
[hub]
language = "en"
data_dir = "data"
{storage}
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.apprise]
[notifications]
backoff_initial = 0.2
backoff_max = 0.5

[instances.duty-mail]
kind = "apprise.notifier"
[instances.duty-mail.settings]
language = "ru"
[[instances.duty-mail.settings.targets]]
name = "mail"
url = "mailto://localhost:{smtp_port}?from=nabat@edds.example&to={{recipient}}"

[duty]
check_interval = 0.1

[[duty.norms]]
name = "dtp"
types = ["traffic_accident"]
acknowledge = {acknowledge}
dispatch = 600
report = 1800
escalation = "edds"
checklist = ["Уточнить число пострадавших", "Передать в 02 и 03", "Проверить камеры"]

[[duty.escalation.edds]]
name = "Старший оперативный дежурный"
notify = "duty-mail"
recipients = ["supervisor@edds.example"]
[[duty.escalation.edds]]
name = "Начальник ЕДДС"
after = 0.8
notify = "duty-mail"
recipients = ["head@edds.example"]
"""


ACCIDENT = Incident(title="ДТП, ул. Красная, 1", type="traffic_accident")


async def _report(hub, incident_id: str, incident: Incident = ACCIDENT) -> None:
    await hub.incidents.report(
        incident_id, incident, source="/test/112", municipality="krasnodar", severity="severe"
    )


async def _handling(hub, incident_id: str):
    return await hub.duty.get(incident_id)


async def _audit(hub) -> list[dict]:
    found = [msgspec.json.decode(r.body) async for r in hub.journal.all_records("audit")]
    return sorted(found, key=lambda e: e["id"])


async def test_a_missed_norm_escalates_up_the_chain_until_someone_acknowledges(tmp_path, smtp):
    loaded = load_config_text(config(smtp.port), tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users = server.state.console.users
        await users.create(
            "ivanova",
            "pw-ivanova-1",
            role="operator",
            name="Иванова А.",
            municipalities=["krasnodar"],
        )
        await users.create(
            "orlova", "pw-orlova-1", role="operator", name="Орлова Е.", municipalities=["sochi"]
        )
        missed = record(hub, "duty.norm.missed")
        escalated = record(hub, "duty.escalation.notified")
        await _report(hub, "112-1")
        handling = await eventually(lambda: _handling(hub, "112-1"), what="the handling")
        assert handling.norm == "dtp"
        assert [c.name for c in handling.clocks] == list(ClockName)
        assert handling.checklist[0].text == "Уточнить число пострадавших"

        # Nobody takes it: the norm is missed (severe), the supervisor is told by mail, then
        # the head of the ЕДДС.
        [miss] = await missed.wait_for_count("duty.norm.missed", 1, timeout=10)
        assert miss.severity == "severe" and miss.data["clock"] == "acknowledge"
        await escalated.wait_for_count("duty.escalation.notified", 2, timeout=10)
        [to_supervisor] = await eventually(
            lambda: smtp.to("supervisor@edds.example"), timeout=15, what="the supervisor's mail"
        )
        assert to_supervisor["Subject"] == "Происшествие не обработано в срок: ДТП, ул. Красная, 1"
        body = smtp.text(to_supervisor)
        assert "Старший оперативный дежурный:" in body
        assert "вышло за норматив «принятие» (dtp)" in body  # in the notifier's language
        await eventually(lambda: smtp.to("head@edds.example"), timeout=15, what="the head's mail")

        # Another district's operator does not see it; its own operator takes it.

        async def signed_in(login: str, password: str) -> httpx.AsyncClient:
            client = httpx.AsyncClient(base_url=server.url)
            answer = await client.post(
                "/console/api/sign-in", json={"login": login, "password": password}
            )
            assert answer.status_code == 200, answer.text
            client.headers["X-CSRF-Token"] = answer.json()["csrf"]
            return client

        orlova = await signed_in("orlova", "pw-orlova-1")
        other = await orlova.post("/api/v1/incidents/112-1/acknowledge")
        assert other.status_code == 404
        assert (await orlova.get("/api/v1/incidents/112-1/handling")).status_code == 404
        ivanova = await signed_in("ivanova", "pw-ivanova-1")
        taken = await ivanova.post("/api/v1/incidents/112-1/acknowledge")
        assert taken.status_code == 200, taken.text
        clock = next(c for c in taken.json()["clocks"] if c["name"] == "acknowledge")
        assert clock["done_by"].startswith("user:ivanova")
        [chain] = taken.json()["escalations"]
        assert chain["stopped_by"].startswith("user:ivanova")
        assert [n["name"] for n in chain["notified"]] == [
            "Старший оперативный дежурный",
            "Начальник ЕДДС",
        ]
        # The SOP: a step ticked, with who; a step that is not there.
        ticked = await ivanova.post("/api/v1/incidents/112-1/checklist/1", json={"done": True})
        assert ticked.status_code == 200
        assert ticked.json()["checklist"][1]["done_by"].startswith("user:ivanova")
        assert (
            await ivanova.post("/api/v1/incidents/112-1/checklist/9", json={})
        ).status_code == 404
        passed = await ivanova.post(
            "/api/v1/incidents/112-1/dispatch", json={"services": ["02", "03"]}
        )
        assert passed.status_code == 200
        # The list of open incidents' handling, the operator's district only.
        listed = await orlova.get("/api/v1/duty/incidents")
        assert listed.json()["items"] == []
        assert [
            h["incident"] for h in (await ivanova.get("/api/v1/duty/incidents")).json()["items"]
        ] == ["112-1"]
        await orlova.aclose()
        await ivanova.aclose()

        # No step after the acknowledgement: the chain stays at two mails.
        await hub.duty.sweep()
        assert len(smtp.to("supervisor@edds.example")) == 1
        assert len(smtp.to("head@edds.example")) == 1
        # The audit log tells the chain: the miss and each step by the hub, then who took it.
        await server.state.audit.flush()
        actions = [(e["actor"].split(" ")[0], e["action"]) for e in await _audit(hub)]
        chain = [a for a in actions if a[1].startswith("duty.")]
        assert chain[:4] == [
            ("hub:duty", "duty.norm.missed"),
            ("hub:duty", "duty.escalation.notified"),
            ("hub:duty", "duty.escalation.notified"),
            ("user:ivanova", "duty.incident.acknowledged"),
        ]
        assert ("token:user:ivanova", "POST /api/v1/incidents/112-1/acknowledge") in actions


async def test_a_norm_met_in_time_raises_nothing_and_a_closed_incident_stops(tmp_path, smtp):
    loaded = load_config_text(config(smtp.port, acknowledge=30), tmp_path)
    async with run_hub(loaded) as hub:
        await _report(hub, "112-2")
        await eventually(lambda: _handling(hub, "112-2"), what="the handling")
        done = await hub.duty.acknowledge("112-2", by="user:petrov (Петров)")
        assert done.clock(ClockName.ACKNOWLEDGE).done_by == "user:petrov (Петров)"
        again = await hub.duty.acknowledge("112-2", by="user:sidorov")  # changes nothing
        assert again.clock(ClockName.ACKNOWLEDGE).done_by == "user:petrov (Петров)"
        await hub.duty.report("112-2", "Донесение передано в ЦУКС", by="user:petrov")
        await hub.incidents.close_incident("112-2", source="/test/112")
        closed = await eventually(
            lambda: _closed(hub, "112-2"), timeout=10, what="the handling closed"
        )
        assert closed.clock(ClockName.DISPATCH).missed_at is None
        from nabat.duty import DutyError

        with pytest.raises(DutyError) as err:
            await hub.duty.dispatch("112-2", ["01"], by="user:petrov")
        assert err.value.status == 409
        # An incident no norm covers has no clocks.
        await _report(hub, "112-3", Incident(title="Кошка на дереве", type="animal"))
        await asyncio.sleep(0)
        page = await hub.journal.query(EventQuery(types=("duty.>",), limit=100))
        assert [e.event.type for e in page.events] == [
            "duty.incident.opened",
            "duty.incident.acknowledged",
            "duty.incident.reported",
        ]
        assert await hub.duty.get("112-3") is None
        assert smtp.messages == []


async def _closed(hub, incident_id: str):
    found = await hub.duty.get(incident_id)
    return found if found is not None and found.closed_at is not None else None


async def test_two_hub_processes_on_one_journal_take_each_step_once(tmp_path, smtp, pg_schema):
    """Both hubs sweep the same clocks over and over, at once, while the norm runs out and the
    steps come due: each miss, each step, each mail once."""
    dsn = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    storage = f'[storage]\nurl = "{dsn}"\nschema = "{pg_schema}"'
    texts = [config(smtp.port, acknowledge=0.3, storage=storage) for _ in range(2)]
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    one_cfg = load_config_text(texts[0], tmp_path / "one")
    two_cfg = load_config_text(texts[1], tmp_path / "two")
    async with run_hub(one_cfg) as one, run_hub(two_cfg) as two:
        await _report(one, "112-9")
        await eventually(lambda: _handling(two, "112-9"), what="the handling, seen by both")

        async def sweep_hard(hub) -> None:
            for _ in range(40):
                await asyncio.gather(hub.duty.sweep(), hub.duty.sweep())
                await asyncio.sleep(0.04)

        await asyncio.gather(sweep_hard(one), sweep_hard(two))
        await eventually(lambda: smtp.to("head@edds.example"), timeout=15, what="the head's mail")
        handling = await two.duty.get("112-9")
        [chain] = handling.escalations
        assert [n.step for n in chain.notified] == [0, 1]
        page = await one.journal.query(EventQuery(types=("duty.>",), limit=100))
        assert sorted(e.event.type for e in page.events) == [
            "duty.escalation.notified",
            "duty.escalation.notified",
            "duty.incident.opened",
            "duty.norm.missed",
        ]
        requests = await one.journal.query(EventQuery(types=("notification.requested",), limit=100))
        assert len(requests.events) == 2
        await asyncio.sleep(1.0)  # let any duplicate mail arrive, were there one
        assert len(smtp.to("supervisor@edds.example")) == 1
        assert len(smtp.to("head@edds.example")) == 1


async def test_a_late_dispatch_escalates_until_it_is_done(tmp_path, smtp):
    text = config(smtp.port).replace(
        "acknowledge = 0.6\ndispatch = 600", "acknowledge = 0\ndispatch = 0.4"
    )
    loaded = load_config_text(text, tmp_path)
    async with run_hub(loaded) as hub:
        escalated = record(hub, "duty.escalation.notified")
        await _report(hub, "112-8")
        await escalated.wait_for_count("duty.escalation.notified", 1, timeout=10)
        [mail] = await eventually(lambda: smtp.to("supervisor@edds.example"), timeout=15)
        assert "«передача в службы»" in smtp.text(mail) and "не передано в службы" in smtp.text(
            mail
        )
        done = await hub.duty.dispatch("112-8", ["02"], by="user:ivanova")
        [chain] = done.escalations
        assert chain.stopped_by == "user:ivanova" and chain.next_at is None
        await asyncio.sleep(1.0)  # the head's step was due 0.8 s later: it must not come
        await hub.duty.sweep()
        assert smtp.to("head@edds.example") == []


def test_a_misspelt_escalation_notifier_is_a_configuration_error(tmp_path):
    from nabat.config import ConfigInvalid

    text = config(2525).replace(
        'notify = "duty-mail"\nrecipients = ["head', 'notify = "duty-mial"\nrecipients = ["head'
    )
    with pytest.raises(ConfigInvalid) as err:
        load_config_text(text, tmp_path)
    [issue] = [i for i in err.value.issues if "duty-mial" in i.reason]
    assert (
        issue.path == "duty.escalation.edds.1.notify" and "did you mean duty-mail" in issue.reason
    )
