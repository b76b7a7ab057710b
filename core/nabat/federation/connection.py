"""The hub's connection to NATS: retried until it works, credentials from secret references."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..config.model import FederationSettings
from ..logs import get_logger
from ..masking import mask_url

__all__ = ["RECONNECT_S", "Connection", "add_durable", "consume", "ensure_stream"]

log = get_logger("nabat.federation")

RECONNECT_S = 2.0
"""Between two connection attempts (and nats-py's own reconnects once connected)."""
ACK_WAIT_S = 30.0
"""A message fetched and not acknowledged (its reader died) is delivered again after this."""
IDLE_WAIT_S = 1.0
"""A consumer with nothing to read asks again this often."""
DRAIN_WAIT_S = 0.02
"""After a message, how long a batch pull may wait for more before the consumer goes idle."""


async def ensure_stream(js: Any, config: Any, **fields: Any) -> None:
    """Create the JetStream stream ``config`` names, or bring an existing one to ``config``
    (limits changed in ``[federation]`` apply at the next start)."""
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("federation.stream_created", stream=config.name, **fields)
    else:
        await js.update_stream(config)


async def add_durable(js: Any, stream: str, durable: str, *, max_ack_pending: int) -> None:
    """A durable pull consumer of ``stream`` from its first message, each acknowledged
    explicitly (unacknowledged ones come again after :data:`ACK_WAIT_S`)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import APIError

    try:
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                max_ack_pending=max_ack_pending,
                ack_wait=ACK_WAIT_S,
            ),
        )
    except APIError as exc:
        # One made by an earlier version with other settings: it still works (and holds
        # the position); deleting it would deliver the whole stream again.
        info = await js.consumer_info(stream, durable)  # raises if it is not there at all
        log.warning(
            "federation.consumer_kept",
            stream=stream,
            durable=durable,
            max_ack_pending=info.config.max_ack_pending,
            error=str(exc),
        )


async def consume(
    connection: Connection,
    *,
    stream: str,
    durable: str,
    batch: int,
    prepare: Callable[[Any], Awaitable[None]],
    handle: Callable[[list[Any]], Awaitable[None]],
    **fields: Any,
) -> None:
    """Read ``stream`` through its durable consumer in batches, until cancelled. Every
    failure is logged and retried; ``prepare(js)`` makes the stream and consumer again each
    time (a NATS store wiped, an operator's mistake). ``handle`` acknowledges what it took.

    Idle, it waits for *one* message (a pull of one returns the moment it arrives); then it
    takes whatever else is there in batches, until a pull finds nothing within
    :data:`DRAIN_WAIT_S`. A pull of a whole batch would be held by the server until the
    batch fills or the pull expires: at 1,000 events/s that kept events up to 256 ms."""
    from nats.errors import TimeoutError as NatsTimeout

    subscription = None
    idle = True
    me = asyncio.current_task()
    while True:
        # CPython 3.11's wait_for, deep in nats-py's fetch, drops a cancellation that lands
        # as a message arrives: the fetch returns and this loop would read on for ever (a
        # hub's shutdown waited for it). A cancellation asked for stands, whatever came back;
        # what was fetched and not acknowledged is delivered again.
        if me is not None and me.cancelling():
            raise asyncio.CancelledError
        try:
            if subscription is None:
                await prepare(connection.js)
                subscription = await connection.js.pull_subscribe_bind(
                    durable=durable, stream=stream
                )
            try:
                messages = await subscription.fetch(
                    1 if idle else batch, timeout=IDLE_WAIT_S if idle else DRAIN_WAIT_S
                )
            except (NatsTimeout, TimeoutError):
                idle = True  # nothing new
                continue
            idle = False
            await handle(messages)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # NATS away (nats-py reconnects), the consumer gone
            log.warning(
                "federation.consume_failed", stream=stream, error=str(exc) or repr(exc), **fields
            )
            with contextlib.suppress(Exception):
                if subscription is not None:
                    await subscription.unsubscribe()
            subscription = None
            await asyncio.sleep(RECONNECT_S)


class Connection:
    """One NATS connection of a hub (``name`` says what for). :meth:`open` returns once
    connected and ``prepare(js)`` (creating streams and consumers) has succeeded, trying
    again every :data:`RECONNECT_S` until then: a NATS that is down when the hub starts only
    delays the federation, never the hub."""

    def __init__(self, settings: FederationSettings, *, name: str) -> None:
        self.settings = settings
        self.name = name
        self.nc: Any = None
        self.js: Any = None
        self.state = "connecting"
        """``connecting``, ``connected`` or ``disconnected``."""
        self.failures = 0
        """Connection attempts that failed and errors on the connection (each logged)."""
        self.last_error = ""

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def _options(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "servers": s.servers,
            "name": self.name,
            "connect_timeout": s.connect_timeout,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": RECONNECT_S,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "error_cb": self._error,
        }
        if s.user is not None:
            options["user"] = s.user
            if s.password is not None:
                options["password"] = s.password.reveal()
        if s.token is not None:
            options["token"] = s.token.reveal()
        if s.credentials is not None:
            options["user_credentials"] = s.credentials
        if s.tls_ca or s.tls_cert or any(u.startswith("tls://") for u in s.servers):
            options["tls"] = self._tls()
        return options

    def _tls(self) -> Any:
        import ssl

        s = self.settings
        context = ssl.create_default_context(cafile=s.tls_ca)
        if s.tls_cert is not None:
            context.load_cert_chain(s.tls_cert, s.tls_key)
        return context

    async def open(self, prepare: Callable[[Any], Awaitable[None]]) -> None:
        import nats

        servers = [mask_url(u) for u in self.settings.servers]
        while True:
            nc = None
            try:
                nc = await nats.connect(**self._options())
                js = nc.jetstream(timeout=self.settings.publish_timeout)
                await prepare(js)
            except asyncio.CancelledError:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                raise
            except Exception as exc:  # NATS down, JetStream not there yet: try again
                self.failures += 1
                self.last_error = self._why(exc)
                log.warning(
                    "federation.connect_failed",
                    connection=self.name,
                    servers=servers,
                    error=str(exc) or repr(exc),
                )
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                await asyncio.sleep(RECONNECT_S)
                continue
            self.nc, self.js, self.state = nc, js, "connected"
            log.info("federation.connected", connection=self.name, servers=servers)
            return

    async def _disconnected(self) -> None:
        self.state = "disconnected"
        log.warning("federation.disconnected", connection=self.name)

    async def _reconnected(self) -> None:
        self.state = "connected"
        log.info("federation.reconnected", connection=self.name)

    def _why(self, exc: BaseException) -> str:
        """The error as the operator reads it: a TLS server that drops the connection during
        the handshake (no or an untrusted client certificate) shows only a broken pipe."""
        text = str(exc) or repr(exc)
        s = self.settings
        uses_tls = s.tls_ca or s.tls_cert or any(u.startswith("tls://") for u in s.servers)
        if uses_tls and isinstance(exc, BrokenPipeError | ConnectionResetError):
            return (
                f"{text}: the server closed the TLS connection — does it take this hub's "
                "client certificate (tls_cert, tls_key), and does tls_ca trust its own?"
            )
        return text

    async def _error(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = self._why(exc)
        log.warning("federation.nats_error", connection=self.name, error=str(exc) or repr(exc))

    async def close(self) -> None:
        """Close at once: ``drain()`` would wait out a pull subscription's fetch (30 s);
        what is unacknowledged is redelivered, and the journal drops the duplicates."""
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=1)
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.nc = self.js = None
