"""`nabat db backup` / `nabat db restore` as an operator runs them: a SQLite journal copied
while a real hub writes to it, a restore refused while the hub runs, and a restored hub that
resumes its durable subscription from the backup's cursor (at-least-once, no gap). PostgreSQL
through pg_dump / pg_restore, and the schema version check, each against the real tools."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

from nabat.events import Event
from nabat.store import PostgresJournal
from nabat.store.delivery import SubscriptionSpec
from nabat.testing import free_port, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures"))
from producers import Forwarded, ingest_lines

PG_DSN = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def nabat(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nabat", *args, cwd=cwd,
        env={**os.environ, "NABAT_LANG": "en"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def _backed_up(path: Path) -> tuple[int, list[str]]:
    """The forwarder's cursor in a backup, and the ids of the events after it."""
    conn = sqlite3.connect(path)
    try:
        (cursor,) = conn.execute(
            "SELECT cursor FROM subscriptions WHERE id = 'instance:forwarder'"
        ).fetchone()
        after = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM events WHERE seq > ? AND type = 'ingest.item' ORDER BY seq",
                (cursor,),
            )
        ]
    finally:
        conn.close()
    return cursor, after


async def test_a_sqlite_backup_taken_while_the_hub_writes_restores_and_resumes(
    tmp_path, test_plugins
):
    listen, receiver_port = free_port(), free_port()
    (tmp_path / "plugins.toml").write_text(f"""
[hub]
name = "backup-test"
log_format = "json"

[plugins.tp_ingest]

[instances.listener]
kind = "tp_ingest.listener"
settings = {{ port = {listen} }}

[instances.forwarder]
kind = "tp_ingest.forwarder"
delivery = {{ backoff_initial = 0.05, backoff_max = 0.2 }}
settings = {{ port = {receiver_port} }}
""")
    env = {**os.environ, "NABAT_LANG": "en", "PYTHONPATH": str(test_plugins)}
    receiver = Forwarded()

    async def start_hub(log_name: str) -> asyncio.subprocess.Process:
        with (tmp_path / log_name).open("wb") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nabat", "run", cwd=tmp_path, env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    async def stop(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await proc.wait()

    server = await asyncio.start_server(receiver.handle, "127.0.0.1", receiver_port)
    backup = tmp_path / "night.sqlite3"
    async with server:
        hub = await start_hub("hub-1.log")
        try:
            delivered = await ingest_lines(listen, range(0, 30))
            await receiver.wait_for(set(delivered))
            # The receiver refuses now: 30… wait at the forwarder's cursor, retried.
            receiver.refusing = True
            waiting = await ingest_lines(listen, range(30, 40))
            # The backup is taken while the hub goes on taking events.
            writing = asyncio.create_task(ingest_lines(listen, range(40, 90)))
            code, out, err = await nabat("db", "backup", str(backup), "--json", cwd=tmp_path)
            more = await writing
            assert code == 0, err
            report = json.loads(out)
            assert report["schema_version"] >= 1 and report["events"] >= 40
            cursor, pending = _backed_up(backup)
            assert report["subscriptions"]["instance:forwarder"] == cursor
            assert pending[: len(waiting)] == waiting  # the copy holds what waited
            # Restoring under a running hub is refused, and names why.
            code, out, err = await nabat("db", "restore", str(backup), "--yes", cwd=tmp_path)
            assert code != 0 and "a hub is running" in err
            receiver.refusing = False
            await receiver.wait_for(set(waiting + more))
        finally:
            await stop(hub)
        before_restore = len(receiver.got)

        code, out, err = await nabat("db", "restore", str(backup), "--yes", cwd=tmp_path)
        assert code == 0, err
        assert "kept as" in out and "subscriptions resume from" in out
        kept = next((tmp_path / "data").glob("journal.sqlite3.before-restore-*"))
        assert kept.stat().st_size > 0  # the journal replaced is not thrown away

        hub = await start_hub("hub-2.log")
        try:
            # Everything after the backup's cursor is delivered again (at-least-once)…
            await receiver.wait_for(set(pending))
            # …and what comes after the restore too: no gap.
            later = await ingest_lines(listen, range(90, 100))
            await receiver.wait_for(set(later))
        finally:
            await stop(hub)
    again = receiver.got[before_restore:]
    assert set(delivered).isdisjoint(again)  # before the cursor: not sent twice
    assert again[: len(pending)] == pending  # in the journal's order, from the cursor on


async def test_a_backup_of_a_newer_schema_is_refused(tmp_path):
    (tmp_path / "plugins.toml").write_text('[hub]\nname = "t"\n')
    assert run_cli("db", "upgrade", cwd=tmp_path).returncode == 0
    done = run_cli("db", "backup", str(tmp_path / "b.sqlite3"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(tmp_path / "b.sqlite3")
    conn.execute("UPDATE nabat_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    done = run_cli("db", "restore", str(tmp_path / "b.sqlite3"), "--yes", cwd=tmp_path)
    assert done.returncode != 0
    assert "schema version 99, newer than this Nabat's" in done.stderr
    # An existing file is never overwritten by a backup, nor a foreign file restored.
    done = run_cli("db", "backup", str(tmp_path / "b.sqlite3"), cwd=tmp_path)
    assert done.returncode != 0 and "exists already" in done.stderr
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database at all" * 100)
    done = run_cli("db", "restore", str(tmp_path / "junk.sqlite3"), "--yes", cwd=tmp_path)
    assert done.returncode != 0 and "junk.sqlite3" in done.stderr


async def test_a_postgresql_backup_restores_the_schema_as_it_was(tmp_path, pg_schema):
    (tmp_path / "plugins.toml").write_text(
        f'[hub]\nname = "t"\n\n[storage]\nurl = "{PG_DSN}"\nschema = "{pg_schema}"\n'
    )
    journal = PostgresJournal(PG_DSN, schema=pg_schema)
    await journal.open()
    try:
        first = [Event(type="ingest.item", source="/t", data={"n": n}) for n in range(5)]
        await journal.append(first)
        await journal.save_subscription(SubscriptionSpec(id="s", patterns=("ingest.>",)))
        code, out, err = await nabat("db", "backup", str(tmp_path / "pg.dump"), cwd=tmp_path)
        assert code == 0, err
        assert "schema version" in out
        await journal.append([Event(type="ingest.item", source="/t", data={"n": 99})])
        assert await journal.last_seq() == 6
    finally:
        await journal.close()
    code, out, err = await nabat("db", "restore", str(tmp_path / "pg.dump"), "--yes", cwd=tmp_path)
    assert code == 0, err
    journal = PostgresJournal(PG_DSN, schema=pg_schema)
    await journal.open()
    try:
        assert await journal.last_seq() == 5  # as it was at the backup
        assert await journal.subscription("s") is not None
    finally:
        await journal.close()
    bad = tmp_path / "not-a-dump"
    bad.write_bytes(b"PGDMP but not really")
    code, out, err = await nabat("db", "restore", str(bad), "--yes", cwd=tmp_path)
    assert code != 0 and "not-a-dump" in err
