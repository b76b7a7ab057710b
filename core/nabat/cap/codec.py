"""CAP 1.2 XML ↔ :class:`~nabat.interfaces.alerting.Alert`.

The mapping is driven by the schema and the structs: a CAP element maps to the struct field whose
camelCase name (``msgspec`` ``rename="camel"``) equals the element name, in the XSD's order. So a
field added to the structs (e.g. ``Resource.deref_uri``) is read and written with no change here.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import msgspec
from lxml import etree

from ..interfaces.alerting import Alert, Area, Circle, Info, Parameter, Resource
from ..logs import get_logger
from .errors import CapError, CapProblem
from .validation import (
    CAP_NAMESPACE,
    DEFAULT_MAX_BYTES,
    Child,
    check,
    element_path,
    load,
    model,
    parse_circle,
    parse_polygon,
)

__all__ = ["Reference", "parse_cap", "parse_references", "reference_to", "to_cap"]

log = get_logger("nabat.cap")

_STRUCTS: dict[str, type[msgspec.Struct]] = {
    "alert": Alert,
    "info": Info,
    "eventCode": Parameter,
    "parameter": Parameter,
    "resource": Resource,
    "area": Area,
    "geocode": Parameter,
}


def _fields(struct: type[msgspec.Struct]) -> dict[str, str]:
    """CAP element name → attribute name."""
    return {f.encode_name: f.name for f in msgspec.structs.fields(struct)}


# --- reading ------------------------------------------------------------------------------------


def parse_cap(xml: bytes | str, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> Alert:
    """Read a CAP 1.2 ``<alert>`` into an :class:`Alert`; raise :class:`CapError` if invalid.

    ``max_bytes`` caps the input size (``None``: no cap). An XML signature is dropped with a
    ``cap.unmapped`` warning in the log (so would be any element the structs lack a field for).
    """
    tree = load(xml, max_bytes)
    root = tree.getroot()
    if problems := check(tree):
        raise CapError(problems)
    data = _read(root)
    try:
        return msgspec.convert(data, Alert)
    except msgspec.ValidationError as exc:  # the checks above should leave nothing for this
        raise CapError([_from_msgspec(str(exc), root)]) from None


def _read(el: etree._Element) -> dict[str, Any]:
    name = etree.QName(el).localname
    children = {c.name: c for c in model()[name]}
    fields = _fields(_STRUCTS[name])
    out: dict[str, Any] = {
        c.name: c.default for c in children.values() if c.default is not None and c.name in fields
    }
    for child in el:
        qname = etree.QName(child)
        spec = children.get(qname.localname) if qname.namespace == CAP_NAMESPACE else None
        if spec is None or spec.name not in fields:
            log.warning("cap.unmapped", element=element_path(child), namespace=qname.namespace)
            continue
        value = _value(child, spec)
        if spec.repeated:
            out.setdefault(spec.name, []).append(value)
        else:
            out[spec.name] = value
    return out


def _value(el: etree._Element, spec: Child) -> Any:
    if spec.type == "complex":
        return _read(el)
    text = "".join(el.itertext())
    if spec.type != "xs:string":  # the schema collapses whitespace for every other type
        text = text.strip()
    if spec.name == "polygon":
        return [list(point) for point in parse_polygon(text)]
    if spec.name == "circle":
        lat, lon, radius = parse_circle(text)
        return {"lat": lat, "lon": lon, "radiusKm": radius}
    if spec.type == "xs:decimal":
        return float(text)
    if spec.type == "xs:integer":
        return int(text)
    if not text and spec.default is not None:  # an empty <language/> takes the default
        return spec.default
    return text


def _from_msgspec(message: str, root: etree._Element) -> CapProblem:
    # "... - at `$.info[0].area[1]`" → /alert/info[1]/area[2], and that element's line
    match = re.search(r"- at `\$(.*)`$", message)
    steps = re.findall(r"\.(\w+)(?:\[(\d+)\])?", match[1]) if match else []
    el, path = root, "/alert"
    for name, index in steps:
        found = el.findall(f"{{{CAP_NAMESPACE}}}{name}")
        position = int(index or 0)
        path += f"/{name}" + (f"[{position + 1}]" if index else "")
        if position < len(found):
            el = found[position]
    reason = message[: match.start()].strip() if match else message
    return CapProblem(path, el.sourceline, reason)


# --- writing ------------------------------------------------------------------------------------


def to_cap(alert: Alert) -> bytes:
    """Write ``alert`` as CAP 1.2 XML (UTF-8), validated like :func:`parse_cap` input.

    Datetimes are written in CAP's form ``2003-04-02T14:39:01-05:00``: fractions of a second are
    dropped and UTC is ``-00:00`` (CAP 1.2 §3.3.2). Raises :class:`CapError` for an alert that
    cannot be valid CAP (a naive datetime, an invalid language tag, a polygon off the globe...).
    """
    problems: list[CapProblem] = []
    root = etree.Element(f"{{{CAP_NAMESPACE}}}alert", nsmap={None: CAP_NAMESPACE})
    _write(root, alert, "/alert", problems)
    if problems:
        raise CapError(problems, "the alert cannot be written as CAP 1.2")
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    if problems := check(load(data, max_bytes=None)):  # lines refer to the written document
        raise CapError(problems, "the alert does not make valid CAP 1.2")
    return data


def _write(el: etree._Element, obj: msgspec.Struct, path: str, problems: list[CapProblem]) -> None:
    fields = _fields(type(obj))
    for spec in model()[etree.QName(el).localname]:
        if spec.name not in fields:
            continue  # e.g. derefUri: no field in the structs
        value = getattr(obj, fields[spec.name])
        items = value if spec.repeated else [value]
        for index, item in enumerate(items, 1):
            if item is None:
                continue
            child_path = f"{path}/{spec.name}" + (f"[{index}]" if spec.repeated else "")
            child = etree.SubElement(el, f"{{{CAP_NAMESPACE}}}{spec.name}")
            if spec.type == "complex":
                _write(child, item, child_path, problems)
                continue
            try:
                child.text = _text(spec.name, item)
            except ValueError as exc:
                problems.append(CapProblem(child_path, None, str(exc)))


def _text(name: str, value: Any) -> str:
    if name == "polygon":
        return " ".join(f"{_decimal(lat)},{_decimal(lon)}" for lat, lon in value)
    if isinstance(value, Circle):
        return f"{_decimal(value.lat)},{_decimal(value.lon)} {_decimal(value.radius_km)}"
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return _decimal(value)
    if isinstance(value, str) and not _xml_safe(value):
        raise ValueError("contains characters XML cannot carry (NUL or control characters)")
    return str(value)


_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_safe(text: str) -> bool:
    return _XML_UNSAFE.search(text) is None


def _decimal(value: float) -> str:
    """A float as an ``xs:decimal`` literal: no exponent, no ``.0`` on whole numbers."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    if value.is_integer():
        return str(int(value))
    text = repr(float(value))
    return format(Decimal(text), "f") if "e" in text else text


