"""EIDO (NENA-STA-021 Emergency Incident Data Object, JSON) in and out of hub incidents.

:func:`parse_eido` decodes and validates a document against the NENA schema shipped in
``schema/`` (OpenAPI 3.0: JSON Schema Draft 4 plus ``nullable``), then checks what the schema
cannot say; :func:`incident_from_eido` maps a valid document to an :class:`Incident`;
:func:`incident_to_eido` builds a minimal valid EIDO from one. Every problem found is an
:class:`EidoProblem` with a JSON path (``$.locationComponent[0].locationByValue``).
"""

from __future__ import annotations

import html
import itertools
import json
import posixpath
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urldefrag, urljoin

import lxml.html
import msgspec
import yaml
from jsonschema import Draft4Validator, FormatChecker, ValidationError
from jsonschema.validators import extend
from lxml import etree
from nabat.interfaces import GeoPoint, Incident, IncidentStatus
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT4

__all__ = [
    "MAX_EIDO_BYTES",
    "EidoError",
    "EidoIncident",
    "EidoProblem",
    "incident_from_eido",
    "incident_to_eido",
    "parse_eido",
    "prepare",
]

MAX_EIDO_BYTES = 1_000_000
MAX_PROBLEMS = 20  # a hostile document must not cost unbounded work (or log space)
MAX_DEPTH = 32  # NIEM nests ~10 deep; deeper input would only exhaust the validator's stack

_BASE = "https://schemas.nabat.invalid/eido/"  # never fetched: .invalid cannot resolve
_FILES = ("openapi.yaml", "NIEMComponents/nc.yaml", "NIEMComponents/j.yaml")
_TOP = _BASE + "openapi.yaml#/components/schemas/EmergencyIncidentDataObjectType"
_GML = "{http://www.opengis.net/gml}"
_CIVIC = "{urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr}civicAddress"
# Shapes whose gml:pos is a point or a centre (RFC 5491): the centre stands for the shape.
_SHAPES = {_GML + "Point"} | {
    "{http://www.opengis.net/pidflo/1.0}" + s for s in ("Circle", "Ellipse", "ArcBand", "Sphere")
}
_CIVIC_ORDER = "country|A1|A2|A3|A4|A5|PRM PRD A6 RD STS POD POM|HNO HNS|BLD|FLR|UNIT|ROOM|SEAT"
_CIVIC_ORDER += "|LMK|LOC|NAM|PC|PCN|POBOX"  # largest to smallest, as Russian addresses read
# What incident_to_eido sends as locationByValue: RFC 4119 PIDF-LO with an RFC 5491 point.
_PIDF_POINT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf"'
    ' xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml"'
    ' entity="{entity}"><tuple id="incident"><status><gp:geopriv><gp:location-info>'
    '<gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>{lat!r} {lon!r}</gml:pos>'
    "</gml:Point></gp:location-info><gp:usage-rules/></gp:geopriv></status></tuple></presence>"
)
_CLOSED = {"closed", "закрыт", "закрыта", "закрыто"}
# Services from the words of agencyType (IANA urn:emergency:service:responder tokens such as
# "fire.forest", "police.federal.fbi", "ems") and of emergency resource types: a word equal to
# one listed, or starting with one listed with "*". Whole words, so "alarm_systems" is no EMS;
# "psap" and "112" match nothing.
_SERVICE_WORDS = {
    "01": "01 fire* пожар* мчс*",
    "02": "02 police* sheriff* law полиц*",
    "03": "03 ems ambulance* medic* скор* медиц*",
    "04": "04 gas газ*",
}
# Out: IANA responder tokens (IANA has none for gas; "gas" reads back as 04 above).
_SERVICE_TYPES = {"01": "fire", "02": "police", "03": "ems", "04": "gas"}


