"""Secure loading and validation of CAP 1.2 documents: the OASIS schema plus the spec's rules.

Everything here works on lxml trees and reports :class:`CapProblem` lists; the mapping to and
from :class:`~nabat.interfaces.alerting.Alert` lives in :mod:`nabat.cap.codec`.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from functools import cache
from importlib import resources
from typing import NamedTuple

from lxml import etree

from .errors import CapError, CapProblem

__all__ = [
    "CAP_NAMESPACE",
    "DEFAULT_MAX_BYTES",
    "Child",
    "check",
    "element_path",
    "load",
    "model",
    "parse_circle",
    "parse_polygon",
]

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
DEFAULT_MAX_BYTES = 1024 * 1024
_XS = "{http://www.w3.org/2001/XMLSchema}"
_OLDER = {
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
    "http://www.incident.com/cap/1.0": "1.0",
}
# The XSD's dateTime pattern (its "[-,+]" lets a comma through the pattern, never xs:dateTime).
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[-+][0-9]{2}:[0-9]{2}"
)
_DATETIME_NAMES = frozenset({"sent", "effective", "onset", "expires"})
_DATETIME_HINT = (
    "write it like 2003-04-02T14:39:01-05:00: whole seconds and a UTC offset with a colon, "
    "no 'Z' and no fractions of a second (UTC is written -00:00)"
)
_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PAIR = re.compile(rf"({_NUMBER}),({_NUMBER})")
_RESERVED = re.compile(r"[\s,<&]")


class Child(NamedTuple):
    """A child element as the XSD declares it."""

    name: str
    required: bool
    repeated: bool
    type: str  # "xs:string", "xs:dateTime", ... or "complex"
    default: str | None


class _NothingExternal(etree.Resolver):
    """Answers every request for an external DTD or entity with nothing, never the resource."""

    def resolve(self, url: str | None, pubid: str | None, context: object) -> object:
        return self.resolve_string("", context)


def _parser(*, utf8: bool = False) -> etree.XMLParser:
    # No DTD loading, no entity expansion, no network; libxml2's default size/depth limits stay
    # on (huge_tree=False); and a resolver that loads nothing, in case an option fails us (with
    # lxml 6.1/libxml2 2.14, collect_ids=False makes it load the external DTD despite
    # load_dtd=False; tests/core/test_cap.py catches that).
    # A fresh parser per call: lxml parsers are not for sharing across threads.
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        encoding="utf-8" if utf8 else None,
    )
    parser.resolvers.add(_NothingExternal())
    return parser


@cache
def _loaded() -> tuple[etree.XMLSchema, dict[str, tuple[Child, ...]]]:
    data = resources.files(__package__).joinpath("CAP-v1.2.xsd").read_bytes()
    xsd = etree.fromstring(data, _parser())
    globals_ = {el.get("name"): el for el in xsd.findall(f"{_XS}element")}
    sequences: dict[str, tuple[Child, ...]] = {}
    for el in xsd.iter(f"{_XS}element"):
        sequence = el.find(f"{_XS}complexType/{_XS}sequence")
        if el.get("name") is None or sequence is None:
            continue
        children = []
        for child in sequence.findall(f"{_XS}element"):
            ref = child.get("ref")
            decl = globals_[ref.split(":")[-1]] if ref else child
            base = decl.find(f"{_XS}simpleType/{_XS}restriction")
            if decl.find(f"{_XS}complexType") is not None:
                type_ = "complex"
            else:
                type_ = decl.get("type") or (base.get("base") if base is not None else "xs:string")
            children.append(
                Child(
                    name=decl.get("name"),
                    required=child.get("minOccurs", "1") != "0",
                    repeated=child.get("maxOccurs", "1") != "1",
                    type=type_,
                    default=decl.get("default"),
                )
            )
        sequences[el.get("name")] = tuple(children)
    return etree.XMLSchema(xsd), sequences


_validate_lock = threading.Lock()  # the schema's error_log belongs to the schema object


def model() -> dict[str, tuple[Child, ...]]:
    """CAP's complex elements (``alert``, ``info``, ``area``...) → their children, in order."""
    return _loaded()[1]


