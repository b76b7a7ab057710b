"""Reading events out of an ingest request body, reporting every bad one.

Accepted bodies (``Content-Type``):

* ``application/cloudevents+json``: one structured-mode CloudEvent;
* ``application/cloudevents-batch+json``: a JSON array of them;
* ``application/json``: either of the above;
* ``application/x-ndjson`` (or ``application/ndjson``): one CloudEvent per line.

Anything else is 415. Unparseable JSON is 400; well-formed JSON holding invalid events is 422.
Either way every bad event is named (``index``, ``field``, ``reason``), up to a limit, so a
batch can be fixed in one go. Nothing of a rejected request is stored.

**Reserved types.** What the hub reports itself is not for a caller to write: a forged
``camera.health.ok`` would make a dead camera show as working on its district's wall, a forged
``alert.device.activated`` a silent siren as sounding. :func:`reserved_types` lists the
families — ``hub.>``, ``alert.>``, ``camera.>``, ``siren.>`` and every loaded plugin's own
``<plugin>.>`` (``police.hotlist.hit``, ``system112.ack.*``), in any letter case — and an event
of one is refused (403, ``reserved-type``) whatever the token's scopes, as is one whose source is
under ``/nabat/`` (the hub's own: a caller must not pre-empt the hub's (source, id)). Types
must be ASCII. Every other type may be written by an
``events:write`` token within its municipalities: ``incident.*`` and an agency's own types.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import msgspec

from ..events import (
    CONTENT_TYPE,
    CONTENT_TYPE_BATCH,
    SITE,
    Event,
    EventError,
    EventTypes,
    decode_event,
    site_of,
)
from ..subjects import compile_pattern
from .problems import FieldError, ProblemError

__all__ = ["ACCEPTED_TYPES", "HUB_FAMILIES", "ReservedTypes", "parse_events", "reserved_types"]

NDJSON = ("application/x-ndjson", "application/ndjson")
ACCEPTED_TYPES = (CONTENT_TYPE, CONTENT_TYPE_BATCH, "application/json", *NDJSON)
MAX_REPORTED = 100
HUB_FAMILIES = (
    "hub.>",
    "alert.>",
    "camera.>",
    "siren.>",
    "recording.>",
    "federation.>",
    "command.>",
    "site.>",
)
"""Event families only the hub itself publishes: units' states, alerts and each device's
outcome, cameras' health, clock and device events, sirens' status and readiness, recording's
storage faults, federated sites' reachability, answers to the region's commands, sites'
district reports."""
MAX_ID = 256  # the id travels on as a Standard Webhooks webhook-id, which verifiers cap
MAX_SOURCE = 1024

_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """``"application/json; charset=UTF-8"`` → ``("application/json", "utf-8")``."""
    if not content_type:
        return "", None
    main, *params = content_type.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return main.strip().lower(), charset


def _split(body: bytes, kind: str) -> list[bytes | msgspec.Raw]:
    """The body's items, each to be decoded as one event. Raises 400 for bad framing."""
    if kind in NDJSON:
        return [line for line in body.split(b"\n") if line.strip()]  # index: n-th event
    stripped = body.lstrip()
    if not stripped:
        raise ProblemError(400, "the request body is empty", kind="empty-body")
    is_array = stripped[:1] == b"["
    if kind == CONTENT_TYPE and is_array:
        raise ProblemError(
            400,
            f"a JSON array needs Content-Type {CONTENT_TYPE_BATCH} (or application/json)",
            kind="batch-content-type",
        )
    if kind == CONTENT_TYPE_BATCH and not is_array:
        raise ProblemError(
            400, f"{CONTENT_TYPE_BATCH} must be a JSON array of CloudEvents", kind="not-array"
        )
    if not is_array:
        return [body]
    try:
        return list(_raw_list.decode(body))
    except msgspec.DecodeError as exc:
        raise ProblemError(400, f"malformed JSON: {exc}", kind="malformed-json") from None
    except msgspec.ValidationError:  # well-formed, but not a list of values
        raise ProblemError(400, "expected a JSON array of CloudEvents", kind="not-array") from None


class ReservedTypes:
    """Event-type patterns an ingest caller may not write, with the reason for each."""

    def __init__(self, patterns: Iterable[tuple[str, str]]) -> None:
        self.patterns = [(p, owner, compile_pattern(p)) for p, owner in patterns]
        self._seen: dict[str, tuple[str, str] | None] = {}  # a batch repeats few types

    def owner(self, event_type: str) -> tuple[str, str] | None:
        """``(pattern, owner)`` of the reservation ``event_type`` falls under, if any. Case
        does not matter (``Camera.health.ok`` looks the same to an operator), nor does the
        family's bare name (``camera``)."""
        try:
            return self._seen[event_type]
        except KeyError:
            pass
        folded = event_type.lower()
        found = None
        for pattern, owner, regex in self.patterns:
            if regex.fullmatch(folded) or folded == pattern.removesuffix(".>"):
                found = (pattern, owner)
                break
        if len(self._seen) >= 4096:
            self._seen.clear()
        self._seen[event_type] = found
        return found


RESERVED_SOURCE = "/nabat/"
"""Sources of the hub's own events (instances, jobs, rules, alerts): an event is idempotent by
(source, id), so a caller writing one could pre-empt the hub's — take a job's slot, say."""


class _TypeOnly(msgspec.Struct):
    type: str = ""


_type_only = msgspec.json.Decoder(_TypeOnly)


def _type_of(item: bytes | msgspec.Raw) -> str:
    """The ``type`` of an event that did not decode, if it has a readable one."""
    try:
        return _type_only.decode(item).type
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def _reserved_error(owned: tuple[str, str], where: int | None) -> FieldError:
    pattern, owner = owned
    return FieldError(
        field="type",
        reason=f"types {pattern} are reserved: only {owner} publishes them",
        index=where,
    )


def reserved_types(plugins: Iterable[str] = ()) -> ReservedTypes:
    """The hub's own families and each plugin's ``<plugin>.>`` namespace."""
    return ReservedTypes(
        [(p, "the hub") for p in HUB_FAMILIES]
        + [(f"{name}.>", f"the {name} plugin") for name in sorted(set(plugins))]
    )


