"""Events: CloudEvents 1.0 structured mode, proven against the independent CloudEvents SDK."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from nabat.events import (
    Event,
    EventError,
    EventTypes,
    Severity,
    decode_event,
    decode_events,
    encode_event,
    encode_events,
)
from nabat.ids import uuid7, uuid7_time


class Reading(msgspec.Struct):
    level_cm: int
    station: str


def sample(**over) -> Event:
    fields = dict(
        type="hydro.level.rising",
        source="/nabat/instances/kuban-gauge-7",
        subject="kuban-gauge-7",
        municipality="krasnodar",
        severity="severe",
        correlationid="flood-2026-11",
        data=Reading(level_cm=512, station="Краснодар, р. Кубань"),
    )
    fields.update(over)
    return Event(**fields)


def test_our_json_is_read_by_the_cloudevents_sdk():
    ev = sample()
    parsed = JSONFormat().read(None, encode_event(ev))
    attrs = parsed.get_attributes()
    assert attrs["specversion"] == "1.0"
    assert attrs["id"] == ev.id
    assert attrs["source"] == ev.source
    assert attrs["type"] == "hydro.level.rising"
    assert attrs["subject"] == "kuban-gauge-7"
    assert attrs["time"] == ev.time
    assert attrs["datacontenttype"] == "application/json"
    assert (attrs["municipality"], attrs["severity"], attrs["correlationid"]) == (
        "krasnodar",
        "severe",
        "flood-2026-11",
    )
    assert parsed.get_data() == {"level_cm": 512, "station": "Краснодар, р. Кубань"}


def test_we_read_json_written_by_the_cloudevents_sdk():
    theirs = CloudEvent(
        {
            "id": "A234-1234-1234",
            "source": "urn:112:krasnodar",
            "type": "com.example.incident.created",
            "specversion": "1.0",
            "time": datetime(2026, 5, 1, 10, 43, tzinfo=UTC),
            "municipality": "sochi",
            "partnerid": "mchs23",
        },
        {"card": "112-77", "victims": 2},
    )
    ev = decode_event(JSONFormat().write(theirs))
    assert ev.id == "A234-1234-1234"
    assert ev.type == "com.example.incident.created"
    assert ev.time == datetime(2026, 5, 1, 10, 43, tzinfo=UTC)
    assert ev.municipality == "sochi"
    assert ev.data == {"card": "112-77", "victims": 2}
    # A foreign extension survives, so a relayed event loses nothing.
    assert ev.extensions == {"partnerid": "mchs23"}
    back = JSONFormat().read(None, encode_event(ev)).get_attributes()
    assert back["partnerid"] == "mchs23"


def test_binary_data_travels_as_data_base64_both_ways():
    ev = Event(type="camera.snapshot.taken", source="/x", data=b"\xff\xd8\xff\xe0jpeg")
    wire = json.loads(encode_event(ev))
    assert "data" not in wire and wire["datacontenttype"] == "application/octet-stream"
    assert JSONFormat().read(None, encode_event(ev)).get_data() == b"\xff\xd8\xff\xe0jpeg"
    theirs = CloudEvent(
        {"id": "1", "source": "/s", "type": "a.b", "specversion": "1.0"}, b"\x00\x01"
    )
    assert decode_event(JSONFormat().write(theirs)).data == b"\x00\x01"


def test_registered_payload_types_decode_into_structs():
    types = EventTypes()
    types.register("hydro.level.*", Reading, owner="hydro")
    ev = decode_event(encode_event(sample()), types)
    assert ev.data == Reading(level_cm=512, station="Краснодар, р. Кубань")
    assert ev.severity is Severity.SEVERE
    # Unregistered types stay plain JSON.
    assert decode_event(encode_event(sample(type="other.thing"))).data["level_cm"] == 512


def test_exact_registration_wins_over_pattern_and_conflicts_are_refused():
    class Other(msgspec.Struct):
        x: int

    types = EventTypes()
    types.register("hydro.>", Other)
    types.register("hydro.level.rising", Reading)
    assert types.lookup("hydro.level.rising") is Reading
    assert types.lookup("hydro.level.falling") is Other
    with pytest.raises(ValueError, match="already registered"):
        types.register("hydro.level.rising", Other, owner="intruder")


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: d.pop("type"), "type", "missing required field"),
        (lambda d: d.pop("source"), "source", "missing required field"),
        (lambda d: d.update(specversion="0.3"), "specversion", "unsupported"),
        (lambda d: d.update(time="yesterday"), "time", "RFC3339"),
        (lambda d: d.update(type="camera..offline"), "type", "empty token"),
        (lambda d: d.update(type="camera.*"), "type", "wildcard"),
        (lambda d: d.update(severity="apocalyptic"), "severity", "Invalid enum value"),
        (lambda d: d.update(municipality="Краснодар"), "municipality", "slug"),
        (lambda d: d.update(Bad_Ext="x"), "Bad_Ext", "lower-case"),
        (lambda d: d.update(id=""), "id", "non-empty"),
        # A foreign extension takes the slower path; it must check data_base64's type too.
        (lambda d: d.update(ext="a", data_base64={}), "data_base64", "base64 string"),
        (lambda d: d.update(data_base64=5), "data_base64", "Expected `str"),
        (
            lambda d: d.update(data={"level_cm": "high", "station": "x"}),
            "data.level_cm",
            "Expected `int`",
        ),
    ],
)
def test_invalid_input_names_the_field_and_the_reason(mutate, field, reason):
    types = EventTypes()
    types.register("hydro.level.rising", Reading)
    wire = json.loads(encode_event(sample()))
    mutate(wire)
    with pytest.raises(EventError) as err:
        decode_event(json.dumps(wire), types)
    assert err.value.field == field
    assert reason.lower() in err.value.reason.lower() or reason in str(err.value)


def test_malformed_json_and_non_objects_are_event_errors():
    with pytest.raises(EventError, match="malformed JSON"):
        decode_event(b'{"id": ')
    with pytest.raises(EventError):
        decode_event(b"[1, 2]")


def test_batch_round_trip_and_the_bad_one_is_located():
    events = [sample(), sample(subject="gauge-8"), Event(type="x.y", source="/s", data=b"\x01")]
    assert [e.id for e in decode_events(encode_events(events))] == [e.id for e in events]
    wire = json.loads(encode_events(events))
    wire[1]["time"] = "not a time"
    with pytest.raises(EventError) as err:
        decode_events(json.dumps(wire))
    assert err.value.index == 1 and err.value.field == "time"
    assert "[1].time" in str(err.value)


def test_times_keep_their_offset_and_naive_times_are_refused():
    msk = timezone(timedelta(hours=3))
    ev = sample(time=datetime(2026, 3, 4, 10, 43, tzinfo=msk))
    assert decode_event(encode_event(ev)).time == ev.time
    with pytest.raises(EventError, match="time"):
        sample(time=datetime(2026, 3, 4, 10, 43))


def test_events_are_immutable():
    ev = sample()
    with pytest.raises(AttributeError):
        ev.type = "other.type"  # type: ignore[misc]
    assert ev.replace(subject="g9").subject == "g9" and ev.subject == "kuban-gauge-7"


def test_ids_are_uuid7_and_time_ordered():
    ids = [uuid7() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i[14] == "7" for i in ids[:10])  # version nibble
    assert abs(uuid7_time(ids[-1]) - datetime.now(UTC).timestamp()) < 5
