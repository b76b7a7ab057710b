"""Durable delivery: at-least-once from the journal to connectors, notifiers and webhooks.

Each durable subscription has a :class:`Dispatcher` in every hub process, but only the one
holding the subscription's lease in the journal delivers (see :mod:`nabat.store.delivery`).
It reads matching events after the subscription's cursor and hands each to the target; the
cursor moves only after an outcome is recorded, so a crash means redelivery, never loss. The
event id is the idempotency key receivers use to drop duplicates.

* ``ordered``: one event at a time; a failing event is retried with backoff and holds back the
  rest until it is delivered or dead-lettered.
* ``parallel``: up to ``concurrency`` deliveries at once; failures are parked as retries and
  re-attempted when due, beside newer events.

Retries back off exponentially with jitter, capped, or wait what the receiver asked
(``retry_after``). After ``max_attempts`` failures, ``max_age`` seconds after the first one, or
a ``rejected`` result, the event becomes a dead letter (``nabat deliveries``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .events import Event
from .interfaces import DeliveryResult, DeliveryStatus, TransientError
from .logs import get_logger
from .store import EventQuery, Journal, StoredEvent, decode_cursor
from .store.delivery import DeliveryIssue, IssueState, Order, SubscriptionSpec

__all__ = ["DeliveryService", "Dispatcher", "NotReady", "OnFailure", "Target", "process_identity"]

log = get_logger("nabat.delivery")
Target = Callable[[Event], Awaitable[DeliveryResult | None]]
OnFailure = Callable[[Event, DeliveryIssue], Awaitable[None]]
"""Told of each failed attempt once it is recorded: the issue says how many attempts, the
error, and whether it is now a dead letter (``state``) or when the next try is due."""
STOP_TIMEOUT_S = 10.0
"""How long a stopping dispatcher may finish the delivery under way before it is cancelled."""
_PROGRESS_EVENTS = 10
_PROGRESS_EVERY = 1.0
"""Ordered delivery records its cursor after this many delivered events or seconds, whichever
comes first (and at the end of each page, before waiting for a retry, on the way out). A crash
redelivers at most that much; recording after every event cost one durable write each, which
capped ordered delivery at ~1,500 events/s (bench/delivery.py)."""
_WINDOW_PAGES = 4
"""How many pages (``concurrency`` x 8 events each) parallel delivery reads ahead of the
oldest event still unsettled; at the window's end it waits for that event."""


class NotReady(Exception):
    """The target cannot take deliveries now (its instance is not running): wait, without
    counting an attempt."""


