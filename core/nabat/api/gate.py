"""The front door: what every HTTP request goes through before and after its handler.

Two layers, because some checks need the matched route and some must not wait for it:

* :class:`Gate` wraps the whole ASGI app. It gives each request an id (``X-Request-ID``,
  the client's if it sent a sane one), reads request bodies under a size limit and a deadline
  (413 / 408 before any handler runs: slow or oversized clients never tie up a handler), and
  writes one structured access-log line and the latency metric per request.
* :class:`AccessMiddleware` runs per route, after routing. It decides who the caller is — a
  bearer token, or a signed Standard Webhooks sender for plugin receivers that declare secrets
  — applies the token's rate limit and the route's scope, and writes the audit entry of every
  state-changing call. Routes are closed unless they say otherwise (``opt={"access":
  "public"}``), so a route added without thought is never open by accident.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Secret
from ..ids import uuid7
from ..logs import get_logger
from ..store import JournalError
from ..webhooks import WebhookVerificationError, WebhookVerifier
from .problems import PROBLEM_JSON, FieldError, ProblemError, problem_body, undecodable_body
from .ratelimit import RateLimiter
from .sessions import CSRF_HEADER, session_cookie
from .tokens import TokenInfo

if TYPE_CHECKING:
    from .state import ApiState

__all__ = ["AccessMiddleware", "Gate", "actor_of", "deny_websocket", "request_id_of"]

log = get_logger("nabat.api")
access_log = get_logger("nabat.api.access")

REQUEST_ID = "nabat.request_id"
BODY = "nabat.body"
ACTOR = "nabat.actor"
ROUTE = "nabat.route"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_id_of(scope: Scope) -> str | None:
    return scope.get(REQUEST_ID)  # type: ignore[return-value]


def actor_of(scope: Scope) -> str | None:
    return scope.get(ACTOR)  # type: ignore[return-value]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _oversized_header(scope: Scope, limit: int) -> str | None:
    """Why the request's headers are refused (one over ``limit`` bytes, or all together over
    four times it), or None. Servers differ in what they let through; the hub's cap is one."""
    total = 0
    for key, value in scope["headers"]:
        size = len(key) + len(value)
        if size > limit:
            name = key.decode("latin-1")[:64]
            return f"the {name} header is {size} bytes; at most {limit}"
        total += size
    if total > 4 * limit:
        return f"the request's headers are {total} bytes together; at most {4 * limit}"
    return None


async def _send_problem(
    send: Send,
    status: int,
    detail: str,
    request_id: str,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    close: bool = False,
    errors: list[FieldError] | None = None,
    kind: str | None = None,
    instance: str | None = None,
) -> None:
    body = problem_body(status, detail, errors, request_id, instance, kind)
    raw_headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *headers,  # x-request-id: the gate's send wrapper adds it to every answer
    ]
    if close:
        raw_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _BodyTooLarge(Exception):
    pass


DirectHandler = Callable[
    [Any, TokenInfo, dict[str, str], bytes],
    Awaitable[tuple[int, str, bytes, dict[str, str] | None, dict[str, Any] | None]],
]


