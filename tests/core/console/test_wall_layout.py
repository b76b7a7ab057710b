"""The live wall's layout, kept per person over real HTTP: nobody reads or writes another's,
another district's cameras cannot be put on it (nor probed through it), writes need CSRF."""

from __future__ import annotations

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
[plugins.watch]
enabled = false
[plugins.eventlog]
enabled = false
[plugins.simulator]
[instances.krd-1]
kind = "simulator.camera"
municipality = "krasnodar"
[instances.krd-2]
kind = "simulator.camera"
municipality = "krasnodar"
[instances.sochi-1]
kind = "simulator.camera"
municipality = "sochi"
"""

DEFAULT = {"mode": "grid", "size": 4, "cameras": [], "follow": False}


@pytest.fixture
async def console(tmp_path):
    loaded = load_config_text(CONFIG, tmp_path)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users: UserStore = server.state.console.users
        await users.create("ivanova", PASSWORD, role="operator", municipalities=["krasnodar"])
        await users.create("smirnov", PASSWORD, role="operator", municipalities=["krasnodar"])
        await users.create("orlova", PASSWORD, role="operator", municipalities=["sochi"])
        yield server


class _Signed:
    """An HTTP client signed in as ``login``: ``async with`` gives (client, CSRF header)."""

    def __init__(self, server, login: str) -> None:
        self.http = httpx.AsyncClient(base_url=server.url)
        self.login = login

    async def __aenter__(self) -> tuple[httpx.AsyncClient, dict]:
        r = await self.http.post(
            "/console/api/sign-in", json={"login": self.login, "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        return self.http, {"X-CSRF-Token": r.json()["csrf"]}

    async def __aexit__(self, *exc) -> None:
        await self.http.aclose()


async def test_each_person_has_their_own_layout(console):
    async with (
        _Signed(console, "ivanova") as (ivanova, csrf),
        _Signed(console, "smirnov") as (smirnov, _),
    ):
        assert (await ivanova.get("/console/api/wall")).json() == DEFAULT
        layout = {"mode": "live", "size": 4, "cameras": ["krd-2", None, "krd-1"], "follow": True}
        r = await ivanova.put("/console/api/wall", json=layout, headers=csrf)
        assert r.status_code == 200, r.text
        assert (await ivanova.get("/console/api/wall")).json() == layout
        # Signed in again (another workstation): the same layout.
        async with _Signed(console, "ivanova") as (again, _):
            assert (await again.get("/console/api/wall")).json() == layout
        # A colleague of the same district keeps their own.
        assert (await smirnov.get("/console/api/wall")).json() == DEFAULT


async def test_another_districts_camera_cannot_be_put_nor_probed(console):
    async with _Signed(console, "orlova") as (orlova, csrf):
        answers = []
        for camera in ("krd-1", "no-such-camera"):
            body = {"mode": "live", "size": 1, "cameras": [camera]}
            r = await orlova.put("/console/api/wall", json=body, headers=csrf)
            assert r.status_code == 422
            answers.append(r.json()["errors"][0]["reason"].replace(camera, "X"))
        # The same words whether the camera exists in another district or not at all.
        assert answers[0] == answers[1]
        assert (await orlova.get("/console/api/wall")).json() == DEFAULT


async def test_bad_layouts_are_refused_naming_the_field(console):
    async with _Signed(console, "ivanova") as (ivanova, csrf):
        # 400: not a layout at all (the API's rule for a body that does not decode); 422: a
        # layout that cannot be kept.
        for body, field, status in (
            ({"size": 4, "cameras": ["krd-1"] * 5}, "cameras", 422),
            ({"size": 5}, "size", 400),
            ({"size": 4, "owner": "smirnov"}, "owner", 400),
            ({"size": 16, "cameras": ["x" * 129]}, "cameras", 400),
            ({"mode": "everything"}, "mode", 400),
        ):
            r = await ivanova.put("/console/api/wall", json=body, headers=csrf)
            assert r.status_code == status, (body, r.text)
            assert field in r.text, r.text
        assert (await ivanova.get("/console/api/wall")).json() == DEFAULT


async def test_a_write_without_the_sessions_csrf_token_is_refused(console):
    async with _Signed(console, "ivanova") as (ivanova, _):
        r = await ivanova.put("/console/api/wall", json={"mode": "live", "size": 1})
        assert r.status_code == 403
        assert (await ivanova.get("/console/api/wall")).json() == DEFAULT


async def test_a_camera_no_longer_visible_comes_back_as_an_empty_tile(console):
    # Kept when Orlova could see it (her districts changed since, or the camera moved).
    journal = console.state.hub.journal
    stored = b'{"mode":"live","size":4,"cameras":["krd-1","sochi-1","no-such"]}'
    await journal.put_record("console.wall", "user:orlova", stored)
    async with _Signed(console, "orlova") as (orlova, _):
        assert (await orlova.get("/console/api/wall")).json()["cameras"] == [None, "sochi-1", None]
