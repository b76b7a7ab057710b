"""One MQTT connection per broker, shared by every device on it.

A region has hundreds of sirens behind one broker; a connection each would be hundreds of
sessions for nothing. :class:`Broker` connects once (QoS 1 subscriptions to the devices'
``ack``, ``status`` and ``online`` topics by wildcard), reconnects with backoff when the broker
goes away, and routes each message to the device it belongs to.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from typing import Any, ClassVar

import aiomqtt

from .protocol import TOPICS

__all__ = ["Broker", "BrokerKey"]

BrokerKey = tuple[str, int, str | None, bool]
Handler = Callable[[str, str, bytes], None]
"""``handler(device_id, kind, payload)`` with kind ``ack``, ``status`` or ``online``."""


class Broker:
    _shared: ClassVar[dict[BrokerKey, Broker]] = {}

    def __init__(self, key: BrokerKey, password: str | None, log: Any) -> None:
        self.key = key
        self.password = password
        self.log = log
        self.users = 0
        self.prefixes: dict[str, int] = {}
        self.devices: dict[tuple[str, str], Handler] = {}
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()

    # -- sharing ----------------------------------------------------------------------------
    @classmethod
    def acquire(cls, key: BrokerKey, password: str | None, log: Any) -> Broker:
        broker = cls._shared.get(key)
        loop = asyncio.get_running_loop()
        stale = broker is not None and (
            broker._task is None or broker._task.done() or broker._task.get_loop() is not loop
        )
        if broker is None or stale:
            broker = cls._shared[key] = Broker(key, password, log)
            broker._task = loop.create_task(broker._run(), name=f"mqtt:{key[0]}:{key[1]}")
        broker.users += 1
        return broker

    async def release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        if Broker._shared.get(self.key) is self:
            del Broker._shared[self.key]
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- devices ----------------------------------------------------------------------------
    async def attach(self, prefix: str, device: str, handler: Handler) -> None:
        self.devices[(prefix, device)] = handler
        self.prefixes[prefix] = self.prefixes.get(prefix, 0) + 1
        if self.client is not None and self.connected.is_set():
            await self._subscribe(self.client, prefix)

    def detach(self, prefix: str, device: str) -> None:
        self.devices.pop((prefix, device), None)
        left = self.prefixes.get(prefix, 1) - 1
        if left <= 0:
            self.prefixes.pop(prefix, None)
        else:
            self.prefixes[prefix] = left

    async def publish(self, topic: str, payload: bytes) -> None:
        client = self.client
        if client is None or not self.connected.is_set():
            raise ConnectionError(
                f"not connected to the MQTT broker ({self.last_error or 'connecting'})"
            )
        await client.publish(topic, payload, qos=1)

    # -- the connection ---------------------------------------------------------------------
    async def _subscribe(self, client: aiomqtt.Client, prefix: str) -> None:
        for kind in TOPICS:
            topic = f"{prefix}/+/{kind}"
            if topic not in self._subscribed:
                await client.subscribe(topic, qos=1)
                self._subscribed.add(topic)

    async def _run(self) -> None:
        host, port, username, tls = self.key
        delay = 1.0
        while True:
            try:
                async with aiomqtt.Client(
                    hostname=host,
                    port=port,
                    username=username,
                    password=self.password,
                    identifier=f"nabat-{random.getrandbits(40):010x}",
                    tls_context=ssl.create_default_context() if tls else None,
                    keepalive=30,
                    timeout=10,
                ) as client:
                    # An alert to 500 sirens is 500 QoS 1 publishes at once: aiomqtt would log
                    # a warning for each one past its default of 10 pending.
                    client.pending_calls_threshold = 100_000
                    self.client = client
                    self._subscribed = set()
                    for prefix in list(self.prefixes):
                        await self._subscribe(client, prefix)
                    self.connected.set()
                    self.last_error = ""
                    delay = 1.0
                    self.log.info("mqtt.connected", broker=f"{host}:{port}")
                    async for message in client.messages:
                        self._route(str(message.topic), message.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.connected.is_set():
                    self.log.warning(
                        "mqtt.disconnected", broker=f"{host}:{port}", error=self.last_error
                    )
            finally:
                self.connected.clear()
                self.client = None
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 60.0)

    def _route(self, topic: str, payload: Any) -> None:
        prefix, _, rest = topic.rpartition("/")  # .../<device>/<kind>
        prefix, _, device = prefix.rpartition("/")
        handler = self.devices.get((prefix, device))
        if handler is None:
            return
        body = payload if isinstance(payload, bytes) else str(payload).encode()
        try:
            handler(device, rest, body)
        except Exception as exc:  # one device's bad message must not stop the others
            self.log.warning("mqtt.bad_message", topic=topic, error=f"{type(exc).__name__}: {exc}")
