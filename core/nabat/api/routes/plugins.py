"""Plugin routes: what a plugin returns from ``register_routes``, mounted at ``/plugins/<name>/``.

A plugin's routes are closed like the hub's own: a bearer token with ``events:read`` (GET) or
``events:write`` (other methods) unless the handler names another ``scope``; or, for receivers
of agencies' webhooks, a Standard Webhooks signature when the handler's ``opt`` carries
``webhook_secrets`` (a list of ``whsec_`` secrets or :class:`~nabat.config.Secret`, or a
callable returning them, so rotated secrets are read at request time). Plugin routes cannot be
public. A plugin whose hook fails or whose routes Litestar refuses is left out, logged; the
hub's API and other plugins' routes are served all the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Litestar, Router
from litestar.handlers import HTTPRouteHandler

from ...interfaces.payloads import UnitState
from ...logs import get_logger

if TYPE_CHECKING:
    from ...hub import Hub

__all__ = ["plugin_routers"]

log = get_logger("nabat.api")


def _prepare(plugin: str, handler: HTTPRouteHandler) -> None:
    opt = handler.opt
    opt["plugin"] = plugin
    if opt.get("access") == "public":
        log.warning("plugin.route_not_public", plugin=plugin, paths=sorted(handler.paths))
        opt["access"] = "token"
    if opt.get("webhook_secrets") is not None:
        opt["access"] = "webhook"
    elif "scope" not in opt:
        reading = set(handler.http_methods) <= {"GET", "HEAD", "OPTIONS"}
        opt["scope"] = "events:read" if reading else "events:write"


async def plugin_routers(hub: Hub) -> list[Router]:
    routers: list[Router] = []
    for name, plugin in hub.plugins.items():
        if plugin.obj is None or not hub.host.implements(name, "register_routes"):
            continue
        status = hub.supervisor.status_of_plugin(name)
        if status is None or status.state in (UnitState.FAILED, UnitState.DISABLED):
            continue
        try:
            handlers = await hub.host.call(
                name,
                "register_routes",
                hub.config.hub.startup_timeout,
                hub=hub,
                settings=plugin.settings,
            )
            handlers = list(handlers or ())
            for handler in handlers:
                if not isinstance(handler, HTTPRouteHandler):
                    raise TypeError(f"{handler!r} is not a Litestar HTTP route handler")
                _prepare(name, handler)
            router = Router(f"/plugins/{name}", route_handlers=handlers, tags=[f"plugin:{name}"])
            # Refused here, not later; logging_config=None: Litestar must not touch logging.
            Litestar(route_handlers=[router], openapi_config=None, logging_config=None)
        except Exception as exc:
            log.error("plugin.routes_failed", plugin=name, error=repr(exc))
            continue
        routers.append(router)
        log.info("plugin.routes_mounted", plugin=name, routes=len(handlers))
    return routers
