"""Signed webhooks: Standard Webhooks signatures and an outbound sender for durable delivery.

`Standard Webhooks <https://www.standardwebhooks.com/>`_ in brief. Every request carries three
headers:

* ``webhook-id``: the message id; the same across retries, so receivers drop duplicates by it
  (we send the event id);
* ``webhook-timestamp``: integer Unix seconds of *this attempt*; receivers reject messages
  outside a tolerance (5 minutes) to stop replays;
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` of
  ``"{id}.{timestamp}.{body}"``. Several signatures let a sender rotate secrets: it signs with
  the old and the new one until every receiver has the new one.

A secret is ``whsec_`` plus the base64 of the HMAC key. As in the reference implementation (the
``standardwebhooks`` package) the prefix is optional: a bare string is base64-decoded too.
Unlike it we refuse a secret that is not valid base64 instead of silently dropping characters.

:class:`WebhookVerifier` checks inbound requests (accepting any of several secrets while a
sender rotates); :class:`WebhookSender` is a durable-delivery target
(:data:`nabat.delivery.Target`) that POSTs one CloudEvent, signed, and maps the HTTP outcome to
a :class:`~nabat.interfaces.DeliveryResult`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .events import CONTENT_TYPE, Event, encode_event
from .interfaces import DeliveryResult, DeliveryStatus
from .logs import get_logger
from .masking import MASK, mask_url
from .netguard import DestinationRefused

__all__ = [
    "WebhookSender",
    "WebhookVerificationError",
    "WebhookVerifier",
    "generate_secret",
    "sign",
    "signed_headers",
]

log = get_logger("nabat.webhooks")

SECRET_PREFIX = "whsec_"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

# Bounds on what a verifier parses: real headers are far smaller, and the bounds cap the work an
# unauthenticated request can cause (base64 decodes and HMAC compares).
MAX_ID_LENGTH = 256
MAX_TIMESTAMP_LENGTH = 20
MAX_SIGNATURE_HEADER = 10 * 1024
MAX_RETRY_AFTER = 3600.0
"""Seconds: a longer ``Retry-After`` is capped, so a receiver can't park an event for days."""

_TIMESTAMP = re.compile(r"-?[0-9]+")
_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_ERROR_BODY_CHARS = 200
_READ_LIMIT = 16 * 1024  # response bytes read at most: enough for an error snippet


class WebhookVerificationError(Exception):
    """A request failed verification. ``reason`` is short and safe to log: it never holds the
    body, a secret or a signature."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"webhook verification failed: {reason}")


# -- secrets and signing ---------------------------------------------------------------------


def generate_secret() -> str:
    """A new secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def _decode_secret(secret: str, index: int = 0) -> bytes:
    """The HMAC key of ``secret`` (``whsec_<base64>`` or bare base64). The error names the
    secret by position only."""
    if not isinstance(secret, str):
        raise TypeError(f"webhook secret at index {index} must be a str")
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    # The reference library pads with "==" and lets base64 drop junk; padding to a multiple of 4
    # and validating gives the same key for every valid secret and refuses the rest.
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"webhook secret at index {index} is not valid base64") from None
    if not key:
        raise ValueError(f"webhook secret at index {index} is empty")
    return key


def _decode_secrets(secrets: str | Sequence[str]) -> list[bytes]:
    # A str is itself a Sequence[str]: take it as one secret, not as its characters.
    items = [secrets] if isinstance(secrets, str) else list(secrets)
    if not items:
        raise ValueError("at least one webhook secret is required")
    return [_decode_secret(s, i) for i, s in enumerate(items)]


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, _signed_content(msg_id, timestamp, body), hashlib.sha256).digest()