class EidoProblem(msgspec.Struct, frozen=True):
    """One thing wrong with an EIDO: where (a JSON path, ``$`` for the whole) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class EidoError(ValueError):
    """An EIDO refused; ``problems`` lists what is wrong (at most :data:`MAX_PROBLEMS`)."""

    def __init__(self, problems: Iterable[EidoProblem]) -> None:
        self.problems: list[EidoProblem] = list(problems)
        n = len(self.problems)
        shown = "; ".join(map(str, self.problems[:3])) + ("; …" if n > 3 else "")
        super().__init__(f"EIDO rejected: {n} problem{'s' if n != 1 else ''}: {shown}")


class EidoIncident(msgspec.Struct, frozen=True, kw_only=True):
    """What an EIDO says about an incident; ``incident.origin`` is left for the caller."""

    external_id: str
    """The top-level ``$id``: it identifies the incident across updates."""
    updated_at: datetime | None
    closed: bool
    incident: Incident


# --- the schema -------------------------------------------------------------------------------


def _schemas(node: Any) -> Iterator[dict]:
    """Every (sub)schema under ``node``, walked by keyword: keys of ``properties`` are names
    (EIDO has properties called ``$id`` and ``$ref``) and ``enum`` values are data."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key in ("properties", "patternProperties", "definitions"):
                yield from itertools.chain.from_iterable(map(_schemas, value.values()))
            elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
                yield from itertools.chain.from_iterable(
                    map(_schemas, value if isinstance(value, list) else [value])
                )


def _nullable(keyword: Any) -> Any:
    # OpenAPI 3.0: "nullable: true" admits null besides the declared type (and enum values).
    def check(validator: Any, value: Any, instance: Any, schema: dict) -> Iterator[Any]:
        if not (instance is None and schema.get("nullable") is True):
            yield from keyword(validator, value, instance, schema)

    return check


# OAS formats asserted: date-time (the mapping reads timestamps) and int32; uri is not.
_formats = FormatChecker(formats=())
_formats.checks("date-time")(lambda v: not isinstance(v, str) or _timestamp(v) is not None)
_formats.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
_nullables = {k: _nullable(Draft4Validator.VALIDATORS[k]) for k in ("type", "enum")}
_Validator = extend(Draft4Validator, _nullables)
_lock = threading.Lock()
_validator: Any = None


def _load() -> Any:
    root = resources.files(__package__) / "schema"
    docs = {  # ~1.1 MB of YAML: read once per process, with libyaml
        name: yaml.load((root / name).read_bytes(), Loader=yaml.CSafeLoader) for name in _FILES
    }
    stubs: dict[str, dict] = {}
    for name, doc in docs.items():
        top = doc["components"]["schemas"].values()
        for schema in itertools.chain.from_iterable(map(_schemas, top)):
            for key in ("minItems", "maxItems", "minLength", "maxLength"):
                # Upstream openapi.yaml has "minItems: 1," (AgentType.agentRoleRegistryText),
                # which YAML reads as the string "1,": repair digits-plus-junk to the number.
                value = schema.get(key)
                if isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+)\D*", value)):
                    schema[key] = int(m[1])
            if isinstance(ref := schema.get("$ref"), str):
                target, fragment = urldefrag(urljoin(_BASE + name, ref))
                path = posixpath.normpath(target.removeprefix(_BASE))
                if path not in docs:
                    # The NIEM files reference ~40 vocabularies NENA does not publish with
                    # EIDO (niem-xs.yaml, ncic.yaml...): what they type is accepted as is.
                    stub = stubs.setdefault(path, {"components": {"schemas": {}}})
                    stub["components"]["schemas"][fragment.rsplit("/", 1)[-1]] = {}
    known = {**docs, **stubs}

    def retrieve(uri: str) -> Resource:
        # Only our own files, never the network; "NIEMComponents//j.yaml" is normalised.
        path = posixpath.normpath(uri.removeprefix(_BASE)) if uri.startswith(_BASE) else None
        if path not in known:
            raise NoSuchResource(ref=uri)
        return DRAFT4.create_resource(known[path])

    resources_ = [(_BASE + name, DRAFT4.create_resource(doc)) for name, doc in docs.items()]
    registry = Registry(retrieve=retrieve).with_resources(resources_)
    return _Validator({"$ref": _TOP}, registry=registry, format_checker=_formats)


def prepare() -> None:
    """Load the schema now (~0.5 s, once per process) rather than on the first document."""
    _schema_validator()


def _schema_validator() -> Any:
    global _validator
    if _validator is None:
        with _lock:  # once per process, even when the first requests arrive together
            if _validator is None:
                _validator = _load()
    return _validator


