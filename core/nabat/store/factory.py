"""Choosing the journal from ``[storage]``."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigInvalid, LoadedConfig, Secret
from ..events import EventTypes
from ..masking import mask_url
from .base import Journal
from .sqlite import SqliteJournal

__all__ = ["journal_from_config"]

DEFAULT_SQLITE = "journal.sqlite3"


def journal_from_config(loaded: LoadedConfig, types: EventTypes | None = None) -> Journal:
    """The journal ``plugins.toml`` asks for (not yet opened)."""
    storage = loaded.config.storage
    url = storage.url.reveal() if isinstance(storage.url, Secret) else storage.url
    if url is None or url.startswith("sqlite:///"):
        raw = DEFAULT_SQLITE if url is None else url.removeprefix("sqlite:///")
        path = Path(raw)
        if not path.is_absolute():
            path = loaded.data_dir / path
        return SqliteJournal(path, types=types)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresJournal

        return PostgresJournal(url, schema=storage.schema, types=types)
    raise ConfigInvalid(
        [
            loaded.issue(
                ["storage", "url"],
                f"unsupported journal URL {mask_url(url)!r}; use "
                "sqlite:///PATH or postgresql://USER@HOST/DB",
            )
        ]
    )