def parse_events(
    body: bytes,
    content_type: str | None,
    *,
    types: EventTypes | None,
    max_batch: int,
    municipalities: Collection[str],
    allowed_municipalities: Collection[str] = (),
    reserved: ReservedTypes | None = None,
    max_event: int | None = None,
) -> list[Event]:
    """Decode and check every event; raise :class:`ProblemError` naming each bad one.

    ``municipalities``: the region's slugs (others are unknown). ``allowed_municipalities``:
    those a limited token may write (empty: any). ``reserved``: types no caller may write
    (default: the hub's own families). ``max_event``: bytes one event may take (413 if any
    is larger)."""
    reserved = reserved or reserved_types()
    kind, charset = media_type(content_type)
    if kind not in ACCEPTED_TYPES:
        raise ProblemError(
            415,
            f"Content-Type {kind or '(none)'} is not accepted; use one of "
            + ", ".join(ACCEPTED_TYPES),
            headers={"Accept-Post": ", ".join(ACCEPTED_TYPES)},
            kind="unsupported-media-type",
        )
    if charset not in (None, "utf-8", "utf8"):
        raise ProblemError(415, f"charset {charset} is not accepted; send UTF-8", kind="charset")
    items = _split(body, kind)
    if not items:
        raise ProblemError(400, "the request holds no events", kind="empty-body")
    if len(items) > max_batch:
        raise ProblemError(
            413,
            f"{len(items)} events in one request; at most {max_batch} are accepted",
            kind="batch-too-large",
        )
    single = len(items) == 1 and kind != CONTENT_TYPE_BATCH and kind not in NDJSON
    events: list[Event] = []
    errors: list[FieldError] = []
    malformed = forbidden = refused = 0
    if max_event is not None:
        oversized = [
            FieldError(
                field="(event)",
                reason=f"{len(item)} bytes; one event may take at most {max_event}",
                index=None if single else index,
            )
            for index, item in enumerate(items)
            if len(item) > max_event
        ]
        if oversized:
            verb = "is" if len(oversized) == 1 else "are"
            raise ProblemError(
                413,
                f"{len(oversized)} of {len(items)} events {verb} larger than [api] max_event "
                f"({max_event} bytes); nothing was stored",
                errors=oversized[:MAX_REPORTED],
                kind="event-too-large",
            )
    for index, item in enumerate(items):
        where = None if single else index
        try:
            event = decode_event(item, types)
        except EventError as exc:
            # A reserved type is refused as such, whatever else is wrong with the event.
            if (owned := reserved.owner(_type_of(item))) is not None:
                refused += 1
                errors.append(_reserved_error(owned, where))
            else:
                if exc.reason.startswith("malformed JSON"):
                    malformed += 1
                errors.append(
                    FieldError(field=exc.field or "(event)", reason=exc.reason, index=where)
                )
            continue
        if len(event.id) > MAX_ID or len(event.source) > MAX_SOURCE:
            long_field, limit = ("id", MAX_ID) if len(event.id) > MAX_ID else ("source", MAX_SOURCE)
            errors.append(
                FieldError(field=long_field, reason=f"longer than {limit} characters", index=where)
            )
            continue
        if (owned := reserved.owner(event.type)) is not None:
            refused += 1
            errors.append(_reserved_error(owned, where))
            continue
        if not event.type.isascii():
            errors.append(
                FieldError(field="type", reason="must be ASCII (letters look alike)", index=where)
            )
            continue
        if site_of(event) is not None or SITE in (event.extensions or {}):
            refused += 1
            errors.append(
                FieldError(
                    field=SITE,
                    reason="the site an event happened at is set by federated hubs, not callers",
                    index=where,
                )
            )
            continue
        if event.source[:7].lower() == RESERVED_SOURCE:
            refused += 1
            errors.append(
                FieldError(
                    field="source",
                    reason=f"sources under {RESERVED_SOURCE} are the hub's own",
                    index=where,
                )
            )
            continue
        if event.municipality is not None and event.municipality not in municipalities:
            errors.append(
                FieldError(
                    field="municipality",
                    reason=f"{event.municipality!r} is not a municipality of this region",
                    index=where,
                )
            )
            continue
        if allowed_municipalities and event.municipality not in allowed_municipalities:
            forbidden += 1
            allowed = ", ".join(sorted(allowed_municipalities))
            reason = (
                f"the event names no municipality; this token may only write events of {allowed}"
                if event.municipality is None
                else f"this token may only write events of {allowed}"
            )
            errors.append(FieldError(field="municipality", reason=reason, index=where))
            continue
        events.append(event)
    if errors:
        shown = errors[:MAX_REPORTED]
        more = f"; the first {MAX_REPORTED} are listed" if len(errors) > MAX_REPORTED else ""
        verb = "is" if len(errors) == 1 else "are"
        of = f"{len(errors)} of {len(items)} events" if len(items) > 1 else "the event"
        if malformed:
            detail = f"{of} {verb} not valid JSON{more}; nothing was stored"
            raise ProblemError(400, detail, errors=shown, kind="malformed-json")
        if refused == len(errors):
            detail = (
                f"{of} {verb} of a type or source only the hub publishes{more}; nothing was stored"
            )
            raise ProblemError(403, detail, errors=shown, kind="reserved-type")
        if forbidden == len(errors):
            detail = f"{of} {verb} outside this token's municipalities{more}; nothing was stored"
            raise ProblemError(403, detail, errors=shown, kind="municipality-forbidden")
        detail = f"{of} {verb} invalid{more}; nothing was stored"
        raise ProblemError(422, detail, errors=shown, kind="invalid-events")
    return events