def process_identity() -> str:
    """A lease owner name unique to this process: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class DispatchStats:
    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0
    last_error: str | None = None
    holding_lease: bool = False


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    dead: bool = False
    error: str = ""
    retry_after: float | None = None


class Dispatcher:
    """Delivers one subscription while this process holds its lease."""

    def __init__(
        self,
        journal: Journal,
        spec: SubscriptionSpec,
        target: Target,
        owner: str,
        *,
        lease_ttl: float = 15.0,
        poll: float = 1.0,
        rng: random.Random | None = None,
        on_failure: OnFailure | None = None,
    ) -> None:
        self.journal = journal
        self.spec = spec
        self.target = target
        self.on_failure = on_failure
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.poll = poll
        self.stats = DispatchStats()
        self._wake = asyncio.Event()
        self._news = False
        self._stopping = False
        self._lease_at = -1e9
        self._rng = rng or random.Random()
        self._log = log.bind(subscription=spec.id)

    # -- control ---------------------------------------------------------------------------
    def wake(self) -> None:
        """New events were appended: read them now rather than at the next poll."""
        self._news = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``; new events or stop() end it early."""
        if self._stopping or seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _hold_lease(self) -> bool:
        loop = asyncio.get_running_loop()
        if loop.time() - self._lease_at < self.lease_ttl / 3:
            return True
        held = await self.journal.acquire_lease(self.spec.id, self.owner, self.lease_ttl)
        if held and not self.stats.holding_lease:
            self._log.info("delivery.lease_acquired", owner=self.owner)
        self.stats.holding_lease = held
        self._lease_at = loop.time() if held else -1e9
        return held

    def _lost_lease(self) -> None:
        self._log.warning("delivery.lease_lost", owner=self.owner)
        self.stats.holding_lease = False
        self._lease_at = -1e9

    # -- one attempt -----------------------------------------------------------------------
    async def _attempt(self, event: Event) -> _Outcome:
        try:
            async with asyncio.timeout(self.spec.timeout):
                result = await self.target(event)
        except NotReady:
            raise
        except TransientError as exc:
            return _Outcome(False, error=str(exc) or "transient error", retry_after=exc.retry_after)
        except TimeoutError:
            return _Outcome(False, error=f"no answer within {self.spec.timeout:g} s")
        except Exception as exc:
            return _Outcome(False, error=f"{type(exc).__name__}: {exc}")
        if result is None or result.status is DeliveryStatus.DELIVERED:
            return _Outcome(True)
        if result.status is DeliveryStatus.REJECTED:
            return _Outcome(False, dead=True, error=f"rejected: {result.detail}")
        return _Outcome(False, error=result.detail or "retry", retry_after=result.retry_after)

    def _backoff(self, attempts: int, hint: float | None) -> float:
        if hint is not None:
            return min(self.spec.backoff_max, max(0.0, hint))
        ceiling = min(self.spec.backoff_max, self.spec.backoff_initial * 2 ** (attempts - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    async def _settle(
        self, seq: int, event: Event, outcome: _Outcome, known: DeliveryIssue | None
    ) -> DeliveryIssue | None:
        """Record the outcome of an attempt; return the retry row when one remains."""
        spec = self.spec
        if outcome.ok:
            self.stats.delivered += 1
            if known is not None:
                await self.journal.clear_failure(spec.id, seq)
            return None
        self.stats.failed_attempts += 1
        self.stats.last_error = outcome.error
        attempts = (known.attempts if known else 0) + 1
        first = known.first_failed_at if known else datetime.now(UTC)
        too_old = spec.max_age is not None and datetime.now(UTC) - first >= timedelta(
            seconds=spec.max_age
        )
        exhausted = spec.max_attempts is not None and attempts >= spec.max_attempts
        dead = outcome.dead or too_old or exhausted
        delay = self._backoff(attempts, outcome.retry_after)
        issue = await self.journal.record_failure(
            spec.id,
            seq,
            event.id,
            outcome.error,
            None if dead else datetime.now(UTC) + timedelta(seconds=delay),
            dead,
        )
        await self._tell_failure(event, issue)
        if dead:
            self.stats.dead += 1
            self._log.error(
                "delivery.dead_letter",
                seq=seq,
                event_id=event.id,
                attempts=issue.attempts,
                error=outcome.error,
            )
            return None
        self._log.warning(
            "delivery.retry",
            seq=seq,
            event_id=event.id,
            attempts=issue.attempts,
            retry_in_s=round(delay, 3),
            error=outcome.error,
        )
        return issue

    async def _tell_failure(self, event: Event, issue: DeliveryIssue) -> None:
        if self.on_failure is None:
            return
        try:
            await self.on_failure(event, issue)
        except Exception as exc:  # the owner's report failing never stops delivery
            self._log.warning("delivery.on_failure_failed", event_id=event.id, error=repr(exc))

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stopping:
            try:
                if not await self._hold_lease():
                    await self._pause(self.lease_ttl / 3)
                    continue
                if self.spec.order is Order.ORDERED:
                    busy = await self._ordered_round()
                else:
                    busy = await self._parallel_round()
                if not busy:
                    await self._pause(self.poll)
            except NotReady:
                await self._pause(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the journal is unreachable: keep trying
                if getattr(exc, "outage", False):  # told once, by the journal's health
                    self._log.debug("delivery.loop_failed", error=repr(exc))
                else:
                    self._log.error("delivery.loop_failed", error=repr(exc), exc_info=exc)
                await self._pause(min(5.0, self.poll * 5))
        if self.stats.holding_lease:
            try:
                await self.journal.release_lease(self.spec.id, self.owner)
            except Exception as exc:
                self._log.warning("delivery.release_failed", error=repr(exc))

    async def _cursor(self) -> int:
        state = await self.journal.subscription(self.spec.id)
        return state.cursor if state else 0

    async def _page(self, limit: int, cursor: int) -> tuple[list[StoredEvent], int | None]:
        """The next matching events after ``cursor``, and how far the scan reached.

        A scan that reached the journal's end has seen everything up to the last seq read
        before it (seq is a safe cursor), matching or not: moving the cursor there keeps the
        lag honest for a subscription whose events are rare."""
        last = await self.journal.last_seq()
        page = await self.journal.query(
            EventQuery(
                after=cursor,
                types=self.spec.patterns,
                municipalities=self.spec.municipalities,
                limit=limit,
            )
        )
        if page.next_cursor:
            scanned: int | None = decode_cursor(page.next_cursor)
        else:
            scanned = last if last > cursor else None
        return page.events, scanned

    async def _ordered_round(self) -> bool:
        cursor = await self._cursor()
        # Dead letters an operator revived sit behind the cursor: deliver them when due.
        revived = [
            i
            for i in await self.journal.issues(self.spec.id, due_before=datetime.now(UTC), limit=10)
            if i.seq <= cursor
        ]
        if revived:
            stored = {s.seq: s for s in await self.journal.events_at([i.seq for i in revived])}
            for issue in revived:
                if issue.seq not in stored:  # purged by retention meanwhile
                    await self.journal.clear_failure(self.spec.id, issue.seq)
                    continue
                event = stored[issue.seq].event
                await self._settle(issue.seq, event, await self._attempt(event), issue)
        events, scanned = await self._page(50, cursor)
        if not events:
            if revived:
                return True
            if scanned is None:
                return False
            # Only rows that did not match were scanned: move past them.
            if not await self.journal.advance_cursor(self.spec.id, self.owner, scanned):
                self._lost_lease()
            return True
        retries = {
            i.seq: i for i in await self.journal.issues(self.spec.id, IssueState.RETRY, limit=10)
        }
        # The cursor follows the delivered prefix of the page, recorded (fenced, like every
        # move) every _PROGRESS_EVENTS events or _PROGRESS_EVERY seconds, at the end of the page,
        # before any wait for a retry and on the way out, not after every event. A crash
        # redelivers at most that unrecorded stretch (at-least-once; the event id is the
        # idempotency key), and the lease is still checked before every attempt.
        loop = asyncio.get_running_loop()
        delivered: int | None = None  # highest seq settled but not yet recorded
        recorded_at = loop.time()
        unrecorded = 0
        try:
            for stored in events:
                known = retries.get(stored.seq)
                while not self._stopping:
                    if known is not None and known.next_attempt_at is not None:
                        wait = (known.next_attempt_at - datetime.now(UTC)).total_seconds()
                        if wait > 0:
                            if delivered is not None:
                                seq, delivered, unrecorded = delivered, None, 0
                                if not await self._advance(seq):
                                    return True
                            await self._pause(wait)
                            if self._stopping:
                                return True
                            continue
                    if not await self._hold_lease():
                        return True
                    outcome = await self._attempt(stored.event)
                    known = await self._settle(stored.seq, stored.event, outcome, known)
                    if known is None:
                        break
                if self._stopping:
                    return True
                delivered = stored.seq
                unrecorded += 1
                if unrecorded >= _PROGRESS_EVENTS or loop.time() - recorded_at >= _PROGRESS_EVERY:
                    seq, delivered, unrecorded = delivered, None, 0
                    recorded_at = loop.time()
                    if not await self._advance(seq):
                        return True
        finally:
            if delivered is not None and self.stats.holding_lease:
                try:
                    await self._advance(delivered)
                except Exception as exc:  # the journal is unreachable: redelivered later
                    self._log.warning("delivery.cursor_not_saved", seq=delivered, error=repr(exc))
        if scanned is not None and scanned > events[-1].seq:
            await self.journal.advance_cursor(self.spec.id, self.owner, scanned)
        return True

    async def _advance(self, seq: int) -> bool:
        """Move the cursor to ``seq`` under the lease; False (and stop) when it was lost."""
        if await self.journal.advance_cursor(self.spec.id, self.owner, seq):
            return True
        self._lost_lease()
        return False

    async def _parallel_round(self) -> bool:
        """Deliver a window of events, up to ``concurrency`` attempts at once, reading on
        while the oldest still waits for its answer. The cursor follows the prefix of the
        journal whose matching events are all settled (delivered, parked as a retry, or dead):
        a receiver that hangs on one event holds the cursor back, not the delivery of the
        events after it (a page that waited for its slowest attempt stalled the subscription
        for the attempt's whole timeout). A crash or a lost lease redelivers what lies between
        the cursor and the window's end, at most _WINDOW_PAGES pages (at-least-once; the
        event id is the idempotency key)."""
        async with self._lease_kept():
            return await _Window(self).run()

    @contextlib.asynccontextmanager
    async def _lease_kept(self) -> AsyncIterator[None]:
        """Renew the lease while a round runs: a parallel round goes on as long as attempts
        are under way, well past the lease's TTL under steady load; renewed only between
        rounds, the lease lapsed, the cursor's move was refused and a page delivered again."""

        async def renew() -> None:
            while self.stats.holding_lease:
                await asyncio.sleep(self.lease_ttl / 4)  # _hold_lease renews after 1/3
                try:
                    await self._hold_lease()
                except Exception as exc:  # the journal away: the round's own calls say so
                    self._log.debug("delivery.lease_renew_failed", error=repr(exc))

        renewer = asyncio.create_task(renew(), name=f"delivery-lease:{self.spec.id}")
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)


class _Window:
    """One parallel round of a :class:`Dispatcher`: events read in seq order and delivered
    concurrently; ``unsettled`` keeps the seqs of those read and not yet settled."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        spec = dispatcher.spec
        self.page = spec.concurrency * 8
        self.limit = asyncio.Semaphore(spec.concurrency)
        self.unsettled: set[int] = set()
        self.held: set[int] = set()  # read, left unattempted (stopping, lease lost, not ready)
        self.retrying: set[int] = set()  # due retries under way
        self.tasks: set[asyncio.Task[None]] = set()
        self.not_ready = False
        self.failure: Exception | None = None  # the journal failed under an attempt's outcome
        self.cursor = 0
        self.read = 0  # every matching event up to here has been read into the window

    def _settled_to(self) -> int:
        """How far the cursor may move: before the oldest event not settled, else all read."""
        oldest = min(self.held | self.unsettled, default=None)
        return self.read if oldest is None else oldest - 1

    def _start(self, seq: int, event: Event, known: DeliveryIssue | None) -> None:
        if known is None:
            self.unsettled.add(seq)
        else:
            self.retrying.add(seq)
        task = asyncio.get_running_loop().create_task(self._deliver(seq, event, known))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, seq: int, event: Event, known: DeliveryIssue | None) -> None:
        d = self.d
        settled = False
        try:
            async with self.limit:
                if d.stats.holding_lease and not d._stopping and not self.not_ready:
                    outcome = await d._attempt(event)
                    await d._settle(seq, event, outcome, known)
                    settled = True
        except NotReady:
            self.not_ready = True
        except Exception as exc:
            self.failure = self.failure or exc
        finally:
            if known is None:
                self.unsettled.discard(seq)
                if not settled:
                    self.held.add(seq)
            else:
                self.retrying.discard(seq)
            d._wake.set()  # the round's loop sees the progress

    async def _start_due(self) -> bool:
        d, spec = self.d, self.d.spec
        room = spec.concurrency * 4 - len(self.retrying)
        if room <= 0:
            return False
        due = [
            i
            for i in await d.journal.issues(spec.id, due_before=datetime.now(UTC), limit=room)
            if i.seq not in self.retrying and i.seq not in self.unsettled
        ]
        if not due:
            return False
        stored = {s.seq: s for s in await d.journal.events_at([i.seq for i in due])}
        for issue in due:
            if issue.seq in stored:
                self._start(issue.seq, stored[issue.seq].event, issue)
            else:  # purged by retention meanwhile: nothing left to deliver
                await d.journal.clear_failure(spec.id, issue.seq)
        return True

    async def _read(self) -> bool:
        """Read and start the next page; True when it was full (more may follow)."""
        events, scanned = await self.d._page(self.page, self.read)
        for s in events:
            if s.seq not in self.retrying:  # parked by an earlier holder, being retried now
                self._start(s.seq, s.event, None)
        self.read = max([self.read, scanned or 0] + [s.seq for s in events[-1:]])
        return len(events) == self.page

    async def _save(self) -> bool:
        """Record the settled prefix as the cursor; False when the lease was lost."""
        target = self._settled_to()
        if target <= self.cursor:
            return True
        if not await self.d._advance(target):
            return False
        self.cursor = target
        return True

    async def run(self) -> bool:
        d = self.d
        loop = asyncio.get_running_loop()
        self.cursor = self.read = await d._cursor()
        busy = False
        more = True  # the last page was full, or new events were announced
        due_at = saved_at = loop.time()
        window = self.page * _WINDOW_PAGES
        try:
            while d.stats.holding_lease and not d._stopping:
                if self.failure is not None:
                    raise self.failure
                if self.held or self.not_ready:
                    break
                now = loop.time()
                if now >= due_at:
                    due_at = now + d.poll
                    more = True  # other processes append without telling this one
                    busy = await self._start_due() or busy
                if d._news:
                    d._news, more = False, True
                room = len(self.unsettled) + self.page <= window
                if more and room:
                    more = await self._read()
                    busy = busy or bool(self.tasks) or self.read > self.cursor
                if loop.time() - saved_at >= _PROGRESS_EVERY or not self.unsettled:
                    saved_at = loop.time()
                    if not await self._save():
                        break
                if more and room:
                    continue
                if not self.tasks:
                    break  # idle: nothing under way, nothing new
                await d._pause(max(0.0, due_at - loop.time()))
            if d._stopping and self.tasks:  # let the attempts under way finish (bounded by
                await asyncio.wait(set(self.tasks))  # the caller's STOP_TIMEOUT_S)
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if d.stats.holding_lease and self.failure is None:
                try:
                    await self._save()
                except Exception as exc:  # the journal is unreachable: redelivered later
                    level = d._log.debug if getattr(exc, "outage", False) else d._log.warning
                    level("delivery.cursor_not_saved", seq=self._settled_to(), error=repr(exc))
        if self.failure is not None:
            raise self.failure
        if self.not_ready:
            raise NotReady
        return busy


class DeliveryService:
    """The dispatchers of one hub process."""

    def __init__(
        self,
        journal: Journal,
        owner: str | None = None,
        *,
        lease_ttl: float = 15.0,
        poll: float = 1.0,
    ) -> None:
        self.journal = journal
        self.owner = owner or process_identity()
        self.lease_ttl = lease_ttl
        self.poll = poll
        self.dispatchers: dict[str, Dispatcher] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def add(
        self, spec: SubscriptionSpec, target: Target, *, on_failure: OnFailure | None = None
    ) -> Dispatcher:
        """Create or update the subscription in the journal and start delivering it;
        ``on_failure`` hears of every failed attempt (and of the dead letter)."""
        if spec.id in self.dispatchers:
            await self.remove(spec.id)
        await self.journal.save_subscription(spec)
        dispatcher = Dispatcher(
            self.journal,
            spec,
            target,
            self.owner,
            lease_ttl=self.lease_ttl,
            poll=self.poll,
            on_failure=on_failure,
        )
        self.dispatchers[spec.id] = dispatcher
        self._tasks[spec.id] = asyncio.get_running_loop().create_task(
            dispatcher.run(), name=f"delivery:{spec.id}"
        )
        return dispatcher

    async def remove(self, subscription_id: str) -> None:
        """Stop delivering here (the subscription and its cursor stay in the journal)."""
        dispatcher = self.dispatchers.pop(subscription_id, None)
        task = self._tasks.pop(subscription_id, None)
        if dispatcher is not None:
            dispatcher.stop()
        if task is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await task
            except TimeoutError:
                task.cancel()
                # Cancelled, its loop could not give the lease up: do it here, or the
                # next process (a restarted hub) would wait out the lease's TTL.
                if dispatcher is not None and dispatcher.stats.holding_lease:
                    try:
                        await self.journal.release_lease(subscription_id, dispatcher.owner)
                    except Exception as exc:
                        log.warning(
                            "delivery.release_failed", subscription=subscription_id, error=repr(exc)
                        )

    def notify(self) -> None:
        """New events were appended in this process: wake every dispatcher."""
        for dispatcher in self.dispatchers.values():
            dispatcher.wake()

    async def stop(self) -> None:
        for subscription_id in list(self.dispatchers):
            await self.remove(subscription_id)
