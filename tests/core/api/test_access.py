"""Access control: no route open by accident, 401 vs 403, rate limits, the audit log."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nabat.api.tokens import SCOPES

PUBLIC = {("GET", "/health")}
"""The only routes that may answer without a token. Anything else is a finding."""


async def _openapi(api) -> dict:
    async with await api.client("events:read") as http:
        r = await http.get("/schema/openapi.json")
    assert r.status_code == 200
    assert r.json()["openapi"].startswith("3.1")
    return r.json()


def _operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                concrete = re.sub(r"\{[^}]+\}", "wh_doesnotexist", path)
                yield method.upper(), path, concrete, op


async def test_every_route_in_the_openapi_document_is_closed_to_strangers(api):
    doc = await _openapi(api)
    operations = list(_operations(doc))
    assert len(operations) >= 14  # the walk found the API, not an empty document
    async with httpx.AsyncClient(base_url=api.url) as http:
        for method, path, concrete, op in operations:
            if (method, path) in PUBLIC:
                r = await http.request(method, concrete)
                assert r.status_code == 200, (method, path)
                assert not op.get("security")
                continue
            # Declared, so integrators know a token is needed …
            assert op.get("security"), f"{method} {path} declares no security requirement"
            assert "401" in op["responses"], f"{method} {path} does not document 401"
            # … and enforced: without a token, with a malformed header, with an unknown token.
            for headers in (
                {},
                {"Authorization": "Basic dXNlcjpwYXNz"},
                {"Authorization": "Bearer nabat_not-a-real-token"},
            ):
                r = await http.request(method, concrete, headers=headers, json={})
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.headers["content-type"].startswith("application/problem+json")
    # The schema itself is closed too unless [api] public_docs is set.
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/schema/openapi.json")).status_code == 401


async def test_a_token_without_the_scope_gets_403_everywhere_it_lacks_it(api):
    doc = await _openapi(api)
    for scope in SCOPES:
        if scope == "admin":
            continue
        others = [s for s in SCOPES if s not in (scope, "admin")]
        async with await api.client(*others) as http:
            for method, path, concrete, op in _operations(doc):
                required = [s for req in op.get("security") or [] for s in req.get("bearer", [])]
                if scope not in required:
                    continue
                r = await http.request(method, concrete, json={})
                assert r.status_code == 403, (scope, method, path, r.text)
                assert scope in r.json()["detail"]


async def test_admin_passes_every_scope_check(api):
    doc = await _openapi(api)
    async with await api.client("admin") as http:
        for method, path, concrete, _ in _operations(doc):
            if path.endswith("/stream"):
                continue  # never ends; covered in test_query_stream
            r = await http.request(method, concrete, json={})
            assert r.status_code not in (401, 403), (method, path, r.text)


async def test_revoked_and_expired_tokens_are_refused(api):
    tokens = api.server.state.tokens
    secret, info = await tokens.create("short-lived", ["events:read"])
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers) as http:
        assert (await http.get("/api/v1/whoami")).json()["name"] == "short-lived"
        await tokens.revoke(info.id)
        r = await http.get("/api/v1/whoami")
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    past = datetime.now(UTC) - timedelta(seconds=1)
    secret, _ = await tokens.create("expired", ["events:read"], expires=past)
    async with httpx.AsyncClient(base_url=api.url) as http:
        r = await http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401


async def test_tokens_are_stored_only_as_hashes(api):
    secret, _ = await api.server.state.tokens.create("hashed", ["events:read"])
    records = await api.hub.journal.records("api_tokens", limit=100)
    assert records
    for record in records:
        assert secret.encode() not in record.body
        assert secret not in record.key
        assert secret.removeprefix("nabat_") not in record.key


async def test_rate_limit_answers_429_with_retry_after(api):
    secret = await api.token("events:read", rate=0.5, burst=3)
    async with httpx.AsyncClient(base_url=api.url) as http:
        headers = {"Authorization": f"Bearer {secret}"}
        codes = [(await http.get("/api/v1/whoami", headers=headers)).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200]
        assert codes[3:] == [429, 429]
        r = await http.get("/api/v1/whoami", headers=headers)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["type"].endswith("/rate-limited")
    # Another token is not slowed down by this one.
    async with await api.client("events:read") as other:
        assert (await other.get("/api/v1/whoami")).status_code == 200


async def test_every_state_changing_call_is_audited(api, ce):
    writer = await api.client("events:write", "events:read")
    async with writer as http:
        me = (await http.get("/api/v1/whoami")).json()
        ok = await http.post(
            "/api/v1/events", json=[ce(1), ce(2)], headers={"Idempotency-Key": "k-1"}
        )
        assert ok.status_code == 202
        bad = await http.post("/api/v1/events", json={"nope": 1})
        assert bad.status_code == 422
        sub = await http.post(
            "/api/v1/subscriptions",
            json={"url": "http://127.0.0.1:9/hook", "types": ["incident.>"]},
        )
        assert sub.status_code == 201, sub.text
        gone = await http.delete(f"/api/v1/subscriptions/{sub.json()['id']}")
        assert gone.status_code == 204
        denied = await http.get("/api/v1/audit")
        assert denied.status_code == 403
    async with await api.client("admin") as admin:
        page = (await admin.get("/api/v1/audit", params={"limit": 50})).json()
    mine = [e for e in page["entries"] if e["actor"] == f"token:{me['id']}"]
    actions = [(e["action"], e["status"]) for e in reversed(mine)]
    assert actions == [
        ("POST /api/v1/events", 202),
        ("POST /api/v1/events", 422),
        ("POST /api/v1/subscriptions", 201),
        (f"DELETE /api/v1/subscriptions/{sub.json()['id']}", 204),
    ]
    first = mine[-1]
    assert first["actor_name"] == me["name"]
    assert first["detail"]["idempotency_key"] == "k-1"
    assert first["detail"]["events"] == 2
    assert first["request_id"] and first["remote"] == "127.0.0.1"
    # Reads are not audited (they change nothing), and nothing secret is in the log.
    assert not any(e["action"].startswith("GET ") for e in page["entries"])


@pytest.fixture
def api_config() -> str:
    return ""


@pytest.fixture
def api_base(api_base):
    """Its subscriptions point at a closed loopback port, which must be listed to be allowed."""
    return api_base + 'webhook_destinations = ["127.0.0.1/32"]\n'


async def test_a_write_refused_for_a_missing_scope_is_audited_with_its_actor(api, ce):
    async with await api.client("events:read") as reader:
        me = (await reader.get("/api/v1/whoami")).json()
        r = await reader.post("/api/v1/events", json=ce(1))
        assert r.status_code == 403
    async with await api.client("admin") as admin:
        entries = (await admin.get("/api/v1/audit")).json()["entries"]
    mine = [e for e in entries if e["actor"] == f"token:{me['id']}"]
    assert [(e["action"], e["status"]) for e in mine] == [("POST /api/v1/events", 403)]
