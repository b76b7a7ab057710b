"""Commands down, over real NATS servers (a regional JetStream server, a leaf node per site, a
proxy in each leaf link to cut it) between real hubs: an alert issued at the region sounds
at every site its area covers, each site's answer and devices come back; a site cut off is
said to be, its command waits and is delivered when the link returns — or expires by its
deadline and never sounds; forged commands are refused; a remote camera's snapshot and PTZ
go through the region's API to the camera's own site, and a cut site answers 503 at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from federation_config import district_config, region_config
from nabat.alerts import AlertPhase, SiteState
from nabat.alerts.compose import municipality_area, new_alert
from nabat.evidence.keys import SigningKey, load_or_create_key
from nabat.federation import follower as follower_module
from nabat.federation.commands import Command, command_subject, sign
from nabat.ids import uuid7
from nabat.interfaces.alerting import Status, WarningMessage
from nabat.interfaces.incident import Incident
from nabat.testing import audited, eventually, load_config_text, run_api, run_hub

pytestmark = pytest.mark.timeout(240)

SITES = {"site-a": "abinsky", "site-b": "anapa"}


def _district(site: str, url: str, key: str) -> str:
    return district_config(
        site,
        SITES[site],
        url,
        camera=True,
        data_dir=f"data-{site}",
        storage=f"sqlite:///journal-{site}.sqlite3",
        federation=f'report_interval = 5\ncommands_from = "region"\ncommand_keys = ["{key}"]',
        after="[alerts]\ntwo_person_rule = true\n",
    )


def _region(url: str) -> str:
    return region_config(
        url,
        {"site-a": ["abinsky"], "site-b": ["anapa"]},
        data_dir="data-region",
        storage="sqlite:///journal-region.sqlite3",
        federation="command_ttl = 60\ncall_timeout = 3",
        after="[alerts]\ntwo_person_rule = true\n",
    )


@pytest.fixture
def region_key(tmp_path) -> SigningKey:
    """The regional hub's signing key, made before the districts are configured with it."""
    return load_or_create_key(tmp_path / "data-region")


def _alert(*, expires: datetime | None = None):
    return new_alert(
        identifier=uuid7(),
        sender="nabat@region",
        status=Status.ACTUAL,
        event="Flood",
        area=municipality_area(list(SITES.values())),
        expires=expires,
    )


async def _site_state(region, alert_id: str, site: str, *states: SiteState):
    view = await region.alerts.view(await region.alerts.get(alert_id))
    for result in view.remote:
        if result.site == site and result.state in states:
            return result
    return None


async def _connected(*components) -> bool:
    await asyncio.sleep(0)
    return all(c.connection.connected for c in components)


