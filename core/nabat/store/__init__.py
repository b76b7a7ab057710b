"""The journal: durable, ordered, idempotent storage of every accepted event."""

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
from .postgres import PostgresJournal
from .sqlite import SqliteJournal

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
