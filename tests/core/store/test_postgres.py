"""PostgreSQL-only journal behaviour: several hub processes on one database, connection errors.

Uses the server on 127.0.0.1:5432 (``NABAT_TEST_PG``), each test in a schema of its own. Without
a server these tests skip locally and fail under CI (``CI=true``), like the contract suite.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from nabat.events import Event
from nabat.store import EventQuery, JournalError, PostgresJournal, decode_cursor
from nabat.store.delivery import SubscriptionSpec

PG_DSN = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


async def _pg_available() -> str | None:  # the conftest's check (test modules can't import it)
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except Exception as exc:
        return f"PostgreSQL at {PG_DSN} is unreachable: {exc!r}"
    await conn.close()
    return None


@pytest.fixture
async def schema():
    """A fresh schema name on a reachable server; dropped afterwards."""
    problem = await _pg_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def ev(source: str, n: int) -> Event:
    return Event(
        type="camera.health.offline",
        source=source,
        subject=f"cam-{n % 5}",
        time=T0 + timedelta(milliseconds=n),
        municipality="sochi",
        data={"n": n},
    )


async def test_two_processes_writing_never_make_a_reader_miss_an_event(schema):
    # Two journals on one schema stand for two hub processes; a third one only reads.
    writers = [PostgresJournal(PG_DSN, schema=schema) for _ in range(2)]
    reader = PostgresJournal(PG_DSN, schema=schema)
    for journal in [*writers, reader]:
        await journal.open()
    try:
        written: list[tuple[str, str, int]] = []
        done = asyncio.Event()

        async def producer(journal: PostgresJournal, name: str) -> list[int]:
            seqs = []
            for n in range(30):
                events = [ev(name, n * 3 + k) for k in range(1 + n % 3)]
                got = await journal.append(events)
                written.extend((e.source, e.id, s) for e, s in zip(events, got, strict=True))
                seqs += got
            return seqs

        async def produce_all() -> list[list[int]]:
            try:
                return await asyncio.gather(
                    *(
                        producer(journal, f"/hub{w}/p{p}")
                        for w, journal in enumerate(writers)
                        for p in range(15)
                    )
                )
            finally:
                done.set()

        async def read_along() -> dict[tuple[str, str], int]:
            seen: dict[tuple[str, str], int] = {}
            after = 0
            while True:
                finished = done.is_set()  # decided before reading: a last pass follows it
                while True:
                    page = await reader.query(EventQuery(after=after, limit=50))
                    for stored in page.events:
                        assert stored.seq > after
                        seen[(stored.event.source, stored.event.id)] = stored.seq
                    if page.events:
                        after = page.events[-1].seq
                    if page.next_cursor is None:
                        break
                    after = decode_cursor(page.next_cursor)
                if finished:
                    return seen
                await asyncio.sleep(0.002)

        results, seen = await asyncio.wait_for(
            asyncio.gather(produce_all(), read_along()), timeout=60
        )
        all_seqs = [s for r in results for s in r]
        assert len(set(all_seqs)) == len(all_seqs) == len(written)
        assert all(r == sorted(r) for r in results)
        # The reader, which only ever moved its cursor forward, saw every event at its seq.
        expected = {(source, eid): seq for source, eid, seq in written}
        missed = sorted(expected[key] for key in expected.keys() - seen.keys())
        assert not missed, f"the reader's cursor skipped {len(missed)} events: seqs {missed[:10]}"
        assert seen == expected
        assert await reader.last_seq() == max(all_seqs)
    finally:
        for journal in [*writers, reader]:
            await journal.close()


async def test_two_processes_opening_a_fresh_schema_at_once_both_succeed(schema):
    journals = [PostgresJournal(PG_DSN, schema=schema) for _ in range(4)]
    await asyncio.gather(*(journal.open() for journal in journals))
    try:
        assert [await j.schema_version() for j in journals] == [PostgresJournal.SCHEMA_VERSION] * 4
        seqs = await asyncio.gather(
            *(j.append_one(ev(f"/j{i}", i)) for i, j in enumerate(journals))
        )
        assert sorted(seqs) == [1, 2, 3, 4]
    finally:
        for journal in journals:
            await journal.close()


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://nabat:s3cr3t-pw@127.0.0.1:1/test",
        "postgresql://nabat@127.0.0.1:1/test?password=s3cr3t-pw",
    ],
)
async def test_an_unreachable_server_fails_fast_and_clearly_without_the_password(dsn):
    journal = PostgresJournal(dsn, schema="nabat")
    started = time.monotonic()
    with pytest.raises(JournalError) as info:
        await journal.open()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "connecting" in message and "127.0.0.1:1" in message and '"nabat"' in message
    assert "s3cr3t-pw" not in message
    assert "s3cr3t-pw" not in repr(info.value.__cause__) or info.value.__cause__ is None
    with pytest.raises(JournalError, match="not open"):
        await journal.append([ev("/x", 1)])


async def test_a_duplicate_falls_back_without_leaving_a_gap(schema):
    journal = PostgresJournal(PG_DSN, schema=schema)
    await journal.open()
    try:
        a, b, c = ev("/s", 1), ev("/s", 2), ev("/s", 3)
        assert await journal.append([a]) == [1]
        # The COPY meets a stored row, is rolled back and redone with lookups.
        assert await journal.append([b, a, b, c]) == [2, 1, 2, 3]
        assert await journal.append([ev("/s", 4)]) == [4]
        assert await journal.append([ev("/s", 5), c]) == [5, 3]
        assert await journal.last_seq() == 5
    finally:
        await journal.close()


async def test_append_checked_reports_new_rows_on_every_write_path(schema):
    journal = PostgresJournal(PG_DSN, schema=schema)
    await journal.open()
    try:

        def flags(result):
            return [(r.seq, r.new) for r in result]

        a, b, c, d = (ev("/s", n) for n in range(1, 5))
        # One statement (small batch), then the fallback with lookups after a duplicate…
        assert flags(await journal.append_checked([a])) == [(1, True)]
        assert flags(await journal.append_checked([b, a, b, c])) == [
            (2, True),
            (1, False),
            (2, False),
            (3, True),
        ]
        # …which stays on while batches meet duplicates, then the fast path again.
        assert flags(await journal.append_checked([d, c])) == [(4, True), (3, False)]
        assert flags(await journal.append_checked([ev("/s", 5)])) == [(5, True)]
        # A large batch alone goes by COPY; a repeat inside it is not new.
        big = [ev("/big", n) for n in range(300)]
        result = await journal.append_checked([*big, big[0]])
        assert [r.new for r in result] == [True] * 300 + [False]
        assert [r.seq for r in result] == [*range(6, 306), 6]
        assert all(not r.new for r in await journal.append_checked(big))
    finally:
        await journal.close()


async def test_a_failing_statement_raises_a_journal_error_naming_the_schema(schema):
    journal = PostgresJournal(PG_DSN, schema=schema)
    await journal.open()
    try:
        conn = await asyncpg.connect(PG_DSN)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
        with pytest.raises(JournalError, match=rf'appending 1 events failed .*schema "{schema}"'):
            await journal.append([ev("/s", 1)])
        with pytest.raises(JournalError, match="reading events failed"):
            await journal.query(EventQuery())
    finally:
        await journal.close()


async def test_synchronous_commit_off_on_the_server_is_overridden(schema, caplog):
    # A DSN parameter becomes a session default, as an `ALTER ROLE … SET` would.
    journal = PostgresJournal(f"{PG_DSN}?synchronous_commit=off", schema=schema)
    with caplog.at_level(logging.WARNING, logger="nabat.store"):
        await journal.open()
    try:
        assert any(r.getMessage() == "journal.synchronous_commit_off" for r in caplog.records)
        assert "SET LOCAL synchronous_commit = on" in journal._begin_write
        assert await journal.append([ev("/s", 1)]) == [1]
    finally:
        await journal.close()


async def test_two_processes_racing_for_a_lease_never_both_win(schema):
    # Two journals stand for two hub processes, each with its own connection pool.
    hubs = [PostgresJournal(PG_DSN, schema=schema) for _ in range(2)]
    for journal in hubs:
        await journal.open()
    try:
        await hubs[0].save_subscription(SubscriptionSpec(id="webhook:x", patterns=("a.>",)))
        owners = ["hub-a", "hub-b"]
        wins = dict.fromkeys(owners, 0)
        for _ in range(50):
            got = await asyncio.gather(
                *(
                    j.acquire_lease("webhook:x", o, ttl=30)
                    for j, o in zip(hubs, owners, strict=True)
                )
            )
            assert sum(got) == 1, got
            winner = got.index(True)
            loser = 1 - winner
            wins[owners[winner]] += 1
            # Until the winner lets go, the other process cannot take it, nor move the cursor.
            assert not await hubs[loser].acquire_lease("webhook:x", owners[loser], ttl=30)
            assert not await hubs[loser].advance_cursor("webhook:x", owners[loser], 1)
            state = await hubs[loser].subscription("webhook:x")
            assert state is not None and state.lease_owner == owners[winner]
            assert await hubs[winner].acquire_lease("webhook:x", owners[winner], ttl=30)  # renew
            await hubs[winner].release_lease("webhook:x", owners[winner])
        assert sum(wins.values()) == 50
    finally:
        for journal in hubs:
            await journal.close()


async def test_a_version_1_database_is_migrated_in_place(schema, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(PostgresJournal, "SCHEMA_VERSION", 1)
        old = PostgresJournal(PG_DSN, schema=schema)
        await old.open()
        try:
            assert await old.schema_version() == 1
            seqs = await old.append([ev("/old", n) for n in range(5)])
        finally:
            await old.close()
    conn = await asyncpg.connect(PG_DSN)
    try:
        found = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".subscriptions'
        )
    finally:
        await conn.close()
    assert not found  # a true version-1 schema: no delivery tables yet

    with pytest.raises(JournalError, match="nabat db upgrade"):
        await PostgresJournal(PG_DSN, schema=schema).open(migrate=False)

    journal = PostgresJournal(PG_DSN, schema=schema)
    await journal.open()
    try:
        assert await journal.schema_version() == PostgresJournal.SCHEMA_VERSION == 3
        page = await journal.query(EventQuery())
        assert [s.seq for s in page.events] == seqs
        assert [s.event.source for s in page.events] == ["/old"] * 5
        assert await journal.append([ev("/new", 0)]) == [seqs[-1] + 1]
        state = await journal.save_subscription(SubscriptionSpec(id="s", patterns=("a.>",)))
        assert state.cursor == seqs[-1] + 1
        assert await journal.acquire_lease("s", "hub-a", ttl=5)
        assert await journal.advance_cursor("s", "hub-a", seqs[-1] + 1)
        assert await journal.put_record("tokens", "t1", b"{}")
        assert (await journal.get_record("tokens", "t1")).body == b"{}"
    finally:
        await journal.close()
