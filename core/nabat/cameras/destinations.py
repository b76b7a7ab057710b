"""Where the hub connects for a camera: the ``[cameras]`` destination rule.

A camera's own address is the integrator's word when ``plugins.toml`` names it. Whatever else
the hub would connect to for a camera is checked against one
:class:`~nabat.netguard.DestinationPolicy` — private and public addresses (unless
``[cameras] allow_private`` / ``allow_public`` say otherwise) plus ``[cameras]
destinations`` — so that a district's inventory file or a camera's own answers cannot point
the hub at its loopback (its API, its database), its cloud metadata (169.254.169.254), a
multicast group or an unspecified address:

* **inventory rows**, when ``nabat cameras import`` reads them (:func:`check_rows`); names
  are resolved then, and one that does not resolve yet is left to the connection;
* a **name in an inventory row**, again at every connection: it may be repointed after the
  import (DNS rebinding). A literal address is not checked again: it was checked at import
  and cannot change (re-import the file after narrowing the rule);
* **every address a camera returns** — ONVIF service, stream, snapshot and subscription
  addresses, HTTP redirects — for cameras of ``plugins.toml`` too, unless it is on the
  camera's own host.

Drivers take one camera's :class:`CameraGuard` with :func:`camera_guard` (from
:mod:`nabat.interfaces.video`). A refusal is :class:`CameraDestinationRefused`, a
:class:`~nabat.interfaces.ConfigError`: at start the camera is ``failed`` with the reason, a
snapshot is a 502 ``destination-refused``, and a probe reports :func:`refused_health`
(``unreachable``, reason code ``destination_refused``, reported at once).

How close to the connection the check is depends on the protocol:

* HTTP (snapshots, ONVIF's clock read): :class:`~nabat.netguard_http.GuardedTransport` checks
  every connection, redirects included, and connects to the address it checked;
* ``rtsp://`` (probes, frame snapshots): the name is resolved and checked, and FFmpeg is given
  the checked address in its place;
* ``rtsps://`` and ``http(s)://`` streams, ONVIF SOAP (aiohttp inside onvif-zeep-async), live
  video and recording: the addresses are checked, then the library resolves the name again
  (TLS needs the name, and they take no resolver), so a name repointed in that moment is not
  caught. FFmpeg also follows RTSP and HTTP redirects by itself, unchecked.

One rule per process, like the camera workers: :class:`~nabat.cameras.fleet.CameraFleet`
installs the hub's.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ..interfaces.camera import CameraHealth, HealthState
from ..interfaces.errors import ConfigError, TransientError
from ..netguard import DestinationPolicy, DestinationRefused, DestinationUnresolved, IPNetwork
from .inventory import CsvError, ParsedRow

if TYPE_CHECKING:
    import httpx

    from ..config.model import CameraSettings
    from ..interfaces import DriverContext

__all__ = [
    "REASON_CODE",
    "CameraDestinationRefused",
    "CameraDestinations",
    "CameraGuard",
    "camera_guard",
    "check_rows",
    "destination_policy",
    "refused_health",
]

SETTING = "[cameras] destinations"
REASON_CODE = "destination_refused"
"""The ``reason_code`` of a probe refused by the rule (``console.reason.destination_refused``)."""
_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
_IMPORT_LOOKUPS = 32  # names resolved at once by an import


class CameraDestinationRefused(ConfigError):
    """The hub does not connect there for a camera; the message names the address and rule."""


def destination_policy(
    settings: CameraSettings | None = None, *, disclose: bool = False
) -> DestinationPolicy:
    """The ``[cameras]`` rule; without settings, its defaults (any private or public
    address). ``disclose``: refusals of a name tell its address (the integrator's CLI)."""
    return DestinationPolicy.parse(
        settings.destinations if settings else (),
        setting=SETTING,
        private=settings.allow_private if settings else True,
        public=settings.allow_public if settings else True,
        disclose=disclose,
    )


class CameraDestinations:
    """The hub's camera rule, and which cameras are the inventory's."""

    def __init__(self, policy: DestinationPolicy | None = None) -> None:
        self.policy = policy or destination_policy()
        self.inventory: set[str] = set()
        """Ids of inventory cameras: a name in their row is checked at every connection."""

    def install(self) -> CameraDestinations:
        """Make this the rule of this process's cameras (the hub does, at construction)."""
        global _current
        _current = self
        return self


_current = CameraDestinations()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host(item: str) -> str:
    if "://" in item:
        return urlsplit(item).hostname or ""
    return item.strip().strip("[]")


def camera_guard(context: DriverContext, *own: str | None) -> CameraGuard:
    """The guard of one camera's connections. ``own``: the addresses its settings name (URLs
    or hosts). They are vouched for when ``plugins.toml`` wrote them, and when an inventory
    row gives a literal address (checked at import); a name in an inventory row is checked at
    every connection. Addresses the camera returns pass only on those hosts or by the rule."""
    destinations = _current
    inventory = context.instance_id in destinations.inventory
    networks: list[IPNetwork] = []
    hosts: list[str] = []
    for item in own:
        host = _host(item) if item else ""
        if not host:
            continue
        if _is_ip(host):
            networks.append(ipaddress.ip_network(host.split("%", 1)[0]))
        elif not inventory:
            hosts.append(host)
    return CameraGuard(destinations.policy.extended(networks, hosts))


class CameraGuard:
    """Checks one camera's destinations (see the module docstring)."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy

    async def addresses(self, host: str, port: int, *, what: str = "") -> list[str]:
        """The addresses of ``host`` that may be connected to now. Raises
        :class:`CameraDestinationRefused`, or :class:`TransientError` for a name that does not
        resolve. ``what`` names the address in the message (``"the snapshot URI"``)."""
        prefix = f"{what}: " if what else ""
        try:
            return await self.policy.allowed_addresses(host, port)
        except DestinationUnresolved as exc:
            raise TransientError(f"{prefix}{exc.reason}") from None
        except DestinationRefused as exc:
            raise CameraDestinationRefused(f"{prefix}destination refused: {exc.reason}") from None

    async def url(self, url: str, *, what: str = "") -> str:
        """``url`` checked now, as a stream decoder should open it: for ``rtsp://`` with the
        checked address in place of a name (FFmpeg would look the name up again; RTSP needs
        no name). Other schemes keep the name: TLS and virtual hosts need it."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port or _PORTS.get(scheme, 80)
        except ValueError:
            where = what or "the URL"
            raise CameraDestinationRefused(f"{where}: the port is not 0-65535") from None
        host = parts.hostname
        if not host:
            raise CameraDestinationRefused(f"{what or 'the URL'} names no host")
        address = (await self.addresses(host, port, what=what))[0]
        if scheme != "rtsp" or _is_ip(host) or not _is_ip(address.split("%", 1)[0]):
            return url
        shown = f"[{address.replace('%', '%25')}]" if ":" in address else address
        userinfo, at, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}{at}{shown}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    def client(
        self,
        *,
        timeout: float | httpx.Timeout,
        verify: bool = True,
        follow_redirects: bool = False,
    ) -> httpx.AsyncClient:
        """An httpx client whose every connection (each redirect too) passes this guard;
        its refusals are raised as :class:`CameraDestinationRefused` / ``TransientError``."""
        from .destinations_http import guarded_client

        return guarded_client(
            self.policy,
            refused=CameraDestinationRefused,
            timeout=timeout,
            verify=verify,
            follow_redirects=follow_redirects,
        )


