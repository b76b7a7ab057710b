"""``/api/v1/events``: ingest, query and the live stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ...events import Event, Severity, encode_event
from ...logs import get_logger
from ...store import MAX_PAGE, EventQuery, JournalError, decode_cursor, encode_cursor
from ...subjects import SubjectError
from ..gate import BODY
from ..ingest import parse_events
from ..problems import FieldError, ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo

__all__ = ["HANDLERS"]

log = get_logger("nabat.api")
JSON = "application/json"


class CloudEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A CloudEvents 1.0 event in structured JSON mode. Extension attributes besides Nabat's
    (``municipality``, ``severity``, ``correlationid``) are kept as extra top-level keys."""

    specversion: Literal["1.0"]
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
    data: Any = None
    data_base64: str | None = None


class StoredEventDoc(msgspec.Struct, kw_only=True):
    """An event and its place in the journal (``cursor`` resumes right after it)."""

    cursor: str
    event: CloudEvent


class EventsPage(msgspec.Struct, kw_only=True):
    events: list[StoredEventDoc]
    next_cursor: str | None
    """Pass as ``cursor`` to read on; null when this page reached the end for now."""


class AcceptedEvent(msgspec.Struct, kw_only=True):
    id: str
    source: str
    cursor: str
    duplicate: bool
    """True when the journal already held this (source, id): not stored or sent again."""


class IngestResult(msgspec.Struct, kw_only=True):
    accepted: int
    """Events durable in the journal (new and duplicate)."""
    new: int
    duplicates: int
    events: list[AcceptedEvent]


def visible_municipalities(
    token: TokenInfo, requested: list[str] | None, region: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """The municipalities a read may cover: what was asked, within what the token sees."""
    unknown = [m for m in requested or () if region and m not in region]
    if unknown:
        raise ProblemError(
            400,
            f"unknown municipality {', '.join(unknown)} in this region",
            errors=[
                FieldError(field="municipality", reason=f"{m!r} is not a municipality")
                for m in unknown
            ],
            kind="invalid-parameter",
        )
    if token.regional:
        return tuple(requested or ())
    if not requested:
        return token.municipalities
    outside = [m for m in requested if m not in token.municipalities]
    if outside:
        raise ProblemError(
            403,
            f"this token may not read events of {', '.join(outside)}",
            errors=[FieldError(field="municipality", reason="outside this token's municipalities")],
            kind="municipality-forbidden",
        )
    return tuple(requested)


def build_query(
    token: TokenInfo,
    *,
    region: frozenset[str] = frozenset(),
    since: datetime | None,
    until: datetime | None,
    types: list[str] | None,
    subject: str | None,
    municipalities: list[str] | None,
    correlationid: str | None,
    after: int | None = None,
    limit: int = 100,
) -> EventQuery:
    try:
        return EventQuery(
            since=since,
            until=until,
            types=tuple(types or ()),
            subject=subject,
            municipalities=visible_municipalities(token, municipalities, region),
            correlationid=correlationid,
            after=after,
            limit=limit,
        )
    except (SubjectError, ValueError) as exc:
        field = "type" if isinstance(exc, SubjectError) else _field_of(str(exc))
        raise ProblemError(
            400,
            str(exc),
            errors=[FieldError(field=field, reason=str(exc))],
            kind="invalid-parameter",
        ) from None


def _field_of(message: str) -> str:
    return next((name for name in ("since", "until") if message.startswith(name)), "query")


def _cursor(value: str | None, field: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return decode_cursor(value)
    except ValueError as exc:
        raise ProblemError(
            400, str(exc), errors=[FieldError(field=field, reason=str(exc))], kind="bad-cursor"
        ) from None


def _json(content: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return Response(content=content, status_code=status, media_type=JSON, headers=headers)


_EVENT_BODY_DOC = """One structured-mode CloudEvent (`application/cloudevents+json`), a JSON array
of them (`application/cloudevents-batch+json`; `application/json` takes either) or one per line
(`application/x-ndjson`). `id` is required: with `source` it makes the event idempotent."""


@dataclass
class _IngestOperation(Operation):
    """The ingest body is read by hand (four media types), so describe it here."""

    def __post_init__(self) -> None:
        one = Reference(ref="#/components/schemas/CloudEvent")
        many = Schema(type=OpenAPIType.ARRAY, items=one, min_items=1)
        self.request_body = RequestBody(
            required=True,
            description=_EVENT_BODY_DOC,
            content={
                "application/cloudevents+json": OpenAPIMediaType(schema=one),  # type: ignore[arg-type]
                "application/cloudevents-batch+json": OpenAPIMediaType(schema=many),
                "application/json": OpenAPIMediaType(schema=Schema(one_of=[one, many])),  # type: ignore[list-item]
                "application/x-ndjson": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING, description="One CloudEvent JSON per line"
                    )
                ),
            },
        )


@post(
    "/api/v1/events",
    operation_class=_IngestOperation,
    opt={"scope": "events:write"},
    status_code=202,
    summary="Publish events",
    description=(
        "Stores the events durably, then answers 202 with their places in the journal. "
        "Retrying is safe: an event whose (source, id) is already stored is reported as a "
        "duplicate and not sent on again; with an `Idempotency-Key` (or `webhook-id`) header "
        "a retry gets the first answer again. " + _EVENT_BODY_DOC
    ),
    responses=documented(400, 403, 408, 409, 413, 415, 422, 503, 507),
    tags=["events"],
)
async def ingest_events(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            description="Makes a retried request return the first answer (kept 24 h).",
            max_length=255,
        ),
    ] = None,
) -> Response[IngestResult]:
    # Requests normally take the Gate's direct path (nabat.api.gate.Gate._ingest) to the same
    # core below; this handler documents the route and serves it should the Gate not.
    body: bytes = request.scope.get(BODY) or await request.body()  # type: ignore[assignment]
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
    status, media_type, content, extra, audit = await ingest(api, request.user, headers, body)
    request.scope["nabat.audit"] = audit  # type: ignore[typeddict-unknown-key]
    return Response(content=content, status_code=status, media_type=media_type, headers=extra)