# --- parsing and checking ---------------------------------------------------------------------


def _path(parts: Iterable[str | int]) -> str:
    def step(p: str | int) -> str:
        if isinstance(p, int):
            return f"[{p}]"
        return f".{p}" if re.fullmatch(r"[A-Za-z_$@][\w$@-]*", p) else f"[{json.dumps(p)}]"

    return "$" + "".join(map(step, parts))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def _schema_problem(error: ValidationError) -> EidoProblem:
    at, kind, expected = list(error.absolute_path), error.validator, error.validator_value
    got = error.instance
    if kind == "required":
        missing = [n for n in expected if f"{n!r} is a required property" == error.message]
        return EidoProblem(_path([*at, *missing[:1]]), "required but missing")
    if kind == "type":
        types = " or ".join(expected) if isinstance(expected, list) else expected
        reason = f"must be of type {types}, not {_short(got)}"
    elif kind == "enum":
        reason = f"must be one of {', '.join(map(_short, expected))}, not {_short(got)}"
    elif kind == "format":
        rfc = " (RFC 3339, with a UTC offset)" if expected == "date-time" else ""
        reason = f"{_short(got)} is not a valid {expected}{rfc}"
    elif kind == "minItems":
        reason = f"must have at least {expected} item{'s' if expected != 1 else ''}"
    else:
        reason = error.message if len(error.message) <= 200 else error.message[:199] + "…"
    return EidoProblem(_path(at), reason)


def _too_deep(doc: Any) -> bool:
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                return True
            stack += [(c, depth + 1) for c in (node.values() if isinstance(node, dict) else node)]
    return False


def _problems(doc: dict) -> list[EidoProblem]:
    """Schema problems, then what the schema cannot express that the mapping relies on."""
    try:
        errors = itertools.islice(_schema_validator().iter_errors(doc), MAX_PROBLEMS)
        found = [_schema_problem(e) for e in errors]
    except (RecursionError, Unresolvable) as exc:  # guards: MAX_DEPTH and the stubs prevent them
        found = [EidoProblem("$", f"could not be validated: {type(exc).__name__}")]
    if not str(doc.get("$id", "-")).strip():
        found.append(EidoProblem("$.$id", "must not be empty: it identifies the incident"))
    incident = doc.get("incidentComponent")
    for kind in ("location", "person", "notes") if isinstance(incident, dict) else ():
        ids = {c.get("$id") for c in _list(doc, f"{kind}Component")}
        for i, ref in enumerate(_list(incident, f"{kind}Reference")):
            if isinstance(ref.get("$ref"), str) and ref["$ref"] not in ids:
                where = _path(["incidentComponent", f"{kind}Reference", i, "$ref"])
                why = f"no {kind}Component with $id {ref['$ref']!r} in the document"
                found.append(EidoProblem(where, why))
    for i, component in enumerate(_list(doc, "locationComponent")):
        try:
            _pidf(component.get("locationByValue"))
        except ValueError as exc:
            found.append(EidoProblem(f"$.locationComponent[{i}].locationByValue", str(exc)))
    return found[:MAX_PROBLEMS]


def parse_eido(body: bytes) -> dict:
    """Decode and check an EIDO JSON document; return it as a dict or raise :class:`EidoError`.

    Besides the NENA schema: the top-level ``$id`` must not be blank, the incident's
    location/person/notes references must name components present in the document, and every
    ``locationByValue`` must be a PIDF-LO we can read (a location is what responders need
    most: a card whose location we cannot read is refused rather than taken without one).
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"an EIDO body is bytes, not {type(body).__name__}")
    if len(body) > MAX_EIDO_BYTES:
        size = f"{len(body):,} bytes, over the limit of {MAX_EIDO_BYTES:,}"
        raise EidoError([EidoProblem("$", f"the document is {size}")])

    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    try:
        doc = json.loads(bytes(body), parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    except RecursionError:
        reason = "not valid JSON: nested too deeply"
    except ValueError as exc:  # NaN, Infinity
        reason = f"not valid JSON: {exc}"
    else:
        if not isinstance(doc, dict):
            kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
            kind = kinds.get(type(doc), "a number")
            reason = f"an EIDO is a JSON object, not {kind}"
        elif _too_deep(doc):
            reason = f"nested more than {MAX_DEPTH} levels deep"
        elif problems := _problems(doc):
            raise EidoError(problems)
        else:
            return doc
    raise EidoError([EidoProblem("$", reason)])


# --- EIDO → Incident --------------------------------------------------------------------------


def _list(parent: Any, key: str) -> list[dict]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(parent: dict, key: str) -> list[str]:
    value = parent.get(key)
    return [v.strip() for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _timestamp(value: Any) -> datetime | None:
    """An RFC 3339 date-time with offset (any fraction digits) → aware datetime, else None."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    value = re.sub(r"(\.\d{1,6})\d*", r"\1", value.replace("z", "Z").replace("t", "T"))
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # e.g. month 13
        return None


