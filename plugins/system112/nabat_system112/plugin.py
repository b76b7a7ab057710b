"""The ``system112`` plugin: the ``system112.connector`` driver and its signed receivers.

Each connector instance gets three routes under ``/plugins/system112/<instance>/``, accepted
only when signed (Standard Webhooks) with one of the instance's ``inbound_secrets``:

* ``POST eido``  — an EIDO JSON document;
* ``POST cards`` — a simple card (see :mod:`.card`);
* ``POST acks``  — a confirmation of an incident we forwarded.

Routes are built when the HTTP API starts, for the instances configured then.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.exceptions import HTTPException
from nabat.hookspecs import hookimpl
from nabat.interfaces import HubAPI

from .card import CardError
from .connector import AckOverdue, AckReceived, Receipt, System112Connector
from .eido import MAX_EIDO_BYTES, EidoError

__all__ = ["register_drivers", "register_event_types", "register_routes"]


class Refused(HTTPException):
    """A 400/404/503 problem answer with the fields at fault (``errors``)."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, str]] | None = None):
        super().__init__(detail=detail, status_code=status)
        self.errors = errors
        self.kind = {400: "invalid-card", 404: "not-found", 503: "unavailable"}.get(status)


@hookimpl
def register_drivers() -> list[type]:
    return [System112Connector]


@hookimpl
def register_event_types() -> dict[str, type]:
    return {
        "system112.ack.accepted": AckReceived,
        "system112.ack.rejected": AckReceived,
        "system112.ack.overdue": AckOverdue,
    }


def _connector(hub: HubAPI, instance_id: str) -> System112Connector:
    for driver in hub.instances(System112Connector, running=False):
        if driver.context.instance_id == instance_id:
            if hub.state_of(instance_id) != "running":
                break
            return driver
    raise Refused(503, f"the 112 connector {instance_id} is not running; try again later")


def _routes(hub: HubAPI, instance_id: str) -> list[Any]:
    def secrets() -> list[Any]:
        for driver in hub.instances(System112Connector, running=False):
            if driver.context.instance_id == instance_id:
                return list(driver.settings.inbound_secrets)
        return []

    opt = {"webhook_secrets": secrets}

    @post(f"/{instance_id}/eido", opt=opt, status_code=200, name=f"{instance_id}-eido")
    async def eido(request: Request) -> Receipt:
        body = await request.body()
        if len(body) > MAX_EIDO_BYTES:
            raise Refused(400, f"EIDO larger than {MAX_EIDO_BYTES} bytes")
        try:
            receipt = await _connector(hub, instance_id).receive_eido(body)
        except EidoError as exc:
            raise Refused(
                400,
                str(exc),
                [{"field": p.path, "reason": p.reason} for p in exc.problems],
            ) from None
        except ValueError as exc:  # e.g. a municipality the region does not have
            raise Refused(400, f"EIDO rejected: {exc}") from None
        return receipt

    @post(f"/{instance_id}/cards", opt=opt, status_code=200, name=f"{instance_id}-cards")
    async def cards(request: Request) -> Receipt:
        try:
            receipt = await _connector(hub, instance_id).receive_card(await request.body())
        except CardError as exc:
            raise Refused(400, str(exc), [{"field": exc.path, "reason": exc.reason}]) from None
        except ValueError as exc:  # e.g. a municipality the region does not have
            raise Refused(
                400, f"card rejected: {exc}", [{"field": "$.municipality", "reason": str(exc)}]
            ) from None
        return receipt

    @post(f"/{instance_id}/acks", opt=opt, status_code=200, name=f"{instance_id}-acks")
    async def acks(request: Request) -> dict[str, Any]:
        connector = _connector(hub, instance_id)
        try:
            ack = connector.parse_ack(await request.body())
        except Exception as exc:  # msgspec's decode and validation errors
            raise Refused(400, f"confirmation rejected: {exc}") from None
        if ack.incident is None:
            raise Refused(
                400,
                "confirmation rejected: name the incident",
                [{"field": "$.incident", "reason": "required here"}],
            )
        if not await connector.acknowledge(ack):
            raise Refused(404, f"no forwarded incident {ack.incident!r} awaits confirmation")
        return {"incident": ack.incident, "status": ack.status}

    return [eido, cards, acks]


@hookimpl
def register_routes(hub: HubAPI) -> list[Any]:
    handlers: list[Any] = []
    for driver in hub.instances(System112Connector, running=False):
        handlers.extend(_routes(hub, driver.context.instance_id))
    return handlers
