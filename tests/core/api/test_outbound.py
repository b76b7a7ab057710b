"""/api/v1/subscriptions: outbound webhooks, delivered durably and signed per Standard Webhooks.

The receiver is a real HTTP server on a socket that checks every request with the independent
``standardwebhooks`` library, never with our own verifier.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import pytest
from nabat.events import decode_event
from nabat.testing import eventually
from standardwebhooks import Webhook


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    port: int = 0
    received: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    script: deque[int] = field(default_factory=deque)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            headers = {}
            for line in head.split("\r\n")[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.script.popleft() if self.script else 204
            if status < 300:
                verified = []
                for secret in self.secrets:
                    try:
                        Webhook(secret).verify(body, headers)
                        verified.append(secret)
                    except Exception:
                        pass
                if not verified:
                    self.failures.append(f"no secret verifies {headers.get('webhook-id')}")
                self.received.append(
                    {"headers": headers, "event": decode_event(body), "verified": verified}
                )
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
def api_base(api_base):
    """The receivers listen on loopback, which outbound webhooks may reach only if listed."""
    return api_base + 'webhook_destinations = ["127.0.0.1/32"]\n'


@pytest.fixture
async def receiver():
    rx = Receiver()
    server = await asyncio.start_server(rx.handle, "127.0.0.1", 0)
    rx.port = server.sockets[0].getsockname()[1]
    yield rx
    server.close()
    await server.wait_closed()
    assert rx.failures == []


async def publish(api, events) -> None:
    async with await api.client("events:write") as http:
        r = await http.post("/api/v1/events", json=events)
        assert r.status_code == 202, r.text


async def test_matching_events_arrive_signed_retried_and_the_state_shows_it(api, ce, receiver):
    async with await api.client("events:read") as http:
        r = await http.post(
            "/api/v1/subscriptions",
            json={
                "url": receiver.url,
                "types": ["incident.>"],
                "municipalities": ["sochi"],
                "description": "ЕДДС Сочи",
            },
        )
        assert r.status_code == 201, r.text
        sub = r.json()
        assert sub["secret"].startswith("whsec_")
        receiver.secrets.append(sub["secret"])

        await publish(
            api,
            [
                ce(1),
                ce(2, municipality="krasnodar"),
                ce(3, type="sensor.water.high"),
                ce(4),
            ],
        )
        await eventually(lambda: len(receiver.received) >= 2, what="two deliveries")
        got = [m["event"].id for m in receiver.received]
        assert got == ["evt-1", "evt-4"]
        first = receiver.received[0]
        assert first["headers"]["webhook-id"] == "evt-1"
        assert first["headers"]["content-type"] == "application/cloudevents+json"
        assert first["event"].data == {"n": 1} and first["event"].municipality == "sochi"

        # The receiver fails once: the event is retried with the same webhook-id.
        receiver.script.append(503)
        await publish(api, [ce(5)])

        async def retrying():
            state = (await http.get(f"/api/v1/subscriptions/{sub['id']}")).json()["delivery"]
            return state if state["retrying"] == 1 else None

        state = await eventually(retrying, what="a retry to show")
        assert state["last_error"] == "HTTP 5xx"  # the class only: the body is not echoed
        await eventually(lambda: len(receiver.received) == 3, what="the retry", timeout=15)
        assert receiver.received[2]["headers"]["webhook-id"] == "evt-5"

        async def settled():
            state = (await http.get(f"/api/v1/subscriptions/{sub['id']}")).json()["delivery"]
            return state if state["retrying"] == 0 else None

        # The receiver records the request before it answers: the retry row goes a moment later.
        done = await eventually(settled, what="the retry row to clear")
        assert done["dead"] == 0

        listed = (await http.get("/api/v1/subscriptions")).json()
        assert [s["id"] for s in listed] == [sub["id"]]
        assert "secret" not in listed[0]


async def test_rotation_signs_with_both_secrets_until_the_old_one_expires(api, ce, receiver):
    async with await api.client("events:read") as http:
        sub = (
            await http.post(
                "/api/v1/subscriptions", json={"url": receiver.url, "types": ["incident.>"]}
            )
        ).json()
        old = sub["secret"]
        rotated = (await http.post(f"/api/v1/subscriptions/{sub['id']}/rotate-secret")).json()
        new = rotated["secret"]
        assert new != old and new.startswith("whsec_")
        receiver.secrets += [old, new]
        await publish(api, [ce(1)])
        await eventually(lambda: receiver.received, what="a delivery")
        message = receiver.received[0]
        assert len(message["headers"]["webhook-signature"].split(" ")) == 2
        assert message["verified"] == [old, new]  # a receiver with either secret accepts it


async def test_others_cannot_see_or_delete_a_subscription_and_limits_apply(api, ce, receiver):
    async with await api.client("events:read", municipalities=("sochi",)) as owner:
        r = await owner.post(
            "/api/v1/subscriptions", json={"url": receiver.url, "types": ["incident.>"]}
        )
        sub = r.json()
        assert sub["municipalities"] == ["sochi"]  # the token's limit is the default
        denied = await owner.post(
            "/api/v1/subscriptions",
            json={"url": receiver.url, "types": [">"], "municipalities": ["krasnodar"]},
        )
        assert denied.status_code == 403
    async with await api.client("events:read") as stranger:
        assert (await stranger.get(f"/api/v1/subscriptions/{sub['id']}")).status_code == 404
        assert (await stranger.delete(f"/api/v1/subscriptions/{sub['id']}")).status_code == 404
        assert (await stranger.get("/api/v1/subscriptions")).json() == []
    async with await api.client("admin") as admin:
        assert [s["id"] for s in (await admin.get("/api/v1/subscriptions")).json()] == [sub["id"]]
        assert (await admin.delete(f"/api/v1/subscriptions/{sub['id']}")).status_code == 204
    assert await api.hub.journal.subscription(f"webhook:{sub['id']}") is None
    await publish(api, [ce(1)])
    await api.hub.bus.drain()
    assert receiver.received == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://x/y", "types": [">"]}, "url"),
        ({"url": "http://x/y", "types": ["a..b"]}, "types[0]"),
        (
            {"url": "http://x/y", "types": [">"], "municipalities": ["atlantis"]},
            "municipalities[0]",
        ),
    ],
)
async def test_invalid_subscriptions_name_the_field(api, body, field):
    async with await api.client("events:read") as http:
        r = await http.post("/api/v1/subscriptions", json=body)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_a_refused_event_is_dead_lettered_shown_and_retried_on_request(api, ce, receiver):
    async with await api.client("events:read") as http:
        sub = (
            await http.post(
                "/api/v1/subscriptions", json={"url": receiver.url, "types": ["incident.>"]}
            )
        ).json()
        receiver.secrets.append(sub["secret"])
        receiver.script.append(400)  # refused for good: no retry, a dead letter
        await publish(api, [ce(1), ce(2)])
        await eventually(lambda: len(receiver.received) == 1, what="the second event")

        async def dead():
            state = (await http.get(f"/api/v1/subscriptions/{sub['id']}")).json()["delivery"]
            return state if state["dead"] == 1 else None

        state = await eventually(dead, what="a dead letter")
        assert state["last_error"] == "rejected: HTTP 4xx"  # the class only
        assert [m["event"].id for m in receiver.received] == ["evt-2"]
        r = await http.post(f"/api/v1/subscriptions/{sub['id']}/retry")
        assert r.json() == {"revived": 1}
        await eventually(lambda: len(receiver.received) == 2, what="the revived event")
        assert receiver.received[1]["event"].id == "evt-1"
        assert receiver.received[1]["headers"]["webhook-id"] == "evt-1"


async def test_lag_counts_only_what_is_left_to_do_not_unmatched_events(api, ce, receiver):
    async with await api.client("events:read") as http:
        sub = (
            await http.post("/api/v1/subscriptions", json={"url": receiver.url, "types": ["wh.>"]})
        ).json()
        await publish(api, [ce(i, type="sensor.water.ok") for i in range(30)])

        async def caught_up():
            state = (await http.get(f"/api/v1/subscriptions/{sub['id']}")).json()["delivery"]
            return state["lag"] == 0

        await eventually(caught_up, what="lag 0 with nothing to deliver")
    assert receiver.received == []
