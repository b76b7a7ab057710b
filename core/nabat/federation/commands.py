"""Commands down, as they cross NATS: what the region asks of a site, signed, with a deadline.

Two kinds of message go from the region to a site:

* a :class:`Command` — sound an alert, cancel one — goes by JetStream: the region's stream
  ``CMD_<site>`` (subjects ``nabat.cmd.<site>.>``), which the site *mirrors*, so a command
  waits out a cut WAN link. It is acted on only before its ``deadline``: one that arrives
  later is refused and reported expired, never sounded late by surprise;
* a :class:`Call` — a snapshot, a PTZ move, a camera's presets — goes by request/reply on
  core NATS: it is for an operator waiting at the console, so a site that is cut off simply
  does not answer in time and the operator is told so; it is never queued.

Both are signed with the regional hub's Ed25519 key (the one its evidence is signed with):
the site acts only on what a key in its ``[federation] command_keys`` signed, for its own
site, before the deadline — whoever else can publish on the site's NATS cannot sound its
sirens. A call also names the inbox its answer goes to, so a replayed call cannot send the
answer (a picture) elsewhere.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ..interfaces.alerting import Alert, WarningMessage

if TYPE_CHECKING:
    from ..evidence.keys import SigningKey

__all__ = [
    "CALL_PREFIX",
    "Call",
    "Command",
    "CommandKind",
    "Expired",
    "Refused",
    "call_subject",
    "command_stream",
    "command_subject",
    "command_subjects",
    "open_signed",
    "sign",
]

CommandKind = Literal["alert.issue", "alert.cancel"]
CallKind = Literal["camera.list", "camera.snapshot", "camera.ptz", "camera.presets"]
SIGNER = "Nabat-Signer"
SIGNATURE = "Nabat-Signature"
DEADLINE = "Nabat-Deadline"
CALL_PREFIX = "nabat.call"
RESERVED_SITES = ("cmd", "call")
"""Not site names: ``nabat.<site>.>`` (a site's events) would then take in commands or calls."""


class Command(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    kind: CommandKind
    site: str
    """The site that must act."""
    sender: str
    """The regional site that sent it."""
    issued_at: datetime
    deadline: datetime
    by: str
    """Who at the region (``token:<id> (name)``): kept in the site's records and audit."""
    confirmed_by: str | None = None
    """The region's second person, under its two-person rule."""
    municipalities: list[str] | None = None
    """The operator's reach, when limited: the site acts in these municipalities only."""
    alert: Alert | None = None
    message: WarningMessage | None = None
    alert_id: str | None = None
    """``alert.cancel``: the alert to stop."""


class Call(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    kind: CallKind
    site: str
    sender: str
    issued_at: datetime
    deadline: datetime
    by: str
    reply: str
    """The inbox the answer must go to (checked by the site against the message's own)."""
    camera: str = ""
    """The camera (not for ``camera.list``)."""
    municipalities: list[str] | None = None
    ptz: dict[str, Any] | None = None
    max_age: float | None = None


class Refused(Exception):
    """A message the site does not act on; ``str()`` says why (logged, reported up)."""


def command_stream(site: str) -> str:
    return f"CMD_{site}"


def command_subject(site: str, kind: str) -> str:
    return f"nabat.cmd.{site}.{kind}"


def command_subjects(site: str) -> str:
    return f"nabat.cmd.{site}.>"


def call_subject(site: str, kind: str) -> str:
    return f"{CALL_PREFIX}.{site}.{kind}"


def sign(key: SigningKey, body: bytes, deadline: datetime) -> dict[str, str]:
    """The headers that make ``body`` a signed message."""
    return {
        SIGNER: key.public_key,
        SIGNATURE: base64.b64encode(key.sign(body)).decode("ascii"),
        DEADLINE: deadline.astimezone(UTC).isoformat(),
    }


_command = msgspec.json.Decoder(Command)
_call = msgspec.json.Decoder(Call)


def open_signed(
    body: bytes,
    headers: dict[str, str] | None,
    *,
    keys: Sequence[str],
    site: str,
    kind: type[Command] | type[Call],
    now: datetime | None = None,
) -> Command | Call:
    """The message, once it is known to be a valid command or call signed by one of
    ``keys`` (public keys or fingerprints), for ``site``, within its deadline; else
    :class:`Refused`. The deadline is checked last: an expired command is still *known* to
    be the region's (the site reports it expired; anything else is only logged)."""
    from ..evidence.keys import check_signature, matches_pin

    headers = headers or {}
    signer, signature = headers.get(SIGNER, ""), headers.get(SIGNATURE, "")
    if not signer or not signature:
        raise Refused("not signed")
    if not any(matches_pin(signer, pin) for pin in keys):
        raise Refused("signed by a key that is not in [federation] command_keys")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError:
        raise Refused("its signature is not base64") from None
    if not check_signature(signer, body, raw_signature):
        raise Refused("its signature does not match (altered on the way?)")
    try:
        message = (_command if kind is Command else _call).decode(body)
    except msgspec.ValidationError as exc:
        raise Refused(f"not a valid {kind.__name__.lower()}: {exc}") from None
    if message.site != site:
        raise Refused(f"it is for site {message.site!r}")
    if message.deadline <= (now or datetime.now(UTC)):
        raise Expired(message)
    return message


class Expired(Refused):
    """A genuine command past its deadline: reported, never acted on."""

    def __init__(self, message: Command | Call) -> None:
        super().__init__(f"its deadline {message.deadline.isoformat()} passed before it arrived")
        self.message = message
