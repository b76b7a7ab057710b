"""What the API's handlers share: the hub and the API's own services."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..config import ApiSettings
from .audit import AuditLog
from .idempotency import IdempotencyStore
from .ingest import ReservedTypes, reserved_types
from .metrics import ApiMetrics
from .ratelimit import RateLimiter
from .tokens import TokenStore

if TYPE_CHECKING:
    from ..console import ConsoleState
    from ..hub import Hub
    from .outbound import OutboundWebhooks

__all__ = ["ApiState"]


class ApiState:
    """A plain class, not a dataclass: Litestar would try to validate a dataclass
    dependency field by field."""

    def __init__(
        self,
        *,
        hub: Hub,
        settings: ApiSettings,
        tokens: TokenStore,
        limiter: RateLimiter,
        audit: AuditLog,
        idempotency: IdempotencyStore,
        metrics: ApiMetrics,
        municipalities: frozenset[str],
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.tokens = tokens
        self.limiter = limiter
        self.audit = audit
        self.idempotency = idempotency
        self.metrics = metrics
        self.municipalities = municipalities
        self._reserved: tuple[tuple[str, ...], ReservedTypes] | None = None
        self.outbound: OutboundWebhooks | None = None
        self.console: ConsoleState | None = None
        """Console accounts and sessions (cookie sign-in); None when the console is off."""
        self.closing = asyncio.Event()
        """Set when the server stops: live streams end so shutdown need not wait for them."""

    @property
    def reserved(self) -> ReservedTypes:
        """Event types no ingest caller may write: the hub's own and each loaded plugin's."""
        names = tuple(sorted(self.hub.plugins))
        if self._reserved is None or self._reserved[0] != names:
            self._reserved = (names, reserved_types(names))
        return self._reserved[1]

    @classmethod
    def for_hub(cls, hub: Hub) -> ApiState:
        from ..regions import load_region

        settings = hub.config.api
        state = cls(
            hub=hub,
            settings=settings,
            tokens=TokenStore(hub.journal),
            limiter=RateLimiter(
                settings.rate_limit.rate,
                settings.rate_limit.burst,
                journal=hub.journal if settings.rate_limit.shared else None,
            ),
            audit=AuditLog(hub.journal, retention_days=settings.audit_retention_days),
            idempotency=IdempotencyStore(hub.journal, settings.idempotency_ttl),
            metrics=ApiMetrics(hub),
            municipalities=frozenset(load_region(hub.config.hub.region).municipalities),
        )
        if settings.console.enabled:
            from ..console import ConsoleState

            state.console = ConsoleState(hub.journal, settings.console)
        return state
