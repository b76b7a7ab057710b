"""``/api/v1/alerts``: population warning — issue, confirm, cancel, update, follow.

An alert is given as JSON (``POST /api/v1/alerts``) or as CAP 1.2 XML
(``POST /api/v1/alerts/cap``). Both become a CAP-shaped :class:`~nabat.interfaces.Alert` and go
to :class:`~nabat.alerts.AlertService`, which activates every warning device in the area and
tracks each result. A token limited to municipalities reaches only their devices.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from ...alerts import (
    AlertConflict,
    AlertError,
    AlertExists,
    AlertForbidden,
    AlertNotFound,
    AlertPhase,
    AlertRecord,
    NoDevices,
)
from ...alerts.area import MUNICIPALITY_GEOCODE
from ...alerts.compose import municipality_area, new_alert
from ...alerts.readiness import CheckResult, ReadinessRow, latest_results, sirens_report
from ...cap import CapError, format_datetime, parse_cap, parse_references
from ...ids import uuid7
from ...interfaces.alerting import (
    Alert,
    Area,
    Category,
    Certainty,
    Circle,
    MsgType,
    Severity,
    Signal,
    Status,
    Urgency,
    WarningMessage,
)
from ...regions import load_region
from ..problems import FieldError, ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo

__all__ = ["HANDLERS"]

Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Lat = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Lon = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Text = Annotated[str, msgspec.Meta(max_length=4000)]


class CircleRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    lat: Lat
    lon: Lon
    radius_km: Annotated[float, msgspec.Meta(gt=0, le=500)]


class AreaRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where: municipalities (slugs), polygons (closed rings of [lat, lon]) and circles; a
    device is covered by its municipality or by its location."""

    municipalities: Annotated[list[Slug], msgspec.Meta(max_length=100)] = []
    polygons: Annotated[
        list[Annotated[list[tuple[Lat, Lon]], msgspec.Meta(min_length=4, max_length=1000)]],
        msgspec.Meta(max_length=20),
    ] = []
    circles: Annotated[list[CircleRequest], msgspec.Meta(max_length=20)] = []
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""


class MessageRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the devices play: «Внимание всем!» for up to 180 s, then the message."""

    signal: Signal = Signal.ATTENTION_ALL
    signal_seconds: Annotated[int, msgspec.Meta(ge=0, le=180)] = 180
    text: Text | None = None
    audio: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    repeat: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1

    def build(self) -> WarningMessage:
        return WarningMessage(
            signal=self.signal,
            signal_seconds=self.signal_seconds,
            text=self.text,
            audio=self.audio,
            repeat=self.repeat,
        )


class AlertRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    status: Literal["Actual", "Exercise", "Test"]
    """``Actual`` warns the population; ``Exercise`` and ``Test`` are drills."""
    event: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    """What happens: «Наводнение», «Химическая авария»."""
    area: AreaRequest
    message: MessageRequest = msgspec.field(default_factory=MessageRequest)
    headline: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    description: Text | None = None
    instruction: Text | None = None
    urgency: Urgency = Urgency.IMMEDIATE
    severity: Severity = Severity.SEVERE
    certainty: Certainty = Certainty.OBSERVED
    category: list[Category] = msgspec.field(default_factory=lambda: [Category.SAFETY])
    expires: datetime | None = None
    identifier: Annotated[str, msgspec.Meta(pattern=r"^[^\s,<&]{1,128}$")] | None = None
    """Your own id for the alert (a retry with it is refused as a duplicate, 409)."""


class AlertUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    message: MessageRequest | None = None
    area: AreaRequest | None = None


class AlertPage(msgspec.Struct, kw_only=True):
    items: list[AlertRecord]


def _by(token: TokenInfo) -> str:
    return f"token:{token.id} ({token.name})"


_KINDS: dict[type[AlertError], str] = {
    AlertNotFound: "not-found",
    AlertExists: "conflict",
    AlertConflict: "conflict",
    AlertForbidden: "forbidden",
    NoDevices: "no-devices",
}


def _fail(exc: AlertError) -> ProblemError:
    """The problem answer of a refusal: each kind of AlertError has its status and type."""
    return ProblemError(exc.status, str(exc), kind=_KINDS.get(type(exc)))


def _area(api: ApiState, token: TokenInfo, request: AreaRequest) -> Area:
    errors = []
    for i, slug in enumerate(request.municipalities):
        if slug not in api.municipalities:
            errors.append(FieldError(field=f"area.municipalities[{i}]", reason="unknown"))
        elif not token.sees(slug):
            errors.append(FieldError(field=f"area.municipalities[{i}]", reason="not yours"))
    for i, ring in enumerate(request.polygons):
        if ring[0] != ring[-1]:
            errors.append(
                FieldError(
                    field=f"area.polygons[{i}]", reason="the last point must equal the first"
                )
            )
    if not (request.municipalities or request.polygons or request.circles):
        errors.append(FieldError(field="area", reason="name municipalities, polygons or circles"))
    if errors:
        raise ProblemError(422, "the alert's area is invalid", errors=errors, kind="invalid")
    region = load_region(api.hub.config.hub.region)
    language = api.hub.config.hub.language
    names = [region.municipalities[m].name(language) for m in request.municipalities]
    return msgspec.structs.replace(
        municipality_area(request.municipalities, request.description or ", ".join(names)),
        polygon=[list(ring) for ring in request.polygons],
        circle=[Circle(lat=c.lat, lon=c.lon, radius_km=c.radius_km) for c in request.circles],
    )


@post(
    "/api/v1/alerts",
    opt={"scope": "alerts:activate"},
    status_code=202,
    summary="Issue an alert to every warning device in an area",
    description="Every device whose municipality is named, or whose location lies in a polygon "
    "or circle, is activated in parallel (retried on timeouts) and its outcome tracked; "
    "`GET /api/v1/alerts/{id}` and the `alert.*` events follow it. With `[alerts] "
    "two_person_rule` an Actual alert waits for a second caller's confirmation. `wait` (s) "
    "answers once every device answered.",
    responses=documented(403, 409, 422),
    tags=["alerts"],
)
async def issue_alert(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    data: JSONBody[AlertRequest],
    wait: Annotated[float, QueryParameter(ge=0, le=60)] = 0,
) -> AlertRecord:
    token = request.user
    area = _area(api, token, data.area)
    if data.expires is not None and data.expires.tzinfo is None:
        raise ProblemError(
            422,
            "expires must carry a UTC offset",
            errors=[FieldError(field="expires", reason="e.g. 2026-11-24T18:00:00+03:00")],
        )
    alert = new_alert(
        identifier=data.identifier or uuid7(),
        sender=api.hub.alerts.sender,
        status=Status(data.status),
        event=data.event,
        area=area,
        urgency=data.urgency,
        severity=data.severity,
        certainty=data.certainty,
        category=list(data.category),
        headline=data.headline,
        description=data.description,
        instruction=data.instruction,
        expires=data.expires,
    )
    return await _issue(request, api, alert, data.message.build(), wait)


async def _settled(api: ApiState, record: AlertRecord, wait: float) -> AlertRecord:
    """``?wait=S``: the record once every device answered, or as it is after S seconds."""
    if wait:
        with contextlib.suppress(TimeoutError):
            record = await api.hub.alerts.wait(record.id, wait) or record
    return await api.hub.alerts.view(record)


async def _issue(
    request: Request[TokenInfo, Any, Any],
    api: ApiState,
    alert: Alert,
    message: WarningMessage,
    wait: float,
) -> AlertRecord:
    token = request.user
    try:
        record = await api.hub.alerts.issue(alert, message, by=_by(token), allowed=token.sees)
    except AlertError as exc:
        raise _fail(exc) from None
    request.scope["nabat.audit"] = {  # type: ignore[typeddict-unknown-key]
        "alert": record.id,
        "status": alert.status.value,
        "devices": len(record.devices),
        **({"sites": sorted(record.sites)} if record.sites else {}),
    }
    return await _settled(api, record, wait)


class CancelledAlerts(msgspec.Struct, kw_only=True):
    """The answer to a CAP ``Cancel``: every alert it referenced, now cancelled."""

    cancelled: list[AlertRecord]


_CAP_DOC = """The body is a CAP 1.2 `<alert>` (`application/cap+xml`), validated against the
OASIS schema; municipalities are geocodes `municipality` = slug. What happens follows
`<msgType>`:

* `Alert`: a new alert to every device in the area (202, the alert's record). The message
  played is «Внимание всем!» then the info's description (or headline).
* `Update`: a new alert that supersedes the one(s) in `<references>` (202), as
  `POST /alerts/{id}/update` does: two-person rule and municipality limits alike.
* `Cancel`: the alert(s) in `<references>` are cancelled on every device (200,
  `{"cancelled": [...]}`), as `POST /alerts/{id}/cancel` does. Nothing is sounded.
* `Ack`, `Error`: refused (422): they answer a message, they are not sent to devices.

A reference names an alert by `sender,identifier,sent`; an unknown or foreign one is 404,
one whose `sent` differs from the alert's is 422. The `<references>` the hub writes on to the
devices name each original exactly as it was sent to them."""


def _cap_problem(status: int, detail: str, field: str, reason: str, kind: str) -> ProblemError:
    return ProblemError(status, detail, errors=[FieldError(field=field, reason=reason)], kind=kind)


async def _referenced(api: ApiState, token: TokenInfo, alert: Alert) -> list[AlertRecord]:
    """The alerts a CAP Update/Cancel references, each visible to the token and sent as named."""
    try:
        references = parse_references(alert.references)
    except ValueError as exc:
        raise _cap_problem(422, str(exc), "/alert/references", str(exc), "invalid-cap") from None
    if not references:
        raise _cap_problem(
            422,
            f"a CAP {alert.msg_type.value} must name the alert(s) it refers to",
            "/alert/references",
            "missing: sender,identifier,sent of the earlier alert",
            "invalid-cap",
        )
    records: list[AlertRecord] = []
    for ref in {r.identifier: r for r in references}.values():  # each alert once
        try:
            record = await _visible(api, token, ref.identifier)
        except ProblemError:
            record = None
        if record is None or record.alert.sender != ref.sender:
            raise _cap_problem(
                404,
                f"no alert {ref.text!r}: <references> names an alert this hub did not issue "
                "or this token may not see",
                "/alert/references",
                f"unknown alert {ref.identifier!r} from {ref.sender!r}",
                "not-found",
            )
        _whole(token, record)
        if record.alert.sent != ref.sent:
            raise _cap_problem(
                422,
                f"alert {ref.identifier!r} was sent at {format_datetime(record.alert.sent)}, "
                f"not {ref.text.rsplit(',', 1)[1]}",
                "/alert/references",
                f"sent does not match alert {ref.identifier!r}",
                "invalid-cap",
            )
        records.append(record)
    return records


def _check_cap_area(token: TokenInfo, alert: Alert) -> None:
    for info in alert.info:
        for area in info.area:
            for g in area.geocode:
                if g.value_name == MUNICIPALITY_GEOCODE and not token.sees(g.value):
                    raise ProblemError(
                        403, f"this token may not alert {g.value}", kind="municipality-forbidden"
                    )


@post(
    "/api/v1/alerts/cap",
    opt={"scope": "alerts:activate"},
    status_code=202,
    summary="Issue, update or cancel an alert given as CAP 1.2 XML (by its msgType)",
    description=_CAP_DOC,
    responses=documented(403, 404, 409, 413, 422),
    tags=["alerts"],
)
async def issue_cap_alert(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    wait: Annotated[float, QueryParameter(ge=0, le=60)] = 0,
) -> Response[AlertRecord | CancelledAlerts]:
    body = await request.body()
    try:
        alert = parse_cap(body)
    except CapError as exc:
        errors = [
            FieldError(field=p.path, reason=f"line {p.line}: {p.reason}" if p.line else p.reason)
            for p in exc.problems
        ]
        raise ProblemError(422, "not valid CAP 1.2", errors=errors, kind="invalid-cap") from None
    if alert.status not in (Status.ACTUAL, Status.EXERCISE, Status.TEST):
        raise _cap_problem(
            422,
            f"a {alert.status.value} alert is not sent to devices",
            "/alert/status",
            "Actual, Exercise or Test",
            "invalid-cap",
        )
    if alert.msg_type in (MsgType.ACK, MsgType.ERROR):
        raise _cap_problem(
            422,
            f"a CAP {alert.msg_type.value} answers an earlier message; it is not sent to devices",
            "/alert/msgType",
            "Alert, Update or Cancel",
            "unsupported-msg-type",
        )
    token = request.user
    if alert.msg_type is MsgType.CANCEL:
        return Response(await _cancel_referenced(request, api, alert), status_code=200)
    _check_cap_area(token, alert)
    info = alert.info[0] if alert.info else None
    text = (info.description or info.headline) if info else None
    message = WarningMessage(text=text)
    if alert.msg_type is MsgType.ALERT:
        return Response(await _issue(request, api, alert, message, wait), status_code=202)
    originals = await _referenced(api, token, alert)
    ids = [r.id for r in originals]
    request.scope["nabat.audit"] = {"alert": alert.identifier, "updates": ids}  # type: ignore[typeddict-unknown-key]
    try:
        record = await api.hub.alerts.update(
            ids, message=message, alert=alert, by=_by(token), allowed=token.sees, as_given=True
        )
    except AlertError as exc:
        raise _fail(exc) from None
    return Response(await _settled(api, record, wait), status_code=202)


async def _cancel_referenced(
    request: Request[TokenInfo, Any, Any], api: ApiState, alert: Alert
) -> CancelledAlerts:
    """A CAP Cancel: every referenced alert is cancelled (all checked before any is)."""
    token = request.user
    records = await _referenced(api, token, alert)
    for record in records:
        if record.phase in (AlertPhase.CANCELLED, AlertPhase.EXPIRED, AlertPhase.REJECTED):
            raise ProblemError(
                409, f"alert {record.id} is {record.phase.value} already", kind="conflict"
            )
    ids = [r.id for r in records]
    request.scope["nabat.audit"] = {"alert": alert.identifier, "cancels": ids}  # type: ignore[typeddict-unknown-key]
    cancelled = []
    for alert_id in ids:
        try:
            cancelled.append(await api.hub.alerts.cancel(alert_id, by=_by(token)))
        except AlertError as exc:
            raise _fail(exc) from None
    return CancelledAlerts(cancelled=cancelled)


AlertId = Annotated[str, PathParameter(max_length=128)]


def _places(record: AlertRecord) -> list[str | None]:
    """The municipalities the alert reaches: its own devices' and, at the region, each remote
    site's covered municipalities."""
    return [d.municipality for d in record.devices] + [
        m for reach in record.sites.values() for m in reach
    ]


def _sees(token: TokenInfo, record: AlertRecord) -> bool:
    return token.regional or any(token.sees(m) for m in _places(record))


async def _visible(api: ApiState, token: TokenInfo, alert_id: str) -> AlertRecord:
    record = await api.hub.alerts.get(alert_id)
    if record is None or not _sees(token, record):
        raise ProblemError(404, f"no alert {alert_id!r}", kind="not-found")
    return record


@get(
    "/api/v1/alerts",
    opt={"scope": "events:read"},
    summary="Recent alerts, newest first, with every device's outcome",
    responses=documented(403),
    tags=["alerts"],
)
async def list_alerts(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> AlertPage:
    token = request.user
    records = await api.hub.alerts.recent(limit=10_000)
    mine = [r for r in records if _sees(token, r)][:limit]
    return AlertPage(items=[await api.hub.alerts.view(r) for r in mine])


@get(
    "/api/v1/alerts/{alert_id:str}",
    opt={"scope": "events:read"},
    summary="One alert: its phase and every device's outcome",
    responses=documented(403, 404),
    tags=["alerts"],
)
async def get_alert(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], alert_id: AlertId
) -> AlertRecord:
    return await api.hub.alerts.view(await _visible(api, request.user, alert_id))


def _whole(token: TokenInfo, record: AlertRecord) -> None:
    """A token limited to municipalities may change an alert only when every device of it is
    in them: a Sochi token must not stop (or supersede) what also sounds in Krasnodar."""
    if token.regional:
        return
    others = sorted({m or "?" for m in _places(record) if not token.sees(m)})
    if others:
        raise ProblemError(
            403,
            f"alert {record.id} also covers {', '.join(others)}, outside this token's "
            "municipalities; a regional token may change it",
            kind="municipality-forbidden",
        )


async def _act(request: Request[TokenInfo, Any, Any], api: ApiState, alert_id: str, act) -> Any:
    _whole(request.user, await _visible(api, request.user, alert_id))
    request.scope["nabat.audit"] = {"alert": alert_id}  # type: ignore[typeddict-unknown-key]
    try:
        result = await act()
    except AlertError as exc:
        raise _fail(exc) from None
    return await api.hub.alerts.view(result) if isinstance(result, AlertRecord) else result


@post(
    "/api/v1/alerts/{alert_id:str}/confirm",
    opt={"scope": "alerts:activate"},
    status_code=200,
    summary="Confirm an alert waiting for a second person (two-person rule)",
    responses=documented(403, 404, 409),
    tags=["alerts"],
)
async def confirm_alert(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], alert_id: AlertId
) -> AlertRecord:
    by = _by(request.user)
    return await _act(request, api, alert_id, lambda: api.hub.alerts.confirm(alert_id, by=by))


