"""The journal: durable, ordered, idempotent storage of every accepted event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    MAX_PAGE,
    Appended,
    EventQuery,
    Journal,
    JournalError,
    Page,
    Record,
    SchemaTooNew,
    StoredEvent,
    decode_cursor,
    encode_cursor,
)
from .sqlite import SqliteJournal

if TYPE_CHECKING:
    from .postgres import PostgresJournal

__all__ = [
    "MAX_PAGE",
    "Appended",
    "EventQuery",
    "Journal",
    "JournalError",
    "Page",
    "PostgresJournal",
    "Record",
    "SchemaTooNew",
    "SqliteJournal",
    "StoredEvent",
    "decode_cursor",
    "encode_cursor",
]


def __getattr__(name: str) -> Any:
    # asyncpg is imported on first use: the embedded SQLite journal (and every `nabat`
    # command run on it) does without it.
    if name == "PostgresJournal":
        from .postgres import PostgresJournal

        return PostgresJournal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
