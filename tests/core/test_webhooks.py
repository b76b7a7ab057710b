"""Standard Webhooks: signatures proven against the independent ``standardwebhooks`` package,
and the sender against a real HTTP receiver on a real socket."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from nabat.events import Event, decode_event
from nabat.interfaces import DeliveryStatus
from nabat.testing import free_port
from nabat.webhooks import (
    MAX_RETRY_AFTER,
    WebhookSender,
    WebhookVerificationError,
    WebhookVerifier,
    generate_secret,
    parse_retry_after,
    sign,
    signed_headers,
)
from standardwebhooks import Webhook

BODY = '{"type":"hydro.level.rising","data":{"level_cm":512,"station":"Кубань"}}'.encode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def reference_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())


def reason_of(verifier: WebhookVerifier, headers, body=BODY, **kw) -> str:
    with pytest.raises(WebhookVerificationError) as info:
        verifier.verify(headers, body, **kw)
    return info.value.reason


# -- parity with the reference implementation -------------------------------------------------


def test_generated_secret_is_32_random_bytes():
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert generate_secret() != secret
    Webhook(secret)  # the reference accepts it


def test_our_signatures_verify_with_the_reference_library():
    secret = generate_secret()
    headers = signed_headers(secret, MSG_ID, BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == MSG_ID
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert Webhook(secret).verify(BODY, headers)["data"]["level_cm"] == 512


def test_reference_signatures_verify_with_ours():
    secret = generate_secret()
    ts = int(time.time())
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(ts),
        "webhook-signature": reference_sign(secret, MSG_ID, ts, BODY),
    }
    assert WebhookVerifier([secret]).verify(headers, BODY) == MSG_ID
    assert sign(secret, MSG_ID, ts, BODY) == headers["webhook-signature"]


def test_the_spec_example_signature():
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: base64.b64encode(os.urandom(24)).decode(),  # padded-free length: a multiple of 4
        lambda: base64.b64encode(os.urandom(31)).decode().rstrip("="),  # unpadded
        lambda: base64.b64encode(os.urandom(32)).decode(),  # padded
    ],
    ids=["whole", "unpadded", "padded"],  # the same ids in every test worker
)
def test_raw_secret_without_prefix_is_decoded_like_the_reference(make):
    raw = make()
    ts = int(time.time())
    assert sign(raw, MSG_ID, ts, BODY) == reference_sign(raw, MSG_ID, ts, BODY)
    assert sign(raw, MSG_ID, ts, BODY) == sign("whsec_" + raw, MSG_ID, ts, BODY)
    headers = signed_headers(raw, MSG_ID, BODY)
    Webhook(raw).verify(BODY, headers)
    assert WebhookVerifier([raw]).verify(headers, BODY) == MSG_ID


def test_several_secrets_sign_once_each_for_rotation():
    old, new = generate_secret(), generate_secret()
    headers = signed_headers([old, new], MSG_ID, BODY, timestamp=int(time.time()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver still on the old secret and one already on the new both accept.
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    assert WebhookVerifier([old]).verify(headers, BODY) == MSG_ID
    assert WebhookVerifier([new]).verify(headers, BODY) == MSG_ID


def test_verifier_accepts_any_configured_secret():
    old, new, other = generate_secret(), generate_secret(), generate_secret()
    verifier = WebhookVerifier([old, new])
    for secret in (old, new):
        assert verifier.verify(signed_headers(secret, MSG_ID, BODY), BODY) == MSG_ID
    reason = reason_of(verifier, signed_headers(other, MSG_ID, BODY))
    assert reason == "no signature matches (2 secrets tried)"
    assert other not in reason


def test_header_names_are_case_insensitive_in_any_mapping():
    secret = generate_secret()
    headers = signed_headers(secret, MSG_ID, BODY)
    verifier = WebhookVerifier([secret])
    for spelling in (str.upper, str.title, lambda s: s):
        assert verifier.verify({spelling(k): v for k, v in headers.items()}, BODY) == MSG_ID
    import httpx  # a real multi-dict headers type

    assert verifier.verify(httpx.Headers(headers), BODY) == MSG_ID


def test_secret_as_a_single_string_is_one_secret():
    secret = generate_secret()
    assert WebhookVerifier(secret).verify(signed_headers(secret, MSG_ID, BODY), BODY) == MSG_ID


# -- rejections ------------------------------------------------------------------------------


@pytest.fixture
def secret() -> str:
    return generate_secret()


@pytest.fixture
def verifier(secret) -> WebhookVerifier:
    return WebhookVerifier([secret])


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header(secret, verifier, missing):
    headers = signed_headers(secret, MSG_ID, BODY)
    del headers[missing]
    assert reason_of(verifier, headers) == f"missing {missing} header"
    headers[missing] = "  "
    assert reason_of(verifier, headers) == f"missing {missing} header"


@pytest.mark.parametrize("value", ["abc", "1700000000.5", "1e9", "0x10", "9" * 40])
def test_timestamp_not_an_integer(secret, verifier, value):
    headers = signed_headers(secret, MSG_ID, BODY)
    headers["webhook-timestamp"] = value
    assert reason_of(verifier, headers) == "webhook-timestamp is not an integer"


def test_stale_and_future_timestamps_and_the_tolerance_boundary(secret, verifier):
    ts = 1_700_000_000
    headers = signed_headers(secret, MSG_ID, BODY, timestamp=ts)
    assert (
        reason_of(verifier, headers, now=ts + 412) == "timestamp too old (412 s; tolerance 300 s)"
    )
    assert verifier.verify(headers, BODY, now=ts + 300) == MSG_ID  # the boundary is inside
    assert reason_of(verifier, headers, now=ts + 300.5).startswith("timestamp too old")
    assert verifier.verify(headers, BODY, now=ts - 300) == MSG_ID
    assert reason_of(verifier, headers, now=ts - 301).startswith("timestamp in the future")

    strict = WebhookVerifier([secret], tolerance=10)
    assert strict.verify(headers, BODY, now=ts + 10) == MSG_ID
    assert reason_of(strict, headers, now=ts + 11) == "timestamp too old (11 s; tolerance 10 s)"


def test_real_clock_is_used_by_default(secret, verifier):
    headers = signed_headers(secret, MSG_ID, BODY, timestamp=int(time.time()) - 3600)
    assert reason_of(verifier, headers).startswith("timestamp too old")


def test_tampered_body_wrong_secret_and_tampered_id(secret, verifier):
    headers = signed_headers(secret, MSG_ID, BODY)
    assert reason_of(verifier, headers, body=BODY + b" ") == "no signature matches (1 secret tried)"
    assert reason_of(verifier, {**headers, "webhook-id": "msg_other"}).startswith(
        "no signature matches"
    )
    wrong = signed_headers(generate_secret(), MSG_ID, BODY)
    assert reason_of(verifier, wrong) == "no signature matches (1 secret tried)"
    # The timestamp is signed too: moving it breaks the signature.
    moved = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}
    assert reason_of(verifier, moved).startswith("no signature matches")


def test_unsupported_signature_version(secret, verifier):
    headers = signed_headers(secret, MSG_ID, BODY)
    good = headers["webhook-signature"]
    b64 = good.split(",", 1)[1]
    assert reason_of(verifier, {**headers, "webhook-signature": f"v1a,{b64}"}).startswith(
        "unsupported signature version"
    )
    assert reason_of(verifier, {**headers, "webhook-signature": f"v2,{b64}"}).startswith(
        "unsupported signature version"
    )
    # An unknown version beside a good v1 signature is ignored, as the spec asks.
    assert verifier.verify({**headers, "webhook-signature": f"v1a,{b64} {good}"}, BODY) == MSG_ID


def test_malformed_signatures_do_not_break_a_good_one(secret, verifier):
    headers = signed_headers(secret, MSG_ID, BODY)
    good = headers["webhook-signature"]
    noisy = f"garbage v1,@@notbase64@@ v1, v1,{base64.b64encode(b'x').decode()}  {good}"
    assert verifier.verify({**headers, "webhook-signature": noisy}, BODY) == MSG_ID
    reason = reason_of(verifier, {**headers, "webhook-signature": "garbage"})
    assert reason == "webhook-signature has no v1 signature"


def test_oversized_headers_are_refused(secret, verifier):
    headers = signed_headers(secret, MSG_ID, BODY)
    huge = " ".join([headers["webhook-signature"]] * 300)
    assert len(huge) > 10 * 1024
    assert reason_of(verifier, {**headers, "webhook-signature": huge}).startswith(
        "webhook-signature longer than"
    )
    assert reason_of(verifier, {**headers, "webhook-id": "m" * 1000}).startswith(
        "webhook-id longer than"
    )


def test_duplicate_header_spellings_with_different_values(secret, verifier):
    headers = signed_headers(secret, MSG_ID, BODY)
    headers["Webhook-Id"] = "msg_other"
    assert reason_of(verifier, headers) == "duplicate webhook-id header"


def test_reasons_never_carry_the_body_or_secret(secret, verifier):
    headers = signed_headers(secret, MSG_ID, BODY)
    for bad in (
        {**headers, "webhook-timestamp": "x"},
        {**headers, "webhook-signature": "v1a,abc"},
        signed_headers(generate_secret(), MSG_ID, BODY),
    ):
        with pytest.raises(WebhookVerificationError) as info:
            verifier.verify(bad, BODY)
        text = str(info.value) + info.value.reason
        assert secret not in text and secret.removeprefix("whsec_") not in text
        assert "level_cm" not in text and headers["webhook-signature"] not in text


def test_invalid_secrets_are_refused_by_position_without_echoing_them():
    good = generate_secret()
    for bad in ("whsec_not base64!!", "héllo", "whsec_abcde"):
        with pytest.raises(ValueError) as info:
            WebhookVerifier([good, bad])
        assert "index 1" in str(info.value)
        assert bad not in str(info.value)
    with pytest.raises(ValueError, match="index 0 is empty"):
        WebhookVerifier(["whsec_"])
    with pytest.raises(ValueError, match="at least one"):
        WebhookVerifier([])
    with pytest.raises(ValueError, match="index 2"):
        signed_headers([good, good, "***"], MSG_ID, BODY)


# -- Retry-After ------------------------------------------------------------------------------


def test_parse_retry_after():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("86400") == MAX_RETRY_AFTER == 3600
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(date, now=now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now=now) == 0
    for junk in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(junk) is None


# -- the sender against a real HTTP server ----------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    event: Event
    path: str


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server on a real socket: it verifies every request with the reference
    library, records it and answers with the next scripted response."""

    secret: str
    port: int = 0
    hang: bool = False
    received: list[Received] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str], bytes]] = field(default_factory=deque)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/nabat"

    def respond(self, status: int, headers: dict[str, str] | None = None, body: bytes = b""):
        self.script.append((status, headers or {}, body))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            headers = {}
            for line in lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if self.hang:
                await self._release.wait()
                return
            try:
                Webhook(self.secret).verify(body, headers)
                self.received.append(
                    Received(headers, body, decode_event(body), request_line.split(" ")[1])
                )
            except Exception as exc:
                self.failures.append(repr(exc))
            status, extra, payload = self.script.popleft() if self.script else (204, {}, b"")
            out = [f"HTTP/1.1 {status} X", f"content-length: {len(payload)}", "connection: close"]
            out += [f"{k}: {v}" for k, v in extra.items()]
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def receiver():
    rx = Receiver(secret=generate_secret())
    server = await asyncio.start_server(rx.handle, "127.0.0.1", 0)
    rx.port = server.sockets[0].getsockname()[1]
    yield rx
    rx._release.set()
    server.close()
    await server.wait_closed()
    assert rx.failures == []


