"""The console's own routes: its page and assets, message catalogs, sign-in and sign-out.

Everything else the console shows comes from the public API (``/api/v1/...``) with the
session cookie. These routes are not in the OpenAPI document: they serve the console, not
integrators.
"""

from __future__ import annotations

import hashlib
import mimetypes
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from litestar.response import Redirect

from ..api.problems import ProblemError
from ..api.sessions import COOKIE, session_cookie
from ..api.state import ApiState
from ..api.tokens import TokenInfo
from ..api.users import SignInError
from ..i18n import LANGUAGES, catalog
from ..logs import get_logger
from ..regions import load_region, outlines_geojson
from . import wall

__all__ = ["HANDLERS"]

log = get_logger("nabat.console")

_PUBLIC = {"access": "public"}
_STATIC = resources.files(__package__) / "static"


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    login: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


def _console(api: ApiState) -> Any:
    if api.console is None:
        raise ProblemError(404, "the console is switched off ([api.console] enabled)")
    return api.console


def _same_origin(request: Request[Any, Any, Any]) -> None:
    """Refuse a cross-site post: sign-in must come from the console's own page (JSON, which a
    plain HTML form cannot send, and not from another site by Origin or Sec-Fetch-Site)."""
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site")
    if (origin and urlsplit(origin).netloc != request.headers.get("host", "")) or (
        site not in (None, "same-origin", "none")
    ):
        raise ProblemError(403, "sign-in from another site is refused", kind="cross-site")
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ProblemError(415, "sign in with a JSON body", kind="unsupported-media-type")


def _cookie(api: ApiState, request: Request[Any, Any, Any], value: str, max_age: int) -> Cookie:
    secure = api.console.settings.secure_cookies  # type: ignore[union-attr]
    if secure is None:
        secure = request.url.scheme == "https"
    return Cookie(
        key=COOKIE,
        value=value,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=max_age,
    )


async def _shift(api: ApiState, user: Any) -> dict[str, Any]:
    """The person's shift now, and whether an operator signs in outside the roster: warned,
    never locked out (a shift that was not entered must not keep the duty officer out)."""
    shift = await api.hub.roster.current(user.login)
    return {
        "shift": msgspec.to_builtins(shift) if shift else None,
        "off_shift": shift is None and user.role == "operator",
    }


@post("/console/api/sign-in", opt=_PUBLIC, include_in_schema=False, status_code=200)
async def sign_in(
    request: Request[Any, Any, Any], api: NamedDependency[ApiState], data: JSONBody[SignIn]
) -> Response[dict[str, Any]]:
    console = _console(api)
    _same_origin(request)
    client = request.client.host if request.client else None
    wait = await api.limiter.acquire(
        f"sign-in:{client}", rate=console.sign_in_rate, burst=console.sign_in_burst
    )
    if wait is not None:
        raise ProblemError(
            429,
            f"too many sign-in attempts from this address; retry in {wait:.0f} s",
            headers={"Retry-After": str(max(1, round(wait)))},
            kind="rate-limited",
        )
    try:
        async with console.hashing:
            user = await console.users.sign_in(data.login, data.password)
    except SignInError as exc:
        api.audit.record(
            f"user:{data.login.strip().lower()[:64]}",
            "console sign-in",
            status=423 if exc.locked_until else 401,
            remote=client,
            detail={"reason": exc.reason},
        )
        log.warning(
            "console.sign_in_refused", login=data.login[:64], reason=exc.reason, client=client
        )
        if exc.locked_until is not None:
            wait = max(1, int((exc.locked_until - datetime.now(UTC)).total_seconds()))
            raise ProblemError(
                423, exc.reason, headers={"Retry-After": str(wait)}, kind="locked"
            ) from None
        raise ProblemError(401, exc.reason, kind="sign-in-failed") from None
    secret, session = await console.sessions.create(user.login)
    shift = await _shift(api, user)
    api.audit.record(
        f"user:{user.login}",
        "console sign-in",
        status=200,
        remote=client,
        detail={"off_shift": True} if shift["off_shift"] else None,
    )
    log.info(
        "console.signed_in",
        login=user.login,
        role=user.role,
        client=client,
        off_shift=shift["off_shift"],
    )
    return Response(
        {"user": user.public(), "csrf": session.csrf, **shift},
        cookies=[_cookie(api, request, secret, int(console.settings.session_max))],
        headers={"Cache-Control": "no-store"},
    )


