"""Shifts and staffing in a running hub over its real HTTP API: the roster (admins only, no
double shifts), signing in outside one's shift (warned and audited, not locked out), the
staffing report (posts unstaffed now, hours uncovered — API and ``nabat report staffing``),
and a shift handover made by the outgoing operator and accepted by the incoming one, or made by
the hub itself at a shift change, once however often it looks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from nabat.interfaces.incident import Incident
from nabat.testing import eventually, load_config_text, run_api, run_cli, run_hub

pytestmark = pytest.mark.timeout(120)

CONFIG = """
[hub]
language = "en"
data_dir = "data"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[duty]
posts = [
  { id = "edds", name = "ЕДДС duty officer", municipalities = ["krasnodar", "sochi"] },
  { id = "112", name = "112 operator", municipalities = ["krasnodar"] },
]
[[duty.norms]]
name = "any"
acknowledge = 600
"""

PASSWORD = "pw-long-enough-1"


async def _signed_in(server, login: str) -> tuple[httpx.AsyncClient, dict]:
    client = httpx.AsyncClient(base_url=server.url)
    answer = await client.post("/console/api/sign-in", json={"login": login, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.json()["csrf"]
    return client, answer.json()


def _iso(moment: datetime) -> str:
    return moment.isoformat()


async def test_roster_staffing_sign_in_and_a_handover(tmp_path):
    loaded = load_config_text(CONFIG, tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    async with run_hub(loaded) as hub, run_api(hub) as server:
        users = server.state.console.users
        for login, municipality in (
            ("ivanova", "krasnodar"),
            ("petrova", "krasnodar"),
            ("orlova", "sochi"),
        ):
            await users.create(
                login, PASSWORD, role="operator", name=login, municipalities=[municipality]
            )
        admin, _ = await server.state.tokens.create("admin", ["admin"])
        reader, _ = await server.state.tokens.create(
            "krd", ["events:read"], municipalities=["krasnodar"]
        )
        as_admin = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(base_url=server.url, headers=as_admin) as http:

            async def shift(login, municipality, post, start, end):
                return await http.post(
                    "/api/v1/roster",
                    json={
                        "municipality": municipality,
                        "post": post,
                        "login": login,
                        "start": _iso(start),
                        "end": _iso(end),
                    },
                )

            # Ivanova on the ЕДДС post of Krasnodar now; Petrova after her, in 30 minutes.
            first = await shift(
                "ivanova",
                "krasnodar",
                "edds",
                now - timedelta(hours=1),
                now + timedelta(minutes=30),
            )
            assert first.status_code == 201, first.text
            later = await shift(
                "petrova",
                "krasnodar",
                "edds",
                now + timedelta(minutes=30),
                now + timedelta(hours=8),
            )
            assert later.status_code == 201
            # Refused: a second shift at once, an unknown person or post, a stranger's token.
            twice = await shift("ivanova", "krasnodar", "112", now, now + timedelta(hours=1))
            assert twice.status_code == 409 and "on shift already" in twice.json()["detail"]
            nobody = await shift("nobody", "krasnodar", "edds", now, now + timedelta(hours=1))
            assert nobody.status_code == 422 and "no account" in nobody.json()["detail"]
            no_post = await shift("orlova", "sochi", "112", now, now + timedelta(hours=1))
            assert no_post.status_code == 422 and "has no post '112'" in no_post.json()["detail"]
            elsewhere = await shift(
                "orlova", "krasnodar", "edds", now + timedelta(days=2), now + timedelta(days=3)
            )
            assert elsewhere.status_code == 422 and "not of krasnodar" in elsewhere.json()["detail"]
            backwards = await shift("orlova", "sochi", "edds", now, now - timedelta(hours=1))
            assert backwards.status_code == 422
            forbidden = await http.post(
                "/api/v1/roster",
                headers={"Authorization": f"Bearer {reader}"},
                json={
                    "municipality": "krasnodar",
                    "post": "edds",
                    "login": "orlova",
                    "start": _iso(now),
                    "end": _iso(now + timedelta(hours=1)),
                },
            )
            assert forbidden.status_code == 403

            # The staffing report over the last two hours: the ЕДДС post staffed now but open
            # for the first hour; Krasnodar's 112 and Sochi's ЕДДС post nobody's.
            report = await http.get(
                "/api/v1/reports/staffing",
                params={"since": _iso(now - timedelta(hours=2)), "until": _iso(now)},
            )
            assert report.status_code == 200, report.text
            rows = {r["municipality"]: r for r in report.json()["districts"]}
            assert set(rows) == {"krasnodar", "sochi"}
            krd = {p["post"]: p for p in rows["krasnodar"]["posts"]}
            assert krd["edds"]["on_duty"] == ["ivanova"] and krd["edds"]["staffed_now"]
            assert krd["edds"]["uncovered_hours"] == pytest.approx(1.0, abs=0.01)
            assert krd["112"]["uncovered_hours"] == pytest.approx(2.0, abs=0.01)
            assert rows["krasnodar"]["unstaffed_now"] == ["112"]
            assert rows["krasnodar"]["lagging"] and rows["sochi"]["lagging"]
            assert any("112 operator: nobody on duty now" in w for w in rows["krasnodar"]["why"])
            assert report.json()["lagging"] == 2
            only = await http.get("/api/v1/reports/staffing", params={"municipality": ["sochi"]})
            assert [r["municipality"] for r in only.json()["districts"]] == ["sochi"]
            nowhere = await http.get(
                "/api/v1/reports/staffing", params={"municipality": ["atlantis"]}
            )
            assert nowhere.status_code == 422
            # A district's token sees its own district only.
            own = await http.get(
                "/api/v1/reports/staffing", headers={"Authorization": f"Bearer {reader}"}
            )
            assert [r["municipality"] for r in own.json()["districts"]] == ["krasnodar"]

        # Signing in: on the roster, or warned (not locked out) and audited.
        ivanova, answer = await _signed_in(server, "ivanova")
        assert answer["off_shift"] is False and answer["shift"]["post"] == "edds"
        orlova, answer = await _signed_in(server, "orlova")
        assert answer["off_shift"] is True and answer["shift"] is None
        assert (await orlova.get("/console/api/session")).json()["off_shift"] is True
        await server.state.audit.flush()
        entries = [msgspec.json.decode(r.body) async for r in hub.journal.all_records("audit")]
        signed = {e["actor"]: e.get("detail") for e in entries if e["action"] == "console sign-in"}
        assert signed["user:orlova"] == {"off_shift": True}
        assert signed["user:ivanova"] is None

        # A handover: the open incident and its clock, the notes; the incoming accepts it.
        await hub.incidents.report(
            "112-5",
            Incident(title="Пожар, ул. Мира, 3", type="fire"),
            source="/test/112",
            municipality="krasnodar",
        )
        await eventually(lambda: hub.duty.get("112-5"), what="the incident's clocks")
        made = await ivanova.post(
            "/api/v1/handovers",
            json={
                "municipality": "krasnodar",
                "post": "edds",
                "notes": "Камера на Мира не работает",
            },
        )
        assert made.status_code == 201, made.text
        handover = made.json()
        assert handover["outgoing"] == ["ivanova"] and handover["incoming"] == ["petrova"]
        assert [i["id"] for i in handover["open_incidents"]] == ["112-5"]
        assert handover["open_incidents"][0]["running"] == ["acknowledge", "dispatch", "report"]
        assert handover["notes"] == "Камера на Мира не работает"
        assert (await orlova.get(f"/api/v1/handovers/{handover['id']}")).status_code == 404
        assert (await orlova.post(f"/api/v1/handovers/{handover['id']}/accept")).status_code == 404
        own = await ivanova.post(f"/api/v1/handovers/{handover['id']}/accept")
        assert own.status_code == 409 and "incoming" in own.json()["detail"]
        no_post = await ivanova.post(
            "/api/v1/handovers", json={"municipality": "krasnodar", "post": "fire"}
        )
        assert no_post.status_code == 422 and "no post 'fire'" in no_post.json()["detail"]
        petrova, _ = await _signed_in(server, "petrova")
        accepted = await petrova.post(f"/api/v1/handovers/{handover['id']}/accept")
        assert accepted.status_code == 200
        assert accepted.json()["accepted_by"].startswith("user:petrova")
        again = await ivanova.post(f"/api/v1/handovers/{handover['id']}/accept")
        assert again.status_code == 409
        for client in (ivanova, orlova, petrova):
            await client.aclose()

        # At the shift change the hub makes one itself, once however often it looks.
        change = now + timedelta(minutes=30)
        made = [await hub.handovers.sweep(now=change + timedelta(seconds=s)) for s in (1, 20, 50)]
        assert made == [1, 0, 0]
        automatic = [h for h in await hub.handovers.list() if h.created_by == "hub:roster"]
        assert len(automatic) == 1 and automatic[0].incoming == ["petrova"]
        assert automatic[0].outgoing == ["ivanova"]

    # The same report from the command line, in the hub's language.
    done = run_cli("report", "staffing", "--since", "2h", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {r["municipality"]: r for r in json.loads(done.stdout)["districts"]}
    assert rows["krasnodar"]["unstaffed_now"] == ["112"]
    table = run_cli("report", "staffing", cwd=tmp_path)
    assert table.returncode == 0 and "ЕДДС duty officer" in table.stdout
    assert "2 of 2 municipalities lagging" in table.stdout