async def test_an_alert_reaches_every_site_and_a_cut_one_waits_or_expires(
    tmp_path, nats_federation, region_key, monkeypatch
):
    monkeypatch.setattr(follower_module, "LINK_CHECK_S", 0.5)
    a, b = nats_federation.site("site-a"), nats_federation.site("site-b")
    key = region_key.public_key
    configs = [
        load_config_text(_district("site-a", a.url, key), tmp_path),
        load_config_text(_district("site-b", b.url, key), tmp_path),
        load_config_text(_region(nats_federation.region.url), tmp_path),
    ]
    async with (
        run_hub(configs[0]) as edge_a,
        run_hub(configs[1]) as edge_b,
        run_hub(configs[2]) as region,
    ):
        await eventually(
            lambda: _connected(edge_a.commands, edge_b.commands, region.dispatcher),
            timeout=20,
            what="every hub connected to its NATS",
        )
        # One alert over both districts' municipalities, under the region's two-person rule:
        # issued by one operator, confirmed by another, then it goes to both sites, where no
        # second local confirmation holds it up.
        first = _alert()
        record = await region.alerts.issue(first, WarningMessage(), by="token:1 (Ivanov)")
        assert record.phase is AlertPhase.PENDING_CONFIRMATION
        assert record.sites == {"site-a": ["abinsky"], "site-b": ["anapa"]}
        await region.alerts.confirm(first.identifier, by="token:2 (Petrova)")
        for site, edge in (("site-a", edge_a), ("site-b", edge_b)):
            done = await eventually(
                lambda site=site: _site_state(region, first.identifier, site, SiteState.COMPLETED),
                timeout=30,
                what=f"the alert completed at {site}",
            )
            assert [(d.device, d.outcome.value) for d in done.devices] == [
                (f"siren-{site}", "activated")
            ]
            at_site = await edge.alerts.get(first.identifier)
            assert at_site is not None and at_site.phase is AlertPhase.COMPLETED
            assert at_site.confirmed_by == "region: token:2 (Petrova)"
            assert at_site.created_by == "region: token:1 (Ivanov)"

        # Site B's link is cut. The region says so; an alert for both sounds at A at once and
        # waits for B: one with a near deadline expires there, one with a far deadline is
        # delivered when the link returns.
        b.link.cut()
        b.wait_unlinked()
        await eventually(
            lambda: _false(region.follower.reachable.get("site-b")),
            timeout=20,
            what="site-b seen as cut off",
        )
        soon = _alert(expires=datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4))
        later = _alert()
        for alert in (soon, later):
            await region.alerts.issue(alert, WarningMessage(), by="token:1 (Ivanov)")
            await region.alerts.confirm(alert.identifier, by="token:2 (Petrova)")
        for alert in (soon, later):
            await eventually(
                lambda alert=alert: _site_state(
                    region, alert.identifier, "site-a", SiteState.COMPLETED
                ),
                timeout=30,
                what="the alert completed at site-a during site-b's cut",
            )
            queued = await _site_state(region, alert.identifier, "site-b", SiteState.QUEUED)
            assert queued is not None and "cut off" in queued.detail
        expired = await eventually(
            lambda: _site_state(region, soon.identifier, "site-b", SiteState.EXPIRED),
            timeout=30,
            what="the near-deadline alert expired for site-b",
        )
        assert "not sounded" in expired.detail
        b.link.restore()
        b.wait_linked()
        await eventually(
            lambda: _site_state(region, later.identifier, "site-b", SiteState.COMPLETED),
            timeout=60,
            what="the far-deadline alert delivered to site-b after the cut",
        )
        # The expired one never sounded at B, not even late.
        assert await edge_b.alerts.get(soon.identifier) is None
        assert (await edge_b.alerts.get(later.identifier)).phase is AlertPhase.COMPLETED

        # Cancelled at the region: stopped at each site.
        await region.alerts.cancel(first.identifier, by="token:2 (Petrova)")
        for edge in (edge_a, edge_b):
            await eventually(
                lambda edge=edge: _phase(edge, first.identifier, AlertPhase.CANCELLED),
                timeout=30,
                what="the alert cancelled at the site",
            )

        # Forgeries, straight into the region's stream for site A (as anyone holding a NATS
        # login there could): unsigned, signed by another key, signed for another site.
        import nats

        stranger = SigningKey.generate()
        forged = [_command("site-a", key=None), _command("site-a", key=stranger)]
        wrong_site = _command("site-b", key=region_key)
        nc = await nats.connect(nats_federation.region.url)
        try:
            js = nc.jetstream()
            for body, headers in forged:
                await js.publish(command_subject("site-a", "alert.issue"), body, headers=headers)
            body, headers = wrong_site
            await js.publish(command_subject("site-a", "alert.issue"), body, headers=headers)
        finally:
            await nc.close()
        await eventually(
            lambda: _at_least(edge_a.commands.refused, 3), timeout=30, what="3 refusals"
        )
        for body, _ in [*forged, wrong_site]:
            alert_id = msgspec.json.decode(body, type=Command).alert.identifier
            assert await edge_a.alerts.get(alert_id) is None
            assert await edge_b.alerts.get(alert_id) is None


def _command(site: str, *, key: SigningKey | None) -> tuple[bytes, dict[str, str]]:
    now = datetime.now(UTC)
    command = Command(
        id=uuid7(),
        kind="alert.issue",
        site=site,
        sender="region",
        issued_at=now,
        deadline=now + timedelta(minutes=5),
        by="intruder",
        alert=_alert(),
        message=WarningMessage(),
    )
    body = msgspec.json.encode(command)
    headers = {"Nats-Msg-Id": command.id}
    if key is not None:
        headers |= sign(key, body, command.deadline)
    return body, headers


async def _false(value) -> bool:
    await asyncio.sleep(0)
    return value is False


async def _at_least(value: int, n: int) -> bool:
    await asyncio.sleep(0)
    return value >= n


async def _phase(hub, alert_id: str, phase: AlertPhase) -> bool:
    record = await hub.alerts.get(alert_id)
    return record is not None and record.phase is phase


