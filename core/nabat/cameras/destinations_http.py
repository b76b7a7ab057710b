"""HTTP for cameras under the destination rule: a module of its own so that the hub (which
checks inventory rows and builds cameras' guards) does not import httpx until a camera fetches
something over HTTP."""

from __future__ import annotations

import httpx

from ..interfaces.errors import TransientError
from ..netguard import DestinationPolicy, DestinationRefused, DestinationUnresolved
from ..netguard_http import GuardedTransport

__all__ = ["guarded_client"]


class _CameraTransport(httpx.AsyncBaseTransport):
    """The guarded transport, its refusals in the drivers' terms (a driver catches
    ``httpx.HTTPError``, which a refusal is not)."""

    def __init__(self, inner: GuardedTransport, refused: type[Exception]) -> None:
        self.inner = inner
        self.refused = refused

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except DestinationUnresolved as exc:
            raise TransientError(exc.reason) from None
        except DestinationRefused as exc:
            raise self.refused(f"destination refused: {exc.reason}") from None

    async def aclose(self) -> None:
        await self.inner.aclose()


def guarded_client(
    policy: DestinationPolicy,
    *,
    refused: type[Exception],
    timeout: float | httpx.Timeout,
    verify: bool = True,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """An httpx client for one camera: every connection checked by ``policy``, a refusal
    raised as ``refused`` (``CameraDestinationRefused``: passed in, so that this module and
    the one that imports it lazily do not import each other)."""
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    return httpx.AsyncClient(
        transport=_CameraTransport(GuardedTransport(policy, limits=limits, verify=verify), refused),
        timeout=timeout,
        follow_redirects=follow_redirects,
        trust_env=False,
    )
