"""Journal benchmark: durable ``append`` throughput and commit latency, SQLite and PostgreSQL.

What is measured, for 1, 10 and 100 concurrent producers: each producer is a task that calls
``await journal.append(batch)`` sequentially (one event per call, and a variant with 10 per
call); producer p appends the p-th slice of every round of events, so one group commit holds
neighbours in time, as live events would be. A call's commit latency is the time from the call
to its return, i.e. until the events are durable. Reported: events/s (every event of the run
over the time from the first call to the last return) and p50/p99 commit latency over every
call of the run; "ev/commit" is the mean group-commit batch. Both journals are fully durable:
``SqliteJournal`` sets WAL and ``synchronous=FULL``; PostgreSQL runs with
``synchronous_commit=on`` and ``fsync=on`` (checked; PostgreSQL is skipped otherwise).

Why the baselines are fair: each is "the raw driver doing the best it can" with the same rows,
measured in the same run. The rows are the journal's columns (id, source, type, subject,
time, municipality, severity, correlationid, body) built from the same events, encoded before
the clock starts (the journal encodes inside its timing), inserted into a scratch table created
with the journal's own DDL (same indexes and unique constraint, so index upkeep costs both
sides the same), 1,000 rows per transaction:

* SQLite: ``sqlite3`` ``executemany`` per transaction, WAL, ``synchronous=FULL``, a fresh file.
* PostgreSQL: asyncpg ``copy_records_to_table`` per batch (each its own transaction) on one
  connection, ``synchronous_commit=on``, a fresh schema; ``seq`` numbered by the client.

Every run uses a fresh SQLite file or a fresh PostgreSQL schema, dropped afterwards. Variants
are interleaved (the order alternates between repetitions), each runs ``--reps`` times and the
median is reported. Each journal run first appends one untimed event per producer (every pool
connection and prepared statement in use once). A run fails loudly unless every append
returned, the returned seqs are exactly the n numbers after the warm-up's, without gaps or
repeats, and the journal's last seq and append count agree; a raw run checks its row count.

Run: ``uv run python bench/journal.py`` (``--quick`` for a smoke run, ``--events N`` to
resize, ``--backends sqlite`` to skip PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from nabat.events import Event, encode_event
from nabat.store import Journal, SqliteJournal
from nabat.store import postgres as pg
from nabat.store import sqlite as sq
from workload import make_events, percentile, remove_sqlite

PRODUCERS = (1, 10, 100)
RAW_BATCH = 1000  # rows per transaction of the raw baselines
# Share of --events each producer count appends per run: one producer waits a whole commit per
# event, so it gets fewer events to keep its run a few seconds long.
SHARE = {1: 0.1, 10: 0.5, 100: 1.0}
GOAL_PG_EVENTS = 50_000  # PostgreSQL events/s at 100 producers
GOAL_PG_RATIO = 0.4  # PostgreSQL at 100 producers over raw COPY
GOAL_SQLITE_RATIO = 0.25  # SQLite at 100 producers over raw executemany
GOAL_P99_MS = 15.0  # a lone producer's commit p99
DEFAULT_DSN = os.environ.get("NABAT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")

clock = time.perf_counter


@dataclass(frozen=True)
class Run:
    events_per_s: float
    p50_ms: float
    p99_ms: float
    per_commit: float  # events per group-commit transaction (0 for raw)


# -- raw baselines -------------------------------------------------------------------------
def sqlite_rows(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    return [
        (
            e.id,
            e.source,
            e.type,
            e.subject,
            int(e.time.timestamp() * 1_000_000),
            e.municipality,
            None if e.severity is None else str(e.severity),
            e.correlationid,
            encode_event(e),
        )
        for e in events
    ]


def run_raw_sqlite(rows: list[tuple[Any, ...]], directory: Path) -> Run:
    path = directory / f"raw-{uuid.uuid4().hex[:8]}.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for statement in sq._MIGRATIONS[1]:  # the journal's own table and indexes
            conn.execute(statement)
        insert = (
            "INSERT INTO events (id, source, type, subject, time_us, municipality, severity,"
            " correlationid, body) VALUES (?,?,?,?,?,?,?,?,?)"
        )
        gc.collect()
        start = clock()
        for i in range(0, len(rows), RAW_BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows[i : i + RAW_BATCH])
            conn.execute("COMMIT")
        elapsed = clock() - start
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
        assert count == len(rows), (count, len(rows))
    finally:
        conn.close()
        remove_sqlite(path)
    return Run(len(rows) / elapsed, 0.0, 0.0, 0.0)


def pg_records(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    return [
        (
            seq,
            e.id,
            e.source,
            e.type,
            e.subject,
            e.time,
            e.municipality,
            None if e.severity is None else str(e.severity),
            e.correlationid,
            encode_event(e),
        )
        for seq, e in enumerate(events, 1)
    ]


async def run_raw_pg(records: list[tuple[Any, ...]], dsn: str) -> Run:
    schema = f"bench_raw_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        for statement in pg._MIGRATIONS[1]:  # the journal's own table and indexes
            await conn.execute(statement.format(s=f'"{schema}"'))
        gc.collect()
        start = clock()
        for i in range(0, len(records), RAW_BATCH):
            await conn.copy_records_to_table(
                "events",
                schema_name=schema,
                columns=pg._COPY_COLUMNS,
                records=records[i : i + RAW_BATCH],
            )
        elapsed = clock() - start
        count = await conn.fetchval(f'SELECT count(*) FROM "{schema}".events')
        assert count == len(records), (count, len(records))
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    return Run(len(records) / elapsed, 0.0, 0.0, 0.0)


# -- the journal ---------------------------------------------------------------------------
async def run_journal(
    journal: Journal, events: Sequence[Event], producers: int, per_append: int
) -> Run:
    await journal.open()
    try:
        # Warm-up, untimed: every pool connection and prepared statement in use once.
        warm = [
            Event(type="bench.warmup", source="/bench/warmup", subject=str(i))
            for i in range(producers)
        ]
        await asyncio.gather(*(journal.append([e]) for e in warm))
        base_seq = await journal.last_seq()
        batches0, appended0 = journal.batches, journal.appended
        n = len(events) - len(events) % (producers * per_append)
        latencies: list[float] = []
        seqs: list[int] = []

        async def producer(p: int) -> None:
            # Producer p takes the p-th slice of every round of ``producers`` appends, so the
            # events of one group commit are neighbours in time, as live events would be.
            append = journal.append
            step = producers * per_append
            for i in range(p * per_append, n, step):
                batch = events[i : i + per_append]
                t0 = clock()
                got = await append(batch)
                latencies.append(clock() - t0)
                seqs.extend(got)

        gc.collect()
        start = clock()
        await asyncio.gather(*(producer(p) for p in range(producers)))
        elapsed = clock() - start
        assert len(seqs) == n, (len(seqs), n)
        assert sorted(seqs) == list(range(base_seq + 1, base_seq + n + 1)), "seqs not 1..n"
        assert await journal.last_seq() == base_seq + n
        assert journal.appended - appended0 == n
        commits = journal.batches - batches0
    finally:
        await journal.close()
    latencies.sort()
    return Run(
        events_per_s=n / elapsed,
        p50_ms=percentile(latencies, 50) * 1e3,
        p99_ms=percentile(latencies, 99) * 1e3,
        per_commit=n / commits,
    )


async def run_sqlite(
    events: Sequence[Event], producers: int, per_append: int, directory: Path
) -> Run:
    path = directory / f"journal-{uuid.uuid4().hex[:8]}.sqlite3"
    try:
        return await run_journal(SqliteJournal(path), events, producers, per_append)
    finally:
        remove_sqlite(path)


async def run_pg(events: Sequence[Event], producers: int, per_append: int, dsn: str) -> Run:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        return await run_journal(
            pg.PostgresJournal(dsn, schema=schema), events, producers, per_append
        )
    finally:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


# -- driver --------------------------------------------------------------------------------
Key = tuple[str, str, int, int]  # backend, variant ("raw"/"journal"), producers, per append


async def measure(
    backends: Sequence[str],
    events: Sequence[Event],
    raw_events: int,
    per_appends: Sequence[int],
    reps: int,
    dsn: str,
    directory: Path,
) -> dict[Key, list[Run]]:
    results: dict[Key, list[Run]] = {}
    rows = sqlite_rows(events[:raw_events]) if "sqlite" in backends else []
    records = pg_records(events[:raw_events]) if "postgres" in backends else []
    for rep in range(reps):
        for backend in backends:
            plan: list[tuple[str, int, int]] = [("raw", 0, 0)]
            plan += [("journal", p, k) for k in per_appends for p in PRODUCERS]
            if rep % 2:  # alternate so no variant always gets the warmer/cooler slot
                plan.reverse()
            for variant, producers, per_append in plan:
                gc.collect()
                if variant == "raw":
                    if backend == "sqlite":
                        run = run_raw_sqlite(rows, directory)
                    else:
                        run = await run_raw_pg(records, dsn)
                else:
                    mine = events[: int(len(events) * SHARE[producers])]
                    if backend == "sqlite":
                        run = await run_sqlite(mine, producers, per_append, directory)
                    else:
                        run = await run_pg(mine, producers, per_append, dsn)
                results.setdefault((backend, variant, producers, per_append), []).append(run)
                print(
                    f"  rep {rep + 1} {backend:<8} {variant:<7} producers {producers:>3}"
                    f" x{per_append:<2} {run.events_per_s:>10,.0f} ev/s"
                    f" p99 {run.p99_ms:7.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def median_run(runs: list[Run]) -> Run:
    return Run(
        events_per_s=statistics.median(r.events_per_s for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        per_commit=statistics.median(r.per_commit for r in runs),
    )


def report(results: dict[Key, list[Run]], backends: Sequence[str], per_appends: Sequence[int]):
    med = {key: median_run(runs) for key, runs in results.items()}
    print(
        f"{'backend':<9}{'variant':<14}{'producers':>10}{'events/s':>11}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'ev/commit':>10}{'ratio':>7}"
    )
    for backend in backends:
        raw = med[backend, "raw", 0, 0]
        name = "executemany" if backend == "sqlite" else "COPY"
        print(
            f"{backend:<9}{'raw ' + name:<14}{'-':>10}{raw.events_per_s:>11,.0f}{'-':>9}{'-':>9}"
            f"{RAW_BATCH:>10}{1.0:>7.2f}"
        )
        for per_append in per_appends:
            for producers in PRODUCERS:
                m = med[backend, "journal", producers, per_append]
                label = f"journal x{per_append}"
                print(
                    f"{backend:<9}{label:<14}{producers:>10}{m.events_per_s:>11,.0f}"
                    f"{m.p50_ms:>9.2f}{m.p99_ms:>9.2f}{m.per_commit:>10.1f}"
                    f"{m.events_per_s / raw.events_per_s:>7.2f}"
                )
    return med


def goals(med: dict[Key, Run], backends: Sequence[str]) -> None:
    print("\ngoals (one event per append):")

    def line(text: str, value: str, ok: bool) -> None:
        print(f"  {text}: {value}, {'met' if ok else 'NOT met'}")

    if "postgres" in backends:
        m = med["postgres", "journal", 100, 1]
        raw = med["postgres", "raw", 0, 0].events_per_s
        line(
            f"PostgreSQL >= {GOAL_PG_EVENTS:,} events/s at 100 producers",
            f"{m.events_per_s:,.0f}",
            m.events_per_s >= GOAL_PG_EVENTS,
        )
        ratio = m.events_per_s / raw
        line(
            f"PostgreSQL >= {GOAL_PG_RATIO} x raw COPY at 100 producers",
            f"{ratio:.2f}",
            ratio >= GOAL_PG_RATIO,
        )
    if "sqlite" in backends:
        m = med["sqlite", "journal", 100, 1]
        ratio = m.events_per_s / med["sqlite", "raw", 0, 0].events_per_s
        line(
            f"SQLite >= {GOAL_SQLITE_RATIO} x raw executemany at 100 producers",
            f"{ratio:.2f}",
            ratio >= GOAL_SQLITE_RATIO,
        )
    for backend in backends:
        p99 = med[backend, "journal", 1, 1].p99_ms
        line(f"{backend} lone producer commit p99 < {GOAL_P99_MS:g} ms", f"{p99:.2f} ms", p99 < 15)


async def pg_reachable(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except Exception as exc:
        return f"unreachable: {exc!r}"
    try:
        setting = await conn.fetchval("SHOW synchronous_commit")
        fsync = await conn.fetchval("SHOW fsync")
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    if setting != "on" or fsync != "on":
        return f"not durable (synchronous_commit={setting}, fsync={fsync})"
    print(f"PostgreSQL {version}, synchronous_commit=on, fsync=on")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=40_000, help="events per 100-producer run and raw run"
    )
    parser.add_argument("--reps", type=int, default=3, help="runs per variant (median taken)")
    parser.add_argument("--quick", action="store_true", help="2k events, 1 run: a smoke test")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument(
        "--per-append", default="1,10", help="events per append call, comma-separated"
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL (env NABAT_BENCH_PG)")
    parser.add_argument("--dir", default=None, help="directory for the SQLite files")
    args = parser.parse_args()
    if args.quick:
        args.events, args.reps = 2_000, 1
    backends = [b for b in args.backends.split(",") if b]
    per_appends = [int(k) for k in args.per_append.split(",")]
    assert 1 in per_appends, "the goals are for one event per append"
    if "postgres" in backends:
        problem = asyncio.run(pg_reachable(args.dsn))
        if problem:
            print(f"PostgreSQL at {pg.describe_dsn(args.dsn)} {problem}: skipped")
            backends.remove("postgres")
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else os.cpu_count()
    print(
        f"python {platform.python_version()} ({sys.implementation.name}), SQLite "
        f"{sqlite3.sqlite_version}, asyncpg {asyncpg.__version__}, nproc {cpus}, "
        f"{platform.machine()}; {args.events:,} events per 100-producer and raw run "
        f"(x{SHARE[10]} for 10 producers, x{SHARE[1]} for 1), {args.reps} reps"
    )
    events = make_events(args.events)
    with tempfile.TemporaryDirectory(prefix="nabat-bench-", dir=args.dir) as tmp:
        results = asyncio.run(
            measure(backends, events, args.events, per_appends, args.reps, args.dsn, Path(tmp))
        )
    med = report(results, backends, per_appends)
    print(
        "ratio = events/s over the raw driver's (1,000 rows per transaction) in the same run;"
        " every run stored all events under consecutive seqs"
    )
    goals(med, backends)


if __name__ == "__main__":
    main()
