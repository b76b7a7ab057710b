"""The in-process event bus: subjects with NATS wildcards, one bounded queue per subscriber.

Design, after Home Assistant's EventBus and NATS:

* **Filter first.** Routing is a dict lookup from event type to the tuple of matching
  subscriptions (cached, rebuilt when subscriptions change); a subscriber's optional predicate
  runs before anything is queued for it.
* **Isolate every listener.** Each subscription has its own bounded queue and its own worker
  task, so a slow, failing or hung listener never blocks or breaks the others. An exception is
  logged and counted; a call that runs past ``handler_timeout`` is cancelled by a watchdog,
  logged and counted, and the worker moves on to the next event.
* **Declared overflow.** When a queue is full the subscription's policy decides: ``wait`` makes
  the publisher wait up to ``put_timeout`` (backpressure) and then drops the event for that
  subscriber; ``drop_oldest`` evicts the oldest queued event. Every drop is counted and logged.
* **Order per subscriber.** A subscriber sees events in the order they were published to it.
* **Graceful drain.** :meth:`Bus.close` stops new publishes, lets queues empty within a
  deadline, then stops the workers and reports what was left undelivered.

This bus is not durable: durable subscribers (notifiers, webhooks) read from the journal.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from .events import Event
from .logs import get_logger
from .subjects import compile_pattern, validate_pattern

__all__ = ["Bus", "BusClosed", "Handler", "Overflow", "Subscription", "SubscriptionStats"]

Handler = Callable[[Event], Awaitable[None] | None]
log = get_logger("nabat.bus")

_FAIRNESS_BATCH = 64  # events a worker handles before it yields to the loop
_WARN_INTERVAL = 10.0  # seconds between repeated warnings about the same subscription


class BusClosed(RuntimeError):
    """The bus is shutting down and accepts no more events."""


class Overflow(enum.StrEnum):
    """What happens when a subscriber's queue is full."""

    WAIT = "wait"
    """The publisher waits up to ``put_timeout`` for room, then the event is dropped (counted)."""
    DROP_OLDEST = "drop_oldest"
    """The oldest queued event is evicted (counted) to make room; the publisher never waits."""


class SubscriptionStats(msgspec.Struct, frozen=True):
    """Counters of one subscription, for metrics and ``/ready``."""

    name: str
    patterns: tuple[str, ...]
    overflow: Overflow
    queue_size: int
    depth: int
    max_depth: int
    delivered: int
    errors: int
    timeouts: int
    dropped: int


