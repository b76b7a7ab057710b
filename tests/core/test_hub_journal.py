"""The hub journals every event before fanning it out, and guards its schema."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from nabat.config import ConfigInvalid
from nabat.events import Event
from nabat.store import EventQuery, SqliteJournal
from nabat.testing import load_config_text, record, run_hub

CONFIG = """
[hub]
language = "en"

[plugins.eventlog]
enabled = false
"""


async def test_published_events_are_in_the_journal_before_listeners_see_them(tmp_path):
    async with run_hub(CONFIG, tmp_path) as hub:
        seen_in_journal: list[bool] = []

        async def check(event: Event) -> None:
            seen_in_journal.append(await hub.journal.get(event.source, event.id) is not None)

        hub.subscribe("test.>", check, name="check")
        events = record(hub, "test.>")
        for n in range(5):
            await hub.publish(Event(type="test.ping", source="/t", subject=str(n)))
        await events.wait_for_count("test.ping", 5)
        await hub.bus.drain()
        assert seen_in_journal == [True] * 5
    journal = SqliteJournal(tmp_path / "data" / "journal.sqlite3")
    await journal.open()
    try:
        page = await journal.query(EventQuery(types=("test.ping",)))
        assert [s.event.subject for s in page.events] == ["0", "1", "2", "3", "4"]
        states = await journal.query(EventQuery(types=("hub.unit.*",), limit=1000))
        assert any(s.event.subject == "watch" for s in states.events)
    finally:
        await journal.close()


def _nabat(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nabat", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NABAT_LANG": "en"},
    )


def test_a_journal_newer_than_the_code_is_refused(tmp_path):
    (tmp_path / "plugins.toml").write_text(CONFIG)
    assert _nabat("db", "upgrade", cwd=tmp_path).returncode == 0
    db = sqlite3.connect(tmp_path / "data" / "journal.sqlite3")
    db.execute("UPDATE nabat_meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    status = _nabat("db", "status", cwd=tmp_path)
    assert status.returncode == 1 and "NEWER than this Nabat" in status.stdout
    run = _nabat("run", cwd=tmp_path)
    assert run.returncode == 1
    assert "schema is version 99, this Nabat supports up to 3" in run.stderr


def test_db_upgrade_creates_then_reports_nothing_to_do(tmp_path):
    (tmp_path / "plugins.toml").write_text(CONFIG)
    first = _nabat("db", "upgrade", cwd=tmp_path)
    assert first.returncode == 0 and "from version 0 to 3" in first.stdout
    again = _nabat("db", "upgrade", cwd=tmp_path)
    assert "nothing to do" in again.stdout


@pytest.mark.parametrize(
    ("storage", "reason"),
    [
        ('url = "postgresql://nabat:hunter2@db/nabat"', "must not be written inline"),
        ('url = { env = "NABAT_TEST_NO_SUCH_VAR" }', "NABAT_TEST_NO_SUCH_VAR is not set"),
        ("retention_days = -1", "Expected `float` >"),
    ],
)
def test_storage_settings_are_checked(tmp_path, storage, reason):
    with pytest.raises(ConfigInvalid) as err:
        load_config_text(f"[storage]\n{storage}\n", tmp_path)
    assert reason in str(err.value) and "hunter2" not in str(err.value)


async def test_an_unsupported_journal_url_is_a_config_error(tmp_path):
    loaded = load_config_text('[storage]\nurl = "mysql://db/nabat"\n', tmp_path)
    from nabat.hub import Hub

    with pytest.raises(ConfigInvalid, match="unsupported journal URL"):
        Hub(loaded)


def test_cli_reports_an_unsupported_journal_url(tmp_path):
    (tmp_path / "plugins.toml").write_text('[storage]\nurl = "mysql://db/nabat"\n')
    for args in (("config", "check"), ("run",)):
        out = _nabat(*args, cwd=tmp_path)
        assert out.returncode == 1
        assert "plugins.toml:2: storage.url: unsupported journal URL" in out.stderr


async def test_operators_list_retry_and_discard_dead_letters(tmp_path):
    from nabat.store.delivery import SubscriptionSpec

    (tmp_path / "plugins.toml").write_text(CONFIG)
    journal = SqliteJournal(tmp_path / "data" / "journal.sqlite3")
    await journal.open()
    seqs = await journal.append([Event(type="incident.created", source="/t") for _ in range(3)])
    await journal.save_subscription(SubscriptionSpec(id="webhook:police", patterns=("incident.>",)))
    for seq in seqs:
        await journal.record_failure("webhook:police", seq, f"ev{seq}", "HTTP 410 Gone", None, True)
    await journal.close()

    status = _nabat("deliveries", "status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    import json

    [row] = json.loads(status.stdout)
    assert (row["subscription"], row["dead"], row["retrying"]) == ("webhook:police", 3, 0)
    listed = _nabat("deliveries", "list", "webhook:police", "--state", "dead", cwd=tmp_path)
    assert listed.stdout.count("HTTP 410 Gone") == 3
    retried = _nabat("deliveries", "retry", "webhook:police", str(seqs[0]), cwd=tmp_path)
    assert "1 dead letter(s) of webhook:police queued for delivery" in retried.stdout
    discarded = _nabat("deliveries", "discard", "webhook:police", "--all", cwd=tmp_path)
    assert "2 dead letter(s) of webhook:police discarded" in discarded.stdout
    missing = _nabat("deliveries", "retry", "nope", "--all", cwd=tmp_path)
    assert missing.returncode == 1 and "no subscription 'nope'" in missing.stderr
    left = json.loads(_nabat("deliveries", "list", "--json", cwd=tmp_path).stdout)
    assert [(i["seq"], i["state"], i["attempts"]) for i in left] == [(seqs[0], "retry", 0)]