def refused_health(exc: BaseException) -> CameraHealth:
    """A probe's result for a refused destination: ``unreachable``, on purpose."""
    return CameraHealth(
        state=HealthState.UNREACHABLE,
        checked_at=datetime.now(UTC),
        reason=str(exc),
        reason_code=REASON_CODE,
    )


# -- inventory import -------------------------------------------------------------------------
def _destination(url: str) -> tuple[str, int]:
    """The host and port an inventory ``url`` cell (a URL or ``host[:port]``) connects to."""
    if "://" in url:
        parts = urlsplit(url)
        return parts.hostname or "", parts.port or _PORTS.get(parts.scheme.lower(), 80)
    parts = urlsplit(f"//{url}")
    return parts.hostname or "", parts.port or 80


async def _row_problem(policy: DestinationPolicy, row: ParsedRow) -> CsvError | None:
    host, port = _destination(row.record.url)
    try:
        await policy.allowed_addresses(host, port)
    except DestinationUnresolved:
        return None  # not yet in DNS: every connection checks it
    except DestinationRefused as exc:
        return CsvError(row.line, row.url_column, f"destination refused: {exc.reason}")
    return None


async def check_rows(
    rows: Sequence[ParsedRow], policy: DestinationPolicy
) -> tuple[list[ParsedRow], list[CsvError]]:
    """The rows whose address ``policy`` allows, and an error (line, column, rule) for each
    other. Names are looked up, a few at once; a literal address needs no lookup."""
    limit = asyncio.Semaphore(_IMPORT_LOOKUPS)

    async def one(row: ParsedRow) -> CsvError | None:
        async with limit:
            return await _row_problem(policy, row)

    problems = await asyncio.gather(*(one(row) for row in rows))
    kept = [row for row, problem in zip(rows, problems, strict=True) if problem is None]
    return kept, [problem for problem in problems if problem is not None]
