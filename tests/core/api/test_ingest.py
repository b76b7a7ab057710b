"""POST /api/v1/events: durable before 202, idempotent, every bad field named, nothing partial."""

from __future__ import annotations

import asyncio
import json

import pytest
from nabat.store import EventQuery
from nabat.testing import record

BATCH = "application/cloudevents-batch+json"


async def stored(api) -> list:
    page = await api.hub.journal.query(EventQuery(types=("incident.>",), limit=1000))
    return page.events


async def test_one_event_is_durable_before_202_and_fanned_out_once(api, ce):
    seen = record(api.hub, "incident.>")
    async with await api.client("events:write") as http:
        r = await http.post(
            "/api/v1/events",
            content=json.dumps(ce(1)),
            headers={"content-type": "application/cloudevents+json"},
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["accepted"] == 1 and body["new"] == 1 and body["duplicates"] == 0
        assert body["events"][0]["id"] == "evt-1"
        # Durable when answered: in the journal right now, no waiting.
        events = await stored(api)
        assert [s.event.id for s in events] == ["evt-1"]
        assert events[0].event.municipality == "sochi"
        assert r.headers["x-request-id"]
        await seen.wait_for("incident.created")

        again = await http.post("/api/v1/events", json=ce(1))
        assert again.status_code == 202
        assert again.json()["duplicates"] == 1
        assert again.json()["events"][0]["cursor"] == body["events"][0]["cursor"]
    await api.hub.bus.drain()
    assert [e.id for e in seen.events] == ["evt-1"]  # the retry was not sent on again
    assert len(await stored(api)) == 1


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        (BATCH, lambda evs: json.dumps(evs)),
        ("application/json", lambda evs: json.dumps(evs)),
        ("application/x-ndjson", lambda evs: "\n".join(json.dumps(e) for e in evs) + "\n"),
        ("application/json; charset=utf-8", lambda evs: json.dumps(evs)),
    ],
)
async def test_batches_in_every_accepted_format(api, ce, content_type, encode):
    events = [ce(i) for i in range(50)]
    async with await api.client("events:write") as http:
        r = await http.post(
            "/api/v1/events", content=encode(events), headers={"content-type": content_type}
        )
    assert r.status_code == 202, r.text
    assert r.json()["new"] == 50
    assert [s.event.id for s in await stored(api)] == [f"evt-{i}" for i in range(50)]


async def test_a_bad_batch_names_every_bad_event_and_stores_nothing(api, ce):
    batch = [
        ce(0),
        {**ce(1), "time": "yesterday"},
        ce(2),
        {k: v for k, v in ce(3).items() if k != "source"},
        {**ce(4), "municipality": "atlantis"},
        {**ce(5), "type": "hub.custom.thing"},
        {**ce(6), "specversion": "0.3"},
        {**ce(7), "id": "x" * 257},
    ]
    async with await api.client("events:write") as http:
        r = await http.post("/api/v1/events", json=batch)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 422 and "nothing was stored" in problem["detail"]
    by_index = {e["index"]: e for e in problem["errors"]}
    assert sorted(by_index) == [1, 3, 4, 5, 6, 7]
    assert by_index[7]["field"] == "id" and "256" in by_index[7]["reason"]
    assert by_index[1]["field"] == "time"
    assert by_index[3]["field"] == "source"
    assert by_index[4]["field"] == "municipality" and "atlantis" in by_index[4]["reason"]
    assert by_index[5]["field"] == "type" and "reserved" in by_index[5]["reason"]
    assert by_index[6]["field"] == "specversion"
    assert await stored(api) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "kind"),
    [
        (b"{not json", "application/json", 400, "malformed-json"),
        (b"[1, 2", "application/cloudevents-batch+json", 400, "malformed-json"),
        (b"", "application/json", 400, "empty-body"),
        (b"   ", "application/json", 400, "empty-body"),
        (b"{}", BATCH, 400, "not-array"),
        (b"[]", BATCH, 400, "empty-body"),
        (b"[{}]", "application/cloudevents+json", 400, "batch-content-type"),
        (b"<xml/>", "application/xml", 415, "unsupported-media-type"),
        (b"{}", None, 415, "unsupported-media-type"),
        (b"{}", "application/json; charset=latin-1", 415, "charset"),
        (b"{}", "application/json", 422, "invalid-events"),
        (b'"just a string"', "application/json", 422, "invalid-events"),
    ],
)
async def test_malformed_requests_get_a_problem_document(api, body, content_type, status, kind):
    headers = {"content-type": content_type} if content_type else {}
    async with await api.client("events:write") as http:
        r = await http.post("/api/v1/events", content=body, headers=headers)
    assert r.status_code == status, r.text
    problem = r.json()
    assert problem["type"].endswith("/" + kind)
    assert problem["status"] == status and problem["detail"]
    if kind == "unsupported-media-type":
        assert "application/cloudevents+json" in r.headers["accept-post"]


async def test_idempotency_key_replays_the_first_answer(api, ce):
    async with await api.client("events:write") as http:
        headers = {"Idempotency-Key": "order-42"}
        first = await http.post("/api/v1/events", json=[ce(1), ce(2)], headers=headers)
        again = await http.post("/api/v1/events", json=[ce(1), ce(2)], headers=headers)
        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        other = await http.post("/api/v1/events", json=[ce(3)], headers=headers)
        assert other.status_code == 422
        assert other.json()["type"].endswith("/idempotency-key-reused")
        # webhook-id works as the key too (Standard Webhooks senders retry with the same id).
        wh = {"webhook-id": "msg_1"}
        a = await http.post("/api/v1/events", json=ce(7), headers=wh)
        b = await http.post("/api/v1/events", json=ce(7), headers=wh)
        assert b.headers.get("idempotent-replayed") == "true" and a.json() == b.json()
    assert len(await stored(api)) == 3


async def test_a_rejected_request_frees_its_idempotency_key(api, ce):
    async with await api.client("events:write") as http:
        headers = {"Idempotency-Key": "fix-me"}
        bad = await http.post("/api/v1/events", json=[{**ce(1), "time": "soon"}], headers=headers)
        assert bad.status_code == 422
        good = await http.post("/api/v1/events", json=[ce(1)], headers=headers)
        assert good.status_code == 202 and good.json()["new"] == 1


async def test_concurrent_retries_with_one_key_store_once(api, ce):
    async with await api.client("events:write") as http:
        headers = {"Idempotency-Key": "burst"}
        batch = [ce(i) for i in range(200)]
        answers = await asyncio.gather(
            *(http.post("/api/v1/events", json=batch, headers=headers) for _ in range(5))
        )
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {202, 409}, codes
    assert 202 in codes
    for r in answers:
        if r.status_code == 409:
            assert r.headers["retry-after"] == "1"
    assert len(await stored(api)) == 200


async def test_municipality_limited_token_writes_only_its_own(api, ce):
    async with await api.client("events:write", municipalities=("sochi",)) as http:
        ok = await http.post("/api/v1/events", json=ce(1, municipality="sochi"))
        assert ok.status_code == 202
        r = await http.post(
            "/api/v1/events", json=[ce(2, municipality="krasnodar"), ce(3, municipality=None)]
        )
    assert r.status_code == 403
    assert [e["index"] for e in r.json()["errors"]] == [0, 1]
    assert [s.event.id for s in await stored(api)] == ["evt-1"]