def _child(parent: str, name: str) -> Child | None:
    return next((c for c in model().get(parent, ()) if c.name == name), None)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def element_path(el: etree._Element) -> str:
    """``/alert/info[1]/area[2]/circle[1]``: an index on every element CAP lets repeat."""
    parts = []
    node: etree._Element | None = el
    while node is not None:
        name = _local(node)
        parent = node.getparent()
        if parent is not None:
            siblings = [s for s in parent if s.tag == node.tag]
            spec = _child(_local(parent), name)
            if (spec is not None and spec.repeated) or len(siblings) > 1:
                name += f"[{siblings.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))


def load(xml: bytes | str, max_bytes: int | None = DEFAULT_MAX_BYTES) -> etree._ElementTree:
    """Parse ``xml`` safely into a tree whose root is a CAP 1.2 ``alert``, or raise CapError."""
    if isinstance(xml, str):
        data, utf8 = xml.encode("utf-8"), True  # the text's own encoding declaration is moot
    elif isinstance(xml, bytes | bytearray | memoryview):
        data, utf8 = bytes(xml), False
    else:
        raise TypeError(f"CAP XML must be bytes or str, not {type(xml).__name__}")
    if max_bytes is not None and len(data) > max_bytes:
        raise _refused(
            None, f"the document is {len(data):,} bytes, over the limit of {max_bytes:,}"
        )
    if not data.strip():
        raise _refused(None, "the document is empty")
    try:
        root = etree.fromstring(data, _parser(utf8=utf8))
    except etree.XMLSyntaxError as exc:
        message = re.sub(r", line \d+, column \d+$", "", exc.msg or str(exc))
        column = f" (column {exc.position[1]})" if exc.position else ""
        raise _refused(exc.lineno, f"not well-formed XML: {message}{column}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype:
        at = data.find(b"<!DOCTYPE")
        raise _refused(
            data.count(b"\n", 0, at) + 1 if at >= 0 else None,
            "a DOCTYPE declaration is not allowed in CAP (it could pull in local files or "
            "expand entities); the document was refused without reading what it refers to",
        )
    qname = etree.QName(root)
    if qname.localname != "alert" or qname.namespace != CAP_NAMESPACE:
        if qname.localname != "alert":
            reason = f"the root element is <{qname.localname}>, not a CAP <alert>"
        elif qname.namespace is None:
            reason = f'<alert> has no namespace; CAP 1.2 needs xmlns="{CAP_NAMESPACE}"'
        elif qname.namespace in _OLDER:
            reason = (
                f"this is a CAP {_OLDER[qname.namespace]} message ({qname.namespace}); "
                f"only CAP 1.2 ({CAP_NAMESPACE}) is accepted"
            )
        else:
            reason = f"<alert> is in namespace {qname.namespace}; CAP 1.2 needs {CAP_NAMESPACE}"
        raise CapError([CapProblem(f"/{qname.localname}", root.sourceline, reason)])
    return tree


def _refused(line: int | None, reason: str) -> CapError:
    return CapError([CapProblem("/", line, reason)])


def check(tree: etree._ElementTree) -> list[CapProblem]:
    """Every problem with a loaded CAP document: the OASIS schema, then the spec's rules."""
    schema, _ = _loaded()
    with _validate_lock:
        valid = schema.validate(tree)
        entries = [] if valid else list(schema.error_log)
    problems = [_translate(entry, tree) for entry in entries]
    problems += _semantic(tree.getroot())
    seen: set[str] = set()
    unique = []
    for problem in problems:  # one problem per element: the first is the most telling
        if problem.path not in seen:
            seen.add(problem.path)
            unique.append(problem)
    return sorted(unique, key=lambda p: p.line or 0)


# --- schema messages into plain English -------------------------------------------------------

_ATOMIC = {
    "xs:integer": "must be a whole number",
    "xs:decimal": "must be a decimal number",
    "xs:language": "must be a language tag such as en-US or ru-RU",
    "xs:anyURI": "must be a URI",
}


def _names(text: str) -> list[str]:
    return re.findall(r"\{[^}]*\}(\w+)", text)


def _translate(entry: etree._LogEntry, tree: etree._ElementTree) -> CapProblem:
    try:
        found = tree.xpath(entry.path) if entry.path else []
    except etree.XPathError:
        found = []
    el = found[0] if found and isinstance(found[0], etree._Element) else None
    message = re.sub(r"^Element '[^']*': ", "", entry.message)
    if el is None:  # no element to point at: keep libxml2's words, minus namespace noise
        return CapProblem("/", entry.line, re.sub(r"\{[^}]*\}", "", message))
    path, line, name = element_path(el), entry.line or el.sourceline, _local(el)
    parent = el.getparent()
    spec = _child(_local(parent), name) if parent is not None else None
    value = re.search(r"(?:The value |^)'(.*?)' is not", message, re.S)
    shown = value[1] if value else ""
    kind = entry.type_name

    if kind == "SCHEMAV_CVC_ENUMERATION_VALID":
        allowed = re.findall(r"'([^']*)'", message.split("set", 1)[-1])
        return CapProblem(
            path, line, f"'{shown}' is not a valid <{name}>; use one of: {', '.join(allowed)}"
        )
    if name in _DATETIME_NAMES and kind == "SCHEMAV_CVC_PATTERN_VALID":
        return CapProblem(path, line, f"'{shown}' is not a CAP date and time; {_DATETIME_HINT}")
    if kind.startswith("SCHEMAV_CVC_DATATYPE_VALID"):
        if name in _DATETIME_NAMES:
            return CapProblem(path, line, f"'{shown}' is not a real date and time")
        if spec is not None and spec.type in _ATOMIC:
            return CapProblem(path, line, f"'{shown}' is not valid: <{name}> {_ATOMIC[spec.type]}")
    if kind == "SCHEMAV_ELEMENT_CONTENT" and "Missing child element" in message:
        expected = _names(message.split("Expected is", 1)[-1])
        required = [n for n in expected if (c := _child(name, n)) and c.required] or expected
        missing = required[0] if required else "?"
        return CapProblem(
            f"{path}/{missing}", line, f"required element <{missing}> is missing from <{name}>"
        )
    if kind == "SCHEMAV_ELEMENT_CONTENT" and parent is not None:
        expected = _names(message.split("Expected is", 1)[-1]) if "Expected is" in message else []
        ours = spec is not None and etree.QName(el).namespace == CAP_NAMESPACE
        required = [n for n in expected if (c := _child(_local(parent), n)) and c.required]
        if ours and required:
            return CapProblem(
                f"{element_path(parent)}/{required[0]}",
                line,
                f"required element <{required[0]}> is missing or misplaced: <{name}> "
                f"stands where <{required[0]}> must come (CAP fixes the order "
                "of elements)",
            )
        if ours:
            allowed = " or ".join(f"<{n}>" for n in expected) or "no further elements"
            return CapProblem(
                path,
                line,
                f"<{name}> is out of order or repeated too often; here CAP 1.2 allows {allowed}",
            )
        namespace = etree.QName(el).namespace
        where = f" (namespace {namespace})" if namespace != CAP_NAMESPACE else ""
        return CapProblem(
            path, line, f"<{name}>{where} is not a CAP 1.2 element of <{_local(parent)}>"
        )
    if kind == "SCHEMAV_CVC_COMPLEX_TYPE_2_3":
        return CapProblem(
            path, line, f"text is not allowed directly inside <{name}>, only child elements"
        )
    if kind == "SCHEMAV_CVC_COMPLEX_TYPE_2_1":
        return CapProblem(path, line, f"<{name}> holds text only, not child elements")
    return CapProblem(path, line, re.sub(r"\{[^}]*\}", "", message))


# --- rules of the CAP 1.2 specification the schema cannot express -----------------------------


def _point(token: str) -> tuple[float, float]:
    match = _PAIR.fullmatch(token)
    if not match:
        raise ValueError(f"'{token}' is not a 'latitude,longitude' pair in decimal degrees")
    lat, lon = float(match[1]), float(match[2])
    if not -90 <= lat <= 90:
        raise ValueError(f"latitude {match[1]} is outside -90…90")
    if not -180 <= lon <= 180:
        raise ValueError(f"longitude {match[2]} is outside -180…180")
    return lat, lon


def parse_polygon(text: str) -> list[tuple[float, float]]:
    """CAP polygon text → (lat, lon) pairs; ValueError with the reason if it breaks §3.2.4."""
    points = [_point(token) for token in text.split()]
    if len(points) < 4:
        raise ValueError(
            f"a polygon needs at least 4 coordinate pairs, the first repeated as the last; "
            f"this one has {len(points)}"
        )
    if points[0] != points[-1]:
        raise ValueError(
            "the polygon is not closed: its last pair "
            f"{text.split()[-1]} must repeat the first {text.split()[0]}"
        )
    return points


def parse_circle(text: str) -> tuple[float, float, float]:
    """CAP circle text ``lat,lon radius_km`` → (lat, lon, radius_km)."""
    tokens = text.split()
    if len(tokens) != 2 or not re.fullmatch(_NUMBER, tokens[1]):
        raise ValueError(
            f"'{text.strip()}' is not a circle: write 'latitude,longitude radius' with the "
            "radius in kilometres, e.g. '32.9525,-115.5527 0'"
        )
    lat, lon = _point(tokens[0])
    radius = float(tokens[1])
    if radius < 0:
        raise ValueError(f"the radius {tokens[1]} km is negative")
    return lat, lon, radius


def _text(el: etree._Element | None) -> str:
    return "" if el is None else "".join(el.itertext())


def _number(el: etree._Element | None) -> float | None:
    text = _text(el).strip()
    return float(text) if el is not None and re.fullmatch(_NUMBER, text) else None


def _semantic(root: etree._Element) -> list[CapProblem]:
    problems: list[CapProblem] = []

    def q(name: str) -> str:
        return f"{{{CAP_NAMESPACE}}}{name}"

    def add(el: etree._Element, reason: str) -> None:
        problems.append(CapProblem(element_path(el), el.sourceline, reason))

    for name in ("identifier", "sender"):  # §3.2.1: they make up <references>
        el = root.find(q(name))
        if el is not None and not _text(el):
            add(el, f"<{name}> is empty")
        elif el is not None and _RESERVED.search(_text(el)):
            add(el, f"<{name}> must not contain spaces, commas, '<' or '&'")
    scope = root.find(q("scope"))
    if _text(scope) == "Restricted" and not _text(root.find(q("restriction"))).strip():
        add(scope, "a Restricted alert needs a <restriction> saying who may receive it")
    if _text(scope) == "Private" and not _text(root.find(q("addresses"))).strip():
        add(scope, "a Private alert needs <addresses>")
    references = root.find(q("references"))
    for token in _text(references).split():
        parts = token.split(",")
        if len(parts) != 3 or not all(parts) or not _DATETIME.fullmatch(parts[2]):
            add(references, f"'{token}' is not a reference of the form sender,identifier,sent")
            break
    for el in root.iter(*(q(n) for n in _DATETIME_NAMES)):
        text = _text(el).strip()
        if _DATETIME.fullmatch(text):  # a wrong shape is the schema's to report
            try:
                datetime.fromisoformat(text)
            except ValueError:
                add(el, f"'{text}' is not a real date and time")
    for area in root.iter(q("area")):
        for el in area.iterchildren(q("polygon"), q("circle")):
            try:
                (parse_polygon if _local(el) == "polygon" else parse_circle)(_text(el))
            except ValueError as exc:
                add(el, str(exc))
        altitude, ceiling = area.find(q("altitude")), area.find(q("ceiling"))
        if ceiling is not None and altitude is None:
            add(ceiling, "<ceiling> may only be given together with <altitude>")
        elif (a := _number(altitude)) is not None and (c := _number(ceiling)) is not None:
            if c < a:
                add(
                    ceiling,
                    f"<ceiling> {_text(ceiling).strip()} is below <altitude> "
                    f"{_text(altitude).strip()}",
                )
    for el in root.iter(q("size")):
        if (size := _number(el)) is not None and size < 0:
            add(el, "<size> must not be negative")
    return problems