class _NothingExternal(etree.Resolver):
    """Answers every request for an external DTD or entity with nothing."""

    def resolve(self, url: str | None, pubid: str | None, context: object) -> object:
        return self.resolve_string("", context)


def _pidf(xml: Any) -> tuple[GeoPoint | None, str | None]:
    """``locationByValue`` (PIDF-LO) → (the point or shape centre, the civic address).

    Raises ValueError with the reason when it is not XML we may and can read.
    """
    if not isinstance(xml, str) or not xml.strip():
        return None, None
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        # Refused unparsed: a DTD could pull in local files or expand entities.
        raise ValueError("a DOCTYPE or ENTITY declaration is not allowed in PIDF-LO")
    # No entities, no DTD, no network; libxml2's size limits stay on (huge_tree=False). The
    # text is Unicode already: UTF-8 is forced, so a declared encoding (UTF-7...) cannot
    # reinterpret it and smuggle a DOCTYPE past the check above.
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, encoding="utf-8"
    )
    parser.resolvers.add(_NothingExternal())  # in case an option above fails us
    try:
        root = etree.fromstring(xml.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed PIDF-LO XML: {exc.msg}") from None
    if root.getroottree().docinfo.doctype:  # belt and braces
        raise ValueError("a DOCTYPE declaration is not allowed in PIDF-LO")
    point = None
    if (shape := next((el for el in root.iter() if el.tag in _SHAPES), None)) is not None:
        if not (srs := shape.get("srsName", "EPSG::4326")).endswith(("4326", "4979")):
            raise ValueError(f"srsName {srs!r}: PIDF-LO locations are WGS 84 (EPSG 4326/4979)")
        pos = shape.findtext(_GML + "pos") or ""
        try:
            point = GeoPoint(*map(float, pos.split()[:2]))
        except (TypeError, ValueError):
            name = etree.QName(shape).localname
            raise ValueError(f"{name}: gml:pos {_short(pos)} is not a WGS 84 'lat lon'") from None
    if (civic := next(root.iter(_CIVIC), None)) is None:
        return point, None
    parts = {etree.QName(el).localname: (el.text or "").strip() for el in civic}
    groups = (" ".join(filter(None, map(parts.get, g.split()))) for g in _CIVIC_ORDER.split("|"))
    return point, ", ".join(filter(None, groups)) or None


def _plain(markup: str) -> str:
    """notesActionComments is HTML5: its text, lines broken at <br> and block ends."""
    if not markup.strip():
        return ""
    root = lxml.html.fragment_fromstring(markup, create_parent="div")
    etree.strip_elements(root, "script", "style", etree.Comment, with_tail=False)
    for el in root.iter("br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"):
        el.tail = "\n" + (el.tail or "")
    lines = (re.sub(r"\s+", " ", line).strip() for line in root.text_content().split("\n"))
    return "\n".join(lines).strip("\n")


def _services(doc: dict) -> list[str]:
    values = [t for a in _list(doc, "agencyComponent") for t in _strings(a, "agencyType")]
    for resource in _list(doc, "emergencyResourceComponent"):
        for key in ("emergencyResourceTypeCommonRegistryText", "emergencyResourceTypeInternalText"):
            values.append(resource.get(key))
    words = {w for v in values if isinstance(v, str) for w in re.findall(r"[^\W_]+", v.casefold())}

    def said(key: str) -> bool:
        return key in words or (key[-1] == "*" and any(w.startswith(key[:-1]) for w in words))

    return [code for code, keys in _SERVICE_WORDS.items() if any(map(said, keys.split()))]


def incident_from_eido(doc: dict) -> EidoIncident:
    """Map an EIDO that :func:`parse_eido` accepted to a hub incident.

    The type is ``incidentTypeCommonRegistryText`` unless that is blank or ``Unknown`` (what
    :func:`incident_to_eido` sends for an untyped incident), then ``incidentTypeInternalCode``;
    ``incidentTypeInternalText`` is the title (the type when absent). The location and address
    come from the first location component that has one, preferring type ``Incident``, then
    those the incident references, then ``Caller``, then the rest in document order.
    """
    incident = doc.get("incidentComponent")
    incident = incident if isinstance(incident, dict) else {}
    common = _text(incident.get("incidentTypeCommonRegistryText"))
    type_ = common if common and common.casefold() != "unknown" else None
    type_ = type_ or _text(incident.get("incidentTypeInternalCode"))
    statuses = ("incidentStatusCommonRegistryText", "incidentStatusInternalText")
    closed = any(s.casefold() in _CLOSED for k in statuses for s in _strings(incident, k))
    calls = _list(doc, "callComponent")
    starts = filter(None, (_timestamp(c.get("callStartTimestamp")) for c in calls))
    updated = _timestamp(doc.get("lastUpdateTimeStamp"))
    reported = min(starts, default=None) or _timestamp(incident.get("lastUpdateTimeStamp"))
    callbacks = _list(doc, "callbackComponent")
    uris = [u for c in callbacks for u in _strings(c, "callBackInformationUri")]
    tel = next((u[4:] for u in uris if u[:4].casefold() == "tel:" and u[4:]), None)
    caller = tel or next((u for u in uris if u[:4].casefold() == "sip:"), None)

    locations = _list(doc, "locationComponent")
    referenced = [r.get("$ref") for r in _list(incident, "locationReference")]

    def rank(i: int) -> tuple[int, int]:
        kind = str(locations[i].get("locationTypeDescriptionRegistryText", "")).strip().casefold()
        if kind == "incident":
            return 0, i
        if (id_ := locations[i].get("$id")) in referenced:
            return 1, referenced.index(id_)
        return (2 if kind == "caller" else 3), i

    point = address = None
    for i in sorted(range(len(locations)), key=rank):
        try:
            found_point, found_address = _pidf(locations[i].get("locationByValue"))
        except ValueError as exc:
            where = f"$.locationComponent[{i}].locationByValue"
            raise EidoError([EidoProblem(where, str(exc))]) from None
        point = point or found_point
        address = address or found_address or _text(locations[i].get("locationDescriptionText"))

    notes = (n.get("notesActionComments") for n in _list(doc, "notesComponent"))
    description = "\n".join(filter(None, (_plain(n) for n in notes if isinstance(n, str))))
    persons = _list(doc, "personComponent")
    roles = (" ".join(_strings(p, "personIncidentRoleRegistryText")) for p in persons)
    victims = sum(bool(re.search("victim|patient", r, re.IGNORECASE)) for r in roles)
    external_id = str(doc.get("$id"))
    return EidoIncident(
        external_id=external_id,
        updated_at=updated,
        closed=closed,
        incident=Incident(
            status=IncidentStatus.CLOSED if closed else IncidentStatus.OPEN,
            title=_text(incident.get("incidentTypeInternalText")) or type_,
            type=type_,
            description=description or None,
            reported_at=reported or updated,
            caller=caller,
            address=address,
            location=point,
            victims=victims if persons else None,
            services=_services(doc),
            external_id=external_id,
        ),
    )


# --- Incident → EIDO --------------------------------------------------------------------------


def incident_to_eido(
    incident: Incident,
    *,
    incident_id: str,
    issuer: str,
    agency: str,
    updated_at: datetime,
    municipality: str | None = None,
) -> dict:
    """A minimal EIDO for forwarding ``incident`` to a 112 centre.

    The hub's agency is a ``psap`` agency component, each service ``01``–``04`` one more
    (agencyType ``fire``, ``police``, ``ems``, ``gas``). The address goes out as
    ``locationDescriptionText`` (free text cannot be split into civic fields), the location as
    a PIDF-LO ``gml:Point``, the victims as ``Victim`` person components next to a ``Caller``
    one (so a known count of 0 survives), ``municipality`` as ``beatOrDispatchGroupText``; an
    untyped incident is of type ``Unknown``. Raises EidoError if the result does not validate
    (a bug guard) and ValueError for what cannot be sent.
    """
    if updated_at.utcoffset() is None:
        raise ValueError("updated_at must be timezone-aware")
    if not (incident_id and issuer and agency):
        raise ValueError("incident_id, issuer and agency must not be empty")
    if unknown := set(incident.services) - _SERVICE_TYPES.keys():
        raise ValueError(f"unknown services {sorted(unknown)}: services are 01–04")
    if not 0 <= (incident.victims or 0) <= 1000:  # one component each: stay under the size limit
        raise ValueError(f"victims {incident.victims}: 0–1000 can be sent")
    top_id = f"urn:emergency:uid:incidentid:{incident_id}:{agency}"

    def component(kind: str, n: int = 0, **fields: Any) -> dict:
        # Deterministic ids: an update names the same components as the first send did.
        cid = fields.pop("id", None) or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{top_id}#{kind}{n}"))
        prologue = {"$id": cid, "lastUpdateTimeStamp": updated_at.isoformat()}
        return {**prologue, "updatedByAgencyReference": {"$ref": agency}, **fields}

    def agency_component(id_: str, type_: str, role: str) -> dict:
        roles = {"agencyRoleDescriptionRegistryText": [role], "agencyType": [type_]}
        return component("agency", id=id_, **roles)

    agencies = [agency_component(agency, "psap", "Originating")]
    for code in sorted(set(incident.services)):
        name = _SERVICE_TYPES[code]
        agencies.append(agency_component(f"{name}.{agency}", name, "Responding"))
    doc: dict[str, Any] = {
        **component("eido", id=top_id),
        "eidoVersion": "1.0",
        "issuingElementIdentification": issuer,
        "agencyComponent": agencies,
    }
    closed = incident.status == IncidentStatus.CLOSED
    fields: dict[str, Any] = {
        "incidentTypeCommonRegistryText": incident.type or "Unknown",
        "incidentStatusCommonRegistryText": ["Closed" if closed else "Active"],
        "internalIncidentId": incident_id,
    }
    if incident.title:
        fields["incidentTypeInternalText"] = incident.title
    if municipality:
        fields["beatOrDispatchGroupText"] = municipality
    if incident.location or incident.address:
        where: dict[str, Any] = {"locationTypeDescriptionRegistryText": "Incident"}
        if incident.location:
            # Percent-encoded (no XML specials left), so the template needs no escaping.
            entity = f"pres:{quote(incident_id, safe='')}@{quote(agency, safe='')}"
            lat, lon = incident.location.lat, incident.location.lon
            where["locationByValue"] = _PIDF_POINT.format(entity=entity, lat=lat, lon=lon)
        if incident.address:
            where["locationDescriptionText"] = incident.address
        doc["locationComponent"] = [component("location", **where)]
    if incident.description:
        text = "<br>".join(map(html.escape, incident.description.splitlines()))
        doc["notesComponent"] = [component("notes", notesActionComments=text)]
    callback = {}
    if incident.caller:
        scheme = incident.caller[:4].casefold() in ("tel:", "sip:")
        uri = incident.caller if scheme else f"tel:{incident.caller}"
        doc["callbackComponent"] = [component("callback", callBackInformationUri=[uri])]
        callback = {"callBackReference": {"$ref": doc["callbackComponent"][0]["$id"]}}
    if incident.victims is not None:
        persons = [component("person", personIncidentRoleRegistryText=["Caller"], **callback)]
        for n in range(1, incident.victims + 1):
            persons.append(component("person", n, personIncidentRoleRegistryText=["Victim"]))
        doc["personComponent"] = persons
    for kind in ("location", "notes", "person"):
        if kind + "Component" in doc:
            fields[kind + "Reference"] = [{"$ref": c["$id"]} for c in doc[kind + "Component"]]
    doc["incidentComponent"] = component("incident", **fields)
    if problems := _problems(doc):
        raise EidoError(problems)
    return doc
