"""Delivery benchmark: journal append to acknowledged delivery at a loopback HTTP receiver.

What is measured, for SQLite and PostgreSQL, for an ``ordered`` subscription (one delivery
at a time) and a ``parallel`` one (``--concurrency``, default 16):

* **Throughput**: 100 producers append events (one per ``journal.append`` call, then
  ``service.notify()``, as ``Hub.publish`` does) as fast as they can while a
  :class:`~nabat.delivery.DeliveryService` delivers them; events/s from the first append call
  to the last acknowledged delivery (the receiver's 2xx read back by the target).
* **Latency at a paced rate** (``--rate``, default 1,000 events/s): each event is appended by
  a task of its own started at its slot, as independent sources would; latency is from the
  append call to the moment the receiver has read the request, p50 and p99 over the run.

The target is what an outbound webhook does: it POSTs the event's CloudEvents JSON
(``encode_event``) over HTTP/1.1 with an ``Idempotency-Key`` header and returns None on 2xx.
Both sides are plain asyncio streams in this process: a tiny HTTP/1.1 server on 127.0.0.1 that
answers ``204`` and a client that keeps one keep-alive connection per concurrent slot.

Why the baseline is fair: it sends the same POSTs with the same client and the same
concurrency, straight from a queue (no journal, no cursor): a producer puts each event into an
``asyncio.Queue`` at the same moments and 1 (ordered) or ``--concurrency`` (parallel) workers
POST them. It is what delivery would cost if it kept nothing durable. Raw and journal runs are
interleaved (the order alternates between repetitions), each runs ``--reps`` times and the
median is reported. Every journal run uses a fresh SQLite file or PostgreSQL schema (dropped
afterwards) and fails loudly unless every event was acknowledged and received, nothing twice,
no attempt failed, the subscription's cursor reached the last event, and (ordered) the
receiver saw the events in journal order.

Run: ``uv run python bench/delivery.py`` (``--quick`` for a smoke run, ``--backends sqlite``
to skip PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from nabat.delivery import DeliveryService
from nabat.events import Event, encode_event
from nabat.store import Journal, SqliteJournal
from nabat.store.delivery import Order, SubscriptionSpec
from nabat.store.postgres import PostgresJournal, describe_dsn
from workload import make_events, percentile, remove_sqlite

PRODUCERS = 100  # appending tasks in the throughput runs
GOAL_P99_MS = 50.0  # PostgreSQL, paced, append call to receiver
DEFAULT_DSN = os.environ.get("NABAT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
RESPONSE = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"

clock = time.perf_counter


@dataclass(frozen=True)
class Run:
    events_per_s: float
    p50_ms: float
    p99_ms: float


# -- the two HTTP ends ---------------------------------------------------------------------
class Receiver:
    """A minimal HTTP/1.1 server: reads each request, notes when its Idempotency-Key arrived,
    answers 204 on the same keep-alive connection."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.order: list[str] = []
        self.duplicates = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def reset(self) -> None:
        self.arrived = {}
        self.order = []
        self.duplicates = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                key = ""
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"idempotency-key":
                        key = value.strip().decode()
                await reader.readexactly(length)
                now = clock()
                if key in self.arrived:
                    self.duplicates += 1
                else:
                    self.arrived[key] = now
                    self.order.append(key)
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class Sender:
    """The webhook client: POSTs an event, one keep-alive connection per concurrent slot."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def post(self, event: Event) -> None:
        body = encode_event(event)
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened.append(writer)
        writer.write(
            b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/cloudevents+json\r\n"
            b"Idempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (event.id.encode(), len(body), body)
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        self.idle.append((reader, writer))
        if not 200 <= status < 300:
            raise RuntimeError(f"receiver answered {status}")

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()
        for writer in self.opened:
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass


# -- runs ----------------------------------------------------------------------------------
def summarise(n: int, start: float, end: float, latencies: list[float]) -> Run:
    latencies.sort()
    return Run(
        events_per_s=n / (end - start),
        p50_ms=percentile(latencies, 50) * 1e3,
        p99_ms=percentile(latencies, 99) * 1e3,
    )


async def pace(i: int, start: float, rate: float) -> None:
    delay = start + i / rate - clock()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_raw(
    receiver: Receiver, events: Sequence[Event], concurrency: int, rate: float | None
) -> Run:
    receiver.reset()
    sender = Sender(receiver.port)
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    sent: dict[str, float] = {}
    acked = 0
    last_ack = 0.0

    async def worker() -> None:
        nonlocal acked, last_ack
        while (event := await queue.get()) is not None:
            await sender.post(event)
            acked += 1
            last_ack = clock()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    gc.collect()
    start = clock()
    for i, event in enumerate(events):
        if rate is not None:
            await pace(i, start, rate)
        sent[event.id] = clock()
        queue.put_nowait(event)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    await sender.close()
    assert acked == len(events) and len(receiver.arrived) == len(events), "raw lost events"
    assert not receiver.duplicates
    if concurrency == 1:
        assert receiver.order == [e.id for e in events]
    latencies = [receiver.arrived[e.id] - sent[e.id] for e in events]
    return summarise(len(events), start, last_ack, latencies)


async def run_journal(
    journal: Journal,
    receiver: Receiver,
    events: Sequence[Event],
    order: Order,
    concurrency: int,
    rate: float | None,
) -> Run:
    receiver.reset()
    sender = Sender(receiver.port)
    n = len(events)
    sent: dict[str, float] = {}
    seq_of: dict[str, int] = {}
    acked: set[str] = set()
    done = asyncio.Event()
    last_ack = 0.0

    async def target(event: Event) -> None:
        nonlocal last_ack
        await sender.post(event)
        if event.id not in acked:
            acked.add(event.id)
            last_ack = clock()
            if len(acked) == n:
                done.set()

    await journal.open()
    service = DeliveryService(journal, owner="bench", lease_ttl=15.0, poll=1.0)
    try:
        spec = SubscriptionSpec(
            id="bench", patterns=(">",), order=order, concurrency=concurrency, timeout=30.0
        )
        dispatcher = await service.add(spec, target)
        await asyncio.sleep(0.05)  # the dispatcher takes its lease and finds nothing to do

        async def append(event: Event) -> None:
            sent[event.id] = clock()
            [seq_of[event.id]] = await journal.append([event])
            service.notify()

        async def producer(p: int) -> None:
            for event in events[p::PRODUCERS]:
                await append(event)

        gc.collect()
        start = clock()
        if rate is None:
            await asyncio.gather(*(producer(p) for p in range(PRODUCERS)))
        else:
            tasks = []
            for i, event in enumerate(events):
                await pace(i, start, rate)
                tasks.append(asyncio.create_task(append(event)))
            await asyncio.gather(*tasks)
        async with asyncio.timeout(120):
            await done.wait()
        # The cursor moves after the acknowledgement: wait for it to reach the last event.
        last = max(seq_of.values())
        for _ in range(3000):  # up to 30 s
            state = await journal.subscription("bench")
            if state is not None and state.cursor >= last:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the cursor never reached the last event")
        stats = dispatcher.stats
    finally:
        await service.stop()
        await sender.close()
        await journal.close()
    assert len(receiver.arrived) == n, f"received {len(receiver.arrived)} of {n}"
    assert not receiver.duplicates, f"{receiver.duplicates} delivered twice"
    assert stats.delivered == n and not stats.failed_attempts and not stats.dead, stats
    if order is Order.ORDERED:
        seqs = [seq_of[key] for key in receiver.order]
        assert seqs == sorted(seqs), "ordered delivery out of journal order"
    latencies = [receiver.arrived[e.id] - sent[e.id] for e in events]
    return summarise(n, start, last_ack, latencies)


async def run_backend(
    backend: str,
    receiver: Receiver,
    events: Sequence[Event],
    order: Order,
    concurrency: int,
    rate: float | None,
    dsn: str,
    directory: Path,
) -> Run:
    if backend == "sqlite":
        path = directory / f"journal-{uuid.uuid4().hex[:8]}.sqlite3"
        try:
            return await run_journal(
                SqliteJournal(path), receiver, events, order, concurrency, rate
            )
        finally:
            remove_sqlite(path)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        journal = PostgresJournal(dsn, schema=schema)
        return await run_journal(journal, receiver, events, order, concurrency, rate)
    finally:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


Key = tuple[str, str, str]  # mode ("throughput"/"paced"), order, variant ("raw"/backend)


async def measure(
    modes: Sequence[str],
    orders: Sequence[Order],
    backends: Sequence[str],
    sizes: dict[tuple[str, str], int],
    concurrency: int,
    rate: float,
    reps: int,
    dsn: str,
    directory: Path,
) -> dict[Key, list[Run]]:
    receiver = Receiver()
    await receiver.start()
    results: dict[Key, list[Run]] = {}
    try:
        for rep in range(reps):
            for mode in modes:
                for order in orders:
                    events = make_events(sizes[mode, order.value])
                    slots = 1 if order is Order.ORDERED else concurrency
                    pace_rate = rate if mode == "paced" else None
                    variants = ["raw", *backends]
                    if rep % 2:  # alternate so no variant always gets the same slot
                        variants.reverse()
                    for variant in variants:
                        gc.collect()
                        if variant == "raw":
                            run = await run_raw(receiver, events, slots, pace_rate)
                        else:
                            run = await run_backend(
                                variant, receiver, events, order, slots, pace_rate, dsn, directory
                            )
                        results.setdefault((mode, order.value, variant), []).append(run)
                        print(
                            f"  rep {rep + 1} {mode:<10} {order.value:<8} {variant:<8}"
                            f" {run.events_per_s:>9,.0f} ev/s p50 {run.p50_ms:7.2f} ms"
                            f" p99 {run.p99_ms:7.2f} ms",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        await receiver.stop()
    return results


def report(
    results: dict[Key, list[Run]], backends: Sequence[str], concurrency: int, rate: float
) -> None:
    med = {
        key: Run(
            events_per_s=statistics.median(r.events_per_s for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
        )
        for key, runs in results.items()
    }
    modes = sorted({key[0] for key in med}, reverse=True)  # throughput, then paced
    orders = sorted({key[1] for key in med})  # ordered, then parallel
    for mode in modes:
        if mode == "throughput":
            print(f"\nthroughput: {PRODUCERS} producers flat out, append -> acknowledged delivery")
        else:
            print(f"\nlatency at a paced {rate:,.0f} events/s: append call -> receiver got it")
        print(f"{'order':<13}{'variant':<10}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>7}")
        for order in orders:
            raw = med[mode, order, "raw"]
            label = order if order == "ordered" else f"parallel/{concurrency}"
            for variant in ("raw", *backends):
                m = med[mode, order, variant]
                print(
                    f"{label:<13}{variant:<10}{m.events_per_s:>10,.0f}{m.p50_ms:>9.2f}"
                    f"{m.p99_ms:>9.2f}{m.events_per_s / raw.events_per_s:>7.2f}"
                )
    print("ratio = events/s over the raw POSTs (same client, same concurrency, no journal)")
    if "postgres" in backends and "paced" in modes:
        print(f"\ngoal: PostgreSQL p99 < {GOAL_P99_MS:g} ms at a paced {rate:,.0f} events/s:")
        for order in orders:
            p99 = med["paced", order, "postgres"].p99_ms
            verdict = "met" if p99 < GOAL_P99_MS else "NOT met"
            print(f"  {order}: {p99:.2f} ms, {verdict}")


async def pg_problem(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except Exception as exc:
        return f"unreachable: {exc!r}"
    try:
        durable = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return None if durable == "on" else f"synchronous_commit={durable}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="events per ordered run")
    parser.add_argument("--reps", type=int, default=3, help="runs per variant (median taken)")
    parser.add_argument("--quick", action="store_true", help="a few hundred events: smoke test")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel deliveries")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced run: events/s")
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="paced run length")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--modes", default="throughput,paced", help="comma-separated")
    parser.add_argument("--orders", default="ordered,parallel", help="comma-separated")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL (env NABAT_BENCH_PG)")
    parser.add_argument("--dir", default=None, help="directory for the SQLite files")
    args = parser.parse_args()
    if args.quick:
        args.events, args.reps, args.paced_seconds = 400, 1, 0.5
    backends = [b for b in args.backends.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    orders = [Order(o) for o in args.orders.split(",") if o]
    if "postgres" in backends:
        problem = asyncio.run(pg_problem(args.dsn))
        if problem:
            print(f"PostgreSQL at {describe_dsn(args.dsn)} {problem}: skipped")
            backends.remove("postgres")
    paced = int(args.rate * args.paced_seconds)
    sizes = {
        ("throughput", "ordered"): args.events,
        ("throughput", "parallel"): args.events * 4,
        ("paced", "ordered"): paced,
        ("paced", "parallel"): paced,
    }
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else os.cpu_count()
    print(
        f"python {platform.python_version()} ({sys.implementation.name}), nproc {cpus}, "
        f"{platform.machine()}; throughput runs {args.events:,} events ordered, "
        f"{args.events * 4:,} parallel; paced runs {paced:,} events; {args.reps} reps"
    )
    with tempfile.TemporaryDirectory(prefix="nabat-bench-", dir=args.dir) as tmp:
        results = asyncio.run(
            measure(
                modes,
                orders,
                backends,
                sizes,
                args.concurrency,
                args.rate,
                args.reps,
                args.dsn,
                Path(tmp),
            )
        )
    report(results, backends, args.concurrency, args.rate)


if __name__ == "__main__":
    main()
