"""A district hub and the regional hub federated over real NATS servers (a JetStream server for
the region, a leaf node for the site, a proxy in the leaf link to cut it): the site's events
reach the regional journal with their site, in order, once each — across a cut WAN link and
across the site's own NATS going down."""

from __future__ import annotations

import asyncio

from federation_config import hub_config
from nabat.events import Event, encode_event
from nabat.federation import follower as follower_module
from nabat.federation import site_of
from nabat.federation.follower import namespaced
from nabat.store import EventQuery
from nabat.testing import eventually, load_config_text, record, run_hub

SOURCE = "/test/federation"
AT_REGION = namespaced("site-a", SOURCE)
"""The region keeps a site's sources apart from its own and other sites'."""


def _config(name: str, site: str, url: str, extra: str = "") -> str:
    return hub_config(
        name=name,
        site=site,
        servers=url,
        data_dir=f"data-{name}",
        storage=f"sqlite:///journal-{name}.sqlite3",
        federation=extra,
    )


async def _followed(hub, site: str) -> list[Event]:
    """The followed site's test events in the region's journal, in journal order."""
    found: list[Event] = []
    after = None
    while True:
        page = await hub.journal.query(
            EventQuery(types=("camera.health.>",), after=after, limit=1000)
        )
        found += [s.event for s in page.events if site_of(s.event) == site]
        if page.next_cursor is None:
            return [e for e in found if e.source == AT_REGION]
        after = page.events[-1].seq


async def _emit(hub, first: int, count: int) -> None:
    for i in range(first, first + count):
        await hub.publish(
            Event(
                type="camera.health.offline",
                source=SOURCE,
                id=f"ev-{i:05d}",
                subject=f"cam-{i % 7}",
                data={"n": i},
            )
        )


def _numbers(events: list[Event]) -> list[int]:
    return [e.data["n"] for e in events]


async def test_site_events_reach_the_region_in_order_across_cuts(
    tmp_path, nats_federation, monkeypatch
):
    monkeypatch.setattr(follower_module, "LINK_CHECK_S", 0.5)  # the cut is said sooner
    site = nats_federation.site("site-a")
    district = load_config_text(_config("district", "site-a", site.url), tmp_path)
    region = load_config_text(
        _config(
            "region",
            "region",
            nats_federation.region.url,
            'up = []\nfollow = ["site-a"]',
        ),
        tmp_path,
    )
    async with run_hub(district) as edge, run_hub(region) as regional:
        await _emit(edge, 0, 50)
        got = await eventually(
            lambda: _arrived(regional, 50), timeout=30, what="50 events at the region"
        )
        assert _numbers(got) == list(range(50))  # in order, once each
        assert all(e.extensions["site"] == "site-a" for e in got)  # each keeps its site

        # The WAN link is cut: the district goes on alone, its events wait at its leaf.
        site.link.cut()
        site.wait_unlinked()
        seen = record(regional, "federation.site.*")
        await _emit(edge, 50, 100)
        assert await edge.journal.get(SOURCE, "ev-00149") is not None  # the district works
        await eventually(
            lambda: _published(edge, 150), timeout=20, what="stored in the site's stream"
        )
        # The region says the site is cut off, not that it has nothing to report.
        cut = await eventually(
            lambda: [e for e in seen.events if e.type == "federation.site.unreachable"],
            timeout=20,
            what="federation.site.unreachable",
        )
        assert cut[0].subject == "site-a" and cut[0].severity == "severe"
        site.link.restore()
        site.wait_linked()
        got = await eventually(
            lambda: _arrived(regional, 150), timeout=60, what="the backlog at the region"
        )
        await eventually(
            lambda: [e for e in seen.events if e.type == "federation.site.reachable"],
            timeout=20,
            what="federation.site.reachable",
        )
        assert _numbers(got) == list(range(150))

        # The site's own NATS dies (SIGKILL): the hub keeps appending, the cursor waits.
        site.server.kill()
        await _emit(edge, 150, 30)
        site.server.restart()
        site.wait_linked()
        got = await eventually(
            lambda: _arrived(regional, 180), timeout=60, what="events after the leaf's restart"
        )
        assert _numbers(got) == list(range(180))
        # Nothing twice in the regional journal, whatever was redelivered on the way.
        assert len({e.id for e in got}) == 180


async def _arrived(hub, count: int) -> list[Event] | None:
    found = await _followed(hub, "site-a")
    if len(found) > count:
        raise AssertionError(f"{len(found)} events at the region, {count} were sent")
    return found if len(found) == count else None


async def _published(hub, count: int) -> bool:
    await asyncio.sleep(0)
    return hub.uplink is not None and hub.uplink.published >= count