@post("/console/api/sign-out", include_in_schema=False, status_code=204)
async def sign_out(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> Response[None]:
    console = _console(api)
    secret = session_cookie(request.headers.get("cookie"))
    if secret:
        await console.sessions.end(secret)
    log.info("console.signed_out", login=request.user.name)
    return Response(None, status_code=204, cookies=[_cookie(api, request, "", 0)])


@get("/console/api/session", include_in_schema=False)
async def session(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> Response[dict[str, Any]]:
    """Who is signed in (the page asks on load), with the CSRF token for its writes."""
    console = _console(api)
    found = await console.signed_in(session_cookie(request.headers.get("cookie")))
    if found is None:
        raise ProblemError(401, "not signed in", kind="session-ended")
    current, user = found
    return Response(
        {
            "user": user.public(),
            "csrf": current.csrf,
            "expires": current.idle_until.isoformat(),
            **await _shift(api, user),
        },
        headers={"Cache-Control": "no-store"},
    )


@get("/console/api/region", include_in_schema=False)
async def region(api: NamedDependency[ApiState]) -> dict[str, Any]:
    """The region's municipalities, for the console's pickers and map."""
    found = load_region(api.hub.config.hub.region)
    return {
        "id": found.id,
        "municipalities": [
            {"id": m.id, "name_ru": m.name_ru, "name_en": m.name_en, "lat": m.lat, "lon": m.lon}
            for m in found.municipalities.values()
        ],
    }


TEMPLATES = ("flood", "chemical", "air", "fire", "test")


@get("/console/api/templates", include_in_schema=False)
async def templates(api: NamedDependency[ApiState]) -> dict[str, Any]:
    """Alert message templates in the population's language (``[alerts] language``), not
    the operator's: an operator working in English still warns people in Russian."""
    language = api.hub.config.alerts.language
    strings = catalog(language)
    return {
        "language": language,
        "templates": [
            {
                "id": key,
                "event": strings[f"alert_templates.{key}.event"],
                "text": strings[f"alert_templates.{key}.text"],
            }
            for key in TEMPLATES
        ],
    }


@cache
def _catalog_json(language: str) -> bytes:
    strings = {k: v for k, v in catalog(language).items() if k.startswith("console.")}
    return msgspec.json.encode(strings)


@get("/console/i18n/{name:str}", opt=_PUBLIC, include_in_schema=False)
async def messages(name: Annotated[str, PathParameter(max_length=16)]) -> Response[bytes]:
    language = name.removesuffix(".json")
    if language not in LANGUAGES:
        raise ProblemError(404, f"no catalog {language!r}; there are {', '.join(LANGUAGES)}")
    return Response(
        _catalog_json(language),
        media_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )


@get("/console/outlines.geojson", opt=_PUBLIC, include_in_schema=False)
async def outlines(api: NamedDependency[ApiState]) -> Response[bytes]:
    raw = outlines_geojson(api.hub.config.hub.region)
    if raw is None:
        raise ProblemError(404, "this region ships no outlines")
    return Response(
        raw, media_type="application/geo+json", headers={"Cache-Control": "max-age=86400"}
    )


_assets: dict[str, tuple[bytes, str, str]] = {}


def _asset(name: str) -> tuple[bytes, str, str] | None:
    """A built file (body, media type, ETag); only files that exist are remembered, so
    asking for random names costs nothing lasting."""
    found = _assets.get(name)
    if found is not None:
        return found
    parts = name.split("/")
    if ".." in parts or any(not p for p in parts):
        return None
    path = _STATIC.joinpath(*parts)
    if not path.is_file():
        return None
    body = path.read_bytes()
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    found = _assets[name] = (body, kind, hashlib.sha256(body).hexdigest()[:16])
    return found


@get("/console/static/{name:path}", opt=_PUBLIC, include_in_schema=False)
async def static(
    request: Request[Any, Any, Any], name: Annotated[str, PathParameter(max_length=200)]
) -> Response[bytes]:
    name = name.lstrip("/")
    found = _asset(name) if name != "index.html" else None  # the page only with its CSP
    if found is None:
        raise ProblemError(404, "no such file")
    body, kind, etag = found
    headers = {
        "ETag": f'"{etag}"',
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type=kind, headers=headers)


@get(["/console", "/console/{page:path}"], opt=_PUBLIC, include_in_schema=False)
async def page(api: NamedDependency[ApiState]) -> Response[bytes]:
    """The single page; its own router shows the part the path names."""
    _console(api)
    found = _asset("index.html")
    if found is None:
        raise ProblemError(503, "the console is not built: run `npm run build` in console/")
    return Response(
        found[0],
        media_type="text/html",
        headers={
            "Cache-Control": "no-cache",
            # Only our own scripts, styles and pictures: an injected script cannot run or
            # send anything elsewhere. Live video plays from a MediaSource's blob: address.
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
            "media-src 'self' blob:; "
            "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@get("/", opt=_PUBLIC, include_in_schema=False)
async def root() -> Redirect:
    return Redirect("/console/")


@get("/favicon.ico", opt=_PUBLIC, include_in_schema=False)
async def favicon() -> Response[bytes]:
    """The icon browsers ask for at the root (the console's page names it too)."""
    found = _asset("favicon.ico")
    if found is None:
        raise ProblemError(404, "no such file")
    body, _, etag = found
    return Response(
        body,
        media_type="image/x-icon",
        headers={
            "ETag": f'"{etag}"',
            "Cache-Control": "max-age=86400",
            "X-Content-Type-Options": "nosniff",
        },
    )


HANDLERS = [
    *wall.HANDLERS,
    sign_in,
    sign_out,
    session,
    region,
    templates,
    messages,
    outlines,
    static,
    page,
    root,
    favicon,
]
