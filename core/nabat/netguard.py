"""Where the hub may connect on someone else's behalf: outbound destinations under a policy.

A URL an API caller gives the hub (an outbound webhook today) makes the hub connect from
*inside* the network: to its own loopback, the district's private ranges, a cloud metadata
address. Unchecked, that is server-side request forgery — the caller probes or reads what it
cannot reach itself. So by default only **public** addresses are destinations; loopback,
private, link-local, shared (CGNAT), multicast, reserved and unspecified addresses — also when
written as IPv4-mapped IPv6 (``[::ffff:127.0.0.1]``) or 6to4 — are refused unless the
integrator lists them (``[api] webhook_destinations``: networks in CIDR form and host names).

A closed network sets ``[api] webhook_allow_public = false``: then only the listed
destinations are allowed.

The check runs twice: when the URL is registered (a clear 422 naming the rule) and at every
connection, on the addresses the name resolves to *then* — a name that resolved to a public
address at registration and to ``127.0.0.1`` later (DNS rebinding) is refused at connect time.
The connection goes to the very address that was checked; TLS still verifies the host name.
That connect-time half is :class:`nabat.netguard_http.GuardedTransport`, apart so that checking
a policy (every configuration load does) does not import httpx.

Cameras follow the same rule with one difference: they live on the districts' private
networks, so their policy (``private=True``, ``[cameras] destinations``,
:mod:`nabat.cameras.destinations`) also allows private addresses (10/8, 172.16/12,
192.168/16, 100.64/10, fc00::/7) and refuses loopback, link-local (cloud metadata at
169.254.169.254), multicast, reserved and unspecified ones. It guards what is not the
integrator's own word: the addresses of an imported inventory (checked at import, and names
again at every connection) and every address a camera *returns* (ONVIF service, stream and
snapshot URIs, HTTP redirects), even from a camera configured in ``plugins.toml``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from .logs import get_logger

__all__ = [
    "DestinationPolicy",
    "DestinationRefused",
    "DestinationUnresolved",
    "describe_address",
]

log = get_logger("nabat.netguard")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: inside someone's network
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
"""What ``private=True`` allows: the ranges sites number their own networks from (cameras on an
operator's LTE network often sit behind carrier-grade NAT). Not loopback or link-local: those
are the hub's own host and its cloud metadata, never a camera."""
RESOLVE_TIMEOUT = 10.0


class DestinationRefused(Exception):
    """A destination the policy does not allow; ``reason`` names the address and the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DestinationUnresolved(DestinationRefused):
    """The name does not resolve (now): nothing was refused, there is nowhere to connect. A
    caller that retries (a camera) tells it from a refusal by this class."""


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, 6to4), else itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def describe_address(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public destination (``"a loopback address"``…), or None if it is."""
    inner = _unwrap(ip)
    via = f" (written as {ip})" if inner is not ip else ""
    kinds = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, text in kinds:
        if getattr(inner, attribute):
            return f"{inner} is {text}{via}"
    if isinstance(inner, ipaddress.IPv4Address) and inner in _SHARED:
        return f"{inner} is a shared (carrier-grade NAT) address{via}"
    if not inner.is_global:
        return f"{inner} is not a public address{via}"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as the system resolver answers (no blocking)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class DestinationPolicy:
    """Public addresses (and with ``private``, private ones), plus the networks and host names
    an integrator allowed."""

    def __init__(
        self,
        networks: Iterable[IPNetwork] = (),
        hosts: Iterable[str] = (),
        *,
        setting: str = "[api] webhook_destinations",
        resolver: Resolver = system_resolver,
        public: bool = True,
        private: bool = False,
        disclose: bool = False,
    ) -> None:
        self.public = public
        """Whether any public address is a destination (else only the listed ones)."""
        self.private = private
        """Whether private addresses (:data:`_PRIVATE`) are destinations too."""
        self.disclose = disclose
        """Whether refusing a name tells the address it resolved to (for the integrator's own
        tools; an API caller must not learn internal addresses)."""
        self.networks = tuple(networks)
        self.hosts = frozenset(h.lower().rstrip(".") for h in hosts)
        self.setting = setting
        self.resolver = resolver

    def extended(
        self, networks: Iterable[IPNetwork] = (), hosts: Iterable[str] = ()
    ) -> DestinationPolicy:
        """This policy with more listed destinations. Names resolve through this policy's
        resolver as it is at each lookup, so replacing it (a test) applies to both."""

        async def resolve(host: str, port: int) -> list[str]:
            return await self.resolver(host, port)

        return DestinationPolicy(
            (*self.networks, *networks),
            (*self.hosts, *hosts),
            setting=self.setting,
            resolver=resolve,
            public=self.public,
            private=self.private,
            disclose=self.disclose,
        )

    @classmethod
    def parse(cls, entries: Sequence[str], **kw: Any) -> DestinationPolicy:
        """From config entries (``"10.20.0.0/16"``, ``"127.0.0.1"``, ``"gw.police.local"``);
        ``ValueError`` naming the first that is neither a network nor a host name."""
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for index, entry in enumerate(entries):
            text = entry.strip()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if not text or any(c in text for c in "/:@ ") or text.startswith("."):
                raise ValueError(f"[{index}] {entry!r} is neither a network (CIDR) nor a host name")
            hosts.append(text)
        return cls(networks, hosts, **kw)

    def _listed(self, ip: IPAddress) -> bool:
        inner = _unwrap(ip)
        return any(inner in net or ip in net for net in self.networks)

    def check_address(self, ip: IPAddress) -> None:
        """Raise :class:`DestinationRefused` unless ``ip`` is listed, public (and public ones
        are allowed) or private (and private ones are allowed)."""
        if self._listed(ip):
            return
        if self.private and any(_unwrap(ip) in net for net in _PRIVATE):
            return
        why = describe_address(ip)
        if why is not None:
            raise DestinationRefused(f"{why}; such destinations need {self.setting}")
        if not self.public:
            raise DestinationRefused(f"{ip} is not listed in {self.setting} (closed network)")

    def _kinds(self) -> str:
        """What an unlisted address must be to be allowed, for messages."""
        if self.public and self.private:
            return "public or private"
        return "public" if self.public else "private" if self.private else "listed"

    async def allowed_addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` that may be connected to, in the resolver's order.
        Raises :class:`DestinationRefused` when there is none (naming the first refused)."""
        host = host.strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            self.check_address(ip)
            return [str(ip)]
        if host.lower().rstrip(".") in self.hosts:
            return [host]  # listed by name: the integrator vouches for where it points
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                found = await self.resolver(host, port)
        except (OSError, TimeoutError) as exc:
            log.info("destination.unresolved", host=host, error=str(exc) or "timed out")
            raise DestinationUnresolved(f"{host} does not resolve") from None
        allowed, refusals = [], []
        for address in found:
            try:
                self.check_address(ipaddress.ip_address(address.split("%", 1)[0]))
            except DestinationRefused as exc:
                refusals.append(exc.reason)
            else:
                allowed.append(address)
        if refusals and not allowed:
            # Which internal address a name has is not the caller's to learn: the log says.
            log.info("destination.refused", host=host, reason=refusals[0])
            if self.disclose:
                raise DestinationRefused(f"{host}: {refusals[0]}")
            raise DestinationRefused(
                f"{host} resolves to an address that is not {self._kinds()}; such destinations "
                f"need {self.setting}"
            )
        if not allowed:
            raise DestinationUnresolved(f"{host} resolves to no address")
        return allowed

    async def check_url(self, url: str) -> None:
        """Raise :class:`DestinationRefused` unless ``url``'s host may be connected to now."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise DestinationRefused("the URL names no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise DestinationRefused("the URL's port is not a number 0-65535") from None
        await self.allowed_addresses(parts.hostname, port)