class _RateLimitedWarning:
    """Logs the first occurrence at once, then at most once per interval with a count."""

    __slots__ = ("_last", "_suppressed")

    def __init__(self) -> None:
        self._last = -_WARN_INTERVAL
        self._suppressed = 0

    def __call__(self, event: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last < _WARN_INTERVAL:
            self._suppressed += 1
            return
        log.warning(event, suppressed_since_last=self._suppressed, **fields)
        self._last = now
        self._suppressed = 0


class Subscription:
    """A subscriber's queue and worker. Created by :meth:`Bus.subscribe`."""

    def __init__(
        self,
        bus: Bus,
        patterns: tuple[str, ...],
        handler: Handler,
        *,
        name: str,
        queue_size: int,
        overflow: Overflow,
        put_timeout: float,
        handler_timeout: float,
        accept: Callable[[Event], bool] | None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.bus = bus
        self.name = name
        self.patterns = patterns
        self.overflow = Overflow(overflow)
        self.queue_size = queue_size
        self.put_timeout = put_timeout
        self.handler_timeout = handler_timeout
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
        )
        self._accept = accept
        self._queue: deque[Event] = deque()
        # Publishers waiting for room, each with the event it carries (FIFO keeps order).
        self._space: deque[tuple[asyncio.Future[None], Event]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._busy_since: float | None = None
        self._timed_out = False
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.delivered = 0
        self.errors = 0
        self.timeouts = 0
        self.dropped = 0
        self.max_depth = 0
        self._warn_drop = _RateLimitedWarning()
        self._warn_error = _RateLimitedWarning()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bus:{name}")

    # -- publishing side -------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _offer(self, event: Event) -> bool:
        """Queue without waiting. False means: full under ``wait``; the caller must wait."""
        queue = self._queue
        if len(queue) < self.queue_size and not self._space:
            queue.append(event)
        elif self.overflow is Overflow.DROP_OLDEST:
            queue.popleft()
            queue.append(event)
            self._count_drop(event, "queue full, oldest event evicted")
        else:
            return False
        depth = len(queue)
        if depth > self.max_depth:
            self.max_depth = depth
        if depth == 1:
            self._idle.clear()
            self._wake()
        return True

    async def _put_wait(self, event: Event, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (future, event)
        self._space.append(entry)
        try:
            async with asyncio.timeout_at(deadline):
                await future
            return True
        except TimeoutError:
            if future.done() and not future.cancelled():
                return True  # the worker moved our event in just as the deadline struck
            try:
                self._space.remove(entry)
            except ValueError:
                return True
            self._count_drop(event, f"queue full for {self.put_timeout:g}s, event dropped")
            return False

    def _count_drop(self, event: Event, why: str) -> None:
        self.dropped += 1
        self._warn_drop(
            "bus.event_dropped",
            subscription=self.name,
            reason=why,
            event_type=event.type,
            event_id=event.id,
            dropped_total=self.dropped,
        )

    # -- consuming side --------------------------------------------------------------------
    def _take(self) -> Event:
        event = self._queue.popleft()
        if self._space:
            future, waiting_event = self._space.popleft()
            self._queue.append(waiting_event)
            if not future.done():
                future.set_result(None)
        return event

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        handled = 0
        while True:
            if not queue:
                if self._idle_and_stop():
                    return
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            event = self._take()
            self._busy_since = loop.time()
            try:
                if self._is_async:
                    await self._handler(event)
                else:
                    self._handler(event)
                self.delivered += 1
            except asyncio.CancelledError:
                if not self._timed_out:
                    raise
                # The watchdog cancelled a hung call: count it and carry on with the next.
                self._timed_out = False
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                self.timeouts += 1
                self._warn_error(
                    "bus.listener_timeout",
                    subscription=self.name,
                    event_type=event.type,
                    event_id=event.id,
                    timeout_s=self.handler_timeout,
                    timeouts_total=self.timeouts,
                )
            except Exception as exc:
                self.errors += 1
                self._warn_error(
                    "bus.listener_failed",
                    subscription=self.name,
                    event_type=event.type,
                    event_id=event.id,
                    error=f"{type(exc).__name__}: {exc}",
                    errors_total=self.errors,
                    exc_info=exc,
                )
            finally:
                self._busy_since = None
            handled += 1
            if handled % _FAIRNESS_BATCH == 0:
                await asyncio.sleep(0)

    def _idle_and_stop(self) -> bool:
        self._idle.set()
        return self._stopping

    def _check_hung(self, now: float) -> None:
        started = self._busy_since
        if started is not None and not self._timed_out and now - started > self.handler_timeout:
            self._timed_out = True
            self._task.cancel()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._queue)

    async def wait_idle(self) -> None:
        """Wait until everything queued so far has been handled."""
        while not (self._idle.is_set() and not self._queue and self._busy_since is None):
            await self._idle.wait()
            await asyncio.sleep(0)

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(
            name=self.name,
            patterns=self.patterns,
            overflow=self.overflow,
            queue_size=self.queue_size,
            depth=len(self._queue) + len(self._space),
            max_depth=self.max_depth,
            delivered=self.delivered,
            errors=self.errors,
            timeouts=self.timeouts,
            dropped=self.dropped,
        )

    def unsubscribe(self) -> None:
        """Stop routing new events here; what is queued is still handled, then the worker ends."""
        self.bus._remove(self)
        self._stopping = True
        self._wake()

    async def _stop(self, deadline: float) -> int:
        """Finish queued work until ``deadline``; return how many events were left undelivered."""
        self._stopping = True
        self._wake()
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(self._task)
            return 0
        except TimeoutError:
            left = len(self._queue) + len(self._space) + (1 if self._busy_since else 0)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            for future, _ in self._space:
                future.cancel()
            return left
        except asyncio.CancelledError:
            return len(self._queue)

    def __repr__(self) -> str:
        return f"<Subscription {self.name} {','.join(self.patterns)} depth={len(self._queue)}>"


class Bus:
    """Publish/subscribe for :class:`~nabat.events.Event`, routed by ``event.type``."""

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        overflow: Overflow | str = Overflow.WAIT,
        put_timeout: float = 5.0,
        handler_timeout: float = 30.0,
    ) -> None:
        self.queue_size = queue_size
        self.overflow = Overflow(overflow)
        self.put_timeout = put_timeout
        self.handler_timeout = handler_timeout
        self._subs: list[Subscription] = []
        self._routes: dict[str, tuple[Subscription, ...]] = {}
        self._closed = False
        self._watchdog: asyncio.Task[None] | None = None
        self.published = 0

    # -- subscribing -----------------------------------------------------------------------
    def subscribe(
        self,
        patterns: str | Iterable[str],
        handler: Handler,
        *,
        name: str,
        queue_size: int | None = None,
        overflow: Overflow | str | None = None,
        put_timeout: float | None = None,
        handler_timeout: float | None = None,
        accept: Callable[[Event], bool] | None = None,
    ) -> Subscription:
        """Call ``handler(event)`` for every event whose type matches one of ``patterns``.

        Must be called from the running event loop. ``name`` identifies the subscriber in logs
        and metrics. ``accept`` is an optional cheap predicate run at publish time (filter
        first: an event it rejects is never queued). ``handler`` may be a coroutine function
        or a plain function; a plain function must not block.
        """
        if self._closed:
            raise BusClosed("the bus is closed")
        pats = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        if not pats:
            raise ValueError("subscribe needs at least one pattern")
        for pattern in pats:
            validate_pattern(pattern)
        sub = Subscription(
            self,
            pats,
            handler,
            name=name,
            queue_size=queue_size or self.queue_size,
            overflow=Overflow(overflow or self.overflow),
            put_timeout=self.put_timeout if put_timeout is None else put_timeout,
            handler_timeout=self.handler_timeout if handler_timeout is None else handler_timeout,
            accept=accept,
        )
        self._subs.append(sub)
        self._routes.clear()
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(
                self._watch(), name="bus:watchdog"
            )
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._routes.clear()

    def _route(self, event_type: str) -> tuple[Subscription, ...]:
        if len(self._routes) > 10_000:  # foreign types are unbounded; the cache must not be
            self._routes.clear()
        subs = tuple(
            s
            for s in self._subs
            if any(compile_pattern(p).fullmatch(event_type) for p in s.patterns)
        )
        self._routes[event_type] = subs
        return subs

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, event: Event) -> int:
        """Queue ``event`` for every matching subscriber; return how many it was queued for.

        Returns at once unless a ``wait`` subscriber's queue is full; then it waits for room
        (up to that subscriber's ``put_timeout``) after serving every other subscriber first.
        """
        if self._closed:
            raise BusClosed("the bus is closed; event not published")
        if not isinstance(event, Event):
            raise TypeError(f"publish() takes an Event, not {type(event).__name__}")
        subs = self._routes.get(event.type)
        if subs is None:
            subs = self._route(event.type)
        self.published += 1
        queued = 0
        full: list[Subscription] | None = None
        for sub in subs:
            accept = sub._accept
            if accept is not None:
                try:
                    if not accept(event):
                        continue
                except Exception as exc:
                    sub.errors += 1
                    sub._warn_error(
                        "bus.filter_failed", subscription=sub.name, error=repr(exc), exc_info=exc
                    )
                    continue
            if sub._offer(event):
                queued += 1
            elif full is None:
                full = [sub]
            else:
                full.append(sub)
        if full:
            loop = asyncio.get_running_loop()
            for sub in full:
                if await sub._put_wait(event, loop.time() + sub.put_timeout):
                    queued += 1
        return queued

    # -- watching and stopping -------------------------------------------------------------
    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._subs:
            shortest = min(s.handler_timeout for s in self._subs)
            await asyncio.sleep(min(1.0, max(0.02, shortest / 4)))
            now = loop.time()
            for sub in self._subs:
                sub._check_hung(now)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subs)

    def stats(self) -> list[SubscriptionStats]:
        return [s.stats() for s in self._subs]

    async def drain(self) -> None:
        """Wait until every subscriber has handled everything published so far."""
        for sub in list(self._subs):
            await sub.wait_idle()

    async def close(self, timeout: float = 10.0) -> dict[str, int]:
        """Stop accepting events and drain within ``timeout`` seconds.

        Returns, per subscription name, how many events were left undelivered (empty when
        everything was delivered); each loss is logged.
        """
        self._closed = True
        deadline = asyncio.get_running_loop().time() + timeout
        subs = list(self._subs)
        results = await asyncio.gather(*(s._stop(deadline) for s in subs))
        self._subs.clear()
        self._routes.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
        lost = {s.name: n for s, n in zip(subs, results, strict=True) if n}
        for name, count in lost.items():
            log.error("bus.undelivered_at_shutdown", subscription=name, events=count)
        return lost
