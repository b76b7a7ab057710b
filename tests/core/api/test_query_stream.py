"""GET /api/v1/events (filters, cursors, municipality limits) and the live SSE stream."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import httpx
import pytest


async def publish(api, events) -> None:
    async with await api.client("events:write") as http:
        r = await http.post("/api/v1/events", json=events)
        assert r.status_code == 202, r.text


async def test_query_filters_and_pages_without_gaps_or_repeats(api, ce):
    events = [
        ce(
            i,
            type="incident.created" if i % 3 else "sensor.water.high",
            municipality=("sochi", "krasnodar")[i % 2],
            correlationid=f"c{i % 4}",
        )
        for i in range(60)
    ]
    await publish(api, events)
    async with await api.client("events:read") as http:
        seen, cursor = [], None
        while True:
            params = {"type": "incident.>", "limit": 7}
            if cursor:
                params["cursor"] = cursor
            r = await http.get("/api/v1/events", params=params)
            assert r.status_code == 200
            page = r.json()
            seen += [item["event"]["id"] for item in page["events"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        expected = [e["id"] for e in events if e["type"] == "incident.created"]
        assert seen == expected
        r = await http.get(
            "/api/v1/events",
            params=[("municipality", "sochi"), ("type", "sensor.water.*"), ("limit", "100")],
        )
        got = [item["event"] for item in r.json()["events"]]
        assert got and all(
            e["municipality"] == "sochi" and e["type"] == "sensor.water.high" for e in got
        )
        r = await http.get("/api/v1/events", params={"correlationid": "c1", "limit": 100})
        assert {e["event"]["correlationid"] for e in r.json()["events"]} == {"c1"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "garbage!"}, "cursor"),
        ({"type": "bad..pattern"}, "type"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"limit": "0"}, None),
        ({"limit": "5000"}, None),
        ({"municipality": "atlantis"}, "municipality"),
    ],
)
async def test_bad_query_parameters_are_400_naming_the_field(api, params, field):
    async with await api.client("events:read") as http:
        r = await http.get("/api/v1/events", params=params)
    assert r.status_code == 400, r.text
    problem = r.json()
    assert problem["type"].endswith(("/invalid-parameter", "/bad-cursor"))
    if field:
        assert problem["errors"][0]["field"] == field


async def test_a_limited_token_reads_only_its_municipalities(api, ce):
    await publish(
        api,
        [ce(1, municipality="sochi"), ce(2, municipality="krasnodar"), ce(3, municipality=None)],
    )
    async with await api.client("events:read", municipalities=("sochi",)) as http:
        r = await http.get("/api/v1/events")
        assert [e["event"]["id"] for e in r.json()["events"]] == ["evt-1"]
        r = await http.get("/api/v1/events", params={"municipality": "krasnodar"})
        assert r.status_code == 403


class Sse:
    """A minimal SSE reader over an httpx stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> dict:
        message: dict = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if not line:
                    if "data" in message:
                        return message
                    message = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                message[name] = value.removeprefix(" ")
        raise AssertionError("stream ended")


@asynccontextmanager
async def stream(http: httpx.AsyncClient, **kw):
    async with http.stream("GET", "/api/v1/events/stream", **kw) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        yield Sse(r)


async def test_live_stream_delivers_new_events_and_resumes_with_last_event_id(api, ce):
    await publish(api, [ce("old")])  # before connecting: not part of a fresh stream
    async with await api.client("events:read") as http:
        async with stream(http, params={"type": "incident.>"}) as sse:
            await publish(api, [ce(1), ce(2, type="sensor.water.ok"), ce(3)])
            first = await sse.next()
            assert json.loads(first["data"])["id"] == "evt-1"
            second = await sse.next()
            assert json.loads(second["data"])["id"] == "evt-3"  # filtered by type
            last_id = first["id"]
        # Disconnected after evt-1 was *processed*: reconnect from it and miss nothing.
        await publish(api, [ce(4)])
        async with stream(http, headers={"Last-Event-ID": last_id}) as sse:
            ids = [json.loads((await sse.next())["data"])["id"] for _ in range(3)]
        assert ids == ["evt-2", "evt-3", "evt-4"]


async def test_stream_respects_a_limited_token_and_rejects_bad_resume_ids(api, ce):
    async with await api.client("events:read", municipalities=("krasnodar",)) as http:
        async with stream(http) as sse:
            await publish(api, [ce(1, municipality="sochi"), ce(2, municipality="krasnodar")])
            got = json.loads((await sse.next())["data"])
            assert got["id"] == "evt-2"
        r = await http.get("/api/v1/events/stream", headers={"Last-Event-ID": "nonsense!"})
        assert r.status_code == 400
        assert r.json()["errors"][0]["field"] == "Last-Event-ID"


async def test_stopping_the_server_ends_open_streams(api, ce):
    async with await api.client("events:read") as http:
        async with stream(http) as sse:
            stopping = asyncio.create_task(api.server.stop())
            with pytest.raises((AssertionError, httpx.RemoteProtocolError, httpx.ReadError)):
                await sse.next(timeout=10)
            await asyncio.wait_for(stopping, 10)


async def test_a_backlog_streams_a_page_per_write_and_in_order(api, ce, monkeypatch):
    """A console reconnecting behind a backlog gets it a page (500 events) per write. Written
    event by event, a client that left mid-page took hundreds of writes into a dead socket
    before the loop saw the reset, each one warned about ("socket.send() raised exception",
    245 times in the soak benchmark); and one write per event costs a syscall each."""
    from nabat.api.routes import events as events_module
    from nabat.store import encode_cursor

    follow = events_module._follow
    writes: list[int] = []

    async def counted(*args, **kw):
        async for message in follow(*args, **kw):
            writes.append(message.encode().count(b"\ndata: "))
            yield message

    monkeypatch.setattr(events_module, "_follow", counted)
    await publish(api, [ce(i) for i in range(1200)])
    async with await api.client("events:read") as http:
        params = {"cursor": encode_cursor(0), "type": "incident.>"}
        async with stream(http, params=params) as sse:
            got = [json.loads((await sse.next())["data"])["id"] for _ in range(1200)]
    assert got == [f"evt-{i}" for i in range(1200)]
    with_events = [n for n in writes if n]
    assert sum(with_events) == 1200
    assert len(with_events) <= 3, with_events  # 500 + 500 + 200, not 1,200 writes
