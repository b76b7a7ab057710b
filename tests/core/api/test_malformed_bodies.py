"""Bodies no decoder should choke on: invalid UTF-8 inside JSON strings, JSON nested deeper
than the interpreter recurses, one huge event, huge headers. Each is a 400/413/431 problem
with one log line, never a 500 with a traceback — sign-in needs no token, so anyone can send
them. (The size limits are tested in ``test_limits.py``.)"""

from __future__ import annotations

import logging

import pytest
from nabat.store import EventQuery

BAD_BODIES = {
    "invalid UTF-8": b'{"login": "\xff\xfe", "password": "x", "id": "\xc3\x28"}',
    "deep arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep data": b'{"specversion":"1.0","id":"e","source":"/s","type":"x.y","data":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
}
ROUTES = ["/console/api/sign-in", "/api/v1/events", "/api/v1/incidents", "/api/v1/subscriptions"]


@pytest.mark.parametrize("route", ROUTES)
async def test_undecodable_bodies_are_400_problems_without_a_traceback(api, route, caplog):
    token = await api.token("events:write", "events:read", "alerts:activate")
    async with await api.client() as http:
        for name, body in BAD_BODIES.items():
            headers = {"content-type": "application/json"}
            if route.startswith("/api/"):
                headers["authorization"] = f"Bearer {token}"
            else:
                headers |= {"origin": api.url, "sec-fetch-site": "same-origin"}
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                r = await http.post(route, content=body, headers=headers)
            assert r.status_code == 400, (route, name, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == 400
            errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
            assert errors == [], (route, name, [rec.getMessage() for rec in errors])
            assert not any(rec.exc_info for rec in caplog.records), (route, name)
    page = await api.hub.journal.query(EventQuery(limit=100))
    assert [s.event for s in page.events if s.event.source == "/s"] == []