def event(**over) -> Event:
    fields = dict(
        type="hydro.level.rising",
        source="/nabat/instances/kuban-gauge-7",
        municipality="krasnodar",
        severity="severe",
        data={"level_cm": 512, "station": "Краснодар, р. Кубань"},
    )
    fields.update(over)
    return Event(**fields)


async def test_delivered_on_204_with_a_verifiable_cloudevent(receiver):
    ev = event()
    async with WebhookSender(receiver.url, [receiver.secret]) as sender:
        result = await sender(ev)
    assert result.status is DeliveryStatus.DELIVERED
    assert result.detail == "HTTP 204"
    [got] = receiver.received
    assert got.path == "/hooks/nabat"
    assert got.event == ev
    assert got.headers["webhook-id"] == ev.id
    assert got.headers["content-type"] == "application/cloudevents+json"
    assert got.headers["user-agent"] == "Nabat-Webhooks/1"


async def test_rotation_on_the_sending_side(receiver):
    # The receiver has only the new secret; the sender signs with both.
    async with WebhookSender(receiver.url, [generate_secret(), receiver.secret]) as sender:
        assert (await sender(event())).status is DeliveryStatus.DELIVERED
    assert len(receiver.received[0].headers["webhook-signature"].split(" ")) == 2


async def test_retry_on_503_with_retry_after_and_the_same_id_on_redelivery(receiver):
    receiver.respond(503, {"Retry-After": "7"}, b"maintenance\r\nback soon")
    receiver.respond(204)
    ev = event()
    async with WebhookSender(receiver.url, [receiver.secret]) as sender:
        first = await sender(ev)
        second = await sender(ev)
    assert first.status is DeliveryStatus.RETRY
    assert first.retry_after == 7.0
    assert first.detail == "HTTP 503: maintenance back soon"
    assert second.status is DeliveryStatus.DELIVERED
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert ids == {ev.id}
    assert len(receiver.received) == 2


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502])
async def test_retryable_statuses(receiver, status):
    receiver.respond(status)
    async with WebhookSender(receiver.url, [receiver.secret]) as sender:
        result = await sender(event())
    assert result.status is DeliveryStatus.RETRY
    assert result.retry_after is None
    assert result.detail == f"HTTP {status}"


