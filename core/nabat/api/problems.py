"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns has the same shape: ``type``, ``title``, ``status``, ``detail`` and,
for invalid input, ``errors`` naming each bad field (with the event's ``index`` in a batch), so
an agency's integrator can fix a request without reading our logs.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.exceptions import ValidationException as LitestarValidationException
from litestar.openapi.datastructures import ResponseSpec

from ..logs import get_logger
from ..store import JournalError

__all__ = [
    "FieldError",
    "Problem",
    "ProblemError",
    "documented",
    "exception_handlers",
    "problem_body",
    "problem_response",
    "undecodable_body",
]

log = get_logger("nabat.api")

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    408: "Request timeout",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    503: "Service unavailable",
    507: "Insufficient storage",
}


_KINDS = {404: "not-found", 405: "method-not-allowed", 400: "bad-request"}


class FieldError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One bad field: ``field`` is a dotted path (``data.lat``), ``index`` the position in a
    batch."""

    field: str
    reason: str
    index: int | None = None


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    request_id: str | None = None


class ProblemError(HTTPException):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.errors = errors
        self.kind = kind


def problem_body(
    status: int,
    detail: str | None,
    errors: list[FieldError] | None = None,
    request_id: str | None = None,
    instance: str | None = None,
    kind: str | None = None,
) -> bytes:
    """The JSON of one problem document (for Litestar responses and raw ASGI answers)."""
    return msgspec.json.encode(
        Problem(
            type=f"https://nabat.dev/problems/{kind}" if kind else "about:blank",
            title=_TITLES.get(status, "Error"),
            status=status,
            detail=detail,
            instance=instance,
            errors=errors or None,
            request_id=request_id,
        )
    )


def problem_response(
    status: int,
    detail: str | None,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
    instance: str | None = None,
    kind: str | None = None,
) -> Response[bytes]:
    return Response(
        content=problem_body(status, detail, errors, request_id, instance, kind),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _request_id(request: Request[Any, Any, Any]) -> str | None:
    return request.scope.get("nabat.request_id")  # set by nabat.api.gate.Gate


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    errors = getattr(exc, "errors", None)
    headers = dict(exc.headers or {})
    if isinstance(exc, LitestarValidationException) and exc.extra:
        # Litestar's own parameter validation (query strings, path parameters).
        errors = [
            FieldError(field=str(e.get("key", "")), reason=str(e.get("message", "")))
            for e in exc.extra
            if isinstance(e, dict)
        ]
        detail = "invalid request parameters"
        kind = "invalid-parameter"
    else:
        detail = exc.detail if exc.detail and exc.detail != _TITLES.get(status) else None
        kind = getattr(exc, "kind", None) or _KINDS.get(status)
    if isinstance(exc, NotAuthorizedException) or status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="nabat"')
    if isinstance(exc, PermissionDeniedException) and not detail:
        detail = "this token may not do that"
    return problem_response(
        status,
        detail,
        errors=errors,
        headers=headers or None,
        request_id=_request_id(request),
        instance=request.url.path,
        kind=kind,
    )


def undecodable_body(exc: BaseException) -> tuple[str, str] | None:
    """``(detail, kind)`` when ``exc`` is a JSON decoder's refusal of the request body that
    is not a :class:`msgspec.DecodeError` — invalid UTF-8 inside a string, nesting deeper than
    the interpreter recurses — else None. The sender's mistake: a 400, not a 500."""
    if isinstance(exc, UnicodeDecodeError):
        return f"the request body is not valid UTF-8: {exc.reason} at byte {exc.start}", (
            "invalid-utf8"
        )
    if isinstance(exc, RecursionError) and "deserializ" in str(exc):
        return "the request body's JSON is nested too deeply", "too-deep"
    return None


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    request_id = _request_id(request)
    if (bad := undecodable_body(exc)) is not None:
        log.warning("http.bad_body", reason=bad[0], request_id=request_id, path=request.url.path)
        return problem_response(
            400, bad[0], request_id=request_id, instance=request.url.path, kind=bad[1]
        )
    handler = request.scope.get("route_handler")
    if isinstance(exc, msgspec.DecodeError | msgspec.ValidationError) and (
        handler is not None and handler.opt.get("plugin")
    ):
        # A plugin's receiver decoding what an agency sent: the sender's mistake, not ours.
        return problem_response(
            400,
            f"the request body is invalid: {exc}",
            request_id=request_id,
            instance=request.url.path,
            kind="invalid-body",
        )
    log.error("http.unhandled_error", exc_info=exc, request_id=request_id, path=request.url.path)
    return problem_response(
        500,
        "an unexpected error; it has been logged with this request id",
        request_id=request_id,
        instance=request.url.path,
    )


def _journal_down(request: Request[Any, Any, Any], exc: JournalError) -> Response[bytes]:
    (log.debug if exc.outage else log.error)(
        "http.journal_error", error=str(exc), request_id=_request_id(request)
    )
    if exc.disk_full:
        return problem_response(
            507,
            "the journal's disk is full; nothing of this request was stored, retry later",
            headers={"Retry-After": "30"},
            instance=request.url.path,
            request_id=_request_id(request),
            kind="insufficient-storage",
        )
    return problem_response(
        503,
        "the journal is unavailable; nothing of this request was stored, retry later",
        headers={"Retry-After": "5"},
        request_id=_request_id(request),
        instance=request.url.path,
        kind="journal-unavailable",
    )


_DESCRIPTIONS = {
    400: "Malformed request: the problem names each bad field",
    401: "No valid bearer token",
    403: "The token lacks the scope or municipality",
    404: "No such resource",
    408: "The request body did not arrive in time",
    409: "Conflict with the current state",
    413: "Body or batch too large",
    415: "Unsupported Content-Type",
    422: "Well-formed but invalid: the problem names each bad field",
    429: "Rate limit exceeded; see Retry-After",
    503: "The journal is unavailable; retry later",
    507: "The journal's disk is full; retry later",
}


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses a route may give (400, 401 and 429 always:
    any request can carry a malformed header or parameter, or no token, or too many)."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS.get(status, _TITLES.get(status, "Error")),
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in sorted({400, 401, 429, *statuses})
    }


exception_handlers: dict[Any, Any] = {
    JournalError: _journal_down,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
