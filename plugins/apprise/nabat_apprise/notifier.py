"""``apprise.notifier``: notifications to people through Apprise (e-mail, Telegram, SMS
gateways, ntfy, Matrix, generic JSON/form webhooks — https://github.com/caronc/apprise/wiki).

Each **target** is one Apprise URL with a name. Secrets never stand in the URL: it names
them as ``{placeholders}`` filled from ``secrets`` (references: ``{ env = "..." }`` or
``{ file = "..." }``); a URL that carries a password inline is refused at load. A URL with
``{recipient}`` is a destination per recipient (a mail address, a chat id) — the
notification's own recipients, or the target's ``recipients`` when it names none; one
without it is a single destination (a duty group chat). The hub delivers and retries each
destination on its own (Apprise itself retries nothing); what is shown of a destination
is its name, never its URL.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import msgspec
from nabat.events import Severity
from nabat.interfaces import (
    ConfigError,
    DeliveryResult,
    DeliveryStatus,
    DriverContext,
    Notification,
    Notifier,
    Secret,
)

__all__ = ["AppriseNotifier", "AppriseSettings", "AppriseTarget"]

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
RECIPIENT = "recipient"
_MASK = "***"


class AppriseTarget(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
    """Shown in outcomes as the destination (``mail``, ``mail:ivanov@edds.example``)."""
    url: Annotated[str, msgspec.Meta(min_length=4, max_length=4000)]
    """An Apprise URL, its secrets as ``{name}`` placeholders, ``{recipient}`` optional."""
    secrets: dict[str, Secret] = {}
    recipients: list[str] = []
    """Who a ``{recipient}`` URL goes to when the notification names nobody."""

    def __post_init__(self) -> None:
        named = set(_PLACEHOLDER.findall(self.url))
        missing = named - set(self.secrets) - {RECIPIENT}
        if missing:
            raise ValueError(
                f"target {self.name}: url names {', '.join(sorted(missing))} but secrets "
                "has no such key"
            )
        unused = set(self.secrets) - named
        if unused:
            raise ValueError(
                f"target {self.name}: secrets {', '.join(sorted(unused))} are not in the url"
            )
        if RECIPIENT in self.secrets:
            raise ValueError(f"target {self.name}: {{recipient}} is not a secret's name")
        userinfo = urlsplit(_PLACEHOLDER.sub("x", self.url)).netloc.rpartition("@")[0]
        raw_password = urlsplit(self.url).netloc.rpartition("@")[0].partition(":")[2]
        if ":" in userinfo and not _PLACEHOLDER.fullmatch(raw_password):
            raise ValueError(
                f"target {self.name}: the url carries a password; write it as "
                '{password} with secrets = { password = { env = "..." } }'
            )


class AppriseSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    targets: Annotated[list[AppriseTarget], msgspec.Meta(min_length=1, max_length=50)]
    language: Literal["ru", "en"] = "ru"
    """The language of the catalog templates this notifier sends."""
    format: Literal["text", "markdown", "html"] = "text"

    def __post_init__(self) -> None:
        names = [t.name for t in self.targets]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"targets named twice: {', '.join(repeated)}")


def _notify_type(severity: Severity) -> str:
    if severity in (Severity.SEVERE, Severity.EXTREME):
        return "failure"
    if severity in (Severity.MODERATE, Severity.MINOR):
        return "warning"
    return "info"


class _Capture(logging.Handler):
    """What Apprise logs while one send runs — its only account of why a send failed —
    from the worker thread running that send alone, not a concurrent one's."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread: int | None = None
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


