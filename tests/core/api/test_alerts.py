"""``/api/v1/alerts`` over real HTTP: an alert reaches every warning device in its area (by
municipality, polygon or circle), each outcome is tracked (activated, failed, unreachable,
with retries), the two-person rule, cancel, update, CAP XML, and municipality limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
from nabat.hookspecs import hookimpl
from nabat.interfaces import (
    ActivationOutcome,
    ActivationResult,
    AlertDevice,
    DeviceState,
    DeviceStatus,
    SelfTestResult,
)
from nabat.testing import eventually, record

CAP_DATA = Path(__file__).resolve().parents[2] / "data" / "cap"


class SirenSettings(msgspec.Struct, forbid_unknown_fields=True):
    mode: str = "ok"  # ok | refuse | flaky | hang
    failures: int = 1  # flaky: how many first calls time out


class ScriptedSiren(AlertDevice):
    """A siren whose behaviour the test chooses; it remembers every command it got."""

    kind = "testsiren.siren"
    Settings = SirenSettings
    log: ClassVar[list[tuple[str, str, str]]] = []  # (device, command, alert id): all instances

    def __init__(self, context, settings) -> None:
        super().__init__(context, settings)
        self.calls = 0
        self.active: set[str] = set()

    def _result(self, alert_id: str, outcome: ActivationOutcome, detail: str = ""):
        return ActivationResult(
            alert_identifier=alert_id, outcome=outcome, at=datetime.now(UTC), detail=detail
        )

    async def activate(self, alert, message):
        self.calls += 1
        ScriptedSiren.log.append((self.context.instance_id, "activate", alert.identifier))
        mode = self.settings.mode
        if mode == "hang" or (mode == "flaky" and self.calls <= self.settings.failures):
            await asyncio.sleep(3600)
        if mode == "refuse":
            return self._result(alert.identifier, ActivationOutcome.FAILED, "amplifier fault")
        self.active.add(alert.identifier)
        return self._result(alert.identifier, ActivationOutcome.ACTIVATED, message.text or "")

    async def cancel(self, alert_identifier):
        ScriptedSiren.log.append((self.context.instance_id, "cancel", alert_identifier))
        self.active.discard(alert_identifier)
        return self._result(alert_identifier, ActivationOutcome.CANCELLED, "stopped")

    async def status(self):
        return DeviceStatus(state=DeviceState.IDLE, checked_at=datetime.now(UTC))

    async def self_test(self, audible=False):
        return SelfTestResult(passed=True, audible=audible, at=datetime.now(UTC))


class ScriptedSirenPlugin:
    @hookimpl
    def register_drivers(self):
        return [ScriptedSiren]


def siren(name: str, municipality: str, lat: float, lon: float, **settings) -> str:
    body = ", ".join(
        f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in settings.items()
    )
    return (
        f'[instances.{name}]\nkind = "testsiren.siren"\nmunicipality = "{municipality}"\n'
        f"lat = {lat}\nlon = {lon}\ntimeout = 0.3\nsettings = {{ {body} }}\n"
    )


@pytest.fixture
def api_plugins():
    ScriptedSiren.log = []
    return {"testsiren": ScriptedSirenPlugin()}


@pytest.fixture
def api_config():
    return "\n".join(
        [
            "[alerts]\nattempts = 3\nretry_delay = 0.05\n",
            siren("sochi-1", "sochi", 43.58, 39.72),
            siren("sochi-2", "sochi", 43.60, 39.75, mode="flaky", failures=1),
            siren("sochi-3", "sochi", 43.40, 39.95, mode="refuse"),
            siren("sochi-4", "sochi", 43.45, 39.90, mode="hang"),
            siren("krd-1", "krasnodar", 45.04, 38.98),
            siren("krd-2", "krasnodar", 45.10, 39.10),
        ]
    )


FLOOD = {
    "status": "Actual",
    "event": "Наводнение",
    "headline": "Угроза подтопления",
    "area": {"municipalities": ["sochi"]},
    "message": {"signal_seconds": 120, "text": "Внимание! Угроза наводнения."},
}


async def test_an_alert_reaches_every_device_in_the_area_and_each_outcome_is_tracked(api):
    seen = record(api.hub, "alert.>")
    client = await api.client("alerts:activate", "events:read")
    answer = await client.post("/api/v1/alerts", json=FLOOD, params={"wait": 10})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["phase"] == "completed"
    outcomes = {d["device"]: (d["outcome"], d["attempts"]) for d in body["devices"]}
    assert outcomes == {
        "sochi-1": ("activated", 1),
        "sochi-2": ("activated", 2),  # timed out once, retried: idempotent per identifier
        "sochi-3": ("failed", 1),  # the device refused: not retried
        "sochi-4": ("unreachable", 3),  # never answered: three tries
    }
    failed = next(d for d in body["devices"] if d["device"] == "sochi-3")
    assert failed["detail"] == "amplifier fault"
    alert = body["alert"]
    assert alert["status"] == "Actual" and alert["msgType"] == "Alert"
    assert alert["info"][0]["area"][0]["geocode"] == [
        {"valueName": "municipality", "value": "sochi"}
    ]
    assert not any(d == "krd-1" for d, _, _ in ScriptedSiren.log)  # outside the area

    await api.hub.bus.drain()
    types = [e.type for e in seen.events]
    assert types[0] == "alert.issued" and types[-1] == "alert.completed"
    per_device = {e.subject: e.type for e in seen.events if e.type.startswith("alert.device.")}
    assert per_device == {
        "sochi-1": "alert.device.activated",
        "sochi-2": "alert.device.activated",
        "sochi-3": "alert.device.failed",
        "sochi-4": "alert.device.unreachable",
    }
    done = seen.events[-1].data
    assert done.counts["activated"] == 2 and done.counts["unreachable"] == 1
    assert all(e.correlationid == body["id"] for e in seen.events)

    again = await client.get(f"/api/v1/alerts/{body['id']}")
    assert again.json()["devices"] == body["devices"]
    listed = (await client.get("/api/v1/alerts")).json()["items"]
    assert [a["id"] for a in listed] == [body["id"]]


async def test_polygons_and_circles_select_devices_by_location(api):
    client = await api.client("alerts:activate")
    polygon = [[45.0, 38.9], [45.0, 39.0], [45.08, 39.0], [45.08, 38.9], [45.0, 38.9]]
    answer = await client.post(
        "/api/v1/alerts",
        json={**FLOOD, "status": "Exercise", "area": {"polygons": [polygon]}},
        params={"wait": 10},
    )
    assert [d["device"] for d in answer.json()["devices"]] == ["krd-1"]
    circle = {"lat": 43.59, "lon": 39.73, "radius_km": 3}
    answer = await client.post(
        "/api/v1/alerts",
        json={**FLOOD, "status": "Test", "area": {"circles": [circle]}},
        params={"wait": 10},
    )
    assert sorted(d["device"] for d in answer.json()["devices"]) == ["sochi-1", "sochi-2"]
    nothing = await client.post(
        "/api/v1/alerts",
        json={**FLOOD, "area": {"circles": [{"lat": 60, "lon": 30, "radius_km": 1}]}},
    )
    assert nothing.status_code == 422 and "no warning device" in nothing.json()["detail"]


async def test_bad_requests_are_refused_with_the_field(api):
    client = await api.client("alerts:activate")
    unknown = await client.post(
        "/api/v1/alerts", json={**FLOOD, "area": {"municipalities": ["atlantis"]}}
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "area.municipalities[0]"
    open_ring = [[45.0, 38.9], [45.0, 39.0], [45.08, 39.0], [45.08, 38.9]]
    ring = await client.post("/api/v1/alerts", json={**FLOOD, "area": {"polygons": [open_ring]}})
    assert ring.status_code == 422 and ring.json()["errors"][0]["field"] == "area.polygons[0]"
    long = await client.post("/api/v1/alerts", json={**FLOOD, "message": {"signal_seconds": 240}})
    assert long.status_code == 400  # «Внимание всем!» lasts at most 3 minutes
    assert (
        await client.post("/api/v1/alerts", json={**FLOOD, "status": "Draft"})
    ).status_code == 400
    empty = await client.post("/api/v1/alerts", json={**FLOOD, "area": {}})
    assert empty.status_code == 422
    reader = await api.client("events:read")
    assert (await reader.post("/api/v1/alerts", json=FLOOD)).status_code == 403
    first = await client.post("/api/v1/alerts", json={**FLOOD, "identifier": "flood-1"})
    assert first.status_code == 202
    again = await client.post("/api/v1/alerts", json={**FLOOD, "identifier": "flood-1"})
    assert again.status_code == 409


async def test_a_district_token_alerts_only_its_own_devices(api):
    district = await api.client("alerts:activate", "events:read", municipalities=("krasnodar",))
    foreign = await district.post("/api/v1/alerts", json=FLOOD)
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["reason"] == "not yours"
    # A circle over both districts reaches only the token's own devices.
    wide = {"lat": 44.3, "lon": 39.3, "radius_km": 200}
    answer = await district.post(
        "/api/v1/alerts", json={**FLOOD, "area": {"circles": [wide]}}, params={"wait": 10}
    )
    assert sorted(d["device"] for d in answer.json()["devices"]) == ["krd-1", "krd-2"]
    regional = await api.client("alerts:activate", "events:read")
    sochi = (await regional.post("/api/v1/alerts", json=FLOOD)).json()["id"]
    assert (await district.get(f"/api/v1/alerts/{sochi}")).status_code == 404


async def test_cancel_stops_every_device_that_activated(api):
    client = await api.client("alerts:activate", "events:read")
    alert = (
        await client.post(
            "/api/v1/alerts",
            json={**FLOOD, "area": {"municipalities": ["krasnodar"]}},
            params={"wait": 10},
        )
    ).json()
    cancelled = await client.post(f"/api/v1/alerts/{alert['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["phase"] == "cancelled" and body["cancelled_by"].startswith("token:")
    assert {d["outcome"] for d in body["devices"]} == {"cancelled"}
    assert sorted(d for d, c, a in ScriptedSiren.log if c == "cancel" and a == alert["id"]) == [
        "krd-1",
        "krd-2",
    ]
    assert all(not api.hub.instance(d).active for d in ("krd-1", "krd-2"))
    assert (await client.post(f"/api/v1/alerts/{alert['id']}/cancel")).status_code == 409


async def test_an_update_sends_a_new_message_referencing_the_original(api):
    client = await api.client("alerts:activate", "events:read")
    original = (
        await client.post(
            "/api/v1/alerts",
            json={**FLOOD, "area": {"municipalities": ["krasnodar"]}},
            params={"wait": 10},
        )
    ).json()
    update = await client.post(
        f"/api/v1/alerts/{original['id']}/update",
        json={"message": {"signal": "none", "signal_seconds": 0, "text": "Отбой: вода уходит"}},
        params={"wait": 10},
    )
    assert update.status_code == 202, update.text
    body = update.json()
    assert body["alert"]["msgType"] == "Update"
    assert f",{original['id']}," in body["alert"]["references"]
    assert body["message"]["text"] == "Отбой: вода уходит"
    assert {d["outcome"] for d in body["devices"]} == {"activated"}
    assert (await client.get(f"/api/v1/alerts/{original['id']}")).json()["updated_by"] == body["id"]


async def test_a_cap_xml_alert_is_issued(api):
    client = await api.client("alerts:activate")
    xml = (CAP_DATA / "v1dot2_appendix_adot2.xml").read_text(encoding="utf-8")
    # Point the OASIS thunderstorm warning at Sochi: a municipality geocode.
    ours = "<geocode><valueName>municipality</valueName><value>sochi</value></geocode>"
    xml = xml.replace("<geocode>", ours + "<geocode>", 1)
    answer = await client.post(
        "/api/v1/alerts/cap",
        content=xml.encode(),
        headers={"Content-Type": "application/cap+xml"},
        params={"wait": 10},
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert sorted(d["device"] for d in body["devices"]) == [
        "sochi-1",
        "sochi-2",
        "sochi-3",
        "sochi-4",
    ]
    assert body["alert"]["info"][0]["event"] == "SEVERE THUNDERSTORM"
    bad = await client.post(
        "/api/v1/alerts/cap",
        content=b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>"
        b"<status>Real</status></alert>",
        headers={"Content-Type": "application/cap+xml"},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].startswith("/alert")


async def test_the_two_person_rule(api):
    api.hub.config.alerts.two_person_rule = True  # type: ignore[misc]
    first = await api.client("alerts:activate", "events:read")
    second = await api.client("alerts:activate", "events:read")
    alert = (
        await first.post(
            "/api/v1/alerts", json={**FLOOD, "area": {"municipalities": ["krasnodar"]}}
        )
    ).json()
    assert alert["phase"] == "pending_confirmation" and alert["confirm_by"]
    assert not [c for c in ScriptedSiren.log if c[2] == alert["id"]]  # nothing sounded yet
    own = await first.post(f"/api/v1/alerts/{alert['id']}/confirm")
    assert own.status_code == 403 and "second person" in own.json()["detail"]
    confirmed = await second.post(f"/api/v1/alerts/{alert['id']}/confirm")
    assert confirmed.status_code == 200 and confirmed.json()["confirmed_by"].startswith("token:")
    done = await api.hub.alerts.wait(alert["id"], 10)
    assert {d.outcome.value for d in done.devices} == {"activated"}
    # Exercises need no second person.
    drill = (
        await first.post(
            "/api/v1/alerts", json={**FLOOD, "status": "Exercise"}, params={"wait": 10}
        )
    ).json()
    assert drill["phase"] == "completed"
    # Not confirmed in time: expired, nothing sounded.
    api.hub.config.alerts.confirm_within = 0.2  # type: ignore[misc]
    late = (await first.post("/api/v1/alerts", json=FLOOD)).json()

    async def expired_now() -> bool:
        record = await api.hub.alerts.get(late["id"])
        return record is not None and record.phase.value == "expired"

    expired = await eventually(expired_now, what="expiry")
    assert expired
    assert not [c for c in ScriptedSiren.log if c[2] == late["id"]]
    refused = await second.post(f"/api/v1/alerts/{late['id']}/confirm")
    assert refused.status_code == 409


# -- CAP by msgType: Update and Cancel reference an earlier alert; Ack and Error are refused ---

CAP_HEADERS = {"Content-Type": "application/cap+xml"}


def cap_message(
    identifier: str,
    *,
    msg_type: str = "Alert",
    references: str | None = None,
    municipality: str = "krasnodar",
    status: str = "Actual",
    sender: str = "edds@krasnodar",
    sent: str = "2026-12-06T10:00:00+03:00",
    text: str = "Внимание! Угроза наводнения.",
) -> bytes:
    refs = f"<references>{references}</references>" if references is not None else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>{sender}</sender><sent>{sent}</sent>
  <status>{status}</status><msgType>{msg_type}</msgType><scope>Public</scope>{refs}
  <info><language>ru-RU</language><category>Met</category><event>Наводнение</event>
    <urgency>Immediate</urgency><severity>Severe</severity><certainty>Observed</certainty>
    <description>{text}</description>
    <area><areaDesc>{municipality}</areaDesc>
      <geocode><valueName>municipality</valueName><value>{municipality}</value></geocode>
    </area></info>
</alert>""".encode()


