"""Notifier instances: which there are, in what state, and a test message through one — so
an administrator sees a channel work (or why not) before an incident needs it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter

from ...interfaces import Notification, Notifier
from ...interfaces.payloads import UnitKind
from ...notifications import NotificationRequest
from ..problems import ProblemError, documented
from ..state import ApiState
from ..tokens import TokenInfo


class NotifierInfo(msgspec.Struct, kw_only=True):
    id: str
    name: str
    kind: str
    state: str
    reason: str = ""
    language: str | None = None
    destinations: list[str] = []
    """The destinations a message with no recipients of its own goes to."""


@get(
    "/api/v1/notifiers",
    opt={"scope": "admin"},
    summary="Notifier instances",
    description="Each notifier instance (e-mail, messenger, SMS gateway) with its state and "
    "the destinations a message without recipients of its own goes to. Never a secret.",
    responses=documented(403),
    tags=["notifications"],
)
async def list_notifiers(api: NamedDependency[ApiState]) -> list[NotifierInfo]:
    hub = api.hub
    found = []
    for rt in hub.units:
        if rt.driver_cls is None or not issubclass(rt.driver_cls, Notifier):
            continue
        status = hub.supervisor.status(UnitKind.INSTANCE, rt.id)
        driver = rt.driver if isinstance(rt.driver, Notifier) else None
        probe = Notification(id="probe", recipients=[], title="", body="")
        found.append(
            NotifierInfo(
                id=rt.id,
                name=rt.entry.name or rt.id,
                kind=rt.entry.kind,
                state=status.state.value if status else "unknown",
                reason=status.reason if status else "",
                language=driver.language if driver else None,
                destinations=[d for d, _ in driver.destinations(probe)] if driver else [],
            )
        )
    return found


class SampleMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    recipients: list[Annotated[str, msgspec.Meta(min_length=1, max_length=320)]] = []


class SampleQueued(msgspec.Struct, kw_only=True):
    request: str
    """The request's id: its ``notification.delivered`` / ``.failed`` events correlate."""


@post(
    "/api/v1/notifiers/{notifier_id:str}/test",
    opt={"scope": "admin"},
    status_code=202,
    summary="Send a test notification",
    description="A test message (the catalog's `test` template, in the notifier's language) "
    "through the notifier, delivered and retried like any other; its outcome comes as "
    "`notification.delivered` or `notification.failed` events correlated to `request`.",
    responses=documented(403, 404),
    tags=["notifications"],
)
async def send_test_notification(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    notifier_id: Annotated[str, PathParameter(max_length=128)],
    data: SampleMessage,
) -> SampleQueued:
    hub = api.hub
    rt = hub.units.get(notifier_id)
    if rt is None or rt.driver_cls is None or not issubclass(rt.driver_cls, Notifier):
        raise ProblemError(404, f"no notifier instance {notifier_id!r}", kind="not-found")
    by = f"token:{request.user.id} ({request.user.name})"
    request.scope["nabat.audit"] = {"notifier": notifier_id}  # type: ignore[typeddict-unknown-key]
    queued = await hub.notifications.request(
        NotificationRequest(
            notifier=notifier_id,
            recipients=list(data.recipients),
            template="test",
            fields={"hub": hub.name, "by": by},
        )
    )
    return SampleQueued(request=queued)


HANDLERS = [list_notifiers, send_test_notification]
