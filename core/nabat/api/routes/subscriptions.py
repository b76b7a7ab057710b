"""``/api/v1/subscriptions``: outbound webhooks an agency registers for itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody, PathParameter

from ...masking import mask_url
from ...netguard import DestinationRefused
from ...subjects import SubjectError, validate_pattern
from ..outbound import OutboundWebhooks, WebhookRegistration
from ..problems import FieldError, ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo

__all__ = ["HANDLERS"]

Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class NewSubscription(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    """Where to POST events: ``https://…`` (``http://`` inside closed networks)."""
    types: Annotated[list[Pattern], msgspec.Meta(min_length=1, max_length=50)]
    """NATS patterns on the event type: ``incident.>``, ``camera.health.*``."""
    municipalities: Annotated[list[Slug], msgspec.Meta(max_length=100)] = []
    """Only events of these municipalities (empty: all the token may see)."""
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    order: Literal["ordered", "parallel"] = "ordered"
    """``ordered``: one at a time, in journal order; ``parallel``: faster, unordered."""


def _string(min_length: int, max_length: int, description: str = "") -> Schema:
    return Schema(
        type=OpenAPIType.STRING,
        min_length=min_length,
        max_length=max_length,
        description=description or None,
    )


@dataclass
class _CreateOperation(Operation):
    """The body as the handler enforces it: item lengths and no unknown keys."""

    def __post_init__(self) -> None:
        body = Schema(
            type=OpenAPIType.OBJECT,
            required=["url", "types"],
            additional_properties=False,
            properties={
                "url": _string(1, 2000, "Where to POST events (absolute http(s) URL)"),
                "types": Schema(
                    type=OpenAPIType.ARRAY,
                    items=_string(1, 200, "NATS pattern on the event type"),
                    min_items=1,
                    max_items=50,
                ),
                "municipalities": Schema(
                    type=OpenAPIType.ARRAY, items=_string(1, 64), max_items=100
                ),
                "description": _string(0, 500),
                "order": Schema(type=OpenAPIType.STRING, enum=["ordered", "parallel"]),
            },
        )
        self.request_body = RequestBody(
            required=True, content={"application/json": OpenAPIMediaType(schema=body)}
        )


class DeliveryState(msgspec.Struct, kw_only=True):
    lag: int | None
    """Journal events not yet handled by this subscription."""
    retrying: int
    dead: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivering_process: str | None
    delivered_by_this_process: int