def sent_of(xml: bytes) -> str:
    """``sender,identifier,sent`` of a CAP message as its text says."""
    from lxml import etree

    root = etree.fromstring(xml)
    ns = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
    return ",".join(
        root.findtext(f"c:{n}", namespaces=ns) for n in ("sender", "identifier", "sent")
    )


def activated(alert_id: str) -> list[str]:
    return sorted(d for d, c, a in ScriptedSiren.log if c == "activate" and a == alert_id)


async def test_a_cap_cancel_stops_the_alert_and_sounds_nothing(api):
    client = await api.client("alerts:activate", "events:read")
    original = cap_message("flood-krd-1")
    issued = await client.post(
        "/api/v1/alerts/cap", content=original, headers=CAP_HEADERS, params={"wait": 10}
    )
    assert issued.status_code == 202, issued.text
    assert activated("flood-krd-1") == ["krd-1", "krd-2"]
    cancel = cap_message("flood-krd-1-cancel", msg_type="Cancel", references=sent_of(original))
    answer = await client.post("/api/v1/alerts/cap", content=cancel, headers=CAP_HEADERS)
    assert answer.status_code == 200, answer.text
    [record] = answer.json()["cancelled"]
    assert record["id"] == "flood-krd-1" and record["phase"] == "cancelled"
    assert {d["outcome"] for d in record["devices"]} == {"cancelled"}
    assert sorted(d for d, c, a in ScriptedSiren.log if c == "cancel") == ["krd-1", "krd-2"]
    # The Cancel itself reached no device as an alert, and created no alert of its own.
    assert not activated("flood-krd-1-cancel")
    assert all(not api.hub.instance(d).active for d in ("krd-1", "krd-2"))
    assert (await client.get("/api/v1/alerts/flood-krd-1-cancel")).status_code == 404
    again = await client.post("/api/v1/alerts/cap", content=cancel, headers=CAP_HEADERS)
    assert again.status_code == 409  # cancelled already