def format_datetime(value: datetime) -> str:
    """``2003-04-02T14:39:01-05:00``: CAP's dateTime, whole seconds, UTC as ``-00:00``."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("has no UTC offset; CAP needs one")
    if offset % timedelta(minutes=1):
        raise ValueError("has a UTC offset with seconds, which CAP cannot write")
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes > 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}{sign}{hours:02d}:{minutes:02d}"
    )


# --- references ---------------------------------------------------------------------------------


def reference_to(alert: Alert) -> str:
    """The ``sender,identifier,sent`` triple naming ``alert`` in a later message's
    ``<references>``, exactly as :func:`to_cap` writes those three elements: receivers match
    references as text (CAP 1.2 §3.2.1), so ``…+00:00`` for a message sent as ``…-00:00`` would
    name nothing."""
    return f"{alert.sender},{alert.identifier},{format_datetime(alert.sent)}"


class Reference(msgspec.Struct, frozen=True):
    """One ``sender,identifier,sent`` triple of a ``<references>`` element."""

    sender: str
    identifier: str
    sent: datetime
    text: str
    """The triple as written."""


def parse_references(value: str | None) -> list[Reference]:
    """The triples of a ``<references>`` text (space-separated); raise ``ValueError`` naming
    the first one that is not ``sender,identifier,sent`` with a CAP datetime."""
    found = []
    for token in (value or "").split():
        parts = token.split(",")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{token!r} is not a reference of the form sender,identifier,sent")
        try:
            sent = datetime.fromisoformat(parts[2])
        except ValueError:
            raise ValueError(f"{token!r}: {parts[2]!r} is not a CAP datetime") from None
        if sent.tzinfo is None:
            raise ValueError(f"{token!r}: {parts[2]!r} has no UTC offset")
        found.append(Reference(sender=parts[0], identifier=parts[1], sent=sent, text=token))
    return found
