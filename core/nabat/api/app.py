"""The ASGI application: Litestar with the hub's routes, OpenAPI 3.1 and the access layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar, Router, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.params import FromPath
from litestar.response import File
from litestar.types import ASGIApp

from .. import __version__
from ..console import routes as console_routes
from .gate import AccessMiddleware, Gate
from .problems import exception_handlers
from .routes import (
    accounts,
    alerts,
    archive,
    cameras,
    duty,
    events,
    exports,
    incidents,
    live,
    notifications,
    ops,
    recordings,
    roster,
    sites,
    subscriptions,
)
from .state import ApiState
from .tokens import SCOPES

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
_SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
}

DESCRIPTION = (
    """The HTTP API of a Nabat hub: publish events, read the journal, follow live
events, register outbound webhooks.

Every route except `/health` needs `Authorization: Bearer <token>` (created with
`nabat tokens create`). The scope a route needs is listed in its security requirement. Scopes:
"""
    + "\n".join(f"* `{name}`: {text}" for name, text in SCOPES.items())
    + """

Errors are RFC 9457 problem details (`application/problem+json`); invalid input names every
bad field. Every response carries `X-Request-ID` (the client's, if it sent one)."""
)


@get(
    "/schema/swagger-ui/{name:str}",
    include_in_schema=False,
    opt={"access": "public"},
    cache=86_400,
)
async def swagger_asset(name: FromPath[str]) -> File:
    """The vendored Swagger UI: the browsable schema works without any CDN."""
    from .problems import ProblemError

    if name not in _SWAGGER_FILES:
        raise ProblemError(404, f"no such file {name!r}")
    return File(
        STATIC / "swagger-ui" / name,
        content_disposition_type="inline",
        media_type=_SWAGGER_FILES[name],
    )


def _security(handlers: list[Any]) -> None:
    """Write each route's required scope into its OpenAPI security requirement."""
    for handler in handlers:
        if handler.opt.get("access") == "public":
            continue
        if handler.security is None:
            handler.security = [
                {"bearer": [handler.opt["scope"]] if handler.opt.get("scope") else []}
            ]


def create_app(state: ApiState, plugin_routers: list[Router] = ()) -> ASGIApp:  # type: ignore[assignment]
    handlers: list[Any] = [
        *events.HANDLERS,
        *subscriptions.HANDLERS,
        *cameras.HANDLERS,
        *exports.HANDLERS,
        *archive.HANDLERS,
        *recordings.HANDLERS,
        *alerts.HANDLERS,
        *sites.HANDLERS,
        *incidents.HANDLERS,
        *duty.HANDLERS,
        *roster.HANDLERS,
        *notifications.HANDLERS,
        *ops.HANDLERS,
        *accounts.HANDLERS,
        *console_routes.HANDLERS,
    ]
    _security(handlers)
    for router in plugin_routers:
        for route in router.routes:
            for handler in getattr(route, "route_handlers", ()):
                _security([handler])
    swagger = SwaggerRenderPlugin(
        js_url="/schema/swagger-ui/swagger-ui-bundle.js",
        css_url="/schema/swagger-ui/swagger-ui.css",
        standalone_preset_js_url="/schema/swagger-ui/swagger-ui-standalone-preset.js",
        path="/swagger",
    )
    openapi = OpenAPIConfig(
        title="Nabat",
        version=__version__,
        description=DESCRIPTION,
        path="/schema",
        render_plugins=[swagger, JsonRenderPlugin(), YamlRenderPlugin()],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A token from `nabat tokens create`; scopes per route.",
                )
            }
        ),
        tags=[
            Tag(name="events", description="Publish, query and follow events"),
            Tag(name="subscriptions", description="Outbound webhooks"),
            Tag(name="alerts", description="Population warning: issue, confirm, cancel, follow"),
            Tag(name="cameras", description="Cameras, health, snapshots, PTZ, district reports"),
            Tag(name="sites", description="Federated sites and their cameras (the region)"),
            Tag(name="operations", description="Health, readiness, metrics"),
            Tag(name="access", description="Tokens and the audit log"),
        ],
    )
    access = AccessMiddleware(state)
    app = Litestar(
        route_handlers=[*handlers, *live.WEBSOCKETS, swagger_asset, *plugin_routers],
        dependencies={"api": Provide(lambda: state, use_cache=True, sync_to_thread=False)},
        exception_handlers=exception_handlers,
        middleware=[access],
        openapi_config=openapi,
        request_max_body_size=None,  # the Gate enforces [api] max_body before any handler
        logging_config=None,
        debug=False,
    )
    direct = {("POST", "/api/v1/events"): (events.ingest, events.ingest_events.opt)}
    return Gate(app, state, access, direct)
