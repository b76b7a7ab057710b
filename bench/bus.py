"""Event-bus benchmark: ``Bus.publish`` fan-out against a raw ``asyncio.Queue`` fan-out.

What is measured, for 1 and for 10 subscribers: throughput (events published per second, from
the first publish to the last handler call of the run) and the latency of every delivery (time
of publish to time the subscriber's handler is called), reported as p50 and p99 over all
deliveries of the run.

Why the baseline is fair: it is the least a fan-out of bounded queues can do in asyncio, with
the same shape as the bus. For each event the publisher does ``await q.put(event)`` into N
``asyncio.Queue(maxsize=QUEUE_SIZE)``, and N consumer tasks ``await q.get()`` and call the
handler. The bus gets the same N subscriptions with the same queue size (overflow ``wait``, so
the publisher gets backpressure as with ``put``). Both use the same pre-built Event objects,
the same synchronous handler (one clock read and one list store; the k-th call of a subscriber
is the k-th event, as both keep order per subscriber), and the same publish-time side array
indexed by a counter. Raw and bus runs are interleaved, each variant runs ``--reps`` times and
the median is reported. A bus run fails loudly unless every event reached every subscriber with
no drops, errors or timeouts.

A second table paces the publisher at a fixed rate (``--rate``, default 2,000 events/s, a busy
region's peak) so queues stay short: the latency an operator sees in normal operation, as
opposed to the saturation latency of the throughput table (≈ queue depth × per-event cost).

Run: ``uv run python bench/bus.py`` (``--quick`` for a smoke run, ``--events N`` to resize).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nabat.bus import Bus
from nabat.events import Event

QUEUE_SIZE = 1000  # the bus's default per-subscription queue size
SUBSCRIBERS = (1, 10)
GOAL = 0.6  # bus events/s over raw events/s with 10 subscribers

clock = time.perf_counter


@dataclass(frozen=True)
class Run:
    events_per_s: float
    p50_us: float
    p99_us: float


def make_handler(received: list[float]) -> Callable[[Event], None]:
    """The trivial work of a subscriber: note when the k-th event arrived."""
    k = 0

    def handler(event: Event) -> None:
        nonlocal k
        received[k] = clock()
        k += 1

    return handler


def summarise(sent: list[float], received: list[list[float]]) -> Run:
    n = len(sent)
    assert all(r[-1] for r in received), "a subscriber missed events"
    elapsed = max(r[-1] for r in received) - sent[0]
    latencies = sorted(r[k] - sent[k] for r in received for k in range(n))
    count = len(latencies)
    return Run(
        events_per_s=n / elapsed,
        p50_us=latencies[count // 2] * 1e6,
        p99_us=latencies[min(count - 1, count * 99 // 100)] * 1e6,
    )


async def pace(i: int, start: float, rate: float | None) -> None:
    """Hold the i-th publish until its slot when a rate is set (no-op when flat out)."""
    if rate is not None:
        delay = start + i / rate - clock()
        if delay > 0:
            await asyncio.sleep(delay)


async def run_raw(events: Sequence[Event], subscribers: int, rate: float | None = None) -> Run:
    n = len(events)
    sent = [0.0] * n
    received = [[0.0] * n for _ in range(subscribers)]
    queues: list[asyncio.Queue[Event]] = [
        asyncio.Queue(maxsize=QUEUE_SIZE) for _ in range(subscribers)
    ]

    async def consume(queue: asyncio.Queue[Event], handler: Callable[[Event], None]) -> None:
        for _ in range(n):
            handler(await queue.get())

    consumers = [
        asyncio.create_task(consume(q, make_handler(r)))
        for q, r in zip(queues, received, strict=True)
    ]
    await asyncio.sleep(0)  # consumers start waiting, as bus workers do after subscribe
    start = clock()
    for i, event in enumerate(events):
        await pace(i, start, rate)
        sent[i] = clock()
        for queue in queues:
            await queue.put(event)
    await asyncio.gather(*consumers)
    return summarise(sent, received)


async def run_bus(events: Sequence[Event], subscribers: int, rate: float | None = None) -> Run:
    n = len(events)
    sent = [0.0] * n
    received = [[0.0] * n for _ in range(subscribers)]
    bus = Bus(queue_size=QUEUE_SIZE, overflow="wait")
    for s, r in enumerate(received):
        bus.subscribe(">", make_handler(r), name=f"bench-{s}")
    await asyncio.sleep(0)
    publish = bus.publish
    start = clock()
    for i, event in enumerate(events):
        await pace(i, start, rate)
        sent[i] = clock()
        await publish(event)
    await bus.drain()
    stats = bus.stats()
    lost = await bus.close()
    delivered = sum(s.delivered for s in stats)
    dropped = sum(s.dropped for s in stats)
    errors = sum(s.errors + s.timeouts for s in stats)
    assert bus.published == n, (bus.published, n)
    assert delivered == n * subscribers, f"delivered {delivered} != {n} x {subscribers}"
    assert not dropped and not errors and not lost, (dropped, errors, lost)
    return summarise(sent, received)


async def measure(
    events: Sequence[Event], reps: int, rate: float | None = None
) -> dict[tuple[str, int], list[Run]]:
    results: dict[tuple[str, int], list[Run]] = {}
    for rep in range(reps):
        for subs in SUBSCRIBERS:
            # Alternate which goes first so neither always gets the warmer/cooler slot.
            order = ("raw", "bus") if rep % 2 == 0 else ("bus", "raw")
            for variant in order:
                gc.collect()
                runner = run_raw if variant == "raw" else run_bus
                run = await runner(events, subs, rate)
                results.setdefault((variant, subs), []).append(run)
    return results


def report(results: dict[tuple[str, int], list[Run]]) -> float:
    med = {
        key: Run(
            events_per_s=statistics.median(r.events_per_s for r in runs),
            p50_us=statistics.median(r.p50_us for r in runs),
            p99_us=statistics.median(r.p99_us for r in runs),
        )
        for key, runs in results.items()
    }
    print(f"{'variant':<8}{'subs':>5}{'events/s':>12}{'p50 µs':>10}{'p99 µs':>10}{'ratio':>8}")
    ratio_10 = 0.0
    for subs in SUBSCRIBERS:
        raw = med["raw", subs].events_per_s
        for variant in ("raw", "bus"):
            m = med[variant, subs]
            ratio = m.events_per_s / raw
            if variant == "bus" and subs == 10:
                ratio_10 = ratio
            print(
                f"{variant:<8}{subs:>5}{m.events_per_s:>12,.0f}{m.p50_us:>10,.0f}"
                f"{m.p99_us:>10,.0f}{ratio:>8.2f}"
            )
    return ratio_10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per run")
    parser.add_argument("--reps", type=int, default=3, help="runs per variant (median taken)")
    parser.add_argument("--quick", action="store_true", help="20k events, 1 run: a smoke test")
    parser.add_argument("--rate", type=float, default=2000.0, help="paced run: events/s")
    parser.add_argument("--paced-seconds", type=float, default=3.0, help="paced run length")
    args = parser.parse_args()
    if args.quick:
        args.events, args.reps, args.paced_seconds = 20_000, 1, 0.5
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else os.cpu_count()
    print(
        f"python {platform.python_version()} ({sys.implementation.name}), "
        f"nproc {cpus}, {platform.machine()}; "
        f"{args.events:,} events x {args.reps} reps, queue size {QUEUE_SIZE}"
    )
    events = [
        Event(type="camera.health.offline", source="/bench", subject=str(i))
        for i in range(args.events)
    ]
    ratio = report(asyncio.run(measure(events, args.reps)))
    print("ratio = events/s over raw asyncio.Queue fan-out in the same run; bus delivered all")
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"goal: bus >= {GOAL} x raw with 10 subscribers: {ratio:.2f}, {verdict}")
    paced = events[: int(args.rate * args.paced_seconds)]
    print(f"\nlatency at a paced {args.rate:,.0f} events/s ({len(paced):,} events per run):")
    report(asyncio.run(measure(paced, args.reps, args.rate)))
    print("(events/s here is the pacing rate achieved, not a capacity)")


if __name__ == "__main__":
    main()
