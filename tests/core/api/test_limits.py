"""Oversized bodies and batches, slow clients: refused cleanly, nothing stored."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from nabat.store import EventQuery


async def stored(api) -> list:
    page = await api.hub.journal.query(EventQuery(types=("incident.>",), limit=1000))
    return page.events


@pytest.fixture
def api_config() -> str:
    return (
        "max_body = 4096\nmax_batch = 20\nbody_timeout = 1.0\nmax_event = 2048\nmax_header = 4096\n"
    )


async def test_oversized_bodies_and_batches_are_refused(api, ce):
    async with await api.client("events:write") as http:
        big = await http.post("/api/v1/events", json={**ce(1), "data": "x" * 5000})
        assert big.status_code == 413 and "4096" in big.json()["detail"]
        many = await http.post("/api/v1/events", json=[ce(i) for i in range(21)])
        assert many.status_code == 413 and many.json()["type"].endswith("/batch-too-large")
    # A body streamed without Content-Length is cut off at the limit, too.
    host, port = api.server.host, api.server.port
    reader, writer = await asyncio.open_connection(host, port)
    token = await api.token("events:write")
    writer.write(
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(5):
        writer.write(b"400\r\n" + b" " * 1024 + b"\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413")
    writer.close()
    assert await stored(api) == []


async def test_a_slow_body_gets_408_and_nothing_is_stored(api, ce):
    token = await api.token("events:write")
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    body = json.dumps(ce(1)).encode()
    writer.write(
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body[:10]
    )
    await writer.drain()  # and never the rest: body_timeout is 1 s here
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in head.lower()
    writer.close()
    assert await stored(api) == []


async def test_a_client_that_never_finishes_its_headers_is_disconnected(api, monkeypatch):
    import nabat.api.server as server

    monkeypatch.setattr(server, "_HEADER_TIMEOUT", 0.5)
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()
    # An idle connection that sends nothing at all is closed the same way.
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    # A normal client on a keep-alive connection is unaffected.
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    for _ in range(2):
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))
        await reader.readexactly(length)
        await asyncio.sleep(0.7)  # longer than the header deadline, between requests
    writer.close()


async def test_one_event_over_max_event_is_413_and_nothing_is_stored(api, ce):
    async with await api.client("events:write") as http:
        batch = [ce(1), {**ce(2), "data": "x" * 3000}, ce(3)]
        r = await http.post("/api/v1/events", json=batch)
        assert r.status_code == 413, r.text
        problem = r.json()
        assert problem["type"].endswith("/event-too-large") and "2048" in problem["detail"]
        assert [e["index"] for e in problem["errors"]] == [1]
        single = await http.post("/api/v1/events", json={**ce(4), "data": "y" * 3000})
        assert single.status_code == 413
        ok = await http.post("/api/v1/events", json=[ce(5), ce(6)])
        assert ok.status_code == 202
    page = await api.hub.journal.query(EventQuery(types=("incident.>",), limit=100))
    assert [s.event.id for s in page.events] == ["evt-5", "evt-6"]


async def test_oversized_headers_are_431(api):
    async with await api.client() as http:
        one = await http.get("/health", headers={"x-big": "a" * 5000})
        assert one.status_code == 431, one.text
        assert one.json()["type"].endswith("/header-too-large") and "x-big" in one.json()["detail"]
        many = await http.get("/health", headers={f"x-h{i}": "b" * 3000 for i in range(7)})
        assert many.status_code == 431 and "together" in many.json()["detail"]
        assert (await http.get("/health", headers={"x-fine": "c" * 3000})).status_code == 200