async def test_a_site_cannot_speak_for_another(tmp_path, nats_federation):
    """A district (or whoever holds its NATS) publishing an event stamped as another site's:
    the region does not store it, and the district's real events go on arriving."""
    import nats

    site = nats_federation.site("site-a")
    district = load_config_text(_config("district", "site-a", site.url), tmp_path)
    region = load_config_text(
        _config("region", "region", nats_federation.region.url, 'up = []\nfollow = ["site-a"]'),
        tmp_path,
    )
    async with run_hub(district) as edge, run_hub(region) as regional:
        await _emit(edge, 0, 1)
        await eventually(lambda: _arrived(regional, 1), timeout=30, what="the first event")
        forgeries = [
            # another site's stamp
            ("camera.health.offline", "/test/federation", {"site": "site-b"}, None),
            # the region's own job claims (a claimed slot would stop the region's jobs)
            ("hub.job.claimed", "/nabat/jobs/readiness", None, None),
            # the region's own report of a site
            ("federation.site.reachable", "/nabat/federation", None, None),
            # a subject that is not the event's type
            ("camera.health.offline", "/test/federation", None, "nabat.site-a.camera.health.ok"),
        ]
        nc = await nats.connect(site.url)
        try:  # straight into the district's stream, as the district's hub (or its NATS) would
            js = nc.jetstream()
            for i, (type_, source, extensions, subject) in enumerate(forgeries):
                forged = Event(
                    type=type_, source=source, id=f"forged-{i}", extensions=extensions, data={}
                )
                await js.publish(
                    subject or f"nabat.site-a.{type_}",
                    encode_event(forged),
                    headers={"Nats-Msg-Id": f"forged-{i}"},
                )
        finally:
            await nc.close()
        await _emit(edge, 1, 1)
        await eventually(lambda: _arrived(regional, 2), timeout=30, what="the next real event")
        for i, (_, source, _, _) in enumerate(forgeries):
            for stored_as in (source, namespaced("site-a", source)):
                assert await regional.journal.get(stored_as, f"forged-{i}") is None
        assert regional.follower.rejected == len(forgeries)
        # An event NATS can never carry (over its max_payload, 1 MB) is a dead letter at the
        # district, not a stall of its ordered up-path: the next one still goes.
        await edge.publish(
            Event(type="camera.health.offline", source=SOURCE, id="huge", data={"x": "y" * 2**21})
        )
        await _emit(edge, 2, 1)
        await eventually(lambda: _arrived(regional, 3), timeout=30, what="the event after it")
        assert await regional.journal.get(AT_REGION, "huge") is None


async def test_two_regional_processes_follow_each_site_once(
    tmp_path, nats_federation, pg_schema, monkeypatch
):
    """Two regional hubs on one PostgreSQL journal: one of them follows the site (its lease),
    so the site's events go in once each and in order; when it stops, the other takes over
    and nothing is lost."""
    import contextlib
    import os

    dsn = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    monkeypatch.setattr(follower_module, "LINK_CHECK_S", 0.5)
    site = nats_federation.site("site-a")
    district = load_config_text(_config("district", "site-a", site.url), tmp_path)
    regional = []
    for name in ("region-1", "region-2"):
        text = _config(
            name, "region", nats_federation.region.url, 'up = []\nfollow = ["site-a"]'
        ).replace(
            f'url = "sqlite:///journal-{name}.sqlite3"',
            f'url = "{dsn}"\nschema = "{pg_schema}"\nlease_ttl = 1.5',
        )
        regional.append(load_config_text(text, tmp_path, name=f"{name}.toml"))
    stacks = [contextlib.AsyncExitStack(), contextlib.AsyncExitStack()]
    try:
        async with run_hub(district) as edge:
            hubs = [
                await s.enter_async_context(run_hub(c))
                for s, c in zip(stacks, regional, strict=True)
            ]
            await _emit(edge, 0, 60)
            got = await eventually(
                lambda: _arrived(hubs[0], 60), timeout=30, what="60 events at the region"
            )
            assert _numbers(got) == list(range(60))  # in order, once each
            # One process follows the site; the other waits for its lease.
            holding = [i for i, hub in enumerate(hubs) if "site-a" in hub.follower.leases]
            assert len(holding) == 1
            leader = holding[0]
            other = hubs[1 - leader]
            await stacks[leader].aclose()  # the follower stops and gives its lease up
            await _emit(edge, 60, 40)
            got = await eventually(
                lambda: _arrived(other, 100), timeout=60, what="the next events via the other"
            )
            assert _numbers(got) == list(range(100))
            assert "site-a" in other.follower.leases
    finally:
        for stack in stacks:
            await stack.aclose()
