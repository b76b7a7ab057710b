"""The records contract (schema version 3): small keyed documents beside the events, with
optional expiry — one suite for every journal implementation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from nabat.store import Record


def soon(seconds: float = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def ago(seconds: float = 3600) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


async def keys(journal, collection: str = "c", **listing) -> list[str]:
    return [r.key for r in await journal.records(collection, **listing)]


def is_utc(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() == timedelta(0)


async def test_a_record_round_trips(make_journal):
    journal = await make_journal()
    expires = datetime(2999, 1, 2, 3, 4, 5, 123457, tzinfo=UTC)
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert await journal.put_record("tokens", "h:abc", b'{"a":1}\x00\xff', expires=expires)
    assert await journal.put_record("tokens", "h:never", b"{}")
    record = await journal.get_record("tokens", "h:abc")
    assert isinstance(record, Record)
    assert (record.collection, record.key, record.body) == ("tokens", "h:abc", b'{"a":1}\x00\xff')
    assert record.expires == expires and is_utc(record.expires)
    assert is_utc(record.created) and is_utc(record.updated)
    assert before <= record.created == record.updated <= datetime.now(UTC) + timedelta(seconds=5)
    assert (await journal.get_record("tokens", "h:never")).expires is None
    # Collections are separate namespaces.
    assert await journal.get_record("other", "h:abc") is None
    assert await journal.get_record("tokens", "missing") is None
    # Survives a restart.
    await journal.close()
    reopened = await make_journal()
    assert await reopened.get_record("tokens", "h:abc") == record


async def test_an_expiry_in_another_offset_is_the_same_instant(make_journal):
    journal = await make_journal()
    plus3 = timezone(timedelta(hours=3))
    local = datetime(2999, 6, 1, 15, 0, tzinfo=plus3)
    await journal.put_record("c", "k", b"x", expires=local)
    stored = (await journal.get_record("c", "k")).expires
    assert stored == local and is_utc(stored) and stored.hour == 12


async def test_a_put_replaces_body_and_expiry_and_keeps_created(make_journal):
    journal = await make_journal()
    assert await journal.put_record("c", "k", b"1", expires=soon())
    first = await journal.get_record("c", "k")
    await asyncio.sleep(0.01)
    assert await journal.put_record("c", "k", b"2")
    second = await journal.get_record("c", "k")
    assert second.body == b"2" and second.expires is None
    assert second.created == first.created and second.updated > first.updated


async def test_only_new_writes_only_when_no_live_record_has_the_key(make_journal):
    journal = await make_journal()
    assert await journal.put_record("idem", "k", b"first", only_new=True)
    assert not await journal.put_record("idem", "k", b"second", only_new=True)
    assert (await journal.get_record("idem", "k")).body == b"first"
    # Same key in another collection is another record.
    assert await journal.put_record("other", "k", b"x", only_new=True)
    # A record that will expire later still blocks.
    assert await journal.put_record("idem", "later", b"a", expires=soon(), only_new=True)
    assert not await journal.put_record("idem", "later", b"b", only_new=True)
    # An expired one counts as absent and is replaced, its creation time too.
    assert await journal.put_record("idem", "old", b"stale", expires=ago())
    stale_row_written = datetime.now(UTC)
    await asyncio.sleep(0.01)
    assert await journal.put_record("idem", "old", b"fresh", expires=soon(), only_new=True)
    fresh = await journal.get_record("idem", "old")
    assert fresh.body == b"fresh" and fresh.created > stale_row_written - timedelta(seconds=1)
    assert fresh.created == fresh.updated
    assert not await journal.put_record("idem", "old", b"again", only_new=True)
    # After a delete the key is free again.
    assert await journal.delete_record("idem", "k")
    assert await journal.put_record("idem", "k", b"third", only_new=True)
    assert (await journal.get_record("idem", "k")).body == b"third"


async def test_a_claim_takes_renews_and_gives_up_a_lease_never_another_holders(make_journal):
    """``claim``: the recording lease of a camera between hub processes (body = holder)."""
    journal = await make_journal()
    assert await journal.put_record("leases", "cam", b"hub-a", expires=soon(), claim=True)
    # Another holder cannot take a live lease, nor overwrite it.
    assert not await journal.put_record("leases", "cam", b"hub-b", expires=soon(), claim=True)
    assert (await journal.get_record("leases", "cam")).body == b"hub-a"
    # Its holder renews it: a later expiry.
    before = (await journal.get_record("leases", "cam")).expires
    assert await journal.put_record("leases", "cam", b"hub-a", expires=soon(7200), claim=True)
    assert (await journal.get_record("leases", "cam")).expires > before
    # Given up (expires now): another takes it; the old holder can no longer renew it.
    assert await journal.put_record("leases", "cam", b"hub-a", expires=ago(0), claim=True)
    assert await journal.put_record("leases", "cam", b"hub-b", expires=soon(), claim=True)
    assert not await journal.put_record("leases", "cam", b"hub-a", expires=soon(), claim=True)
    # An expired lease is free.
    assert await journal.put_record("leases", "old", b"hub-a", expires=ago())
    assert await journal.put_record("leases", "old", b"hub-b", expires=soon(), claim=True)
    # Of concurrent claims of a free key exactly one wins.
    won = await asyncio.gather(
        *(
            journal.put_record("leases", "race", f"hub-{i}".encode(), expires=soon(), claim=True)
            for i in range(8)
        )
    )
    assert sum(won) == 1


async def test_expired_records_are_absent(make_journal):
    journal = await make_journal()
    assert await journal.put_record("c", "gone", b"x", expires=ago(1))
    await journal.put_record("c", "brief", b"x", expires=soon(0.3))
    await journal.put_record("c", "live", b"x", expires=soon())
    await journal.put_record("c", "forever", b"x")
    assert await journal.get_record("c", "gone") is None
    assert await keys(journal) == ["brief", "forever", "live"]
    await asyncio.sleep(0.4)
    assert await journal.get_record("c", "brief") is None
    assert await keys(journal) == ["forever", "live"]
    assert not await journal.delete_record("c", "gone")  # absent: nothing deleted


async def test_listing_in_key_order_with_bounds_prefix_and_limit(make_journal):
    journal = await make_journal()
    names = [f"k{n:02}" for n in range(20)]
    for name in reversed(names):
        await journal.put_record("audit", name, name.encode())
    await journal.put_record("other", "k05", b"elsewhere")
    assert await keys(journal, "audit") == names
    assert await keys(journal, "audit", limit=3) == names[:3]
    assert await keys(journal, "audit", after="k04", limit=3) == ["k05", "k06", "k07"]
    assert await keys(journal, "audit", before="k03") == ["k00", "k01", "k02"]
    assert await keys(journal, "audit", after="k03", before="k06") == ["k04", "k05"]
    assert await keys(journal, "audit", descending=True, limit=3) == ["k19", "k18", "k17"]
    assert await keys(journal, "audit", descending=True, before="k10", limit=2) == ["k09", "k08"]
    assert await keys(journal, "audit", descending=True, after="k17") == ["k19", "k18"]
    assert await keys(journal, "audit", prefix="k1") == names[10:]
    assert await keys(journal, "audit", prefix="k1", after="k15", limit=2) == ["k16", "k17"]
    assert await keys(journal, "audit", prefix="k1", descending=True, limit=1) == ["k19"]
    assert await keys(journal, "audit", prefix="nope") == []
    assert await keys(journal, "audit", after="k19") == []
    assert [r.body for r in await journal.records("other")] == [b"elsewhere"]
    assert await journal.records("empty") == []
    # Paging forward by the last key sees every record once.
    seen, after = [], None
    while page := await journal.records("audit", after=after, limit=6):
        seen += [r.key for r in page]
        after = page[-1].key
    assert seen == names
    with pytest.raises(ValueError, match="limit"):
        await journal.records("audit", limit=0)


async def test_keys_sort_byte_wise(make_journal):
    journal = await make_journal()
    for key in ("b", "a", "B", "é", "z", "A", "01938f4e-7a00-7000", "01938f4e-79ff-7fff"):
        await journal.put_record("c", key, b"")
    # Code point (= UTF-8 byte) order, whatever the server's locale: uuid7 strings in time
    # order, capitals before small letters, non-ASCII last.
    expected = ["01938f4e-79ff-7fff", "01938f4e-7a00-7000", "A", "B", "a", "b", "z", "é"]
    assert await keys(journal) == expected
    assert await keys(journal, descending=True) == expected[::-1]


async def test_a_prefix_is_literal_and_case_sensitive(make_journal):
    journal = await make_journal()
    for key in ("a%b", "a%c", "axb", "a_1", "ab1", "a\\x", "aZ", "A%b", "ab%", "a", "é1", "éx"):
        await journal.put_record("c", key, b"")
    assert await keys(journal, prefix="a%") == ["a%b", "a%c"]
    assert await keys(journal, prefix="a_") == ["a_1"]
    assert await keys(journal, prefix="a\\") == ["a\\x"]
    assert await keys(journal, prefix="A") == ["A%b"]
    assert await keys(journal, prefix="ab") == ["ab%", "ab1"]
    assert await keys(journal, prefix="ab%") == ["ab%"]
    assert await keys(journal, prefix="é") == ["é1", "éx"]
    assert await keys(journal, prefix="\U0010ffff") == []
    assert len(await keys(journal, prefix="a")) == 9
    assert len(await keys(journal, prefix="")) == 12


async def test_delete(make_journal):
    journal = await make_journal()
    await journal.put_record("c", "k", b"x")
    await journal.put_record("d", "k", b"y")
    assert await journal.delete_record("c", "k")
    assert not await journal.delete_record("c", "k")
    assert not await journal.delete_record("c", "never")
    assert await journal.get_record("c", "k") is None
    assert (await journal.get_record("d", "k")).body == b"y"


async def test_purge_deletes_expired_records_only(make_journal):
    journal = await make_journal()
    await journal.put_record("a", "old", b"", expires=ago())
    await journal.put_record("b", "old", b"", expires=ago(10))
    await journal.put_record("a", "later", b"", expires=soon())
    await journal.put_record("a", "forever", b"")
    assert await journal.purge_records() == 2
    assert await journal.purge_records() == 0
    assert await keys(journal, "a") == ["forever", "later"]
    # An explicit instant: what has expired by then.
    assert await journal.purge_records(soon(7200)) == 1
    assert await keys(journal, "a") == ["forever"]
    with pytest.raises(ValueError, match="UTC offset"):
        await journal.purge_records(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="UTC offset"):
        await journal.put_record("a", "k", b"", expires=datetime(2999, 1, 1))
    with pytest.raises(ValueError, match="UTC offset"):
        await journal.put_records("a", [("k", b"", datetime(2999, 1, 1))])


async def test_put_records_writes_a_batch(make_journal):
    journal = await make_journal()
    await journal.put_record("audit", "0005", b"before", expires=ago())
    await journal.put_record("audit", "0006", b"before")
    created = (await journal.get_record("audit", "0006")).created
    items = [(f"{n:04}", f"entry {n}".encode(), None) for n in range(500)]
    items += [("0007", b"last wins", soon()), ("x-expired", b"", ago())]
    await journal.put_records("audit", items)
    await journal.put_records("audit", [])
    listed = await journal.records("audit", limit=1000)
    assert [r.key for r in listed] == [f"{n:04}" for n in range(500)]
    by_key = {r.key: r for r in listed}
    assert by_key["0001"].body == b"entry 1" and by_key["0001"].expires is None
    assert by_key["0007"].body == b"last wins" and by_key["0007"].expires is not None
    assert by_key["0005"].body == b"entry 5"  # replaced the expired row
    assert by_key["0006"].body == b"entry 6" and by_key["0006"].created == created
    assert len({r.created for r in listed if r.key not in ("0005", "0006")}) <= 2
    assert await journal.get_record("audit", "x-expired") is None


async def test_concurrent_only_new_puts_of_one_key_have_one_winner(make_journal):
    # Two journals on one storage stand for two hub processes.
    journals = [await make_journal(), await make_journal()]
    for round_ in range(10):
        key = f"idem-{round_}"
        if round_ % 2:  # half the rounds race to replace an expired record
            await journals[0].put_record("idem", key, b"stale", expires=ago())
        results = await asyncio.gather(
            *(
                journals[n % 2].put_record("idem", key, f"{n}".encode(), only_new=True)
                for n in range(6)
            )
        )
        assert sum(results) == 1, results
        winner = results.index(True)
        assert (await journals[1].get_record("idem", key)).body == f"{winner}".encode()


async def test_a_swap_writes_only_over_the_body_it_expects(make_journal):
    journal = await make_journal()
    await journal.put_record("c", "k", b"one", expires=soon())
    before = await journal.get_record("c", "k")
    assert not await journal.swap_record("c", "k", b"other", b"two")
    assert await journal.swap_record("c", "k", b"one", b"two")
    after = await journal.get_record("c", "k")
    assert after.body == b"two" and after.created == before.created
    assert after.expires == before.expires and after.updated >= before.updated
    assert not await journal.swap_record("c", "k", b"one", b"three")  # changed already
    assert not await journal.swap_record("c", "absent", b"", b"x")
    await journal.put_record("c", "gone", b"one", expires=ago())
    assert not await journal.swap_record("c", "gone", b"one", b"two")  # expired = absent


async def test_concurrent_updates_from_two_processes_lose_no_change(make_journal):
    """Read-modify-write from two journals on one storage (two hub processes): every
    increment counts, as a per-process lock alone could not make it."""
    journals = [await make_journal(), await make_journal()]
    await journals[0].put_record("counters", "n", b"0")

    def plus_one(body: bytes) -> bytes:
        return str(int(body) + 1).encode()

    written = await asyncio.gather(
        *(journals[n % 2].update_record("counters", "n", plus_one) for n in range(40))
    )
    assert sorted(int(w) for w in written) == list(range(1, 41))
    assert (await journals[1].get_record("counters", "n")).body == b"40"
    # A change that leaves the record, and a record that is not there: nothing written.
    assert await journals[0].update_record("counters", "n", lambda body: None) is None
    assert await journals[0].update_record("counters", "absent", plus_one) is None
    assert (await journals[0].get_record("counters", "n")).body == b"40"


async def test_a_rate_limit_holds_for_two_processes_together(make_journal):
    """Two journals on one storage (two hub processes behind a balancer) take from one
    allowance: a burst of 5 lets 5 of 12 requests through in all, not 5 in each; the refused
    learn how long to wait, and after that wait one more gets through."""
    journals = [await make_journal(), await make_journal()]
    answers = await asyncio.gather(
        *(journals[n % 2].take_allowance("token:t1", rate=2.0, burst=5) for n in range(12))
    )
    allowed = [a for a in answers if a is None]
    waits = [a for a in answers if a is not None]
    assert len(allowed) == 5
    assert all(0 < w <= 0.51 for w in waits), waits
    # Another key has its own allowance.
    assert await journals[1].take_allowance("token:t2", rate=2.0, burst=5) is None
    await asyncio.sleep(min(waits) + 0.05)
    assert await journals[1].take_allowance("token:t1", rate=2.0, burst=5) is None
    assert await journals[0].take_allowance("token:t1", rate=2.0, burst=5) is not None
    with pytest.raises(ValueError):
        await journals[0].take_allowance("k", rate=0, burst=1)


async def test_a_rate_limit_gives_blocks_while_a_whole_block_is_left(make_journal):
    """A busy process takes several requests' worth at once (the API spends them itself)."""
    journal = await make_journal()
    assert await journal.take_allowance("k", rate=1.0, burst=5, cost=3) is None
    assert await journal.take_allowance("k", rate=1.0, burst=5, cost=3) is not None  # 2 left
    assert await journal.take_allowance("k", rate=1.0, burst=5, cost=2) is None
    assert await journal.take_allowance("k", rate=1.0, burst=5) is not None
    with pytest.raises(ValueError):
        await journal.take_allowance("k", rate=1.0, burst=5, cost=6)
