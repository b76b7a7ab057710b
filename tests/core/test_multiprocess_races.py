"""Two real `nabat run` processes on one PostgreSQL, racing on the same record: the same
incident closed through both, the same alert confirmed through both, the same account's
password guessed through both, the same token's rate limit spent through both. Each is what a
per-process lock or counter got wrong with several hubs behind a balancer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nabat.store import EventQuery
from nabat.testing import free_port, run_cli

PG_DSN = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "correct horse battery staple"

CONFIG = """
[hub]
name = "race-{name}"
log_format = "json"

[storage]
url = "{dsn}"
schema = "{schema}"
lease_ttl = 1.5
poll_interval = 0.2

[api]
listen = "127.0.0.1:{port}"

[api.console]
max_failures = 3

[alerts]
two_person_rule = true
confirm_within = 60
retry_delay = 0.05

[plugins.simulator]
settings = {{ incident_every = 86400, exercise_every = 86400 }}

[instances.siren-1]
kind = "simulator.siren"
municipality = "krasnodar"
settings = {{ response_delay = 0.05, mains_failure_rate = 0.0 }}

[instances.siren-2]
kind = "simulator.siren"
municipality = "krasnodar"
settings = {{ response_delay = 0.05, mains_failure_rate = 0.0 }}
"""


def _sql(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


class Hubs:
    def __init__(self, root: Path, schema: str) -> None:
        self.root = root
        self.schema = schema
        self.ports: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tokens: dict[str, str] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        if stdin is None:
            done = run_cli(*args, cwd=self.root / "a")
        else:
            done = subprocess.run(
                [sys.executable, "-m", "nabat", *args],
                cwd=self.root / "a",
                env={**os.environ, "NABAT_LANG": "en"},
                input=stdin,
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def token(self, name: str, *extra: str) -> str:
        out = self.cli(
            "tokens",
            "create",
            "--name",
            name,
            "--scopes",
            "events:read,events:write,alerts:activate,ops:read",
            "--json",
            *extra,
        )
        return json.loads(out)["secret"]

    def events(self, *types: str) -> list[dict]:
        """Every stored event of these types, read straight from the shared journal."""
        from nabat.store.postgres import PostgresJournal

        async def read() -> list[dict]:
            journal = PostgresJournal(PG_DSN, schema=self.schema)
            await journal.open(migrate=False)
            try:
                page = await journal.query(EventQuery(types=types, limit=1000))
                return [
                    {"type": s.event.type, "subject": s.event.subject, "data": s.event.data}
                    for s in page.events
                ]
            finally:
                await journal.close()

        return asyncio.run(read())


@pytest.fixture(scope="module")
def hubs(tmp_path_factory) -> Iterator[Hubs]:
    pytest.importorskip("asyncpg")
    try:
        _sql("SELECT 1")
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL unreachable: {exc!r}")
        pytest.skip(f"PostgreSQL unreachable: {exc!r}")
    root = tmp_path_factory.mktemp("race")
    found = Hubs(root, f"race_{uuid.uuid4().hex[:10]}")
    for name in ("a", "b"):
        (root / name).mkdir()
        found.ports[name] = free_port()
        (root / name / "plugins.toml").write_text(
            CONFIG.format(name=name, dsn=PG_DSN, schema=found.schema, port=found.ports[name])
        )
    found.cli("db", "upgrade")  # one schema for both, before either starts
    found.tokens["issuer"] = found.token("issuer")
    found.tokens["second"] = found.token("second")
    found.tokens["metered"] = found.token("metered", "--rate", "0.01", "--burst", "4")
    found.cli(
        "users", "create", "--login", "petrov", "--role", "supervisor", "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )  # fmt: skip
    env = {**os.environ, "NABAT_LANG": "en"}
    try:
        for name in ("a", "b"):
            log = (root / name / "hub.log").open("wb")
            found.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "nabat", "run"],
                cwd=root / name,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        for name in ("a", "b"):
            _wait_ready(found, name)
        yield found
    finally:
        for proc in found.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in found.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        _sql(f'DROP SCHEMA IF EXISTS "{found.schema}" CASCADE')


def _wait_ready(hubs: Hubs, name: str, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hubs.procs[name].poll() is not None:
            log = (hubs.root / name / "hub.log").read_text(errors="replace")
            pytest.fail(f"hub {name} exited: {log[-3000:]}")
        try:
            auth = {"Authorization": f"Bearer {hubs.tokens['issuer']}"}
            if httpx.get(hubs.url(name) + "/ready", headers=auth, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"hub {name} not ready within {timeout} s")


def _client(hubs: Hubs, name: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {hubs.tokens[token]}"} if token else {}
    return httpx.AsyncClient(base_url=hubs.url(name), headers=headers, timeout=30)


async def test_one_incident_closed_through_both_hubs_is_closed_once(hubs):
    async with _client(hubs, "a", "issuer") as a, _client(hubs, "b", "issuer") as b:
        opened = await a.post(
            "/api/v1/incidents",
            json={"title": "ДТП на трассе М-4", "municipality": "krasnodar"},
        )
        assert opened.status_code == 201, opened.text
        incident = opened.json()["id"]
        closes = await asyncio.gather(
            *(c.post(f"/api/v1/incidents/{incident}/close") for c in (a, b, a, b, a, b))
        )
        assert [r.status_code for r in closes] == [200] * 6, [r.text for r in closes]
        record = (await b.get(f"/api/v1/incidents/{incident}")).json()
    assert record["incident"]["status"] == "closed"
    assert record["version"] == 2
    changes = [
        e["type"]
        for e in await asyncio.to_thread(hubs.events, "incident.created", "incident.closed")
        if e["subject"] == incident
    ]
    assert sorted(changes) == ["incident.closed", "incident.created"]


async def test_one_alert_confirmed_through_both_hubs_sounds_once(hubs):
    alert = {
        "status": "Actual",
        "event": "Наводнение",
        "area": {"municipalities": ["krasnodar"]},
        "message": {"signal_seconds": 60, "text": "Внимание! Угроза наводнения."},
    }
    async with (
        _client(hubs, "a", "issuer") as issuer,
        _client(hubs, "a", "second") as second_a,
        _client(hubs, "b", "second") as second_b,
    ):
        issued = await issuer.post("/api/v1/alerts", json=alert)
        assert issued.status_code == 202, issued.text
        assert issued.json()["phase"] == "pending_confirmation"
        alert_id = issued.json()["id"]
        confirms = await asyncio.gather(
            *(
                c.post(f"/api/v1/alerts/{alert_id}/confirm")
                for c in (second_a, second_b, second_a, second_b)
            )
        )
        codes = sorted(r.status_code for r in confirms)
        assert codes == [200, 409, 409, 409], [r.text for r in confirms]

        async def settled() -> dict:
            for _ in range(200):
                body = (await second_b.get(f"/api/v1/alerts/{alert_id}")).json()
                if body["phase"] != "activating":
                    return body
                await asyncio.sleep(0.05)
            raise AssertionError("the alert never finished activating")

        final = await settled()
    assert final["phase"] == "completed"
    assert sorted(d["outcome"] for d in final["devices"]) == ["activated", "activated"]
    events = [
        e
        for e in await asyncio.to_thread(hubs.events, "alert.>")
        if e["subject"] == alert_id or (e["data"] or {}).get("alert") == alert_id
    ]
    kinds = sorted(e["type"] for e in events)
    # One start and one activation per siren: a second confirmation never started it again.
    assert kinds.count("alert.issued") == 1, kinds
    assert kinds.count("alert.device.activated") == 2, kinds
    assert kinds.count("alert.completed") == 1, kinds


async def test_one_account_guessed_through_both_hubs_locks_after_max_failures_in_all(hubs):
    async def attempt(client: httpx.AsyncClient, login: str, password: str) -> int:
        r = await client.post("/console/api/sign-in", json={"login": login, "password": password})
        return r.status_code

    async with _client(hubs, "a") as a, _client(hubs, "b") as b:
        # Two wrong guesses, one through each hub: not locked yet (max_failures = 3). Fewer
        # than 10 attempts in all: the sign-in limit per address holds for both hubs too.
        first = await asyncio.gather(*(attempt(c, "petrov", "wrong") for c in (a, b)))
        assert first == [401, 401]
        # The third, through either, locks it for both; then even the right password waits.
        assert await attempt(b, "petrov", "wrong") == 423
        assert await attempt(a, "petrov", PASSWORD) == 423
        assert await attempt(b, "petrov", PASSWORD) == 423
        # A login that is no account is counted across both alike (no telling which exist).
        unknown = await asyncio.gather(*(attempt(c, "nobody", "x") for c in (a, b)))
        assert unknown == [401, 401]
        assert await attempt(a, "nobody", "x") == 423
        assert await attempt(b, "nobody", "x") == 423


async def test_a_session_ended_through_one_hub_acts_no_more_through_the_other(hubs):
    hubs.cli(
        "users", "create", "--login", "sidorova", "--role", "supervisor", "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )  # fmt: skip
    async with _client(hubs, "a") as a, _client(hubs, "b") as b:
        signed = await a.post(
            "/console/api/sign-in", json={"login": "sidorova", "password": PASSWORD}
        )
        assert signed.status_code == 200, signed.text
        csrf = {"X-CSRF-Token": signed.json()["csrf"]}
        b.cookies.update(a.cookies)  # a balancer sends the next request elsewhere
        incident = {"title": "Пожар", "municipality": "krasnodar"}
        assert (await a.post("/api/v1/incidents", json=incident, headers=csrf)).status_code == 201
        assert (await b.get("/api/v1/incidents")).status_code == 200  # b caches the session
        assert (await b.post("/console/api/sign-out", headers=csrf)).status_code == 204
        # Through a, which read the session a moment ago: refused at once for any change.
        after = await a.post("/api/v1/incidents", json=incident, headers=csrf)
        assert after.status_code == 401, after.text


async def test_one_tokens_rate_limit_holds_across_both_hubs(hubs):
    async with _client(hubs, "a", "metered") as a, _client(hubs, "b", "metered") as b:
        answers = await asyncio.gather(
            *(c.get("/api/v1/incidents") for c in (a, b) * 5)  # 10 requests, burst 4
        )
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 4, codes
    assert codes.count(429) == 6, codes
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
