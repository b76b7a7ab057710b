"""Events: the CloudEvents 1.0 envelope every part of Nabat speaks.

An :class:`Event` is a frozen ``msgspec.Struct`` whose JSON form is CloudEvents *structured
mode* (``application/cloudevents+json``). Nabat adds three extension attributes:
``municipality`` (the slug of the municipality the event concerns), ``severity`` and
``correlationid`` (ties the events of one incident or alert together).

The CloudEvents ``type`` is also the event's bus subject (``camera.health.offline``), so it is
dot-separated and may be matched with NATS wildcards. The CloudEvents ``subject`` names the
thing the event is about (a camera id, an alert identifier).

Plugins register typed ``data`` payloads per ``type`` (or per type pattern such as
``camera.health.*``); :class:`EventTypes` decodes ``data`` into the registered Struct and
leaves unregistered types as plain JSON values. Every invalid input raises :class:`EventError`,
which names the offending field and the reason.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from .ids import uuid7
from .subjects import SubjectError, compile_pattern, validate_pattern, validate_subject

__all__ = [
    "CONTENT_TYPE",
    "CONTENT_TYPE_BATCH",
    "SITE",
    "Event",
    "EventError",
    "EventTypes",
    "Severity",
    "decode_event",
    "decode_events",
    "encode_event",
    "encode_events",
    "site_of",
]

CONTENT_TYPE = "application/cloudevents+json"
CONTENT_TYPE_BATCH = "application/cloudevents-batch+json"
SITE = "site"
"""The extension attribute naming the federated site an event happened at
(``docs/federation.md``): set by that site's hub as the event goes up, kept by the hubs that
follow it. This hub's own events do not carry it; API callers may not set it."""

_CONTEXT_ATTRIBUTES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "dataschema",
        "municipality",
        "severity",
        "correlationid",
        "data",
        "data_base64",
    }
)
# CloudEvents 1.0: extension names are lower-case ASCII letters or digits.
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
_MUNICIPALITY = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_VALIDATION_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"missing required field `(?P<name>[^`]+)`")


class Severity(enum.StrEnum):
    """How serious an event is, in CAP's terms (lowest to highest), plus ``info``."""

    INFO = "info"
    MINOR = "minor"
    MODERATE = "moderate"
    SEVERE = "severe"
    EXTREME = "extreme"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