@post(
    "/api/v1/alerts/{alert_id:str}/reject",
    opt={"scope": "alerts:activate"},
    status_code=200,
    summary="Refuse an alert waiting for a second person",
    responses=documented(403, 404, 409),
    tags=["alerts"],
)
async def reject_alert(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], alert_id: AlertId
) -> AlertRecord:
    by = _by(request.user)
    return await _act(
        request, api, alert_id, lambda: api.hub.alerts.confirm(alert_id, by=by, reject=True)
    )


@post(
    "/api/v1/alerts/{alert_id:str}/cancel",
    opt={"scope": "alerts:activate"},
    status_code=200,
    summary="Cancel an alert: stop the signal on every device",
    responses=documented(403, 404, 409),
    tags=["alerts"],
)
async def cancel_alert(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], alert_id: AlertId
) -> AlertRecord:
    by = _by(request.user)
    return await _act(request, api, alert_id, lambda: api.hub.alerts.cancel(alert_id, by=by))


@post(
    "/api/v1/alerts/{alert_id:str}/update",
    opt={"scope": "alerts:activate"},
    status_code=202,
    summary="Update an alert: a new message or area (CAP Update referencing it)",
    description="`wait` (s) answers once every device answered the update.",
    responses=documented(403, 404, 409, 422),
    tags=["alerts"],
)
async def update_alert(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    alert_id: AlertId,
    data: JSONBody[AlertUpdate],
    wait: Annotated[float, QueryParameter(ge=0, le=60)] = 0,
) -> AlertRecord:
    token = request.user
    original = await _visible(api, token, alert_id)
    _whole(token, original)
    alert = None
    if data.area is not None:
        area = _area(api, token, data.area)
        info = msgspec.structs.replace(original.alert.info[0], area=[area])
        alert = msgspec.structs.replace(original.alert, info=[info])
    message = data.message.build() if data.message is not None else None
    record = await _act(
        request,
        api,
        alert_id,
        lambda: api.hub.alerts.update(
            alert_id, message=message, alert=alert, by=_by(token), allowed=token.sees
        ),
    )
    return await _settled(api, record, wait)


