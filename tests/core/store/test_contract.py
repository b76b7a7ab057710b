"""The journal contract: one suite, run unchanged against every implementation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from nabat.events import Event
from nabat.store import Appended, EventQuery, JournalError, SchemaTooNew, decode_cursor

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


class Level(msgspec.Struct):
    cm: int


def ev(n: int, type_: str = "camera.health.offline", **over) -> Event:
    fields = dict(
        type=type_,
        source="/nabat/test",
        subject=f"cam-{n % 5}",
        time=T0 + timedelta(seconds=n),
        municipality=("krasnodar", "sochi", "tuapsinsky")[n % 3],
        correlationid=f"inc-{n % 4}",
    )
    fields.update(over)
    return Event(**fields)


async def read_all(journal, **filters) -> list:
    out, after = [], None
    while True:
        page = await journal.query(EventQuery(after=after, limit=7, **filters))
        out.extend(page.events)
        if page.next_cursor is None:
            return out
        after = decode_cursor(page.next_cursor)


async def test_append_is_durable_across_reopen_and_keeps_everything(make_journal):
    journal = await make_journal()
    events = [ev(n, data={"n": n}) for n in range(25)]
    seqs = await journal.append(events)
    assert seqs == sorted(seqs) and len(set(seqs)) == 25
    await journal.close()
    reopened = await make_journal()
    stored = await read_all(reopened)
    assert [s.event for s in stored] == events
    assert [s.seq for s in stored] == seqs
    assert await reopened.last_seq() == seqs[-1]


async def test_append_is_idempotent_by_source_and_id(make_journal):
    journal = await make_journal()
    first = ev(1)
    [seq] = await journal.append([first])
    again = await journal.append([ev(2), first, first.replace(data={"changed": True})])
    assert again[1] == seq and again[2] == seq
    other_source = first.replace(source="/elsewhere")
    [seq3] = await journal.append([other_source])
    assert seq3 != seq
    stored = await read_all(journal)
    assert len(stored) == 3
    assert (await journal.get(first.source, first.id)).event == first


async def test_append_checked_says_which_events_were_new(make_journal):
    journal = await make_journal()
    a, b, c = ev(1), ev(2), ev(3)
    [first] = await journal.append_checked([a])
    assert first == Appended(seq=first.seq, new=True)
    # A stored event, a new one, the new one again (same batch) and the stored one again.
    got = await journal.append_checked([a, b, b.replace(data={"changed": True}), a])
    assert [r.new for r in got] == [False, True, False, False]
    assert got[0].seq == got[3].seq == first.seq and got[1].seq == got[2].seq > first.seq
    assert await journal.append_checked([]) == []
    # Plain append agrees on the numbers.
    assert await journal.append([a, b, c]) == [first.seq, got[1].seq, got[1].seq + 1]
    assert (await journal.append_checked([c]))[0] == Appended(seq=got[1].seq + 1, new=False)
    assert len(await read_all(journal)) == 3


async def test_append_checked_concurrent_duplicates_have_one_new(make_journal):
    # Two journals on one storage stand for two hub processes; each makes concurrent calls,
    # which its group commit batches.
    journals = [await make_journal(), await make_journal()]
    shared = [ev(n, source="/shared") for n in range(5)]

    async def producer(p: int) -> list[Appended]:
        own = ev(1000 + p)
        result = await journals[p % 2].append_checked([shared[p % 5], own, shared[(p + 1) % 5]])
        assert result[1].new
        return [result[0], result[2]]

    for round_ in range(3):
        results = await asyncio.gather(*(producer(p) for p in range(20)))
        by_event: dict[str, list[Appended]] = {}
        for p, (x, y) in enumerate(results):
            by_event.setdefault(shared[p % 5].id, []).append(x)
            by_event.setdefault(shared[(p + 1) % 5].id, []).append(y)
        assert all(len({r.seq for r in rs}) == 1 for rs in by_event.values())
        news = sorted(sum(r.new for r in rs) for rs in by_event.values())
        assert news == ([1] * 5 if round_ == 0 else [0] * 5), news
    assert len(await read_all(journals[0])) == 5 + 60


async def test_concurrent_producers_are_group_committed_in_order(make_journal):
    journal = await make_journal()

    async def producer(p: int) -> list[int]:
        seqs = []
        for n in range(40):
            seqs += await journal.append([ev(p * 1000 + n)])
        return seqs

    batches_before = journal.batches
    results = await asyncio.gather(*(producer(p) for p in range(25)))
    # Each producer's events got increasing numbers, all numbers are distinct…
    assert all(s == sorted(s) for s in results)
    assert len({x for s in results for x in s}) == 1000
    # …and concurrent appends shared transactions.
    assert journal.batches - batches_before < 1000
    stored = await read_all(journal)
    assert [s.seq for s in stored] == sorted(x for s in results for x in s)


async def test_filters_and_cursor_pagination(make_journal):
    journal = await make_journal()
    events = [ev(n) for n in range(30)] + [
        ev(100, "alert.device.activated"),
        ev(101, "alert.issued"),
        ev(102, "camera.health.ok"),
        ev(103, "camera.snapshot_taken"),  # "_" must not act as a LIKE wildcard
        ev(104, "cameraXhealth.ok"),
    ]
    await journal.append(events)

    def types(stored):
        return [s.event.type for s in stored]

    assert len(await read_all(journal)) == 35
    assert types(await read_all(journal, types=("alert.>",))) == [
        "alert.device.activated",
        "alert.issued",
    ]
    assert set(types(await read_all(journal, types=("camera.health.*",)))) == {
        "camera.health.offline",
        "camera.health.ok",
    }
    assert types(await read_all(journal, types=("camera.health.ok", "alert.issued"))) == [
        "alert.issued",
        "camera.health.ok",
    ]
    assert types(await read_all(journal, types=("camera.snapshot_taken",))) == [
        "camera.snapshot_taken"
    ]
    assert len(await read_all(journal, types=("*.health.*",))) == 31
    sochi = await read_all(journal, municipalities=("sochi",))
    assert sochi and all(s.event.municipality == "sochi" for s in sochi)
    two = await read_all(journal, municipalities=("sochi", "tuapsinsky"))
    assert len(two) == len(sochi) + len([e for e in events if e.municipality == "tuapsinsky"])
    corr = await read_all(journal, correlationid="inc-1")
    assert [s.event.correlationid for s in corr] == ["inc-1"] * len(corr) and corr
    window = await read_all(
        journal, since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=20)
    )
    assert [s.event.time for s in window] == [T0 + timedelta(seconds=n) for n in range(10, 20)]
    subject = await read_all(journal, subject="cam-3")
    assert subject and all(s.event.subject == "cam-3" for s in subject)


async def test_pages_never_repeat_or_skip(make_journal):
    journal = await make_journal()
    await journal.append([ev(n, "a.b" if n % 3 else "c.d") for n in range(50)])
    seen = []
    after = None
    while True:
        page = await journal.query(EventQuery(types=("a.*",), after=after, limit=4))
        assert len(page.events) <= 4
        seen += [s.seq for s in page.events]
        if page.next_cursor is None:
            break
        after = decode_cursor(page.next_cursor)
    assert seen == sorted(set(seen)) and len(seen) == len([n for n in range(50) if n % 3])


async def test_typed_payloads_come_back_typed(make_journal):
    journal = await make_journal()
    make_journal.types.register("hydro.level.*", Level)
    await journal.append([ev(1, "hydro.level.rising", data=Level(cm=512))])
    [stored] = await read_all(journal)
    assert stored.event.data == Level(cm=512)


async def test_binary_data_and_extensions_survive(make_journal):
    journal = await make_journal()
    original = ev(1, data=b"\x00\xffjpeg", extensions={"partnerid": "mchs23"})
    await journal.append([original])
    [stored] = await read_all(journal)
    assert stored.event == original


async def test_retention_purges_old_events_only(make_journal):
    journal = await make_journal()
    seqs = await journal.append([ev(n) for n in range(10)])
    removed = await journal.purge(T0 + timedelta(seconds=5))
    assert removed == 5
    left = await read_all(journal)
    assert [s.seq for s in left] == seqs[5:]
    # Numbers are never reused after a purge.
    [new] = await journal.append([ev(99)])
    assert new > seqs[-1]


async def test_schema_is_versioned_and_a_newer_one_is_refused(make_journal):
    journal = await make_journal()
    assert await journal.schema_version() == journal.SCHEMA_VERSION
    await journal.close()
    type(journal).SCHEMA_VERSION -= 1
    try:
        with pytest.raises(SchemaTooNew, match="upgrade Nabat"):
            await make_journal()
    finally:
        type(journal).SCHEMA_VERSION += 1


async def test_closed_journal_refuses_appends(make_journal):
    journal = await make_journal()
    await journal.close()
    with pytest.raises(JournalError):
        await journal.append([ev(1)])


async def test_naive_datetimes_are_refused(make_journal):
    journal = await make_journal()
    with pytest.raises(ValueError, match="UTC offset"):
        await journal.query(EventQuery(since=datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="UTC offset"):
        await journal.purge(datetime(2026, 1, 1))
