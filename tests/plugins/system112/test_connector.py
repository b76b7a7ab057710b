"""``system112.connector`` end to end, over real HTTP both ways.

A hub with its API and simulated cameras; the "112 centre" is a real aiohttp server. Cards go in
signed with the independent ``standardwebhooks`` package; what the hub forwards is checked with
the same package and against the EIDO schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import standardwebhooks
from aiohttp import web
from nabat.events import Event
from nabat.testing import eventually, load_config_text, record, run_api, run_hub
from nabat_system112.connector import System112Connector
from nabat_system112.eido import parse_eido

IN_SECRET = "whsec_" + "C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
OUT_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SAMPLE = Path(__file__).parents[2] / "data" / "eido" / "sample-call-transfer.json"


class Centre:
    """The 112 centre's side: takes forwarded EIDO, answers per the incident's title."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.down = False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        standardwebhooks.Webhook(OUT_SECRET).verify(body, dict(request.headers))
        if self.down:
            return web.Response(status=503)
        document = parse_eido(body)  # schema-valid, or this raises and the test sees a 500
        self.received.append(document)
        title = document["incidentComponent"].get("incidentTypeInternalText", "")
        if "inline" in title:
            return web.json_response(
                {"status": "accepted", "card": "КИО-77", "operator": "Иванова"}
            )
        return web.Response(status=202)

    async def __aenter__(self) -> Centre:
        app = web.Application()
        app.router.add_post("/eido", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/eido"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def signed(body: bytes, msg_id: str, secret: str = IN_SECRET) -> dict[str, str]:
    now = datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def config(centre: Centre, ack_timeout: float = 2.0) -> str:
    text = f"""
[hub]
language = "en"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[plugins.watch]
enabled = false
[plugins.eventlog]
enabled = false
[plugins.simulator]
[plugins.system112]
[incidents]
cameras = 2
[instances.krd-112]
kind = "system112.connector"
municipality = "krasnodar"
settings.inbound_secrets = [{{ env = "IN_112_SECRET" }}]
settings.forward_url = "{centre.url}"
settings.forward_secret = {{ env = "OUT_112_SECRET" }}
settings.agency = "edds.krasnodar"
settings.ack_timeout = {ack_timeout}
[instances.krd-112.delivery]
backoff_initial = 0.1
backoff_max = 0.5
"""
    for name, lat in (("cam-a", 45.0362), ("cam-b", 45.0382), ("cam-far", 45.0900)):
        text += f"""
[instances.{name}]
kind = "simulator.camera"
municipality = "krasnodar"
lat = {lat}
lon = 38.9753
settings.fault_rate = 0.0
"""
    return text


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    monkeypatch.setenv("IN_112_SECRET", IN_SECRET)
    monkeypatch.setenv("OUT_112_SECRET", OUT_SECRET)


def card(**fields) -> bytes:
    base = {
        "id": "КИО-2026-000123",
        "time": "2026-11-25T10:15:00+03:00",
        "caller": "+7 918 123-45-67",
        "address": "г. Краснодар, ул. Красная, 1",
        "lat": 45.0355,
        "lon": 38.9753,
        "type": "traffic_accident",
        "description": "Столкновение двух автомобилей",
        "victims": 2,
        "services": ["03", "02"],
    }
    return json.dumps({**base, **fields}, ensure_ascii=False).encode()


async def test_cards_become_incidents_with_the_nearest_cameras(tmp_path):
    async with Centre() as centre:
        loaded = load_config_text(config(centre), tmp_path)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            changes = record(hub, "incident.*")
            url = f"{server.url}/plugins/system112/krd-112/cards"
            async with httpx.AsyncClient(timeout=10) as http:
                r = await http.post(url, content=card(), headers=signed(card(), "m1"))
                assert r.status_code == 200, r.text
                receipt = r.json()
                assert receipt["change"] == "created" and receipt["version"] == 1
                assert receipt["municipality"] == "krasnodar"
                incident_id = receipt["incident"]

                # Delivered twice (a retry): nothing changes.
                r = await http.post(url, content=card(), headers=signed(card(), "m1"))
                assert r.json()["change"] == "unchanged"

                record_ = await eventually(
                    lambda: hub.incidents.get(incident_id), what="the incident"
                )
                found = record_.incident
                assert found.caller == "+7 918 123-45-67" and found.victims == 2
                assert found.services == ["02", "03"] and found.external_id == "КИО-2026-000123"
                assert [c.id for c in found.cameras] == ["cam-a", "cam-b"]  # not cam-far
                assert record_.severity == "severe"  # victims

                later = card(victims=3, updated="2026-11-25T10:20:00+03:00")
                r = await http.post(url, content=later, headers=signed(later, "m2"))
                assert r.json()["change"] == "updated"
                # An older version overtaken by the newer one is ignored.
                older = card(victims=1, updated="2026-11-25T10:17:00+03:00")
                r = await http.post(url, content=older, headers=signed(older, "m3"))
                assert r.json()["change"] == "stale"
                closed = card(status="closed", updated="2026-11-25T11:00:00+03:00")
                r = await http.post(url, content=closed, headers=signed(closed, "m4"))
                assert r.json()["change"] == "closed"

                kinds = [e.type for e in changes.events]
                assert kinds[0] == "incident.created" and kinds[-1] == "incident.closed"
                assert all(e.subject == incident_id for e in changes.events)

                # Snapshots were taken and kept with the incident.
                async def pictures():
                    kept = await hub.incidents.get(incident_id)
                    return [c.snapshot for c in kept.incident.cameras if c.snapshot]

                assert len(await eventually(pictures, what="snapshots")) == 2
                # 112's own incident is never sent back to it.
                assert centre.received == []

                # Refused: bad signature, bad card (with the field), no such instance.
                r = await http.post(url, content=card(), headers=signed(card(), "m5", OUT_SECRET))
                assert r.status_code == 401
                bad = card(victims="two")
                r = await http.post(url, content=bad, headers=signed(bad, "m6"))
                assert r.status_code == 400
                assert r.json()["errors"] == [
                    {"field": "$.victims", "reason": "Expected `int | null`, got `str`"}
                ]
                for bad_place in ("Krasnodar", "atlantis"):
                    bad = card(id="КИО-9", municipality=bad_place, lat=None, lon=None)
                    r = await http.post(url, content=bad, headers=signed(bad, f"m-{bad_place}"))
                    assert r.status_code == 400, r.text
                    assert r.json()["errors"][0]["field"] == "$.municipality"
                r = await http.post(
                    f"{server.url}/plugins/system112/nowhere/cards",
                    content=card(),
                    headers=signed(card(), "m7"),
                )
                assert r.status_code == 404


async def test_eido_documents_are_validated_and_mapped(tmp_path):
    async with Centre() as centre:
        loaded = load_config_text(config(centre), tmp_path)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            url = f"{server.url}/plugins/system112/krd-112/eido"
            body = SAMPLE.read_bytes()
            async with httpx.AsyncClient(timeout=10) as http:
                r = await http.post(url, content=body, headers=signed(body, "e1"))
                assert r.status_code == 200, r.text
                found = await hub.incidents.get(r.json()["incident"])
                assert found is not None
                assert found.incident.caller == "8195551212"
                assert "Wilmington" in (found.incident.address or "")
                assert found.incident.external_id == (
                    "urn:emergency:uid:incidentid:a56e556d871:bcf.state.pa.us"
                )

                broken = json.loads(body)
                del broken["eidoVersion"]
                broken["locationComponent"][1]["lastUpdateTimeStamp"] = 17
                raw = json.dumps(broken).encode()
                r = await http.post(url, content=raw, headers=signed(raw, "e2"))
                assert r.status_code == 400
                assert r.json()["errors"] == [
                    {"field": "$.eidoVersion", "reason": "required but missing"},
                    {
                        "field": "$.locationComponent[1].lastUpdateTimeStamp",
                        "reason": "must be of type string, not 17",
                    },
                ]
                # Nothing of the refused document was recorded.
                assert len(await hub.incidents.list()) == 1


async def test_hub_incidents_go_to_112_as_eido_and_their_confirmation_is_tracked(tmp_path):
    async with Centre() as centre:
        loaded = load_config_text(config(centre, ack_timeout=1.5), tmp_path)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            acks = record(hub, "system112.ack.*")
            token, _ = await server.state.tokens.create("op", ["events:write", "events:read"])
            async with httpx.AsyncClient(
                base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
            ) as http:

                async def open_(title: str) -> str:
                    r = await http.post(
                        "/api/v1/incidents",
                        json={
                            "title": title,
                            "type": "fire",
                            "services": ["01"],
                            "location": {"lat": 45.0355, "lon": 38.9753},
                        },
                    )
                    assert r.status_code == 201, r.text
                    return r.json()["id"]

                # An incident that cannot be read as one must not hold up those after it.
                await hub.publish(
                    Event(
                        type="incident.created",
                        source="urn:agency:broken",
                        subject="broken-1",
                        data={"title": "x", "victims": -5},
                    )
                )
                inline = await open_("confirmed inline")
                later = await open_("confirmed later")
                never = await open_("never confirmed")
                await eventually(
                    lambda: (
                        {d["incidentComponent"]["internalIncidentId"] for d in centre.received}
                        >= {inline, later, never}
                    ),
                    what="three incidents at 112",
                )
                sent = next(
                    d
                    for d in centre.received
                    if d["incidentComponent"]["internalIncidentId"] == inline
                )
                assert sent["incidentComponent"]["incidentTypeCommonRegistryText"] == "fire"
                assert any("fire" in a.get("agencyType", []) for a in sent["agencyComponent"])

                # The later one: the 112 centre confirms by its own signed request.
                ack = json.dumps(
                    {"incident": later, "status": "accepted", "card": "КИО-78"}
                ).encode()
                r = await http.post(
                    "/plugins/system112/krd-112/acks", content=ack, headers=signed(ack, "a1")
                )
                assert r.status_code == 200, r.text
                r = await http.post(
                    "/plugins/system112/krd-112/acks", content=ack, headers=signed(ack, "a1")
                )
                assert r.status_code == 200  # a repeat is fine
                naive = json.dumps(
                    {"incident": later, "status": "accepted", "at": "2026-11-25T10:00:00"}
                ).encode()
                r = await http.post(
                    "/plugins/system112/krd-112/acks", content=naive, headers=signed(naive, "a0")
                )
                assert r.status_code == 400 and "timezone" in r.text.lower(), r.text
                unknown = json.dumps({"incident": "nope", "status": "accepted"}).encode()
                r = await http.post(
                    "/plugins/system112/krd-112/acks",
                    content=unknown,
                    headers=signed(unknown, "a2"),
                )
                assert r.status_code == 404

                overdue = await eventually(
                    lambda: [e for e in acks.events if e.type == "system112.ack.overdue"],
                    what="the overdue confirmation",
                )
                assert [e.subject for e in overdue] == [never]
                assert overdue[0].severity == "severe" and overdue[0].data.forwarded is True
                accepted = {e.subject: e for e in acks.events if e.type == "system112.ack.accepted"}
                assert set(accepted) == {inline, later}
                assert accepted[inline].data.card == "КИО-77"
                assert accepted[later].data.card == "КИО-78"
                assert not accepted[later].data.late and accepted[later].data.seconds < 1.5

                # 112 unreachable: the alarm is raised all the same, and delivery goes on.
                centre.down = True
                down = await open_("while 112 is down")
                await eventually(
                    lambda: [e for e in acks.events if e.subject == down], what="overdue while down"
                )
                [alarm] = [e for e in acks.events if e.subject == down]
                assert alarm.type == "system112.ack.overdue" and alarm.data.forwarded is False
                centre.down = False
                await eventually(
                    lambda: [
                        d
                        for d in centre.received
                        if d["incidentComponent"]["internalIncidentId"] == down
                    ],
                    what="the retried forward",
                )


async def test_an_awaited_confirmation_survives_a_restart(tmp_path):
    async with Centre() as centre:
        loaded = load_config_text(config(centre, ack_timeout=600), tmp_path)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            token, _ = await server.state.tokens.create("op", ["events:write"])
            async with httpx.AsyncClient(
                base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
            ) as http:
                r = await http.post("/api/v1/incidents", json={"title": "пожар", "type": "fire"})
                incident_id = r.json()["id"]
            await eventually(lambda: centre.received, what="the forward")
        async with run_hub(loaded) as hub, run_api(hub) as server:
            acks = record(hub, "system112.ack.*")
            ack = json.dumps({"incident": incident_id, "status": "rejected", "reason": "дубль"})
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                r = await http.post(
                    "/plugins/system112/krd-112/acks",
                    content=ack.encode(),
                    headers=signed(ack.encode(), "r1"),
                )
                assert r.status_code == 200, r.text
            [rejected] = await eventually(lambda: acks.events, what="the rejection")
            assert rejected.type == "system112.ack.rejected" and rejected.data.reason == "дубль"
            assert rejected.subject == incident_id
            assert datetime.now(UTC) - rejected.time < timedelta(minutes=1)
        # Once confirmed, an update after another restart awaits no new confirmation.
        async with run_hub(loaded) as hub, run_api(hub) as server:
            token, _ = await server.state.tokens.create("op2", ["events:write"])
            async with httpx.AsyncClient(
                base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
            ) as http:
                r = await http.post(f"/api/v1/incidents/{incident_id}/close")
                assert r.status_code == 200, r.text
            await eventually(lambda: len(centre.received) == 2, what="the closing forward")
            assert centre.received[1]["incidentComponent"]["incidentStatusCommonRegistryText"] == [
                "Closed"
            ]
            [connector] = hub.instances(System112Connector)
            assert connector.pending == {}
