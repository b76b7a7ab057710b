"""The federation fixture with real servers: the up-path (a site's stream sourced by the
region's ``EVENTS``) and the down-path (the region's command stream mirrored by a site), with
the WAN link cut by the proxy while both servers run (docs/federation.md)."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ExternalStream,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)

# After a cut the first sourced message arrives 1.5-6 s after the link returns (worst case the
# reconnect interval plus 10 s, docs/federation.md): the deadline leaves room for that.
ARRIVAL_TIMEOUT = 25.0


async def _quiet(_error: Exception) -> None:
    pass


async def connect(url: str) -> nats.NATS:
    return await nats.connect(
        url, error_cb=_quiet, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )


async def site_events_stream(js, site: str) -> str:
    name = "EVENTS_" + site.replace("-", "").upper()
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=[f"nabat.{site}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        )
    )
    return name


async def region_events_stream(js, site: str, stream: str) -> None:
    # No subjects of its own; a short duplicate window (pitfalls 1 and 2).
    source = StreamSource(
        name=stream,
        external=ExternalStream(api=f"$JS.{site}.API", deliver=f"deliver.region.{site}"),
    )
    await js.add_stream(
        StreamConfig(
            name="EVENTS", sources=[source], storage=StorageType.FILE, duplicate_window=1.0
        )
    )


async def durable(js, stream: str, name: str):
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=name, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL
        ),
    )
    return await js.pull_subscribe_bind(durable=name, stream=stream)


async def collect(psub, want: int, timeout: float = ARRIVAL_TIMEOUT) -> list[dict]:
    """Fetch and ack until ``want`` messages came or the deadline passed."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            msgs = await psub.fetch(want - len(got), timeout=0.5)
        except TimeoutError:  # nats.errors.TimeoutError is one
            continue
        for msg in msgs:
            got.append(json.loads(msg.data))
            await msg.ack()
    return got


async def nothing_more(psub, wait: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        msgs = await psub.fetch(1, timeout=wait)
        pytest.fail(f"unexpected extra message(s): {[m.data for m in msgs]}")


class Publisher:
    """Publishes ``{"i": n}`` events of one site with ``Nats-Msg-Id`` (no ``stream=``
    argument: its ``Nats-Expected-Stream`` header would block the source, pitfall 2)."""

    def __init__(self, js, site: str) -> None:
        self.js, self.site, self.sent = js, site, 0
        self._milestones: dict[int, asyncio.Event] = {}

    def when_sent(self, count: int) -> asyncio.Event:
        """An event set once ``count`` events in all have been published."""
        return self._milestones.setdefault(count, asyncio.Event())

    async def publish(self, count: int) -> None:
        for _ in range(count):
            await self.resend(self.sent)
            self.sent += 1
            if (milestone := self._milestones.get(self.sent)) is not None:
                milestone.set()

    async def resend(self, i: int):
        body = json.dumps({"site": self.site, "i": i}).encode()
        headers = {"Nats-Msg-Id": f"{self.site}-{i}"}
        return await self.js.publish(
            f"nabat.{self.site}.camera.health", body, headers=headers, timeout=2
        )


async def up_path(nats_federation):
    site = nats_federation.site("site-a")
    site_nc = await connect(site.url)
    region_nc = await connect(nats_federation.region.url)
    site_js, region_js = site_nc.jetstream(), region_nc.jetstream()
    stream = await site_events_stream(site_js, "site-a")
    await region_events_stream(region_js, "site-a", stream)
    psub = await durable(region_js, "EVENTS", "hub")
    return site, site_nc, region_nc, Publisher(site_js, "site-a"), psub, region_js


async def test_site_events_reach_the_region_in_order(nats_federation):
    site, site_nc, region_nc, pub, psub, _ = await up_path(nats_federation)
    try:
        assert site.linked()
        await pub.publish(50)
        got = await collect(psub, 50)
        assert [e["i"] for e in got] == list(range(50))
        await nothing_more(psub)
    finally:
        await site_nc.close()
        await region_nc.close()


async def test_a_cut_link_delivers_everything_after_restore(nats_federation):
    site, site_nc, region_nc, pub, psub, region_js = await up_path(nats_federation)
    try:
        await pub.publish(20)
        reached = pub.when_sent(30)
        publishing = asyncio.create_task(pub.publish(40))
        await reached.wait()
        # Cut from a thread: the publisher task goes on meanwhile.
        await asyncio.to_thread(site.link.cut)
        await publishing  # the site keeps accepting publishes
        assert pub.sent == 60
        for i in (5, 25, 55):  # the edge hub republishes: deduplicated at the site
            assert (await pub.resend(i)).duplicate
        await pub.publish(10)
        assert not site.linked()
        stored = (await region_js.stream_info("EVENTS")).state.messages
        assert stored < pub.sent
        site.link.restore()
        site.wait_linked()
        got = await collect(psub, pub.sent)
        assert [e["i"] for e in got] == list(range(pub.sent))
        await nothing_more(psub)
        assert (await region_js.stream_info("EVENTS")).state.messages == pub.sent
    finally:
        await site_nc.close()
        await region_nc.close()


async def test_region_commands_reach_the_site_after_a_cut(nats_federation):
    site = nats_federation.site("site-a")
    site_nc = await connect(site.url)
    region_nc = await connect(nats_federation.region.url)
    site_js, region_js = site_nc.jetstream(), region_nc.jetstream()
    try:
        await region_js.add_stream(
            StreamConfig(
                name="CMD_SITEA",
                subjects=["nabat.cmd.site-a.>"],
                storage=StorageType.FILE,
                max_age=3600.0,
            )
        )
        mirror = StreamSource(
            name="CMD_SITEA",
            external=ExternalStream(api="$JS.region.API", deliver="deliver.site-a.cmd"),
        )
        await site_js.add_stream(
            StreamConfig(name="CMD_SITEA", mirror=mirror, storage=StorageType.FILE)
        )
        psub = await durable(site_js, "CMD_SITEA", "edge")

        async def command(i: int) -> None:
            body = json.dumps({"i": i}).encode()
            await region_js.publish("nabat.cmd.site-a.siren", body, timeout=2)

        await command(0)
        assert [c["i"] for c in await collect(psub, 1)] == [0]

        site.link.cut()
        for i in range(1, 6):  # queued in the region while the site is cut off
            await command(i)
        assert not site.linked()
        site.link.restore()
        site.wait_linked()
        got = await collect(psub, 5)
        assert [c["i"] for c in got] == [1, 2, 3, 4, 5]
        await nothing_more(psub)
    finally:
        await site_nc.close()
        await region_nc.close()


def test_servers_restart_on_the_same_ports(nats_federation):
    """Sync use: a site's leaf restarted (and killed) links again through the same proxy."""
    site = nats_federation.site("site-b")
    port, monitor = site.server.port, site.server.monitor_port
    site.server.restart()
    assert (site.server.port, site.server.monitor_port) == (port, monitor)
    site.wait_linked()
    site.server.kill()
    site.wait_unlinked()
    site.server.start()
    site.wait_linked()
    assert site.link.accepted >= 3