class _MaskSecrets(logging.Filter):
    """Apprise (and urllib3 under it) log URLs whole at debug level: our targets' secrets
    are taken out of every line they log before any handler sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.values: set[str] = set()

    def add(self, secret: Secret) -> None:
        value = secret.reveal()
        if value:
            self.values |= {value, quote(value, safe="")}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values:
            text = record.getMessage()
            masked = text
            for value in sorted(self.values, key=len, reverse=True):
                masked = masked.replace(value, _MASK)
            if masked != text:
                record.msg, record.args = masked, None
        return True


_mask = _MaskSecrets()
for _name in ("apprise", "urllib3.connectionpool"):  # urllib3: Apprise's HTTP, URLs at debug
    logging.getLogger(_name).addFilter(_mask)


def _notify(service: Any, capture: _Capture, **message: Any) -> bool:
    capture.thread = threading.get_ident()
    try:
        return bool(service.notify(**message))
    finally:
        capture.thread = None


class AppriseNotifier(Notifier):
    kind = "apprise.notifier"
    Settings = AppriseSettings

    def __init__(self, context: DriverContext, settings: AppriseSettings) -> None:
        super().__init__(context, settings)
        self.language = settings.language
        self.targets = {t.name: t for t in settings.targets}
        self._apprise: Any = None
        for target in settings.targets:
            for secret in target.secrets.values():
                _mask.add(secret)

    async def start(self) -> None:
        # Importing Apprise loads its ~200 service plugins (a second of CPU): off the loop.
        self._apprise = await asyncio.to_thread(_load_apprise)
        for target in self.settings.targets:
            probe = self._url(target, target.recipients[0] if target.recipients else "nobody")
            if await asyncio.to_thread(self._apprise.Apprise.instantiate, probe) is None:
                raise ConfigError(
                    f"target {target.name}: Apprise does not take this URL "
                    f"({self._masked(target, target.url)})"
                )

    def destinations(self, notification: Notification) -> list[tuple[str, list[str]]]:
        found: list[tuple[str, list[str]]] = []
        for target in self.settings.targets:
            if f"{{{RECIPIENT}}}" in target.url:
                people = notification.recipients or target.recipients
                found += [(f"{target.name}:{person}", [person]) for person in people]
            else:
                found.append((target.name, []))
        return found

    def _url(self, target: AppriseTarget, recipient: str | None) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == RECIPIENT:
                return quote(recipient or "", safe="@+")
            return quote(target.secrets[name].reveal(), safe="")

        return _PLACEHOLDER.sub(fill, target.url)

    def _masked(self, target: AppriseTarget, text: str) -> str:
        for secret in target.secrets.values():
            value = secret.reveal()
            if value:
                text = text.replace(value, _MASK).replace(quote(value, safe=""), _MASK)
        return text

    async def send(self, notification: Notification) -> DeliveryResult:
        now = datetime.now(UTC)
        name, _, recipient = notification.destination.partition(":")
        target = self.targets.get(name)
        if target is None:
            return DeliveryResult(
                status=DeliveryStatus.REJECTED,
                at=now,
                detail=f"no target {name!r} (the configuration changed since it was asked)",
            )
        if f"{{{RECIPIENT}}}" in target.url and not recipient:
            return DeliveryResult(
                status=DeliveryStatus.REJECTED, at=now, detail=f"target {name} needs a recipient"
            )
        url = self._url(target, recipient or None)
        service = await asyncio.to_thread(self._apprise.Apprise.instantiate, url)
        if service is None or (recipient and _len(service) == 0):
            # Apprise drops a recipient it cannot read (a mail address without @) and would
            # send to nobody: that never gets better by retrying.
            return DeliveryResult(
                status=DeliveryStatus.REJECTED,
                at=now,
                detail=f"target {name}: Apprise takes no recipient from {recipient!r}"
                if service is not None
                else f"target {name}: Apprise does not take the URL for {recipient!r}",
            )
        capture = _Capture()
        logger = logging.getLogger("apprise")
        logger.addHandler(capture)
        try:
            # Apprise's own sync send in a worker thread (its async path runs the same in a
            # thread pool): the thread tells its log lines apart from concurrent sends'.
            async with asyncio.timeout(self.context.timeout):
                sent = await asyncio.to_thread(
                    _notify,
                    service,
                    capture,
                    body=notification.body or notification.title,
                    title=notification.title,
                    notify_type=_notify_type(notification.severity),
                    body_format=self.settings.format,
                )
        except TimeoutError:
            return DeliveryResult(
                status=DeliveryStatus.RETRY,
                at=datetime.now(UTC),
                detail=f"{notification.destination}: no answer within {self.context.timeout:g} s",
            )
        finally:
            logger.removeHandler(capture)
        if sent:
            return DeliveryResult(
                status=DeliveryStatus.DELIVERED, at=datetime.now(UTC), detail="sent"
            )
        why = "; ".join(dict.fromkeys(capture.lines)) or "Apprise reported a failure"
        return DeliveryResult(
            status=DeliveryStatus.RETRY,
            at=datetime.now(UTC),
            detail=self._masked(target, f"{notification.destination}: {why}")[:1000],
        )


def _load_apprise() -> Any:
    import apprise

    apprise.Apprise()  # loads the service plugins once, here
    return apprise


def _len(service: Any) -> int:
    """How many recipients Apprise took into ``service`` from the URL (its ``targets``; an
    e-mail service without one would write to its own sender); one when it cannot say."""
    targets = getattr(service, "targets", None)
    if isinstance(targets, list | tuple | set):
        return len(targets)
    try:
        return len(service)
    except TypeError:
        return 1