async def ingest(
    api: ApiState, token: TokenInfo, headers: dict[str, str], body: bytes
) -> tuple[int, str, bytes, dict[str, str] | None, dict[str, Any] | None]:
    """Store the events of one ingest request, framework-free: (status, content type, body,
    extra headers, audit details). Raises :class:`ProblemError` for a request to refuse.
    ``headers`` keys are lower-case."""
    key = headers.get("idempotency-key", headers.get("webhook-id"))
    claim = None
    if key is not None:
        if not api.idempotency.valid_key(key):
            raise ProblemError(
                400,
                "Idempotency-Key must be 1-255 printable characters",
                kind="bad-idempotency-key",
            )
        claim = await api.idempotency.claim(token.id, key, body)
        previous = claim.previous
        if previous is not None:
            if previous.body_hash != claim.body_hash:
                raise ProblemError(
                    422,
                    "this Idempotency-Key was used with a different request body",
                    kind="idempotency-key-reused",
                )
            if previous.status is None:
                raise ProblemError(
                    409,
                    "a request with this Idempotency-Key is still being processed",
                    headers={"Retry-After": "1"},
                    kind="idempotency-key-in-use",
                )
            replay = (previous.response or "").encode()
            media_type = previous.content_type or JSON
            return previous.status, media_type, replay, {"Idempotent-Replayed": "true"}, None
    try:
        events = parse_events(
            body,
            headers.get("content-type"),
            types=api.hub.event_types,
            max_batch=api.settings.max_batch,
            municipalities=api.municipalities,
            allowed_municipalities=token.municipalities,
            reserved=api.reserved,
            max_event=api.settings.max_event,
        )
        appended = await api.hub.publish_many(events)
    except BaseException:
        if claim is not None:
            try:
                await api.idempotency.release(claim)
            except Exception as exc:  # it expires on its own
                log.warning("idempotency.release_failed", error=repr(exc))
        raise
    new = sum(1 for place in appended if place.new)
    api.metrics.ingested_new.inc(new)
    api.metrics.ingested_duplicate.inc(len(appended) - new)
    result = IngestResult(
        accepted=len(events),
        new=new,
        duplicates=len(events) - new,
        events=[
            AcceptedEvent(
                id=event.id,
                source=event.source,
                cursor=encode_cursor(place.seq),
                duplicate=not place.new,
            )
            for event, place in zip(events, appended, strict=True)
        ],
    )
    content = msgspec.json.encode(result)
    if claim is not None:
        try:
            await api.idempotency.complete(claim, 202, JSON, content)
        except Exception as exc:
            # The events are durable and idempotent by (source, id): answer anyway.
            log.warning("idempotency.save_failed", error=repr(exc))
    return 202, JSON, content, None, {"events": len(events), "new": new}


TypeFilter = Annotated[
    list[str] | None,
    QueryParameter(name="type", description="NATS pattern on the event type; repeat for OR."),
]
MunicipalityFilter = Annotated[
    list[str] | None,
    QueryParameter(name="municipality", description="Municipality slug; repeat for OR."),
]


@get(
    "/api/v1/events",
    opt={"scope": "events:read"},
    summary="Query the journal",
    description="Events in journal order, a page at a time; follow `next_cursor`. A token "
    "limited to some municipalities sees only their events.",
    responses=documented(400, 403),
    tags=["events"],
)
async def query_events(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    types: TypeFilter = None,
    municipalities: MunicipalityFilter = None,
    since: Annotated[datetime | None, QueryParameter(description="RFC 3339, with offset")] = None,
    until: Annotated[datetime | None, QueryParameter(description="RFC 3339, with offset")] = None,
    subject: Annotated[str | None, QueryParameter(max_length=500)] = None,
    correlationid: Annotated[str | None, QueryParameter(max_length=500)] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=100)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
) -> Response[EventsPage]:
    query = build_query(
        request.user,
        region=api.municipalities,
        since=since,
        until=until,
        types=types,
        subject=subject,
        municipalities=municipalities,
        correlationid=correlationid,
        after=_cursor(cursor, "cursor"),
        limit=limit,
    )
    page = await api.hub.journal.query(query)
    parts = [
        b'{"cursor":"%s","event":%s}' % (encode_cursor(s.seq).encode(), encode_event(s.event))
        for s in page.events
    ]
    next_cursor = b"null" if page.next_cursor is None else b'"%s"' % page.next_cursor.encode()
    return _json(b'{"events":[' + b",".join(parts) + b'],"next_cursor":' + next_cursor + b"}")