class SirensReport(msgspec.Struct, kw_only=True):
    generated_at: datetime
    districts: list[ReadinessRow]


@get(
    "/api/v1/reports/sirens",
    opt={"scope": "events:read"},
    summary="Readiness of warning devices per municipality",
    description="Devices, how many passed their latest technical check (readiness %), when "
    "the checks ran, the latest comprehensive (audible) check, and why each device that is "
    "not ready is not.",
    responses=documented(403),
    tags=["alerts"],
)
async def sirens_report_route(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> SirensReport:
    token = request.user
    hub = api.hub
    devices = {rt.id: rt.entry.municipality or "" for rt in hub.units.devices()}
    wanted = None if token.regional else list(token.municipalities)
    rows = sirens_report(
        devices,
        await latest_results(hub.journal),
        load_region(hub.config.hub.region),
        language=hub.config.hub.language,
        municipalities=wanted,
    )
    if hub.follower is not None:  # the region: the sites' districts too
        from ...federation.reports import merge_siren_rows, site_reports

        rows = merge_siren_rows(rows, await site_reports(hub.journal), municipalities=wanted)
    return SirensReport(generated_at=datetime.now(UTC), districts=rows)


class SirenView(msgspec.Struct, kw_only=True):
    id: str
    name: str
    municipality: str | None
    lat: float | None = None
    lon: float | None = None
    instance_state: str
    """``running``, ``retrying`` (unreachable), ``needs_auth``, ``failed``…"""
    ready: bool | None = None
    """Whether its latest technical check passed (None: never checked)."""
    checked_at: datetime | None = None
    detail: str = ""


class SirenPage(msgspec.Struct, kw_only=True):
    items: list[SirenView]


@get(
    "/api/v1/sirens",
    opt={"scope": "events:read"},
    summary="Warning devices with their location, state and readiness",
    responses=documented(403),
    tags=["alerts"],
)
async def list_sirens(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> SirenPage:
    token = request.user
    hub = api.hub
    results = await latest_results(hub.journal)
    items = []
    for rt in sorted(hub.units.devices(), key=lambda rt: rt.id):
        if not token.sees(rt.entry.municipality):
            continue
        technical = results.get(rt.id, {}).get("technical")
        items.append(
            SirenView(
                id=rt.id,
                name=rt.entry.name or rt.id,
                municipality=rt.entry.municipality,
                lat=rt.entry.lat,
                lon=rt.entry.lon,
                instance_state=str(hub.state_of(rt.id)),
                ready=technical.passed if technical else None,
                checked_at=technical.at if technical else None,
                detail=technical.detail if technical else "",
            )
        )
    return SirenPage(items=items)


class CheckRun(msgspec.Struct, kw_only=True):
    kind: str
    devices: int
    passed: int
    results: list[CheckResult]


@post(
    "/api/v1/readiness/{kind:str}",
    opt={"scope": "admin"},
    status_code=200,
    summary="Run a readiness check of every warning device now",
    description="`technical`: silent status poll and self-test; `comprehensive`: a Test alert "
    "to every device — **the sirens sound**. Answers when the check is done.",
    responses=documented(403, 409),
    tags=["alerts"],
)
async def run_readiness(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    kind: Annotated[Literal["technical", "comprehensive"], PathParameter()],
) -> CheckRun:
    request.scope["nabat.audit"] = {"readiness": kind}  # type: ignore[typeddict-unknown-key]
    try:
        results = await api.hub.readiness.run(kind, by=_by(request.user))
    except RuntimeError as exc:
        raise ProblemError(409, str(exc), kind="conflict") from None
    return CheckRun(
        kind=kind, devices=len(results), passed=sum(r.passed for r in results), results=results
    )


HANDLERS = [
    sirens_report_route,
    list_sirens,
    run_readiness,
    issue_alert,
    issue_cap_alert,
    list_alerts,
    get_alert,
    confirm_alert,
    reject_alert,
    cancel_alert,
    update_alert,
]