async def test_a_cap_update_supersedes_the_referenced_alert(api):
    client = await api.client("alerts:activate", "events:read")
    original = cap_message("flood-krd-2")
    await client.post(
        "/api/v1/alerts/cap", content=original, headers=CAP_HEADERS, params={"wait": 10}
    )
    update = cap_message(
        "flood-krd-2-u1",
        msg_type="Update",
        references=sent_of(original),
        sent="2026-12-06T10:05:00+03:00",
        text="Вода поднимается, уходите выше",
    )
    answer = await client.post(
        "/api/v1/alerts/cap", content=update, headers=CAP_HEADERS, params={"wait": 10}
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["id"] == "flood-krd-2-u1" and body["alert"]["msgType"] == "Update"
    assert body["alert"]["references"] == sent_of(original)
    assert body["message"]["text"] == "Вода поднимается, уходите выше"
    assert activated("flood-krd-2-u1") == ["krd-1", "krd-2"]
    first = (await client.get("/api/v1/alerts/flood-krd-2")).json()
    assert first["updated_by"] == "flood-krd-2-u1"
    twice = cap_message("flood-krd-2-u2", msg_type="Update", references=sent_of(original))
    assert (
        await client.post("/api/v1/alerts/cap", content=twice, headers=CAP_HEADERS)
    ).status_code == 409


async def test_cap_messages_that_are_not_alerts_or_name_no_known_alert_are_refused(api):
    client = await api.client("alerts:activate", "events:read")
    original = cap_message("flood-krd-3")
    await client.post(
        "/api/v1/alerts/cap", content=original, headers=CAP_HEADERS, params={"wait": 10}
    )
    sounded = len(ScriptedSiren.log)
    for kind in ("Ack", "Error"):
        answer = await client.post(
            "/api/v1/alerts/cap",
            content=cap_message(f"x-{kind}", msg_type=kind, references=sent_of(original)),
            headers=CAP_HEADERS,
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == "/alert/msgType"
    unknown = cap_message(
        "x-cancel",
        msg_type="Cancel",
        references="edds@krasnodar,no-such-alert,2026-12-06T10:00:00+03:00",
    )
    answer = await client.post("/api/v1/alerts/cap", content=unknown, headers=CAP_HEADERS)
    assert answer.status_code == 404 and "no-such-alert" in answer.json()["detail"]
    other_sender = sent_of(original).replace("edds@krasnodar", "someone@else")
    answer = await client.post(
        "/api/v1/alerts/cap",
        content=cap_message("x-cancel", msg_type="Cancel", references=other_sender),
        headers=CAP_HEADERS,
    )
    assert answer.status_code == 404
    wrong_time = sent_of(original).replace("10:00:00", "10:00:01")
    answer = await client.post(
        "/api/v1/alerts/cap",
        content=cap_message("x-cancel", msg_type="Cancel", references=wrong_time),
        headers=CAP_HEADERS,
    )
    assert answer.status_code == 422 and "was sent at" in answer.json()["detail"]
    bare = await client.post(
        "/api/v1/alerts/cap",
        content=cap_message("x-cancel", msg_type="Cancel"),
        headers=CAP_HEADERS,
    )
    assert bare.status_code == 422 and bare.json()["errors"][0]["field"] == "/alert/references"
    assert len(ScriptedSiren.log) == sounded  # none of these reached a device
    assert (await client.get("/api/v1/alerts/flood-krd-3")).json()["phase"] == "completed"


async def test_cap_update_and_cancel_keep_municipality_limits_and_the_two_person_rule(api):
    regional = await api.client("alerts:activate", "events:read")
    sochi = await api.client("alerts:activate", "events:read", municipalities=("sochi",))
    original = cap_message("flood-krd-4")
    await regional.post(
        "/api/v1/alerts/cap", content=original, headers=CAP_HEADERS, params={"wait": 10}
    )
    cancel = cap_message("x-cancel", msg_type="Cancel", references=sent_of(original))
    foreign = await sochi.post("/api/v1/alerts/cap", content=cancel, headers=CAP_HEADERS)
    assert foreign.status_code == 404  # another district's alert is not even visible
    update = cap_message(
        "x-update", msg_type="Update", references=sent_of(original), municipality="sochi"
    )
    foreign = await sochi.post("/api/v1/alerts/cap", content=update, headers=CAP_HEADERS)
    assert foreign.status_code == 404
    assert (await regional.get("/api/v1/alerts/flood-krd-4")).json()["phase"] == "completed"
    assert not [c for c in ScriptedSiren.log if c[1] == "cancel"]

    api.hub.config.alerts.two_person_rule = True  # type: ignore[misc]
    update = cap_message("flood-krd-4-u1", msg_type="Update", references=sent_of(original))
    pending = await regional.post("/api/v1/alerts/cap", content=update, headers=CAP_HEADERS)
    assert pending.status_code == 202 and pending.json()["phase"] == "pending_confirmation"
    assert not activated("flood-krd-4-u1")  # waits for a second person, as /update does
    second = await api.client("alerts:activate", "events:read")
    confirmed = await second.post("/api/v1/alerts/flood-krd-4-u1/confirm")
    assert confirmed.status_code == 200
    await api.hub.alerts.wait("flood-krd-4-u1", 10)
    assert activated("flood-krd-4-u1") == ["krd-1", "krd-2"]


async def test_an_update_references_the_original_exactly_as_it_was_sent(api):
    from nabat.cap import to_cap

    client = await api.client("alerts:activate", "events:read")
    original = (
        await client.post(
            "/api/v1/alerts",
            json={**FLOOD, "area": {"municipalities": ["krasnodar"]}},
            params={"wait": 10},
        )
    ).json()
    update = await client.post(
        f"/api/v1/alerts/{original['id']}/update",
        json={"message": {"text": "Отбой"}},
        params={"wait": 10},
    )
    record = await api.hub.alerts.get(original["id"])
    sent_xml = to_cap(record.alert)  # what a CAP device was sent
    assert update.json()["alert"]["references"] == sent_of(sent_xml)
    assert sent_of(sent_xml).endswith("-00:00")  # CAP's UTC form, never +00:00


async def test_a_district_token_cannot_stop_or_supersede_what_sounds_elsewhere_too(api):
    regional = await api.client("alerts:activate", "events:read")
    sochi = await api.client("alerts:activate", "events:read", municipalities=("sochi",))
    both = cap_message("flood-both").replace(
        b"</area>",
        b"</area><area><areaDesc>sochi</areaDesc><geocode><valueName>municipality</valueName>"
        b"<value>sochi</value></geocode></area>",
    )
    answer = await regional.post(
        "/api/v1/alerts/cap", content=both, headers=CAP_HEADERS, params={"wait": 10}
    )
    assert answer.status_code == 202, answer.text
    cancel = cap_message("x-cancel", msg_type="Cancel", references=sent_of(both))
    refused = await sochi.post("/api/v1/alerts/cap", content=cancel, headers=CAP_HEADERS)
    assert refused.status_code == 403 and "krasnodar" in refused.json()["detail"]
    assert (await sochi.post("/api/v1/alerts/flood-both/cancel")).status_code == 403
    update = {"message": {"text": "x"}}
    assert (await sochi.post("/api/v1/alerts/flood-both/update", json=update)).status_code == 403
    assert not [c for c in ScriptedSiren.log if c[1] == "cancel"]
    # The same Cancel listing the alert twice cancels it once, and answers so.
    twice = cap_message(
        "x-cancel-2", msg_type="Cancel", references=f"{sent_of(both)} {sent_of(both)}"
    )
    done = await regional.post("/api/v1/alerts/cap", content=twice, headers=CAP_HEADERS)
    assert done.status_code == 200, done.text
    assert [r["id"] for r in done.json()["cancelled"]] == ["flood-both"]


async def test_a_refused_update_leaves_the_original_free_to_be_updated(api):
    api.hub.config.alerts.two_person_rule = True  # type: ignore[misc]
    first = await api.client("alerts:activate", "events:read")
    second = await api.client("alerts:activate", "events:read")
    original = cap_message("flood-krd-5", status="Exercise")  # no confirmation needed
    await first.post("/api/v1/alerts/cap", content=original, headers=CAP_HEADERS)
    update = cap_message("flood-krd-5-u1", msg_type="Update", references=sent_of(original))
    pending = (await first.post("/api/v1/alerts/cap", content=update, headers=CAP_HEADERS)).json()
    assert pending["phase"] == "pending_confirmation"
    assert (await second.post("/api/v1/alerts/flood-krd-5-u1/reject")).status_code == 200
    assert (await first.get("/api/v1/alerts/flood-krd-5")).json().get("updated_by") is None
    again = cap_message("flood-krd-5-u2", msg_type="Update", references=sent_of(original))
    answer = await first.post("/api/v1/alerts/cap", content=again, headers=CAP_HEADERS)
    assert answer.status_code == 202, answer.text
