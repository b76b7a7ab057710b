"""Schema migrations: an older journal is upgraded in place, keeping everything it held —
one suite for every journal implementation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from nabat.events import Event
from nabat.store import EventQuery, Journal, JournalError, PostgresJournal, SqliteJournal
from nabat.store.delivery import IssueState, SubscriptionSpec

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def ev(n: int) -> Event:
    return Event(
        type="camera.health.offline",
        source="/old",
        time=T0 + timedelta(seconds=n),
        data={"n": n},
    )


@pytest.mark.parametrize("old_version", [1, 2])
async def test_an_older_schema_is_migrated_in_place(make_journal, monkeypatch, old_version):
    with monkeypatch.context() as patch:
        for cls in (Journal, SqliteJournal, PostgresJournal):  # subclasses may shadow it
            patch.setattr(cls, "SCHEMA_VERSION", old_version)
        old = await make_journal()
        assert await old.schema_version() == old_version
        events = [ev(n) for n in range(5)]
        seqs = await old.append(events)
        if old_version >= 2:
            await old.save_subscription(
                SubscriptionSpec(id="s", patterns=("camera.>",), start_at_beginning=True)
            )
            await old.record_failure("s", seqs[1], "e1", "boom", None, dead=True)
        with pytest.raises(JournalError):  # a true old schema: no records table yet
            await old.put_record("tokens", "t", b"{}")
        await old.close()

    with pytest.raises(JournalError, match="nabat db upgrade"):
        await make_journal(migrate=False)

    journal = await make_journal()
    assert await journal.schema_version() == type(journal).SCHEMA_VERSION == 3
    page = await journal.query(EventQuery())
    assert [s.seq for s in page.events] == seqs
    assert [s.event for s in page.events] == events
    assert await journal.append([ev(99)]) == [seqs[-1] + 1]
    if old_version >= 2:
        state = await journal.subscription("s")
        assert state is not None and state.cursor == 0
        [issue] = await journal.issues("s")
        assert (issue.seq, issue.state, issue.last_error) == (seqs[1], IssueState.DEAD, "boom")
    assert await journal.put_record("tokens", "t", b"{}", only_new=True)
    assert (await journal.get_record("tokens", "t")).body == b"{}"
    assert [r.key for r in await journal.records("tokens")] == ["t"]
    await journal.close()
    # Opening again finds nothing to do.
    again = await make_journal(migrate=False)
    assert await again.schema_version() == 3
