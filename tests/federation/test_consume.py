"""The durable-consumer loop every federation reader runs (``connection.consume``), over a real
``nats-server``: it stops when cancelled even when the library under it drops the
cancellation, as CPython 3.11's ``asyncio.wait_for`` does when a message arrives at the same
moment — a hub's shutdown waited for such a reader for ever."""

from __future__ import annotations

import asyncio

import pytest
from nabat.config.model import FederationSettings
from nabat.federation import connection as connection_module
from nabat.federation.connection import Connection, add_durable, consume
from nabat.testing import eventually

pytestmark = pytest.mark.timeout(60)

STREAM, DURABLE = "CONSUME-TEST", "reader"


async def _prepare(js) -> None:
    from nats.js.api import StreamConfig

    await js.add_stream(StreamConfig(name=STREAM, subjects=["consume.test"]))
    await add_durable(js, STREAM, DURABLE, max_ack_pending=16)


async def test_a_reader_stops_when_cancelled_even_if_the_library_drops_the_cancellation(
    nats_federation, monkeypatch
):
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.client import JetStreamContext

    monkeypatch.setattr(connection_module, "IDLE_WAIT_S", 0.2)
    real_fetch = JetStreamContext.PullSubscription.fetch
    dropped: list[bool] = []

    async def fetch_dropping_one_cancel(self, *args, **kwargs):
        try:
            return await real_fetch(self, *args, **kwargs)
        except asyncio.CancelledError:
            if dropped:
                raise
            dropped.append(True)  # as wait_for does when the message came at that moment
            raise NatsTimeout from None

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", fetch_dropping_one_cancel)

    conn = Connection(FederationSettings(servers=[nats_federation.region.url]), name="test")
    await conn.open(_prepare)
    taken: list[bytes] = []

    async def handle(messages) -> None:
        for message in messages:
            taken.append(message.data)
            await message.ack()

    reader = asyncio.create_task(
        consume(conn, stream=STREAM, durable=DURABLE, batch=8, prepare=_prepare, handle=handle)
    )
    try:
        await conn.js.publish("consume.test", b"one")
        await eventually(lambda: taken == [b"one"], timeout=10, what="the message read")
        reader.cancel()
        done, _ = await asyncio.wait({reader}, timeout=5)
        assert dropped, "the cancellation reached the fetch"
        assert reader in done, "the reader went on reading after it was cancelled"
        assert reader.cancelled()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await conn.close()
