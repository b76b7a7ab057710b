"""An aiohttp client session that enforces a :class:`~nabat.netguard.DestinationPolicy` at
every connection: outbound webhooks' client (see :mod:`nabat.netguard`). aiohttp, not httpx,
because a webhook POST costs it about a seventh of the CPU (bench/README.md, "Soak").

Names go through :class:`GuardedResolver`: aiohttp connects to the addresses it returns,
checked at that lookup, for every new connection (DNS rebinding included).
An IP literal never reaches a resolver, so a client middleware checks it on each request.
Proxies from the environment are ignored (a proxy would connect for us, unchecked)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .netguard import DestinationPolicy

__all__ = ["GuardedResolver", "guarded_session"]


class GuardedResolver(AbstractResolver):
    """Resolves through the policy: only the addresses it allows, in its order."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy
        self._names = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found: list[ResolveResult] = []
        for address in await self.policy.allowed_addresses(host, port):
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:  # a name the integrator listed: they vouch for its addresses
                found.extend(await self._names.resolve(address, port, family))
                continue
            found.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        return found

    async def close(self) -> None:
        await self._names.close()


def guarded_session(policy: DestinationPolicy, *, limit: int, **kw: Any) -> aiohttp.ClientSession:
    """A session whose every connection the policy allows. Call it in the running loop."""

    async def literal_addresses(
        request: aiohttp.ClientRequest, handler: Any
    ) -> aiohttp.ClientResponse:
        host = (request.url.raw_host or "").strip("[]")
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            pass  # a name: the resolver checks it
        else:
            policy.check_address(ip)
        return await handler(request)

    # No DNS cache: each new connection asks the policy again, as a rebinding test expects
    # (kept-alive connections are reused without a lookup, so this costs little).
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy), limit=limit, use_dns_cache=False
    )
    return aiohttp.ClientSession(
        connector=connector, middlewares=(literal_addresses,), trust_env=False, **kw
    )
