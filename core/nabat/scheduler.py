"""Scheduled jobs on APScheduler 3 (asyncio), each run isolated and bounded in time.

A job that is still running when its next run is due is not started twice (``max_instances``
1, missed runs coalesced). A run that raises or overruns its timeout is logged and counted and
reported to the owning plugin's ``plugin_error`` observers; the schedule carries on.

**Once per schedule across processes.** Interval triggers are aligned to a fixed epoch, so
every hub process computes the same fire times; before a run, the process *claims* its slot
(the scheduled time) through ``claim(job_id, slot)`` — the hub does that atomically in the
journal — and skips the run when another process claimed it first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .interfaces import Job
from .logs import get_logger

__all__ = ["JobStats", "Scheduler"]

log = get_logger("nabat.scheduler")


@dataclass
class JobStats:
    id: str
    owner: str
    runs: int = 0
    failures: int = 0
    last_started: datetime | None = None
    last_error: str | None = None
    running: bool = field(default=False)
    skipped: int = 0
    """Runs left to another hub process that claimed the slot first."""


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # interval fire times are multiples from here

Claim = Callable[[str, int], Awaitable[bool]]


def slot_of(job: Job, now: datetime) -> int:
    """The scheduled time (Unix seconds) a run at ``now`` belongs to; jitter is assumed to be
    shorter than the interval (or than a minute, for cron jobs)."""
    seconds = now.timestamp()
    if job.every is not None:
        step = job.every
        return int(_EPOCH.timestamp() + ((seconds - _EPOCH.timestamp()) // step) * step)
    return int(seconds // 60 * 60)


class Scheduler:
    def __init__(self, claim: Claim | None = None) -> None:
        self._scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self.jobs: dict[str, JobStats] = {}
        self.claim = claim

    def add(self, job: Job, owner: str, on_error: Callable[[BaseException], None]) -> None:
        job_id = f"{owner}:{job.id}"
        if job_id in self.jobs:
            raise ValueError(f"job {job_id!r} is registered twice")
        stats = JobStats(id=job_id, owner=owner)
        timeout = job.timeout or job.every or 600.0

        async def run() -> None:
            now = datetime.now(UTC)
            if self.claim is not None and not job.shared:
                try:
                    if not await self.claim(job_id, slot_of(job, now)):
                        stats.skipped += 1  # another hub process runs this slot
                        return
                except Exception as exc:
                    log.error("job.claim_failed", job=job_id, error=repr(exc))
                    return
            stats.runs += 1
            stats.running = True
            stats.last_started = now
            try:
                async with asyncio.timeout(timeout):
                    await job.func()
            except Exception as exc:
                stats.failures += 1
                stats.last_error = (
                    f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                )
                log.error("job.failed", job=job_id, error=stats.last_error, exc_info=exc)
                on_error(exc)
            finally:
                stats.running = False

        if job.every is not None:
            trigger = IntervalTrigger(
                seconds=job.every, jitter=job.jitter or None, start_date=_EPOCH
            )
        else:
            trigger = CronTrigger.from_crontab(job.cron, timezone=None)
            if job.jitter:
                trigger.jitter = job.jitter
        kwargs = {"next_run_time": datetime.now(UTC)} if job.run_at_start else {}
        self._scheduler.add_job(
            run, trigger, id=job_id, name=job_id, misfire_grace_time=None, **kwargs
        )
        self.jobs[job_id] = stats

    def start(self) -> None:
        if not self._scheduler.running:
            self._scheduler.start()

    async def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
