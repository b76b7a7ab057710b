"""The journal: durable, ordered, idempotent storage of every accepted event."""

from .base import (
    MAX_PAGE,
    EventQuery,
    Journal,
    JournalError,
    Page,
    SchemaTooNew,
    StoredEvent,
    decode_cursor,
    encode_cursor,
)
from .postgres import PostgresJournal
from .sqlite import SqliteJournal

__all__ = [
    "MAX_PAGE",
    "EventQuery",
    "Journal",
    "JournalError",
    "Page",
    "PostgresJournal",
    "SchemaTooNew",
    "SqliteJournal",
    "StoredEvent",
    "decode_cursor",
    "encode_cursor",
]