@get(
    "/api/v1/events/stream",
    opt={"scope": "events:read"},
    summary="Live events (Server-Sent Events)",
    description="Each message's `data` is one CloudEvent and its `id` a cursor. Reconnect with "
    "`Last-Event-ID` (browsers do this on their own) or `cursor` to resume exactly after the "
    "last event seen, from the journal: nothing is missed. Without either, the stream starts "
    "with events that arrive from now on. Idle streams get a comment line every "
    "`[api] stream_heartbeat` seconds.",
    responses=documented(400, 403),
    tags=["events"],
    media_type="text/event-stream",
)
async def stream_events(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    types: TypeFilter = None,
    municipalities: MunicipalityFilter = None,
    subject: Annotated[str | None, QueryParameter(max_length=500)] = None,
    correlationid: Annotated[str | None, QueryParameter(max_length=500)] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=100)] = None,
    last_event_id: Annotated[
        str | None, HeaderParameter(name="Last-Event-ID", max_length=100)
    ] = None,
) -> ServerSentEvent:
    query = build_query(
        request.user,
        region=api.municipalities,
        since=None,
        until=None,
        types=types,
        subject=subject,
        municipalities=municipalities,
        correlationid=correlationid,
        limit=500,
    )
    after = _cursor(last_event_id, "Last-Event-ID")
    if after is None:
        after = _cursor(cursor, "cursor")
    if after is None:
        after = await api.hub.journal.last_seq()
    alive = None
    if api.console is not None and request.user.id.startswith("user:"):
        alive = api.console.still_signed_in(request.headers.get("cookie"))
    return ServerSentEvent(_follow(api, query, after, alive), headers={"X-Accel-Buffering": "no"})


async def _follow(
    api: ApiState, query: EventQuery, after: int, alive: Any = None
) -> AsyncIterator[Any]:
    """``alive``: for a console session, an async check that it still may read: a stream
    ends within seconds of sign-out, a changed password or a disabled account."""
    hub = api.hub
    heartbeat = api.settings.stream_heartbeat
    checked = time.monotonic()
    yield ServerSentEventMessage(data=None, comment="nabat event stream", retry=2000)
    while not api.closing.is_set():
        if alive is not None and time.monotonic() - checked >= 5.0:
            checked = time.monotonic()
            if not await alive():
                return
        seen = hub.appended.count
        try:
            page = await hub.journal.query(msgspec.structs.replace(query, after=after))
        except JournalError as exc:
            log.warning("stream.read_failed", error=str(exc))
            yield ServerSentEventMessage(data=None, comment="journal unavailable; retrying")
            await hub.appended.wait(min(heartbeat, 5.0))
            continue
        if page.events:
            yield _Frames(page.events)
            api.metrics.streamed.inc(len(page.events))
            after = page.events[-1].seq
        if page.next_cursor is not None:
            after = max(after, decode_cursor(page.next_cursor))
            continue
        if hub.appended.count != seen:
            continue  # something arrived while we read: read again before sleeping
        if not await _wait(api, min(heartbeat, 5.0) if alive is not None else heartbeat):
            yield ServerSentEventMessage(data=None, comment="keep-alive")


class _Frames(ServerSentEventMessage):
    """A page of events as one chunk: one write per page, not one per event. Per-event
    writes to a client that had gone kept failing, a warning each, until the loop noticed
    the lost connection; and Litestar's encoder splits every message on line breaks, which
    compact JSON has none of."""

    def __init__(self, events: list[Any]) -> None:
        super().__init__(data=None)
        parts: list[bytes] = []
        for stored in events:
            cursor = encode_cursor(stored.seq).encode()
            parts += (b"id: ", cursor, b"\r\ndata: ", encode_event(stored.event), b"\r\n\r\n")
        self.raw = b"".join(parts)

    def encode(self) -> bytes:
        return self.raw


async def _wait(api: ApiState, timeout: float) -> bool:
    """Until new events, shutdown (True) or ``timeout`` (False)."""
    import asyncio

    closing = asyncio.ensure_future(api.closing.wait())
    pulse = asyncio.ensure_future(api.hub.appended.wait(timeout))
    try:
        done, _ = await asyncio.wait({closing, pulse}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closing.cancel()
        pulse.cancel()
    return closing in done or (pulse in done and pulse.result())


HANDLERS = [ingest_events, query_events, stream_events]

_unused = Event  # the documented shape above mirrors nabat.events.Event
