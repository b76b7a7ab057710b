"""The httpx transport that enforces a :class:`~nabat.netguard.DestinationPolicy` at every
connection (DNS rebinding included); see :mod:`nabat.netguard`. A module of its own so that
the policy, checked whenever a configuration is loaded, does not import httpx."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from .netguard import DestinationPolicy, DestinationRefused

__all__ = ["GuardedTransport"]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows, resolved at connect time."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.policy.allowed_addresses(host, port)
        last: Exception | None = None
        for address in addresses:  # the checked address itself, never a second lookup
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, *args: Any, **kw: Any) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("unix sockets are not outbound destinations")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@functools.cache
def _ssl_context(verify: bool) -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds: once per process, not per client (a
    # camera wall's snapshots make a client per fetch).
    return httpx.create_ssl_context(verify=verify, trust_env=False)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection passes :class:`DestinationPolicy`; no proxy
    from the environment (a proxy would connect for us, unchecked). Every redirect a client
    follows is a new connection, so it is checked too. ``verify=False`` is for cameras, whose
    certificates are self-signed as a rule."""

    def __init__(
        self, policy: DestinationPolicy, *, limits: httpx.Limits, verify: bool = True
    ) -> None:
        context = _ssl_context(verify)
        super().__init__(limits=limits, trust_env=False, verify=context)
        # httpx builds its pool without a way to pass a network backend: rebuild it with ours
        # (tests/core/api/test_destinations.py and tests/core/test_netguard_cameras.py fail if
        # this stops guarding connections).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )
