"""Backing up and restoring the journal (``nabat db backup`` / ``nabat db restore``).

SQLite: SQLite's online backup API copies the journal while the hub runs. In WAL mode the copy
is one read transaction, so it is a consistent snapshot and never blocks the hub's writes;
the copy is checked (``quick_check``) and renamed into place only when whole. A restore needs
the hub stopped (no process may hold a delivery lease on the journal), keeps the journal it
replaces beside it (``….before-restore-<time>``), and refuses a backup of a newer schema.

PostgreSQL: ``pg_dump --format=custom`` of the hub's schema, ``pg_restore --clean`` into it —
the documented way, for which continuous archiving (PITR) is the alternative for large sites
(docs/operations.md). The password goes to the tools in ``PGPASSWORD``, never on a command line
others can read.

Either way the durable subscriptions' cursors are in the journal, so a restored hub resumes
each from where it stood at the backup: what was delivered after it is delivered again
(at-least-once), nothing after the cursor is skipped.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec

__all__ = [
    "BackupError",
    "BackupReport",
    "backup_postgres",
    "backup_sqlite",
    "restore_postgres",
    "restore_sqlite",
]

_SIDES = ("", "-wal", "-shm")  # a WAL journal is up to three files


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the message says why and what to do."""


class BackupReport(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    bytes: int
    schema_version: int
    events: int | None = None
    last_seq: int | None = None
    subscriptions: dict[str, int] = {}
    """Each durable subscription's cursor (the seq it has delivered up to)."""
    seconds: float
    kept: str | None = None
    """Restore: where the journal it replaced was kept."""


# -- SQLite ---------------------------------------------------------------------------------
def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _describe(conn: sqlite3.Connection) -> tuple[int, int | None, int | None, dict[str, int]]:
    """Schema version, events, last seq and cursors of a Nabat SQLite journal."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "nabat_meta" not in tables:
        return 0, None, None, {}
    row = conn.execute("SELECT value FROM nabat_meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else 0
    events, last = conn.execute("SELECT count(*), max(seq) FROM events").fetchone()
    cursors = (
        dict(conn.execute("SELECT id, cursor FROM subscriptions ORDER BY id").fetchall())
        if "subscriptions" in tables
        else {}
    )
    return version, events, last, cursors


def _check(conn: sqlite3.Connection, what: Path) -> None:
    verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    if verdict != "ok":
        raise BackupError(f"{what} is damaged (SQLite quick_check: {verdict})")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_sqlite(source: Path, target: Path) -> BackupReport:
    """Copy the journal at ``source`` to the new file ``target`` while the hub may run."""
    started = time.monotonic()
    if not source.is_file():
        raise BackupError(f"no journal at {source}")
    if target.exists():
        raise BackupError(f"{target} exists already: give a new file name")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        src = _connect(source)
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            # pages=-1: one step, one read transaction: a consistent copy even while the hub
            # writes (a stepwise copy restarts whenever another connection writes).
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # the copy is one self-contained file
            _check(dst, partial)
            version, events, last, cursors = _describe(dst)
        finally:
            dst.close()
            src.close()
        if version == 0:
            raise BackupError(f"{source} is not a Nabat journal")
        _fsync(partial)
        partial.replace(target)
        _fsync(target.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"copying {source} to {target}: SQLite: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return BackupReport(
        path=str(target),
        bytes=target.stat().st_size,
        schema_version=version,
        events=events,
        last_seq=last,
        subscriptions=cursors,
        seconds=round(time.monotonic() - started, 3),
    )


def _holders(path: Path) -> list[str]:
    """Processes holding a live delivery lease on the journal: hubs that are running."""
    conn = _connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "subscriptions" not in tables:
            return []
        now_us = int(time.time() * 1_000_000)
        rows = conn.execute(
            "SELECT DISTINCT lease_owner FROM subscriptions"
            " WHERE lease_owner IS NOT NULL AND lease_until_us > ?",
            (now_us,),
        ).fetchall()
        return sorted(r[0] for r in rows)
    finally:
        conn.close()


def restore_sqlite(backup: Path, target: Path, *, supported: int) -> BackupReport:
    """Put the backup in place of the journal at ``target`` (the hub stopped); the journal
    replaced is kept beside it."""
    started = time.monotonic()
    if not backup.is_file():
        raise BackupError(f"no backup at {backup}")
    try:
        src = _connect(backup)
        try:
            _check(src, backup)
            version, *_ = _describe(src)
        finally:
            src.close()
        if version == 0:
            raise BackupError(f"{backup} is not a Nabat journal backup")
        if version > supported:
            raise BackupError(
                f"{backup} has schema version {version}, newer than this Nabat's "
                f"{supported}: restore it with the Nabat that made it, or upgrade Nabat"
            )
        kept: Path | None = None
        if target.exists():
            holders = _holders(target)
            if holders:
                raise BackupError(
                    f"a hub is running on {target} (it holds delivery leases: "
                    f"{', '.join(holders)}): stop it before restoring"
                )
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = target.with_name(f"{target.name}.before-restore-{stamp}")
            for side in _SIDES:
                found = Path(f"{target}{side}")
                if found.exists():
                    found.replace(Path(f"{kept}{side}"))
        target.parent.mkdir(parents=True, exist_ok=True)
        src, dst = _connect(backup), sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dst, pages=-1)
            _check(dst, target)
            version, events, last, cursors = _describe(dst)
        finally:
            dst.close()
            src.close()
        _fsync(target)
        _fsync(target.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"restoring {backup} to {target}: SQLite: {exc}") from exc
    return BackupReport(
        path=str(target),
        bytes=target.stat().st_size,
        schema_version=version,
        events=events,
        last_seq=last,
        subscriptions=cursors,
        seconds=round(time.monotonic() - started, 3),
        kept=str(kept) if kept else None,
    )


# -- PostgreSQL -----------------------------------------------------------------------------
def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found: install PostgreSQL's client tools (Debian: postgresql-client) "
            "of the server's major version"
        )
    return found


def _without_password(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN without its password, and the environment that carries it instead."""
    parts = urlsplit(dsn)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{user}@{host}" if user else host
        if parts.port:
            netloc += f":{parts.port}"
        dsn = urlunsplit(parts._replace(netloc=netloc))
    return dsn, env


def _run(argv: Sequence[str], env: dict[str, str], what: str, timeout: float) -> str:
    try:
        done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}: no result within {timeout:g} s") from None
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def backup_postgres(
    dsn: str, schema: str, target: Path, *, timeout: float = 3600.0
) -> BackupReport:
    """``pg_dump --format=custom`` of the hub's schema into the new file ``target``."""
    started = time.monotonic()
    if target.exists():
        raise BackupError(f"{target} exists already: give a new file name")
    plain, env = _without_password(dsn)
    partial = target.with_name(target.name + ".partial")
    try:
        _run(
            [
                _tool("pg_dump"),
                "--format=custom",
                f"--schema={schema}",
                f"--file={partial}",
                f"--dbname={plain}",
            ],
            env,
            "pg_dump",
            timeout,
        )
        version = _dumped_version(partial, env)
        _fsync(partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return BackupReport(
        path=str(target),
        bytes=target.stat().st_size,
        schema_version=version,
        seconds=round(time.monotonic() - started, 3),
    )


def _dumped_version(dump: Path, env: dict[str, str]) -> int:
    """The journal schema version a dump holds, read from its ``nabat_meta`` rows."""
    text = _run(
        [_tool("pg_restore"), "--data-only", "--table=nabat_meta", "--file=-", str(dump)],
        env,
        f"reading {dump} (is it a pg_dump --format=custom file?)",
        120.0,
    )
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        if key == "schema_version" and value.strip().isdigit():
            return int(value)
    raise BackupError(f"{dump} holds no Nabat journal (no schema version in nabat_meta)")


def restore_postgres(
    dsn: str, schema: str, backup: Path, *, supported: int, holders: Sequence[str] = (),
    timeout: float = 3600.0,
) -> BackupReport:  # fmt: skip
    """``pg_restore --clean`` of a dump of the hub's schema (the hubs stopped: ``holders``
    are the lease owners the caller found live)."""
    started = time.monotonic()
    if not backup.is_file():
        raise BackupError(f"no backup at {backup}")
    plain, env = _without_password(dsn)
    version = _dumped_version(backup, env)
    if version > supported:
        raise BackupError(
            f"{backup} has schema version {version}, newer than this Nabat's {supported}: "
            "restore it with the Nabat that made it, or upgrade Nabat"
        )
    if holders:
        raise BackupError(
            f"hubs are running on schema {schema!r} (they hold delivery leases: "
            f"{', '.join(holders)}): stop every one before restoring"
        )
    _run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            f"--dbname={plain}",
            str(backup),
        ],
        env,
        "pg_restore",
        timeout,
    )
    return BackupReport(
        path=f"{schema} ({plain.rsplit('@', 1)[-1]})",
        bytes=backup.stat().st_size,
        schema_version=version,
        seconds=round(time.monotonic() - started, 3),
    )