async def test_a_remote_camera_through_the_region_api(
    tmp_path, nats_federation, region_key, monkeypatch
):
    monkeypatch.setattr(follower_module, "LINK_CHECK_S", 0.5)
    a = nats_federation.site("site-a")
    nats_federation.site("site-b")  # its leaf node runs, its hub does not
    key = region_key.public_key
    district = load_config_text(_district("site-a", a.url, key), tmp_path)
    regional = load_config_text(_region(nats_federation.region.url), tmp_path)
    async with run_hub(district) as edge, run_hub(regional) as region, run_api(region) as api:
        await eventually(
            lambda: _connected(edge.commands, region.dispatcher),
            timeout=20,
            what="both hubs connected",
        )
        tokens = api.state.tokens
        regional_token, _ = await tokens.create(
            "dispatcher", ["cameras:read", "cameras:control", "events:read"]
        )
        anapa_token, _ = await tokens.create(
            "anapa", ["cameras:read", "cameras:control", "events:read"], municipalities=["anapa"]
        )
        auth = {"Authorization": f"Bearer {regional_token}"}
        base = f"{api.url}/api/v1/sites"
        async with httpx.AsyncClient(timeout=10) as http:
            sites = (await http.get(base, headers=auth)).json()
            assert [s["site"] for s in sites["items"]] == ["site-a", "site-b"]
            listed = await http.get(f"{base}/site-a/cameras", headers=auth)
            assert listed.status_code == 200, listed.text
            assert [(c["id"], c["municipality"]) for c in listed.json()] == [
                ("cam-site-a", "abinsky")
            ]
            shot = await http.get(f"{base}/site-a/cameras/cam-site-a/snapshot.jpg", headers=auth)
            assert shot.status_code == 200, shot.text
            assert shot.headers["content-type"] == "image/jpeg"
            assert shot.content[:2] == b"\xff\xd8"  # a JPEG, from the district's camera
            assert "nabat-taken-at" in shot.headers
            moved = await http.post(
                f"{base}/site-a/cameras/cam-site-a/ptz",
                json={"action": "home"},
                headers=auth,
            )
            assert moved.status_code == 204, moved.text
            presets = await http.get(f"{base}/site-a/cameras/cam-site-a/presets", headers=auth)
            assert presets.status_code == 200 and isinstance(presets.json(), list)
            # A camera the site does not have; a token of another district's municipality.
            missing = await http.get(f"{base}/site-a/cameras/nope/snapshot.jpg", headers=auth)
            assert missing.status_code == 404 and "site-a" in missing.json()["detail"]
            other = await http.get(
                f"{base}/site-a/cameras/cam-site-a/snapshot.jpg",
                headers={"Authorization": f"Bearer {anapa_token}"},
            )
            assert other.status_code == 404
            # Site B's hub is not running: nobody answers its calls.
            silent = await http.get(f"{base}/site-b/cameras/cam-site-b/snapshot.jpg", headers=auth)
            assert silent.status_code in (503, 504)
            # The region's district reports cover the site's district, as the site says.
            reports = f"{api.url}/api/v1/reports"

            async def district_row(kind: str, stale: bool = False):
                rows = (await http.get(f"{reports}/{kind}", headers=auth)).json()["districts"]
                row = next((r for r in rows if r["municipality"] == "abinsky"), None)
                return (
                    row
                    if row and row["site"] == "site-a" and row.get("stale", False) == stale
                    else None
                )

            row = await eventually(lambda: district_row("cameras"), timeout=20, what="site-a's row")
            assert row["total"] == 1 and row["as_of"]
            sirens = await eventually(lambda: district_row("sirens"), timeout=20, what="sirens")
            assert sirens["devices"] == 1
            # The region's staffing report: the district's posts as its own roster says.
            from nabat.api.users import UserStore

            await UserStore(edge.journal).create(
                "duty-a", "a long passphrase", role="operator", municipalities=["abinsky"]
            )
            now = datetime.now(UTC)
            await edge.roster.add(
                municipality="abinsky",
                post="edds",
                login="duty-a",
                start=now - timedelta(hours=1),
                end=now + timedelta(hours=1),
                by="test",
            )

            async def staffed():
                rows = (await http.get(f"{reports}/staffing", headers=auth)).json()["districts"]
                row = next((r for r in rows if r["municipality"] == "abinsky"), None)
                posts = {p["post"]: p for p in (row or {}).get("posts", [])}
                on_duty = posts.get("edds", {}).get("on_duty")
                return row if row and row["site"] == "site-a" and on_duty == ["duty-a"] else None

            row = await eventually(staffed, timeout=20, what="site-a's staffing row")
            assert row["unstaffed_now"] == ["112"] and row["lagging"]
            # An incident at the district is in the region's list, with its site.
            await edge.incidents.report(
                "112-7",
                Incident(title="ДТП на трассе", type="traffic_accident"),
                source="/test/112",
                municipality="abinsky",
            )

            async def remote_incident():
                items = (await http.get(f"{api.url}/api/v1/incidents", headers=auth)).json()
                return next((i for i in items["items"] if i["id"] == "site-a:112-7"), None)

            found = await eventually(remote_incident, timeout=20, what="the remote incident")
            assert found["site"] == "site-a" and found["incident"]["title"] == "ДТП на трассе"
            one = await http.get(f"{api.url}/api/v1/incidents/site-a:112-7", headers=auth)
            assert one.status_code == 200 and one.json()["municipality"] == "abinsky"
            hidden = await http.get(
                f"{api.url}/api/v1/incidents/site-a:112-7",
                headers={"Authorization": f"Bearer {anapa_token}"},
            )
            assert hidden.status_code in (403, 404)  # another district's token
            # Site A cut off: told so, not a picture from before; its figures shown as old.
            a.link.cut()
            a.wait_unlinked()
            cut = await http.get(f"{base}/site-a/cameras/cam-site-a/snapshot.jpg", headers=auth)
            assert cut.status_code in (503, 504), cut.text
            assert "site-a" in cut.json()["detail"]
            stale = await eventually(
                lambda: district_row("cameras", stale=True), timeout=20, what="a stale row"
            )
            assert any("site-a" in why for why in stale["why"])
        # The district's audit log names the region's operator for each call.
        await eventually(
            lambda: audited(edge, "federation camera.ptz", "dispatcher"),
            timeout=10,
            what="the PTZ call in the district's audit log",
        )
