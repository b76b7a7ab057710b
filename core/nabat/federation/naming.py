"""Names on NATS: subjects, streams and message ids of a site's events."""

from __future__ import annotations

import msgspec

from ..events import SITE, Event, site_of

__all__ = [
    "SITE",
    "msg_id",
    "site_of",
    "stream_name",
    "subject_for",
    "subjects_of",
    "with_site",
]


def subject_for(site: str, event_type: str) -> str:
    """``nabat.<site>.<type>``: an event's type is already a valid NATS subject
    (:func:`nabat.subjects.validate_subject`), a site a slug."""
    return f"nabat.{site}.{event_type}"


def subjects_of(site: str) -> str:
    """Every subject of a site's events (its stream's subjects)."""
    return f"nabat.{site}.>"


def stream_name(site: str) -> str:
    """The site's events stream, ``EVENTS_<site>`` (a slug is a valid stream name)."""
    return f"EVENTS_{site}"


def msg_id(event: Event) -> str:
    """``Nats-Msg-Id``: the event's identity (``source`` and ``id``, unique together), so
    JetStream drops a republished event (after a crash or a lost acknowledgement) and the
    following hub appends each once."""
    return f"{event.source} {event.id}"


def with_site(event: Event, site: str) -> Event:
    """``event`` stamped with its site, as it goes up."""
    if site_of(event) == site:
        return event
    return msgspec.structs.replace(event, extensions={**(event.extensions or {}), SITE: site})