class Subscription(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    url: str
    types: list[str]
    municipalities: list[str]
    description: str = ""
    order: str
    owner: str
    owner_name: str = ""
    created: datetime
    secret: str | None = None
    """The signing secret (``whsec_…``): returned only when created or rotated."""
    delivery: DeliveryState | None = None


class Retried(msgspec.Struct, kw_only=True):
    revived: int


def _outbound(api: ApiState) -> OutboundWebhooks:
    if api.outbound is None:  # pragma: no cover - the server always creates it
        raise ProblemError(503, "outbound webhooks are not running")
    return api.outbound


async def _view(
    api: ApiState, reg: WebhookRegistration, *, secret: str | None = None
) -> Subscription:
    delivery = msgspec.convert(await _outbound(api).state(reg), DeliveryState)
    return Subscription(
        id=reg.id,
        url=mask_url(reg.url),
        types=list(reg.types),
        municipalities=list(reg.municipalities),
        description=reg.description,
        order=reg.order,
        owner=reg.owner,
        owner_name=reg.owner_name,
        created=reg.created,
        secret=secret,
        delivery=delivery,
    )


async def _owned(api: ApiState, token: TokenInfo, sub_id: str) -> WebhookRegistration:
    reg = await _outbound(api).get(sub_id)
    # Someone else's registration is "not found": its existence is none of this token's business.
    if reg is None or (reg.owner != token.id and not token.allows("admin")):
        raise ProblemError(404, f"no subscription {sub_id!r}", kind="not-found")
    return reg


def _check(
    data: JSONBody[NewSubscription], token: TokenInfo, region: frozenset[str]
) -> tuple[str, ...]:
    errors: list[FieldError] = []
    parts = urlsplit(data.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(FieldError(field="url", reason="must be an absolute http(s) URL"))
    for index, pattern in enumerate(data.types):
        try:
            validate_pattern(pattern)
        except SubjectError as exc:
            errors.append(FieldError(field=f"types[{index}]", reason=str(exc)))
    for index, slug in enumerate(data.municipalities):
        if slug not in region:
            errors.append(
                FieldError(
                    field=f"municipalities[{index}]",
                    reason=f"{slug!r} is not a municipality of this region",
                )
            )
    if errors:
        raise ProblemError(422, "the subscription is invalid", errors=errors, kind="invalid")
    if token.regional:
        return tuple(data.municipalities)
    if not data.municipalities:
        return token.municipalities
    outside = [m for m in data.municipalities if m not in token.municipalities]
    if outside:
        raise ProblemError(
            403,
            f"this token may not receive events of {', '.join(outside)}",
            errors=[FieldError(field="municipalities", reason="outside this token's")],
            kind="municipality-forbidden",
        )
    return tuple(data.municipalities)


@post(
    "/api/v1/subscriptions",
    operation_class=_CreateOperation,
    opt={"scope": "events:read"},
    status_code=201,
    summary="Register an outbound webhook",
    description="Matching events are POSTed to `url` as CloudEvents JSON, signed per Standard "
    "Webhooks with the returned `secret` (shown only now), retried with backoff and "
    "dead-lettered after 20 failed attempts or a day. Delivery starts with events that arrive "
    "from now on. `url` must resolve to a public address unless `[api] webhook_destinations` "
    "lists its network or name (loopback, private, link-local… are refused with 422, and "
    "checked again at every connection). `last_error` says what failed by class only "
    "(`HTTP 5xx`, `network error`, `destination refused`); the details are in the hub's log.",
    responses=documented(400, 403, 422),
    tags=["subscriptions"],
)
async def create_subscription(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    data: JSONBody[NewSubscription],
) -> Subscription:
    token = request.user
    municipalities = _check(data, token, api.municipalities)
    try:
        await _outbound(api).policy.check_url(data.url)
    except DestinationRefused as exc:
        raise ProblemError(
            422,
            f"the hub does not send webhooks there: {exc.reason}",
            errors=[FieldError(field="url", reason=exc.reason)],
            kind="destination-refused",
        ) from None
    reg = await _outbound(api).create(
        url=data.url,
        types=tuple(dict.fromkeys(data.types)),
        municipalities=tuple(dict.fromkeys(municipalities)),
        description=data.description,
        order=data.order,
        owner=token.id,
        owner_name=token.name,
    )
    request.scope["nabat.audit"] = {"subscription": reg.id}  # type: ignore[typeddict-unknown-key]
    return await _view(api, reg, secret=reg.secrets[0].secret)


@get(
    "/api/v1/subscriptions",
    opt={"scope": "events:read"},
    summary="This token's outbound webhooks (admin: all) with their delivery state",
    responses=documented(403),
    tags=["subscriptions"],
)
async def list_subscriptions(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> list[Subscription]:
    token = request.user
    regs = await _outbound(api).all()
    mine = [r for r in regs if r.owner == token.id or token.allows("admin")]
    return [await _view(api, r) for r in sorted(mine, key=lambda r: r.created)]


SubId = Annotated[str, PathParameter(max_length=64)]


@get(
    "/api/v1/subscriptions/{sub_id:str}",
    opt={"scope": "events:read"},
    summary="One outbound webhook and its delivery state",
    responses=documented(403, 404),
    tags=["subscriptions"],
)
async def get_subscription(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], sub_id: SubId
) -> Subscription:
    return await _view(api, await _owned(api, request.user, sub_id))


@delete(
    "/api/v1/subscriptions/{sub_id:str}",
    opt={"scope": "events:read"},
    summary="Remove an outbound webhook (its pending retries and dead letters too)",
    responses=documented(403, 404),
    tags=["subscriptions"],
)
async def delete_subscription(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], sub_id: SubId
) -> None:
    reg = await _owned(api, request.user, sub_id)
    await _outbound(api).delete(reg)


@post(
    "/api/v1/subscriptions/{sub_id:str}/rotate-secret",
    opt={"scope": "events:read"},
    status_code=200,
    summary="Issue a new signing secret",
    description="Requests are signed with the new and the old secret for 24 hours (two "
    "signatures in `webhook-signature`), so the receiver can switch without losing any.",
    responses=documented(403, 404),
    tags=["subscriptions"],
)
async def rotate_secret(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], sub_id: SubId
) -> Subscription:
    reg = await _owned(api, request.user, sub_id)
    rotated = await _outbound(api).rotate(reg)
    return await _view(api, rotated, secret=rotated.secrets[0].secret)


@post(
    "/api/v1/subscriptions/{sub_id:str}/retry",
    opt={"scope": "events:read"},
    status_code=200,
    summary="Retry the dead letters of this subscription now",
    responses=documented(403, 404),
    tags=["subscriptions"],
)
async def retry_dead(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState], sub_id: SubId
) -> Retried:
    reg = await _owned(api, request.user, sub_id)
    return Retried(revived=await _outbound(api).retry_dead(reg))


HANDLERS = [
    create_subscription,
    list_subscriptions,
    get_subscription,
    delete_subscription,
    rotate_secret,
    retry_dead,
]
