"""CAP 1.2 codec: the OASIS examples round-trip, emitted XML validates, bad input is refused.

The OASIS schema and Appendix A examples are read from ``tests/data/cap/`` (copied unchanged
from the shared standards data); emitted XML is validated against that schema file,
independently of the copy ``nabat.cap`` ships.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from lxml import etree
from nabat.cap import CAP_NAMESPACE, CapError, CapProblem, format_datetime, parse_cap, to_cap
from nabat.interfaces.alerting import (
    Alert,
    Area,
    Category,
    Certainty,
    Circle,
    Geocode,
    Info,
    MsgType,
    Parameter,
    Resource,
    ResponseType,
    Scope,
    Severity,
    Status,
    Urgency,
)

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = ROOT / "tests" / "data" / "cap"
EXAMPLES = sorted(STANDARDS.glob("v1dot2_appendix_adot*.xml"))
THUNDERSTORM = STANDARDS / "v1dot2_appendix_adot2.xml"  # has area, polygon, geocode, expires
MSK = timezone(timedelta(hours=3))


@pytest.fixture(scope="module")
def oasis() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(STANDARDS / "CAP-v1.2.xsd")))


def assert_valid(schema: etree.XMLSchema, xml: bytes) -> None:
    assert schema.validate(etree.fromstring(xml)), schema.error_log


def leaves(xml: bytes) -> list[tuple[str, str]]:
    """(path, text with whitespace collapsed) of every leaf element, in document order."""
    out: list[tuple[str, str]] = []

    def walk(el: etree._Element, path: str) -> None:
        if len(el) == 0:
            out.append((path, " ".join((el.text or "").split())))
        counts: Counter[str] = Counter()
        for child in el:
            name = etree.QName(child).localname
            counts[name] += 1
            walk(child, f"{path}/{name}[{counts[name]}]")

    walk(etree.fromstring(xml), "/alert")
    return out


def line_of(doc: str, marker: str) -> int:
    return doc[: doc.index(marker)].count("\n") + 1


def only_problem(excinfo: pytest.ExceptionInfo[CapError]) -> CapProblem:
    assert len(excinfo.value.problems) == 1, excinfo.value
    return excinfo.value.problems[0]


# --- round trips --------------------------------------------------------------------------------


def test_the_four_oasis_examples_are_present():
    assert [p.name for p in EXAMPLES] == [f"v1dot2_appendix_adot{i}.xml" for i in (1, 2, 3, 4)]


def test_the_shipped_schema_is_the_oasis_file():
    shipped = ROOT / "core" / "nabat" / "cap" / "CAP-v1.2.xsd"
    assert shipped.read_bytes() == (STANDARDS / "CAP-v1.2.xsd").read_bytes()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem[-4:])
def test_oasis_example_round_trips_without_loss(path, oasis):
    original = path.read_bytes()
    alert = parse_cap(original)
    written = to_cap(alert)
    assert_valid(oasis, written)
    assert parse_cap(written) == alert
    before, after = leaves(original), leaves(written)
    # The only addition allowed: <language> made explicit where the original relied on the
    # CAP default en-US. Everything else is there, same text, same order.
    added = [leaf for leaf in after if leaf not in before]
    infos = etree.fromstring(original).iter(f"{{{CAP_NAMESPACE}}}info")
    implicit = [
        i for i, el in enumerate(infos, 1) if el.find(f"{{{CAP_NAMESPACE}}}language") is None
    ]
    assert added == [(f"/alert/info[{i}]/language[1]", "en-US") for i in implicit]
    assert [leaf for leaf in after if leaf not in added] == before


def test_examples_map_onto_the_alert_fields():
    hsas, storm, quake, amber = (parse_cap(p.read_bytes()) for p in EXAMPLES)
    assert hsas.sent == datetime(2003, 4, 2, 14, 39, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert hsas.status is Status.ACTUAL and hsas.scope is Scope.PUBLIC
    assert hsas.info[0].language == "en-US"  # absent in the XML: CAP's default
    assert hsas.info[0].parameter == [Parameter(value_name="HSAS", value="ORANGE")]
    assert hsas.info[0].resource[0].mime_type == "image/gif"
    assert storm.info[0].response_type == [ResponseType.SHELTER]
    assert storm.info[0].expires == datetime(2003, 6, 17, 23, 0, tzinfo=UTC)
    area = storm.info[0].area[0]
    assert area.polygon[0][0] == area.polygon[0][-1] == (38.47, -120.14)
    assert [g.value for g in area.geocode] == ["006109", "006009", "006003"]
    assert quake.msg_type is MsgType.UPDATE
    assert quake.references == "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00"
    assert quake.info[0].area[0].circle == [Circle(lat=32.9525, lon=-115.5527, radius_km=0)]
    assert amber.source == "SW"
    assert [i.language for i in amber.info] == ["en-US", "es-US"]
    assert amber.info[1].event == "Abducción de Niño"


def russian_flood_alert() -> Alert:
    sent = datetime(2026, 6, 14, 10, 30, tzinfo=MSK)
    return Alert(
        identifier="krd-edds-2026-0614-001",
        sender="edds@krd.example.ru",
        sent=sent,
        status=Status.ACTUAL,
        msg_type=MsgType.ALERT,
        scope=Scope.PUBLIC,
        code=["nabat"],
        note="Оповещение через КСЭОН",
        incidents="flood-2026-06",
        info=[
            Info(
                language="ru-RU",
                category=[Category.MET, Category.SAFETY],
                event="Наводнение",
                response_type=[ResponseType.EVACUATE, ResponseType.MONITOR],
                urgency=Urgency.IMMEDIATE,
                severity=Severity.SEVERE,
                certainty=Certainty.OBSERVED,
                event_code=[Parameter(value_name="nabat", value="flood")],
                effective=sent,
                onset=sent + timedelta(hours=1),
                expires=sent + timedelta(hours=12),
                sender_name="ЕДДС муниципального образования город Краснодар",
                headline="Внимание всем! Угроза подтопления",
                description="Уровень воды в реке Кубань поднимается: ожидается подтопление "
                "пониженных участков.\nСледите за сообщениями по радио и телевидению.",
                instruction="Отключите газ и электричество, возьмите документы и "
                "проследуйте в пункт временного размещения: школа № 35, ул. Ставропольская.",
                web="https://krd.example.ru/alerts/2026-0614-001",
                contact="ЕДДС: 112",
                parameter=[Parameter(value_name="signal", value="Внимание всем!")],
                resource=[
                    Resource(
                        resource_desc="Карта зоны подтопления",
                        mime_type="image/png",
                        size=48213,
                        uri="https://krd.example.ru/alerts/2026-0614-001/map.png",
                    )
                ],
                area=[
                    Area(
                        area_desc="г. Краснодар, микрорайон Пашковский",
                        polygon=[
                            [
                                (45.02, 39.08),
                                (45.05, 39.12),
                                (45.01, 39.17),
                                (44.99, 39.1),
                                (45.02, 39.08),
                            ]
                        ],
                        circle=[Circle(lat=45.0355, lon=38.9753, radius_km=2.5)],
                        geocode=[Geocode(value_name="OKTMO", value="03701000001")],
                        altitude=20.0,
                        ceiling=150.5,
                    )
                ],
            )
        ],
    )


def test_russian_alert_written_validates_and_reads_back_equal(oasis):
    alert = russian_flood_alert()
    written = to_cap(alert)
    assert_valid(oasis, written)
    assert parse_cap(written) == alert
    assert written.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert f'xmlns="{CAP_NAMESPACE}"'.encode() in written
    assert "<headline>Внимание всем! Угроза подтопления</headline>".encode() in written
    assert b"<sent>2026-06-14T10:30:00+03:00</sent>" in written
    assert b"<polygon>45.02,39.08 45.05,39.12 45.01,39.17 44.99,39.1 45.02,39.08</polygon>" in (
        written
    )
    assert b"<circle>45.0355,38.9753 2.5</circle>" in written
    assert b"<altitude>20</altitude>" in written


def test_str_input_reads_like_bytes_despite_its_encoding_declaration():
    amber = EXAMPLES[3]
    assert parse_cap(amber.read_text(encoding="utf-8")) == parse_cap(amber.read_bytes())


def test_datetimes_are_written_the_cap_way():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert format_datetime(moment) == "2026-01-02T03:04:05-00:00"  # UTC is -00:00, no fraction
    assert format_datetime(moment.astimezone(MSK)) == "2026-01-02T06:04:05+03:00"
    india = timezone(timedelta(hours=5, minutes=30))
    assert format_datetime(moment.astimezone(india)) == "2026-01-02T08:34:05+05:30"
    alert = Alert(
        identifier="x", sender="y", sent=moment, status=Status.TEST, msg_type=MsgType.ALERT
    )
    written = to_cap(alert)
    assert b"<sent>2026-01-02T03:04:05-00:00</sent>" in written
    assert parse_cap(written).sent == moment.replace(microsecond=0)


# --- invalid documents --------------------------------------------------------------------------

STORM = THUNDERSTORM.read_text(encoding="utf-8") if THUNDERSTORM.exists() else ""
POLYGON = "38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14"
EXPIRES = "<expires>2003-06-17T16:00:00-07:00</expires>"
AREA_DESC = STORM[STORM.find("<areaDesc>") : STORM.find("</areaDesc>") + len("</areaDesc>")]

# (old, new, marker whose line is reported, path, words the reason must contain)
BROKEN = {
    "missing required element": (
        "<status>Actual</status>", "", "<msgType>", "/alert/status",
        "required element <status> is missing",
    ),
    "missing first child of area": (
        AREA_DESC, "", "<polygon>", "/alert/info[1]/area[1]/areaDesc",
        "required element <areaDesc> is missing",
    ),
    "missing child at the end": (
        "<value>006109</value>", "", "<geocode>", "/alert/info[1]/area[1]/geocode[1]/value",
        "required element <value> is missing from <geocode>",
    ),
    "wrong enumeration value": (
        "<status>Actual</status>", "<status>Real</status>", "<status>", "/alert/status",
        "'Real' is not a valid <status>; use one of: Actual, Exercise, System, Test, Draft",
    ),
    "date without offset": (
        EXPIRES, "<expires>2003-06-17T16:00:00</expires>", "<expires>",
        "/alert/info[1]/expires", "is not a CAP date and time",
    ),
    "date in Z": (
        EXPIRES, "<expires>2003-06-17T23:00:00Z</expires>", "<expires>",
        "/alert/info[1]/expires", "no 'Z'",
    ),
    "impossible date": (
        EXPIRES, "<expires>2003-02-30T16:00:00-07:00</expires>", "<expires>",
        "/alert/info[1]/expires", "is not a real date and time",
    ),
    "hour 24": (
        "<sent>2003-06-17T14:57:00-07:00</sent>", "<sent>2003-06-17T24:00:00-07:00</sent>",
        "<sent>", "/alert/sent", "is not a real date and time",
    ),
    "unclosed polygon": (
        POLYGON, POLYGON.removesuffix(" 38.47,-120.14"), "<polygon>",
        "/alert/info[1]/area[1]/polygon[1]", "not closed",
    ),
    "polygon of three points": (
        POLYGON, "38.47,-120.14 38.34,-119.95 38.47,-120.14", "<polygon>",
        "/alert/info[1]/area[1]/polygon[1]", "the first repeated as the last; this one has 3",
    ),
    "polygon with lon,lat swapped off the globe": (
        POLYGON, "-120.14,38.47 -119.95,38.34 -119.74,38.52 -120.14,38.47", "<polygon>",
        "/alert/info[1]/area[1]/polygon[1]", "latitude -120.14 is outside",
    ),
    "circle out of range": (
        "</polygon>", "</polygon>\n<circle>38.5,-191 10</circle>", "<circle>",
        "/alert/info[1]/area[1]/circle[1]", "longitude -191 is outside",
    ),
    "circle without radius": (
        "</polygon>", "</polygon>\n<circle>38.5,-120</circle>", "<circle>",
        "/alert/info[1]/area[1]/circle[1]", "radius in kilometres",
    ),
    "unknown element": (
        "<scope>Public</scope>", "<scope>Public</scope><priority>1</priority>", "<priority>",
        "/alert/priority", "<priority> is not a CAP 1.2 element of <alert>",
    ),
    "element out of order": (
        "<scope>Public</scope>", "<scope>Public</scope><source>x</source>", "<source>",
        "/alert/source", "out of order",
    ),
    "restricted without restriction": (
        "<scope>Public</scope>", "<scope>Restricted</scope>", "<scope>", "/alert/scope",
        "needs a <restriction>",
    ),
    "identifier with a space": (
        "<identifier>KSTO1055887203</identifier>", "<identifier>KSTO 1055887203</identifier>",
        "<identifier>", "/alert/identifier", "must not contain spaces",
    ),
    "malformed references": (
        "<scope>Public</scope>", "<scope>Public</scope><references>TRI13970876.1</references>",
        "<references>", "/alert/references", "sender,identifier,sent",
    ),
    "ceiling without altitude": (
        "</area>", "<ceiling>100</ceiling></area>", "<ceiling>",
        "/alert/info[1]/area[1]/ceiling", "only be given together with <altitude>",
    ),
    "bad language tag": (
        "<category>Met</category>", "<language>en_US</language><category>Met</category>",
        "<language>", "/alert/info[1]/language", "must be a language tag",
    ),
    "text directly in alert": (
        "<scope>Public</scope>", "<scope>Public</scope>stray", "<alert", "/alert",
        "text is not allowed directly inside <alert>",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_invalid_document_is_refused_with_path_line_and_reason(case):
    old, new, marker, path, words = BROKEN[case]
    assert STORM.count(old) == 1, "the test's anchor must be in the example exactly once"
    doc = STORM.replace(old, new)
    with pytest.raises(CapError) as excinfo:
        parse_cap(doc)
    problem = only_problem(excinfo)
    assert (problem.path, problem.line) == (path, line_of(doc, marker))
    assert words in problem.reason
    assert f"{path} (line {problem.line}): " in str(excinfo.value)


def test_all_problems_are_reported_in_document_order():
    doc = STORM.replace("<status>Actual</status>", "<status>Real</status>")
    doc = doc.replace(POLYGON, POLYGON.removesuffix(" 38.47,-120.14"))
    with pytest.raises(CapError) as excinfo:
        parse_cap(doc)
    assert [p.path for p in excinfo.value.problems] == [
        "/alert/status",
        "/alert/info[1]/area[1]/polygon[1]",
    ]
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("namespace", "words"),
    [
        ("urn:oasis:names:tc:emergency:cap:1.1", "this is a CAP 1.1 message"),
        ("urn:example:not-cap", "is in namespace urn:example:not-cap"),
        (None, "has no namespace"),
    ],
)
def test_wrong_namespace_is_refused(namespace, words):
    xmlns = f'xmlns="{namespace}"' if namespace else ""
    doc = STORM.replace(f'xmlns = "{CAP_NAMESPACE}"', xmlns)
    with pytest.raises(CapError) as excinfo:
        parse_cap(doc)
    problem = only_problem(excinfo)
    assert (problem.path, problem.line) == ("/alert", 2)
    assert words in problem.reason


@pytest.mark.parametrize(
    ("doc", "line", "words"),
    [
        (b"", None, "the document is empty"),
        (b"CAP alert: flood", 1, "not well-formed XML"),
        (b'{"identifier": "x"}', 1, "not well-formed XML"),
        (b"<alert>\n<identifier>x</alert>", 2, "not well-formed XML"),
        (b"<feed><alert/></feed>", 1, "the root element is <feed>, not a CAP <alert>"),
    ],
)
def test_not_cap_xml_at_all(doc, line, words):
    with pytest.raises(CapError) as excinfo:
        parse_cap(doc)
    problem = only_problem(excinfo)
    assert problem.line == line
    assert words in problem.reason


def test_oversized_input_is_refused_before_parsing():
    big = STORM.replace("</description>", "x" * (1024 * 1024) + "</description>")
    with pytest.raises(CapError) as excinfo:
        parse_cap(big)
    assert only_problem(excinfo) == CapProblem(
        "/", None, f"the document is {len(big.encode()):,} bytes, over the limit of 1,048,576"
    )
    assert parse_cap(big, max_bytes=2 * 1024 * 1024).identifier == "KSTO1055887203"
    size = len(STORM.encode())
    assert parse_cap(STORM, max_bytes=size).identifier == "KSTO1055887203"
    with pytest.raises(CapError, match="over the limit"):
        parse_cap(STORM, max_bytes=size - 1)


# --- hostile XML ------------------------------------------------------------------------------


def with_doctype(doctype: str, entity: str | None = None) -> str:
    doc = STORM.replace("<alert ", f"{doctype}\n<alert ", 1)
    return doc.replace("<contact>BARUFFALDI/JUSKIE", f"<contact>{entity}", 1) if entity else doc


def test_xxe_doctype_is_refused_without_reading_the_file():
    doc = with_doctype('<!DOCTYPE alert SYSTEM "file:///etc/passwd">')
    with pytest.raises(CapError) as excinfo:
        parse_cap(doc)
    assert only_problem(excinfo).path == "/"
    assert only_problem(excinfo).line == 2
    assert "DOCTYPE declaration is not allowed" in str(excinfo.value)
    assert "root:" not in str(excinfo.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_external_dtd_and_entities_are_never_opened(tmp_path):
    # A named pipe with no writer blocks whoever opens it for reading: if the parser tried to
    # read the DTD or the entity, parse_cap would hang here instead of returning.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    doc = with_doctype(
        f'<!DOCTYPE alert SYSTEM "file://{pipe}" [<!ENTITY xxe SYSTEM "file://{pipe}">]>', "&xxe;"
    )
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            parse_cap(doc)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)  # release the reader, then fail
        os.close(fd)
        thread.join(5)
        pytest.fail("parse_cap opened the external DTD/entity")
    assert isinstance(outcome[0], CapError)
    assert "DOCTYPE declaration is not allowed" in str(outcome[0])


def test_no_network_fetch_for_external_dtd():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(0.2)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/cap.dtd"
        doc = with_doctype(f'<!DOCTYPE alert SYSTEM "{url}" [<!ENTITY e SYSTEM "{url}">]>', "&e;")
        with pytest.raises(CapError, match="DOCTYPE"):
            parse_cap(doc)
        with pytest.raises(TimeoutError):
            server.accept()  # nobody connected


def test_entity_expansion_bomb_is_refused():
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    doc = with_doctype(f'<!DOCTYPE alert [<!ENTITY l0 "lol">{lol}]>', "&l9;")
    with pytest.raises(CapError) as excinfo:  # libxml2 may stop it first: amplification limit
        parse_cap(doc)
    assert only_problem(excinfo).path == "/"
    assert "lollol" not in str(excinfo.value)


# --- what the Alert cannot hold -----------------------------------------------------------------


def test_an_inline_resource_round_trips_and_a_signature_is_dropped_with_a_warning(caplog):
    doc = (
        EXAMPLES[0]
        .read_text(encoding="utf-8")
        .replace("</uri>", "</uri>\n<derefUri>R0lGODlhAQABAAAAACw=</derefUri>")
    )
    signature = '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo/></Signature>'
    doc = doc.replace("</info>", f"</info>{signature}")
    with caplog.at_level(logging.WARNING, logger="nabat.cap"):
        alert = parse_cap(doc)
    assert alert.info[0].resource[0].deref_uri == "R0lGODlhAQABAAAAACw="
    assert parse_cap(to_cap(alert)) == alert
    dropped = [r.fields["element"] for r in caplog.records if r.getMessage() == "cap.unmapped"]
    assert dropped == ["/alert/Signature"]  # a signature cannot stay valid once rewritten


# --- alerts that cannot be written ------------------------------------------------------------


def storm_with(**changes) -> Alert:
    alert = parse_cap(STORM)
    return msgspec.structs.replace(alert, info=[msgspec.structs.replace(alert.info[0], **changes)])


@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"expires": datetime(2026, 1, 1, 12)}, "/alert/info[1]/expires", "no UTC offset"),
        ({"language": "русский"}, "/alert/info[1]/language", "must be a language tag"),
        ({"category": []}, "/alert/info[1]/category", "required element <category>"),
        ({"headline": "a\x00b"}, "/alert/info[1]/headline", "XML cannot carry"),
        (
            {"area": [Area(area_desc="x", circle=[Circle(lat=91, lon=0, radius_km=1)])]},
            "/alert/info[1]/area[1]/circle[1]",
            "latitude 91 is outside",
        ),
        (
            {"area": [Area(area_desc="x", altitude=float("nan"))]},
            "/alert/info[1]/area[1]/altitude",
            "not a finite number",
        ),
    ],
)
def test_alert_that_cannot_be_valid_cap_is_not_written(changes, path, words):
    with pytest.raises(CapError) as excinfo:
        to_cap(storm_with(**changes))
    problem = only_problem(excinfo)
    assert problem.path == path
    assert words in problem.reason


def test_model_rules_are_reported_even_if_the_checks_miss_them(monkeypatch):
    # The schema and spec checks pre-empt the structs' own validation; if one ever lets a case
    # through, msgspec's complaint still comes out as a CapError with a CAP path and line.
    monkeypatch.setattr("nabat.cap.codec.check", lambda tree: [])
    doc = STORM.replace("<category>Met</category>", "<category>Weather</category>")
    with pytest.raises(CapError) as excinfo:
        parse_cap(doc)
    problem = only_problem(excinfo)
    assert (problem.path, problem.line) == (
        "/alert/info[1]/category[1]",
        line_of(doc, "<category>"),
    )
    assert "Weather" in problem.reason