def _format(digest: bytes) -> str:
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message."""
    return _format(_signature(_decode_secret(secret), msg_id, int(timestamp), body))


def _headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: " ".join(_format(_signature(k, msg_id, timestamp, body)) for k in keys),
    }


def signed_headers(
    secrets: str | Sequence[str], msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``; one signature per secret (rotation).
    ``timestamp`` defaults to now."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return _headers(_decode_secrets(secrets), msg_id, ts, body)


# -- verification ----------------------------------------------------------------------------


def _header_values(headers: Mapping[str, str]) -> dict[str, str]:
    """The three webhook headers, looked up case-insensitively in any Mapping."""
    wanted = (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)
    found: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        key = name.lower()
        if key not in wanted:
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str):
            raise WebhookVerificationError(f"{key} header is not text")
        # Two spellings with different values: which one was signed is ambiguous.
        if key in found and found[key] != value:
            raise WebhookVerificationError(f"duplicate {key} header")
        found[key] = value
    return found


class WebhookVerifier:
    """Verifies inbound Standard Webhooks requests against one or more secrets.

    Several secrets let a receiver accept both the old and the new one during a rotation: a
    request passes when any configured secret matches any signature in the header.
    """

    def __init__(self, secrets: Sequence[str], *, tolerance: float = 300) -> None:
        if not tolerance >= 0:  # also refuses NaN
            raise ValueError("tolerance must be a non-negative number of seconds")
        self._keys = _decode_secrets(secrets)
        self.tolerance = float(tolerance)

    def __repr__(self) -> str:
        return f"WebhookVerifier({len(self._keys)} secrets, tolerance={self.tolerance:g})"

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> str:
        """Check ``headers`` and ``body``; return the webhook id. Raises
        :class:`WebhookVerificationError` with a loggable ``reason``."""
        values = _header_values(headers)
        for name in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE):
            if not values.get(name, "").strip():
                raise WebhookVerificationError(f"missing {name} header")
        msg_id = values[HEADER_ID]
        timestamp_text = values[HEADER_TIMESTAMP]
        signature_header = values[HEADER_SIGNATURE]
        if len(msg_id) > MAX_ID_LENGTH:
            raise WebhookVerificationError(f"webhook-id longer than {MAX_ID_LENGTH} characters")
        if len(signature_header) > MAX_SIGNATURE_HEADER:
            raise WebhookVerificationError(
                f"webhook-signature longer than {MAX_SIGNATURE_HEADER} characters"
            )

        timestamp_text = timestamp_text.strip()
        if len(timestamp_text) > MAX_TIMESTAMP_LENGTH or not _TIMESTAMP.fullmatch(timestamp_text):
            raise WebhookVerificationError("webhook-timestamp is not an integer")
        timestamp = int(timestamp_text)
        current = time.time() if now is None else now
        age = current - timestamp
        if age > self.tolerance:
            raise WebhookVerificationError(
                f"timestamp too old ({age:.0f} s; tolerance {self.tolerance:g} s)"
            )
        if -age > self.tolerance:
            raise WebhookVerificationError(
                f"timestamp in the future ({-age:.0f} s ahead; tolerance {self.tolerance:g} s)"
            )

        candidates: list[bytes] = []
        other_versions = False
        for token in signature_header.split():
            version, comma, encoded = token.partition(",")
            if not comma:
                continue
            if version != "v1":
                other_versions = True  # e.g. v1a (ed25519): not supported, not an error alone
                continue
            try:
                candidates.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                continue  # a malformed one can't match; another may
        if not candidates:
            if other_versions:
                raise WebhookVerificationError("unsupported signature version (only v1)")
            raise WebhookVerificationError("webhook-signature has no v1 signature")

        expected = [_signature(key, msg_id, timestamp, body) for key in self._keys]
        matched = False
        # Every pair is compared (no early exit) with a constant-time compare.
        for candidate in candidates:
            for digest in expected:
                matched |= hmac.compare_digest(candidate, digest)
        if not matched:
            n = len(self._keys)
            raise WebhookVerificationError(
                f"no signature matches ({n} secret{'s' if n != 1 else ''} tried)"
            )
        return msg_id


# -- sending ---------------------------------------------------------------------------------


def display_url(url: str) -> str:
    """``url`` fit for logs and errors: the userinfo password and the query values masked
    (webhook URLs often carry a token in the query)."""
    masked = mask_url(url)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return MASK
    if parts.query:
        query = "&".join(
            f"{pair.partition('=')[0]}={MASK}" if "=" in pair else pair
            for pair in parts.query.split("&")
        )
        masked = urlunsplit(parts._replace(query=query))
    return masked


def _sanitise(text: str, limit: int = _ERROR_BODY_CHARS) -> str:
    """One line of at most ``limit`` characters without control characters (log injection)."""
    text = _SPACES.sub(" ", _UNSAFE_TEXT.sub(" ", text)).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay seconds or an HTTP date), capped at
    :data:`MAX_RETRY_AFTER`; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _client_error(exc: BaseException) -> str:
    """aiohttp's message without the URL it may repeat (credentials, a query's token)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    return str(exc)


def _retryable(status: int) -> bool:
    return status in (408, 425, 429) or 500 <= status <= 599