class Gate:
    """Request ids, bounded body reading, access log and latency metric.

    ``direct`` maps (method, path) of the hottest routes (event ingest) to framework-free
    handlers the Gate calls itself, with the same access checks, audit and problem answers:
    Litestar's routing, parameter parsing and response objects cost more per request than
    everything else the API does (bench/http_ingest.py). The Litestar route stays registered
    for the OpenAPI document and serves the same core."""

    def __init__(
        self,
        app: ASGIApp,
        state: ApiState,
        access: AccessMiddleware | None = None,
        direct: dict[tuple[str, str], tuple[DirectHandler, dict[str, Any]]] | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.access = access
        self.direct = direct or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            if scope["type"] == ScopeType.WEBSOCKET:  # access: AccessMiddleware, as for HTTP
                offered = _header(scope, b"x-request-id")
                scope[REQUEST_ID] = (  # type: ignore[literal-required]
                    offered if offered and _SANE_ID.fullmatch(offered) else uuid7()
                )
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = _header(scope, b"x-request-id")
        request_id = offered if offered and _SANE_ID.fullmatch(offered) else uuid7()
        scope[REQUEST_ID] = request_id  # type: ignore[literal-required]
        method = scope["method"]
        status = 0
        sent = 0
        received = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            settings = self.state.settings
            if (too_large := _oversized_header(scope, settings.max_header)) is not None:
                status = 431
                await _send_problem(
                    send_wrapper,
                    431,
                    too_large,
                    request_id,
                    close=True,
                    kind="header-too-large",
                    instance=scope["path"],
                )
                return
            length = _header(scope, b"content-length")
            if method in _BODY_METHODS or (length and length != "0"):
                if length is not None and (not length.isdigit() or int(length) > settings.max_body):
                    if length.isdigit():
                        detail = f"the body is {length} bytes; at most {settings.max_body}"
                        status = 413
                    else:
                        detail, status = "Content-Length is not a number", 400
                    await _send_problem(
                        send_wrapper,
                        status,
                        detail,
                        request_id,
                        close=True,
                        kind="body-too-large" if status == 413 else "bad-content-length",
                        instance=scope["path"],
                    )
                    return
                try:
                    body = await self._read_body(receive, settings.max_body, settings.body_timeout)
                except _BodyTooLarge:
                    status = 413
                    await _send_problem(
                        send_wrapper,
                        413,
                        f"the body exceeds {settings.max_body} bytes",
                        request_id,
                        close=True,
                        kind="body-too-large",
                        instance=scope["path"],
                    )
                    return
                except TimeoutError:
                    status = 408
                    await _send_problem(
                        send_wrapper,
                        408,
                        f"the request body did not arrive within {settings.body_timeout:g} s",
                        request_id,
                        close=True,
                        kind="body-timeout",
                        instance=scope["path"],
                    )
                    return
                if body is None:  # the client went away before sending it all
                    status = 499
                    return
                received = len(body)
                scope[BODY] = body  # type: ignore[literal-required]
                direct = self.direct.get((method, scope["path"]))
                if direct is not None and self.access is not None:
                    await self._direct(scope, send_wrapper, body, *direct)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            handler = scope.get("route_handler")
            route = (
                next(iter(handler.paths), scope["path"])
                if handler is not None
                else scope.get(ROUTE, "-")
            )
            self.state.metrics.observe(method, route, status, elapsed)
            access_log.info(
                "http.request",
                method=method,
                path=scope["path"],
                route=route,
                status=status,
                ms=round(elapsed * 1000, 2),
                bytes_in=received,
                bytes_out=sent,
                actor=scope.get(ACTOR),
                client=scope["client"][0] if scope.get("client") else None,
                request_id=request_id,
            )

    async def _direct(
        self,
        scope: Scope,
        send: Send,
        body: bytes,
        handler: DirectHandler,
        opt: dict[str, Any],
    ) -> None:
        assert self.access is not None
        scope[ROUTE] = scope["path"]  # type: ignore[literal-required]
        request_id = scope[REQUEST_ID]  # type: ignore[literal-required]
        status, who = 500, None
        try:
            who = await self.access.authorize(scope, opt)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            status, media_type, content, extra, audit = await handler(
                self.state, scope["user"], headers, body
            )
            scope["nabat.audit"] = audit  # type: ignore[typeddict-unknown-key]
            raw = [
                (b"content-type", media_type.encode()),
                (b"content-length", str(len(content)).encode()),
            ]
            raw += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": content, "more_body": False})
        except ProblemError as exc:
            status = exc.status_code
            extra = {k.lower(): v for k, v in (exc.headers or {}).items()}
            if status == 401:
                extra.setdefault("www-authenticate", 'Bearer realm="nabat"')
            await _send_problem(
                send,
                status,
                exc.detail,
                request_id,
                headers=[(k.encode(), v.encode()) for k, v in extra.items()],
                errors=exc.errors,
                kind=exc.kind,
                instance=scope["path"],
            )
        except JournalError as exc:
            (log.debug if exc.outage else log.error)(
                "http.journal_error", error=str(exc), request_id=request_id
            )
            if exc.disk_full:
                status, retry, kind = 507, b"30", "insufficient-storage"
                detail = "the journal's disk is full; nothing of this request was stored"
            else:
                status, retry, kind = 503, b"5", "journal-unavailable"
                detail = "the journal is unavailable; nothing of this request was stored"
            await _send_problem(
                send,
                status,
                f"{detail}, retry later",
                request_id,
                headers=[(b"retry-after", retry)],
                kind=kind,
                instance=scope["path"],
            )
        except asyncio.CancelledError:
            status = 499  # the client went away (or the server is stopping) mid-request
            raise
        except Exception as exc:
            if (bad := undecodable_body(exc)) is not None:
                status = 400
                log.warning("http.bad_body", reason=bad[0], request_id=request_id)
                await _send_problem(
                    send, 400, bad[0], request_id, kind=bad[1], instance=scope["path"]
                )
                return
            status = 500
            log.error("http.unhandled_error", exc_info=exc, request_id=request_id)
            await _send_problem(
                send,
                500,
                "an unexpected error; it has been logged with this request id",
                request_id,
                instance=scope["path"],
            )
        finally:
            if who is not None:
                self.access.audit(scope, who[0], who[1], status)

    @staticmethod
    async def _read_body(receive: Receive, limit: int, timeout: float) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)


