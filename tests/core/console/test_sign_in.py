"""Sign-in for people, over real HTTP: Argon2 passwords, a server-side session in an HttpOnly
SameSite cookie, CSRF on every write, lock-out, sign-out, roles and municipalities."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from nabat.api.users import UserStore
from nabat.testing import load_config_text, run_api, run_hub

PASSWORD = "correct horse battery"

CONFIG = """
[hub]
language = "en"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[api.console]
max_failures = 3
lockout = 600
[plugins.watch]
enabled = false
[plugins.eventlog]
enabled = false
[plugins.simulator]
[instances.krd-cam]
kind = "simulator.camera"
municipality = "krasnodar"
[instances.sochi-cam]
kind = "simulator.camera"
municipality = "sochi"
"""


@pytest.fixture
async def console(tmp_path):
    loaded = load_config_text(CONFIG, tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users: UserStore = server.state.console.users
        await users.create("ivanova", PASSWORD, role="operator", municipalities=["krasnodar"])
        await users.create("petrov", PASSWORD, role="supervisor")
        yield server


async def sign_in(http: httpx.AsyncClient, login: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/console/api/sign-in", json={"login": login, "password": password})


async def test_a_signed_in_operator_works_in_their_district_only(console):
    async with httpx.AsyncClient(base_url=console.url) as http:
        r = await sign_in(http, "ivanova")
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert "nabat_session=" in cookie
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
            assert attribute.lower() in cookie.lower(), cookie
        assert "secure" not in cookie.lower()  # plain HTTP here; behind TLS it is Secure
        csrf = r.json()["csrf"]
        assert r.json()["user"] == {
            "login": "ivanova",
            "name": "ivanova",
            "role": "operator",
            "municipalities": ["krasnodar"],
            "language": "ru",
        }
        # The API answers the cookie as it answers a token, limited to the operator's district.
        r = await http.get("/api/v1/cameras")
        assert [c["id"] for c in r.json()["items"]] == ["krd-cam"]
        assert (await http.get("/api/v1/cameras/sochi-cam")).status_code == 404
        assert (await http.get("/api/v1/audit")).status_code == 403  # not an admin

        # Writes need the session's CSRF token: a forged cross-site form has none.
        incident = {"title": "ДТП", "municipality": "krasnodar"}
        r = await http.post("/api/v1/incidents", json=incident)
        assert r.status_code == 403 and "CSRF" in r.text
        r = await http.post("/api/v1/incidents", json=incident, headers={"X-CSRF-Token": "guessed"})
        assert r.status_code == 403
        r = await http.post("/api/v1/incidents", json=incident, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201, r.text
        assert r.json()["incident"]["origin"] == "api:ivanova"

        r = await http.get("/console/api/session")
        assert r.json()["user"]["login"] == "ivanova" and r.json()["csrf"] == csrf

        # Sign-out ends the session on the server: the old cookie is worthless.
        stolen = http.cookies.get("nabat_session")
        r = await http.post("/console/api/sign-out", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204
    async with httpx.AsyncClient(base_url=console.url, cookies={"nabat_session": stolen}) as http:
        r = await http.get("/api/v1/cameras")
        assert r.status_code == 401 and "sign in" in r.text


async def test_a_supervisor_sees_the_whole_region(console):
    async with httpx.AsyncClient(base_url=console.url) as http:
        assert (await sign_in(http, "PETROV ")).status_code == 200  # login is case-insensitive
        r = await http.get("/api/v1/cameras")
        assert sorted(c["id"] for c in r.json()["items"]) == ["krd-cam", "sochi-cam"]


async def test_wrong_passwords_lock_the_account_and_say_nothing_about_logins(console):
    async with httpx.AsyncClient(base_url=console.url) as http:
        unknown = await sign_in(http, "nobody")
        wrong = await sign_in(http, "ivanova", "not the password")
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json()["detail"] == wrong.json()["detail"]  # no hint which exists
        await sign_in(http, "ivanova", "still not it")
        r = await sign_in(http, "ivanova", "third wrong one")
        assert r.status_code == 423 and 500 < int(r.headers["retry-after"]) <= 600
        # Locked: even the right password is refused until the lock ends or is lifted.
        r = await sign_in(http, "ivanova")
        assert r.status_code == 423
        await console.state.console.users.update("ivanova", unlock=True)
        assert (await sign_in(http, "ivanova")).status_code == 200
        # The audit log has every refusal.
        await console.state.audit.flush()
        entries, _ = await console.state.audit.entries(limit=100)
        refused = [e for e in entries if e.action == "console sign-in" and e.status != 200]
        assert len(refused) == 5


async def test_sign_in_from_another_site_and_malformed_requests_are_refused(console):
    async with httpx.AsyncClient(base_url=console.url) as http:
        r = await http.post(
            "/console/api/sign-in",
            json={"login": "ivanova", "password": PASSWORD},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403
        r = await http.post("/console/api/sign-in", json={"login": "ivanova"})
        assert r.status_code == 400
        assert (await http.get("/console/api/session")).status_code == 401


async def test_the_users_command_manages_accounts(tmp_path):
    (tmp_path / "plugins.toml").write_text('[hub]\ndata_dir = "data"\n')

    def nabat(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nabat", *args],
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "NABAT_LANG": "en"},
        )

    done = nabat(
        "users",
        "create",
        "--login",
        "sidorova",
        "--name",
        "Сидорова А.",
        "--role",
        "operator",
        "--municipality",
        "sochi",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert "operator, sochi" in done.stdout
    refused = nabat(
        "users",
        "create",
        "--login",
        "x1",
        "--role",
        "operator",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert refused.returncode == 1 and "municipality" in refused.stderr
    short = nabat(
        "users", "create", "--login", "x2", "--role", "admin", "--password-stdin", stdin="short\n"
    )
    assert short.returncode == 1 and "at least 10" in short.stderr
    listed = nabat("users", "list")
    assert "sidorova" in listed.stdout and "active" in listed.stdout
    assert "argon2" not in listed.stdout
    assert nabat("users", "disable", "sidorova").returncode == 0
    assert "disabled" in nabat("users", "list").stdout
    # The README's example run without a terminal says what to do, and creates nobody.
    blind = nabat("users", "create", "--login", "x3", "--role", "admin", stdin="")
    assert blind.returncode == 1 and "--password-stdin" in blind.stderr
    assert "x3" not in nabat("users", "list").stdout


async def test_the_favicon_is_served_at_the_root(console):
    async with httpx.AsyncClient(base_url=console.url) as http:
        icon = await http.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/x-icon"
        # An ICO holding one 32×32 image, as browsers ask for it before any sign-in.
        assert icon.content[:6] == b"\x00\x00\x01\x00\x01\x00" and icon.content[6:8] == b"  "
        page = await http.get("/console/")
        assert '<link rel="icon" href="/favicon.ico">' in page.text


async def test_unknown_logins_lock_like_real_ones_and_sign_in_is_rate_limited(console):
    async with httpx.AsyncClient(base_url=console.url) as http:
        answers = [(await sign_in(http, "nobody", "guess")).status_code for _ in range(4)]
        assert answers == [401, 401, 423, 423]  # max_failures = 3, as for ivanova
        r = await http.post(
            "/console/api/sign-in",
            content=b'{"login": "ivanova", "password": "x"}',
            headers={"Content-Type": "text/plain"},  # what a cross-site form could send
        )
        assert r.status_code == 415
        codes = [(await sign_in(http, f"x{i}", "guess")).status_code for i in range(12)]
        assert 429 in codes and codes[:5] == [401] * 5


async def test_a_session_ended_elsewhere_stays_ended_and_its_stream_closes(console):
    async with httpx.AsyncClient(base_url=console.url) as http:
        r = await sign_in(http, "ivanova")
        csrf = r.json()["csrf"]
        cookie = http.cookies.get("nabat_session")
        sessions = console.state.console.sessions
        assert await sessions.get(cookie) is not None
        async with http.stream("GET", "/api/v1/events/stream", timeout=30) as stream:
            assert stream.status_code == 200
            # Signed out (as another process would: the record goes; this one's cache too).
            await sessions.end_all("ivanova")
            sessions._cache.clear()
            sessions._touched.clear()  # the idle deadline is due to move on: it must not revive
            assert await sessions.get(cookie) is None
            body = b""
            async for chunk in stream.aiter_bytes():  # ends by itself within seconds
                body += chunk
        assert b"nabat event stream" in body
        r = await http.post("/console/api/sign-out", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 401


async def test_failed_sign_ins_count_across_hub_processes(tmp_path):
    """Two hub processes on one journal (two journals on one SQLite file) refusing the same
    account at once: every failure counts, and the lock-out comes after max_failures in all."""
    import asyncio

    from nabat.api.users import SignInError
    from nabat.store.sqlite import SqliteJournal

    journals = [SqliteJournal(tmp_path / "journal.sqlite3") for _ in range(2)]
    for journal in journals:
        await journal.open()
    try:
        stores = [UserStore(j, max_failures=13, lockout=600) for j in journals]
        await stores[0].create("ivanova", "the right passphrase", role="admin")

        async def wrong(store: UserStore) -> str:
            try:
                await store.sign_in("ivanova", "a wrong passphrase")
            except SignInError as exc:
                return exc.reason
            return "signed in"

        answers = await asyncio.gather(*(wrong(stores[n % 2]) for n in range(12)))
        assert answers == ["wrong login or password"] * 12
        assert (await stores[1].get("ivanova")).failures == 12  # none lost to the other
        assert await wrong(stores[1]) == "account locked after repeated failures"
        locked = await stores[0].get("ivanova")
        assert locked.locked_until is not None and locked.failures == 0
        with pytest.raises(SignInError, match="locked"):
            await stores[0].sign_in("ivanova", "the right passphrase")
    finally:
        for journal in journals:
            await journal.close()