class EventError(ValueError):
    """An event is invalid. ``field`` is a dotted path (``data.lat``, ``time``), ``reason`` why."""

    def __init__(self, field: str, reason: str, *, index: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.index = index  # position in a batch, when the event came in one
        where = f"[{index}]." if index is not None else ""
        super().__init__(f"invalid event: {where}{field or '(event)'}: {reason}")


def _now() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A CloudEvents 1.0 event. Construct with at least ``type`` and ``source``."""

    type: str
    """Event type and bus subject, dot-separated: ``camera.health.offline``."""
    source: str
    """URI-reference of the producer: ``/nabat/instances/krd-cam-001``, ``urn:112:krasnodar``."""
    id: str = msgspec.field(default_factory=uuid7)
    """Unique per source; Nabat assigns a time-ordered UUIDv7."""
    specversion: str = msgspec.field(default_factory=lambda: "1.0")
    time: datetime = msgspec.field(default_factory=_now)
    subject: str | None = None
    """What the event is about, in the producer's terms (camera id, alert identifier)."""
    datacontenttype: str | None = None
    dataschema: str | None = None
    municipality: str | None = None
    severity: Severity | None = None
    correlationid: str | None = None
    extensions: dict[str, str | int | bool] | None = None
    """Foreign CloudEvents extension attributes, kept so relayed events lose nothing."""
    data: Any = None

    def __post_init__(self) -> None:
        if self.specversion != "1.0":
            raise EventError(
                "specversion",
                f"unsupported CloudEvents version {self.specversion!r}; expected '1.0'",
            )
        if not self.id:
            raise EventError("id", "must be a non-empty string")
        if not self.source or any(c.isspace() for c in self.source):
            raise EventError("source", "must be a non-empty URI-reference without whitespace")
        try:
            validate_subject(self.type)
        except SubjectError as exc:
            raise EventError("type", str(exc)) from None
        if not isinstance(self.time, datetime):
            raise EventError("time", f"must be a datetime, got {type(self.time).__name__}")
        if self.time.tzinfo is None:
            raise EventError("time", "must carry a UTC offset (RFC 3339)")
        if self.municipality is not None and not _MUNICIPALITY.fullmatch(self.municipality):
            raise EventError(
                "municipality", f"{self.municipality!r} is not a municipality slug ([a-z0-9_-])"
            )
        if self.severity is not None and not isinstance(self.severity, Severity):
            try:
                msgspec.structs.force_setattr(self, "severity", Severity(self.severity))
            except ValueError:
                allowed = ", ".join(s.value for s in Severity)
                raise EventError(
                    "severity", f"{self.severity!r} is not one of: {allowed}"
                ) from None
        if self.extensions:
            for name in self.extensions:
                if name in _CONTEXT_ATTRIBUTES or not _EXTENSION_NAME.fullmatch(name):
                    raise EventError(
                        name, "extension attribute names must be 1-20 lower-case letters or digits"
                    )
        if self.datacontenttype is None and self.data is not None:
            kind = (
                "application/octet-stream" if isinstance(self.data, bytes) else "application/json"
            )
            msgspec.structs.force_setattr(self, "datacontenttype", kind)

    def replace(self, **changes: Any) -> Event:
        """Return a copy with ``changes`` applied (events are immutable once built)."""
        return msgspec.structs.replace(self, **changes)


class _Wire(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The fast decoding shape: every attribute we know, ``data`` left raw for typing later."""

    specversion: str
    id: str
    source: str
    type: str
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    municipality: str | None = None
    severity: Severity | None = None
    correlationid: str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    data_base64: str | None = None


_wire_decoder = msgspec.json.Decoder(_Wire)
_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class EventTypes:
    """Registry of typed ``data`` payloads, keyed by CloudEvents ``type`` or a type pattern."""

    def __init__(self) -> None:
        self._exact: dict[str, type] = {}
        self._patterns: list[tuple[str, type]] = []
        self._owners: dict[str, str] = {}
        self._cache: dict[str, type | None] = {}

    def register(self, type_or_pattern: str, payload: type, *, owner: str = "") -> None:
        """Register ``payload`` (a msgspec Struct or any msgspec-decodable type).

        Registering the same key twice with another payload type is an error: two plugins
        must not disagree on what an event type carries.
        """
        try:
            validate_pattern(type_or_pattern)
        except SubjectError as exc:
            raise EventError("type", str(exc)) from None
        known = self._exact.get(type_or_pattern) or dict(self._patterns).get(type_or_pattern)
        if known is not None and known is not payload:
            raise ValueError(
                f"event type {type_or_pattern!r} is already registered by "
                f"{self._owners.get(type_or_pattern) or 'another plugin'} as {known.__name__}"
            )
        self._owners[type_or_pattern] = owner
        if "*" in type_or_pattern or ">" in type_or_pattern:
            if known is None:
                self._patterns.append((type_or_pattern, payload))
                # Most specific first: more literal tokens win over wildcards.
                self._patterns.sort(key=lambda p: -sum(t not in "*>" for t in p[0].split(".")))
        else:
            self._exact[type_or_pattern] = payload
        self._cache.clear()

    def register_all(self, mapping: Mapping[str, type], *, owner: str = "") -> None:
        for key, payload in mapping.items():
            self.register(key, payload, owner=owner)

    def lookup(self, event_type: str) -> type | None:
        """The payload type registered for ``event_type``, or None when it is untyped."""
        try:
            return self._cache[event_type]
        except KeyError:
            pass
        found = self._exact.get(event_type)
        if found is None:
            for pattern, payload in self._patterns:
                if compile_pattern(pattern).fullmatch(event_type):
                    found = payload
                    break
        self._cache[event_type] = found
        return found

    def __iter__(self):
        yield from self._exact.items()
        yield from self._patterns

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)


def _validation_error(exc: msgspec.MsgspecError, *, prefix: str = "") -> EventError:
    message = str(exc)
    path = ""
    match = _VALIDATION_PATH.search(message)
    if match:
        path = match.group("path").lstrip(".")
        message = message[: match.start()]
    else:
        missing = _MISSING_FIELD.search(message)
        if missing:
            path = missing.group("name")
    if isinstance(exc.__cause__, EventError):
        return exc.__cause__
    if prefix:
        path = f"{prefix}.{path}" if path and not path.startswith("[") else f"{prefix}{path}"
    return EventError(path, message)


def _typed_data(event_type: str, raw: Any, types: EventTypes | None, *, is_raw: bool) -> Any:
    payload = types.lookup(event_type) if types is not None else None
    try:
        if payload is None:
            return _any_decoder.decode(raw) if is_raw else raw
        if is_raw:
            return msgspec.json.decode(raw, type=payload)
        return msgspec.convert(raw, payload)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, prefix="data") from None
    except msgspec.DecodeError as exc:
        raise EventError("data", f"malformed JSON: {exc}") from None


def _finish(
    attrs: dict[str, Any], data: Any, data_b64: str | None, extensions: dict[str, Any] | None
) -> Event:
    if data_b64 is not None:
        if data is not None:
            raise EventError("data_base64", "an event carries 'data' or 'data_base64', not both")
        try:
            data = base64.b64decode(data_b64, validate=True)
        except ValueError as exc:
            raise EventError("data_base64", f"not valid base64: {exc}") from None
    if attrs.get("time") is None:
        attrs.pop("time", None)
    try:
        return Event(**attrs, data=data, extensions=extensions or None)
    except TypeError as exc:
        raise EventError("", str(exc)) from None


def decode_event(buf: bytes | str, types: EventTypes | None = None) -> Event:
    """Decode one structured-mode CloudEvent (JSON). Raises EventError on any problem."""
    try:
        return _decode_event(buf, types)
    except UnicodeDecodeError as exc:  # msgspec's answer to invalid UTF-8 inside a string
        raise EventError("", f"malformed JSON: not valid UTF-8 at byte {exc.start}") from None
    except RecursionError:
        raise EventError("", "malformed JSON: nested too deeply") from None


def _decode_event(buf: bytes | str, types: EventTypes | None) -> Event:
    try:
        wire = _wire_decoder.decode(buf)
    except msgspec.ValidationError as exc:
        if "unknown field" not in str(exc):
            raise _validation_error(exc) from None
        # Foreign extension attributes: the slower path through a plain dict keeps them.
        return _from_mapping(_decode_object(buf), types)
    except msgspec.DecodeError as exc:
        raise EventError("", f"malformed JSON: {exc}") from None
    except EventError:
        raise
    attrs = {f: getattr(wire, f) for f in _WIRE_ATTRS}
    raw = wire.data
    data = (
        None
        if not raw or bytes(raw) == b"null"
        else _typed_data(wire.type, raw, types, is_raw=True)
    )
    return _finish(attrs, data, wire.data_base64, None)


_WIRE_ATTRS = tuple(f for f in _Wire.__struct_fields__ if f not in ("data", "data_base64"))


def _decode_object(buf: bytes | str) -> dict[str, Any]:
    try:
        obj = _any_decoder.decode(buf)
    except msgspec.DecodeError as exc:
        raise EventError("", f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EventError("", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _from_mapping(obj: Mapping[str, Any], types: EventTypes | None) -> Event:
    known = {k: v for k, v in obj.items() if k in _CONTEXT_ATTRIBUTES}
    extensions = {k: v for k, v in obj.items() if k not in _CONTEXT_ATTRIBUTES}
    for name, value in extensions.items():
        if not _EXTENSION_NAME.fullmatch(name):
            raise EventError(
                name, "unknown attribute; extension names are 1-20 lower-case letters or digits"
            )
        if not isinstance(value, str | int | bool) or value is None:
            raise EventError(
                name, "extension attribute values must be strings, integers or booleans"
            )
    data = known.pop("data", None)
    data_b64 = known.pop("data_base64", None)
    if data_b64 is not None and not isinstance(data_b64, str):
        raise EventError("data_base64", "must be a base64 string")
    try:
        wire = msgspec.convert(known, _Wire)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    attrs = {f: getattr(wire, f) for f in _WIRE_ATTRS}
    typed = None if data is None else _typed_data(wire.type, data, types, is_raw=False)
    return _finish(attrs, typed, data_b64, extensions)


def decode_events(buf: bytes | str, types: EventTypes | None = None) -> list[Event]:
    """Decode a JSON array of structured-mode CloudEvents (``application/cloudevents-batch+json``).

    All or nothing: the first invalid event raises EventError with its ``index`` set.
    """
    try:
        items = _list_decoder.decode(buf)
    except msgspec.ValidationError:
        raise EventError("", "expected a JSON array of CloudEvents") from None
    except msgspec.DecodeError as exc:
        raise EventError("", f"malformed JSON: {exc}") from None
    events = []
    for index, item in enumerate(items):
        try:
            events.append(decode_event(item, types))
        except EventError as exc:
            raise EventError(exc.field, exc.reason, index=index) from None
    return events


def _needs_slow_encode(event: Event) -> bool:
    return bool(event.extensions) or isinstance(event.data, bytes | bytearray | memoryview)


def to_mapping(event: Event) -> dict[str, Any]:
    """The event as a plain dict in structured-mode shape (extensions flat, bytes base64)."""
    out = msgspec.to_builtins(event)
    extensions = out.pop("extensions", None) or {}
    if isinstance(event.data, bytes | bytearray | memoryview):
        out.pop("data", None)
        out["data_base64"] = base64.b64encode(bytes(event.data)).decode("ascii")
    out.update(extensions)
    return out


def encode_event(event: Event) -> bytes:
    """Encode ``event`` as structured-mode CloudEvents JSON."""
    if _needs_slow_encode(event):
        return _encoder.encode(to_mapping(event))
    return _encoder.encode(event)


def encode_events(events: Iterable[Event]) -> bytes:
    """Encode events as a CloudEvents JSON batch (a JSON array)."""
    events = list(events)
    if not any(_needs_slow_encode(e) for e in events):
        return _encoder.encode(events)
    return _encoder.encode([to_mapping(e) if _needs_slow_encode(e) else e for e in events])


def site_of(event: Event) -> str | None:
    """The other site an event happened at (a followed event), or None: this hub's own.
    A followed event is this hub's record, never its trigger: rules, incidents and
    recordings act on their own site's events only."""
    value = (event.extensions or {}).get(SITE)
    return value if isinstance(value, str) else None