def _same_origin(scope: Scope) -> bool:
    origin = _header(scope, b"origin")
    host = _header(scope, b"host")
    if not origin or not host:
        return False
    return origin.partition("://")[2].rstrip("/").lower() == host.lower()


async def deny_websocket(scope: Scope, receive: Receive, send: Send, exc: ProblemError) -> None:
    """Refuse a WebSocket handshake with the problem as its HTTP answer (the ASGI WebSocket
    Denial Response, which uvicorn supports); without that extension, close it with code
    4000 + status and the detail as reason."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    request_id = request_id_of(scope) or uuid7()
    if "websocket.http.response" in scope.get("extensions", {}) or {}:
        body = problem_body(
            exc.status_code, exc.detail, exc.errors, request_id, scope["path"], exc.kind
        )
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            *((k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()),
        ]
        await send(
            {"type": "websocket.http.response.start", "status": exc.status_code, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    else:
        await send(
            {"type": "websocket.close", "code": 4000 + exc.status_code, "reason": exc.detail[:120]}
        )
    access_log.info(
        "ws.refused",
        path=scope["path"],
        status=exc.status_code,
        kind=exc.kind,
        actor=scope.get(ACTOR),
        request_id=request_id,
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then the client's later messages
    (so a handler still learns of a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _secrets(value: Any) -> list[str]:
    if callable(value):
        value = value()
    if isinstance(value, str | Secret):
        value = [value]
    return [v.reveal() if isinstance(v, Secret) else str(v) for v in value or ()]


class AccessMiddleware(ASGIMiddleware):
    """Authentication, rate limit, scope and audit, per matched route.

    Route ``opt`` keys: ``access`` (``"token"`` default, ``"public"``, ``"webhook"``),
    ``scope`` (the scope a token needs; none: any valid token), ``webhook_secrets`` (for
    ``"webhook"``: the ``whsec_`` secrets, or a callable returning them), ``plugin``."""

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self._verifiers: dict[tuple[str, ...], WebhookVerifier] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        opt = scope["route_handler"].opt
        if opt.get("access", "token") == "public" or (
            self.state.settings.public_docs and scope["path"].startswith("/schema")
        ):
            await next_app(scope, receive, send)
            return
        if scope["type"] == ScopeType.WEBSOCKET:
            # The same checks as a GET; a refusal is an HTTP problem on the handshake.
            try:
                await self.authorize(scope, opt)
            except ProblemError as exc:
                await deny_websocket(scope, receive, send, exc)
                return
            await next_app(scope, receive, send)
            return
        actor, name = await self.authorize(scope, opt)
        if scope["method"] in _READ_METHODS:
            await next_app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, capture)
        finally:
            self.audit(scope, actor, name, status)

    async def authorize(self, scope: Scope, opt: dict[str, Any]) -> tuple[str, str | None]:
        """Who is calling, as (actor, name); raises a 401/403/429 problem for whoever may not."""
        if opt.get("access", "token") == "webhook":
            actor = self._verify_webhook(scope, opt)
            scope[ACTOR] = actor  # type: ignore[literal-required]
            return actor, None
        info = await self._authenticate(scope)
        actor, name = f"token:{info.id}", info.name
        # Before the scope check, so the access line of a refused call names the token too.
        scope[ACTOR] = actor  # type: ignore[literal-required]
        required = opt.get("scope")
        if required and not info.allows(required):
            if scope.get("method", "GET") not in _READ_METHODS:  # a refused write is audited
                self.audit(scope, actor, name, 403)
            raise ProblemError(
                403,
                f"this token lacks the scope {required!r}",
                kind="missing-scope",
            )
        scope["user"] = info
        return actor, name

    def audit(self, scope: Scope, actor: str, name: str | None, status: int) -> None:
        """Record a state-changing call (accepted or refused) in the audit log."""
        client = scope.get("client")
        idem = _header(scope, b"idempotency-key") or _header(scope, b"webhook-id")
        detail: dict[str, Any] = {}
        if idem:
            detail["idempotency_key"] = idem[:255]
        audit_detail = scope.get("nabat.audit")
        if audit_detail:
            detail.update(audit_detail)
        self.state.audit.record(
            actor,
            f"{scope['method']} {scope['path']}",
            actor_name=name,
            status=status,
            request_id=request_id_of(scope),
            remote=client[0] if client else None,
            detail=detail or None,
        )

    async def _authenticate(self, scope: Scope) -> TokenInfo:
        header = _header(scope, b"authorization")
        if not header:
            cookie = session_cookie(_header(scope, b"cookie"))
            if cookie is not None and self.state.console is not None:
                return await self._signed_in(scope, cookie)
            raise ProblemError(401, "a bearer token is required", kind="token-required")
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise ProblemError(401, "use 'Authorization: Bearer <token>'", kind="token-required")
        info = await self.state.tokens.authenticate(secret.strip())
        if info is None:
            log.warning(
                "http.bad_token",
                path=scope["path"],
                client=scope["client"][0] if scope.get("client") else None,
                request_id=request_id_of(scope),
            )
            raise ProblemError(
                401,
                "the token is unknown, revoked or expired",
                headers={"WWW-Authenticate": 'Bearer realm="nabat", error="invalid_token"'},
                kind="invalid-token",
            )
        wait = await self.state.limiter.acquire(info.id, rate=info.rate, burst=info.burst)
        if wait is not None:
            raise ProblemError(
                429,
                f"rate limit of this token exceeded; retry in {wait:.1f} s",
                headers={"Retry-After": RateLimiter.retry_after(wait)},
                kind="rate-limited",
            )
        return info

    async def _signed_in(self, scope: Scope, cookie: str) -> TokenInfo:
        """A person signed in to the console: their role's rights; a state-changing request
        must carry the session's CSRF token too."""
        console = self.state.console
        assert console is not None
        # A state-changing request asks the journal, not the caches: a session ended or an
        # account disabled in another hub process acts no more from that moment.
        acting = scope.get("method", "GET") not in _READ_METHODS
        session = await console.sessions.get(cookie, fresh=acting)
        user = (
            None
            if session is None
            else await (console.users.get if acting else console.users.cached)(session.login)
        )
        if session is None or user is None or user.disabled:
            raise ProblemError(401, "the session has ended: sign in again", kind="session-ended")
        if scope.get("method", "GET") not in _READ_METHODS:
            offered = _header(scope, CSRF_HEADER.encode()) or ""
            if not hmac.compare_digest(offered.encode(), session.csrf.encode()):
                raise ProblemError(
                    403, "missing or wrong X-CSRF-Token for this session", kind="csrf"
                )
        if scope["type"] == ScopeType.WEBSOCKET and not _same_origin(scope):
            # Browsers send the cookie with any page's WebSocket: only the console's own
            # pages may open one with it (cross-site WebSocket hijacking).
            raise ProblemError(
                403,
                "a WebSocket signed in by cookie must come from the console's origin",
                kind="cross-origin",
            )
        info = user.identity()
        wait = await self.state.limiter.acquire(info.id, rate=console.rate, burst=console.burst)
        if wait is not None:
            raise ProblemError(
                429,
                f"too many requests from this console; retry in {wait:.1f} s",
                headers={"Retry-After": RateLimiter.retry_after(wait)},
                kind="rate-limited",
            )
        return info

    def _verify_webhook(self, scope: Scope, opt: dict[str, Any]) -> str:
        plugin = opt.get("plugin", "?")
        secrets = tuple(_secrets(opt.get("webhook_secrets")))
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            verifier = self._verifiers.get(secrets)
            if verifier is None:
                verifier = WebhookVerifier(secrets, tolerance=self.state.settings.webhook_tolerance)
                self._verifiers[secrets] = verifier
        except (
            ValueError
        ) as exc:  # no or malformed secrets: the operator's to fix, not the caller's
            log.error("webhook.misconfigured", plugin=plugin, path=scope["path"], error=str(exc))
            raise ProblemError(
                503,
                "this receiver is not configured; tell the hub's operator",
                kind="misconfigured",
            ) from None
        try:
            verifier.verify(headers, scope.get(BODY, b""))  # type: ignore[arg-type]
        except WebhookVerificationError as exc:
            self.state.metrics.webhook_rejected.labels(plugin).inc()
            # Never the body: it may carry personal data of a caller to 112.
            log.warning(
                "webhook.rejected",
                plugin=plugin,
                path=scope["path"],
                reason=exc.reason,
                webhook_id=headers.get("webhook-id", "")[:128] or None,
                client=scope["client"][0] if scope.get("client") else None,
                request_id=request_id_of(scope),
            )
            raise ProblemError(
                401, f"webhook signature rejected: {exc.reason}", kind="bad-signature"
            ) from None
        return f"webhook:{plugin}"