async def test_rejected_on_400_with_a_sanitised_snippet(receiver):
    receiver.respond(400, {}, b"bad \x1b[31mrequest\x00 " + b"x" * 500)
    async with WebhookSender(receiver.url, [receiver.secret]) as sender:
        result = await sender(event())
    assert result.status is DeliveryStatus.REJECTED
    assert result.detail.startswith("HTTP 400: bad")
    assert "\x1b" not in result.detail and "\x00" not in result.detail
    assert len(result.detail) <= len("HTTP 400: ") + 201


async def test_rejected_on_410_gone(receiver):
    receiver.respond(410, {}, b"endpoint removed")
    async with WebhookSender(receiver.url, [receiver.secret]) as sender:
        result = await sender(event())
    assert result.status is DeliveryStatus.REJECTED
    assert result.detail == "HTTP 410: endpoint removed"


async def test_redirect_is_rejected_not_followed(receiver):
    receiver.respond(302, {"Location": "http://user:hunter2@127.0.0.1:1/elsewhere"})
    async with WebhookSender(receiver.url, [receiver.secret]) as sender:
        result = await sender(event())
    assert result.status is DeliveryStatus.REJECTED
    assert "redirects are not followed; register the final URL" in result.detail
    assert "hunter2" not in result.detail
    assert len(receiver.received) == 1  # nothing went to the Location