class WebhookSender:
    """POSTs one event, signed, to ``url``: a durable-delivery target.

    The body is the event as structured-mode CloudEvents JSON; ``webhook-id`` is the event id,
    so a receiver drops redeliveries, and each attempt is signed with a fresh timestamp. Several
    secrets produce several signatures (rotation). Redirects are not followed: a signed request
    must go where it was registered, and a 3xx is a dead letter.

    A client passed in is shared and left open; otherwise the sender keeps its own, with a
    small connection pool, until :meth:`aclose`.

    ``disclose`` is what a result's ``detail`` tells of the receiver's answer: ``"all"`` (the
    status and the first 200 characters of the body, the network error) for the integrator's
    own targets, or ``"class"`` (``HTTP 5xx``, ``network error``, ``destination refused``)
    where the detail is shown to whoever registered the URL — their URL must not become a
    way to read or probe what the hub can reach. The full detail is logged either way.
    A :class:`~nabat.netguard.DestinationRefused` from a guarded client is a rejection.
    """

    def __init__(
        self,
        url: str,
        secrets: Sequence[str],
        *,
        timeout: float = 10.0,
        client: aiohttp.ClientSession | None = None,
        user_agent: str = "Nabat-Webhooks/1",
        disclose: Literal["all", "class"] = "all",
    ) -> None:
        self.display_url = display_url(url)
        self.disclose = disclose
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ValueError(f"webhook URL {self.display_url} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL {self.display_url} must be http(s)://host/…")
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.url = url
        self._keys = _decode_secrets(secrets)
        self.timeout = float(timeout)
        self.user_agent = user_agent
        self._own_client = client is None
        self._client = client
        self._log = log.bind(url=self.display_url)

    def __repr__(self) -> str:
        return f"WebhookSender({self.display_url!r}, {len(self._keys)} secrets)"

    async def aclose(self) -> None:
        """Close the client this sender created (a client passed in stays open)."""
        if self._own_client and self._client is not None:
            await self._client.close()
            self._client = None

    def _session(self) -> aiohttp.ClientSession:
        if self._client is None:  # made in the running loop, at the first POST
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64), trust_env=False
            )
        return self._client

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def __call__(self, event: Event) -> DeliveryResult:
        body = encode_event(event)
        # A fresh timestamp per attempt: a retry hours later must still pass the tolerance.
        headers = _headers(self._keys, event.id, int(time.time()), body)
        headers["content-type"] = CONTENT_TYPE
        headers["user-agent"] = self.user_agent
        try:
            # One deadline for the whole exchange, the body's trickle included.
            async with asyncio.timeout(self.timeout):
                async with self._session().post(
                    self.url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as response:
                    snippet = await self._read_snippet(response)
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            return self._result(
                DeliveryStatus.RETRY,
                f"POST {self.display_url}: no answer within {self.timeout:g} s",
                summary=self._network_error,
            )
        except DestinationRefused as exc:
            detail = f"destination refused: {exc.reason}"
            return self._result(DeliveryStatus.REJECTED, detail, summary=detail)
        except (aiohttp.ClientError, OSError) as exc:
            reason = _sanitise(_client_error(exc).replace(self.url, self.display_url))
            reason = reason or type(exc).__name__
            return self._result(
                DeliveryStatus.RETRY,
                f"POST {self.display_url}: {type(exc).__name__}: {reason}",
                summary=self._network_error,
            )
        return self._outcome(response, snippet)

    @property
    def _network_error(self) -> str:
        return f"network error: no connection or no answer within {self.timeout:g} s"

    async def _read_snippet(self, response: aiohttp.ClientResponse) -> bytes:
        """Up to :data:`_READ_LIMIT` bytes of the body: enough for an error message, a large
        body is not worth waiting for, and reading a small one to its end keeps the connection
        reusable."""
        chunks: list[bytes] = []
        size = 0
        try:
            while size < _READ_LIMIT:
                chunk = await response.content.read(_READ_LIMIT - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except aiohttp.ClientError:
            pass  # the status line is what matters; a broken body only loses the snippet
        return b"".join(chunks)

    def _outcome(self, response: aiohttp.ClientResponse, snippet: bytes) -> DeliveryResult:
        status = response.status
        status_class = f"HTTP {status // 100}xx"
        if 200 <= status < 300:
            return self._result(DeliveryStatus.DELIVERED, f"HTTP {status}", summary=status_class)
        text = _sanitise(snippet.decode("utf-8", errors="replace"))
        detail = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        if 300 <= status < 400:
            location = response.headers.get("location")
            where = f" (to {_sanitise(display_url(location))})" if location else ""
            advice = "redirects are not followed; register the final URL"
            return self._result(
                DeliveryStatus.REJECTED,
                f"HTTP {status}{where}: {advice}",
                summary=f"{status_class}: {advice}",
            )
        if _retryable(status):
            return self._result(
                DeliveryStatus.RETRY,
                detail,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                summary=status_class,
            )
        # 410 Gone and every other 4xx: the receiver refuses this event for good.
        return self._result(DeliveryStatus.REJECTED, detail, summary=status_class)

    def _result(
        self,
        status: DeliveryStatus,
        detail: str,
        *,
        summary: str,
        retry_after: float | None = None,
    ) -> DeliveryResult:
        if status is not DeliveryStatus.DELIVERED:
            # With disclose="class" this line is the only place the full detail is kept.
            level = self._log.warning if self.disclose == "class" else self._log.debug
            level("webhook.attempt", status=str(status), detail=detail)
        return DeliveryResult(
            status=status,
            at=datetime.now(UTC),
            detail=detail if self.disclose == "all" else summary,
            retry_after=retry_after,
        )
