"""The journal's housekeeping jobs: expired records hourly, old events daily."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..interfaces import Job
from ..logs import get_logger
from .base import Journal

__all__ = ["retention_jobs"]

log = get_logger("nabat.hub")


def retention_jobs(journal: Journal, retention_days: float | None) -> list[Job]:
    """Idempotency keys and audit entries past their expiry go every hour; events older than
    ``retention_days`` (``[storage]``; None keeps them) every day."""

    async def expire_records() -> None:
        removed = await journal.purge_records()
        log.info("journal.records_expired", removed=removed)

    jobs = [Job(id="records-expiry", func=expire_records, every=3600, jitter=300)]
    if retention_days is not None:

        async def purge() -> None:
            cutoff = datetime.now(UTC) - timedelta(days=retention_days)
            removed = await journal.purge(cutoff)
            log.info("journal.retention", removed=removed, older_than=cutoff.isoformat())

        jobs.append(
            Job(id="journal-retention", func=purge, every=86_400, jitter=600, run_at_start=True)
        )
    return jobs
