"""Journal fixtures: every contract test runs against each implementation.

PostgreSQL tests use the server on 127.0.0.1:5432 (``NABAT_TEST_PG``, default
``postgresql://postgres@127.0.0.1:5432/test``), each test in a schema of its own. Without a
server they skip locally and fail under CI (``CI=true``).
"""

from __future__ import annotations

import os
import uuid

import pytest
from nabat.events import EventTypes
from nabat.store import Journal, SqliteJournal

PG_DSN = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_journal_class():
    try:
        from nabat.store.postgres import PostgresJournal
    except ImportError:  # the implementation is optional until it lands
        return None
    return PostgresJournal


async def _pg_available() -> str | None:
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed"
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except Exception as exc:
        return f"PostgreSQL at {PG_DSN} is unreachable: {exc!r}"
    await conn.close()
    return None


def _backends() -> list[str]:
    backends = ["sqlite"]
    if _postgres_journal_class() is not None:
        backends.append("postgres")
    return backends


@pytest.fixture(params=_backends())
async def make_journal(request, tmp_path):
    """A factory: ``await make_journal()`` opens a journal on this test's own storage; the
    same storage is reopened by later calls (restart tests)."""
    opened: list[Journal] = []
    schema = f"t_{uuid.uuid4().hex[:12]}"
    types = EventTypes()

    async def factory(*, migrate: bool = True) -> Journal:
        if request.param == "sqlite":
            journal: Journal = SqliteJournal(tmp_path / "journal.sqlite3", types=types)
        else:
            problem = await _pg_available()
            if problem:
                if os.environ.get("CI") == "true":
                    pytest.fail(problem)
                pytest.skip(problem)
            journal = _postgres_journal_class()(PG_DSN, schema=schema, types=types)
        await journal.open(migrate=migrate)
        opened.append(journal)
        return journal

    factory.kind = request.param  # type: ignore[attr-defined]
    factory.types = types  # type: ignore[attr-defined]
    yield factory
    for journal in opened:
        await journal.close()
    if request.param == "postgres" and await _pg_available() is None:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