async def test_connection_refused_is_retried_and_masks_the_password():
    url = f"http://nabat:hunter2@127.0.0.1:{free_port()}/hook?token=s3cr3t"
    async with WebhookSender(url, [generate_secret()], timeout=5) as sender:
        result = await sender(event())
    assert result.status is DeliveryStatus.RETRY
    assert "nabat:***@127.0.0.1" in result.detail
    assert "hunter2" not in result.detail and "s3cr3t" not in result.detail
    assert "hunter2" not in repr(sender)


async def test_timeout_is_retried(receiver):
    receiver.hang = True
    async with WebhookSender(receiver.url, [receiver.secret], timeout=0.3) as sender:
        started = time.monotonic()
        result = await sender(event())
    assert time.monotonic() - started < 3
    assert result.status is DeliveryStatus.RETRY
    assert "no answer within 0.3 s" in result.detail


async def test_a_shared_client_is_used_and_left_open(receiver):
    import aiohttp

    async with aiohttp.ClientSession() as client:
        sender = WebhookSender(receiver.url, [receiver.secret], client=client)
        assert (await sender(event())).status is DeliveryStatus.DELIVERED
        await sender.aclose()
        assert not client.closed


def test_sender_refuses_bad_urls_and_secrets():
    with pytest.raises(ValueError, match="http") as info:
        WebhookSender("ftp://user:hunter2@example.org/x", [generate_secret()])
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="http"):
        WebhookSender("mailto:someone", [generate_secret()])
    with pytest.raises(ValueError, match="index 0"):
        WebhookSender("https://example.org/x", ["not base64!"])
