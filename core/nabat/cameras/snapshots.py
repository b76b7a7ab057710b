"""Snapshots for the camera wall: cached with their age, fetched under concurrency limits.

A wall of 1,000 tiles refreshing every few seconds must not turn into 1,000 concurrent stream
decodes, nor hammer one camera from ten browsers. So:

* each camera's latest snapshot is cached; a request younger than ``max_age`` gets the cached
  picture with its age (``taken_at``), never a stale picture passed off as new;
* concurrent requests for one camera share one fetch (single flight);
* at most ``concurrency`` fetches run at once over all cameras, ``per_camera`` per camera;
* the driver's own ``snapshot()`` is asked first; a driver without one (``NotSupported``) gets a
  picture encoded from a decoded frame of its stream (:mod:`nabat.cameras.snapshot`);
* a failed fetch is remembered for ``failure_ttl`` so a dead camera is not retried by every
  tile refresh; the error (an operator-readable reason) is raised to the callers.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..interfaces.camera import Camera, Snapshot
from ..interfaces.errors import NotSupported, TransientError
from .credentials import with_credentials
from .probe import ProbeSettings
from .snapshot import grab_snapshot
from .workers import in_camera_worker

__all__ = ["SnapshotService"]


@dataclass
class _Entry:
    snapshot: Snapshot | None = None
    fetched_at: float = 0.0
    error: BaseException | None = None
    failed_at: float = 0.0
    inflight: asyncio.Future[Snapshot] | None = None


class SnapshotService:
    def __init__(
        self,
        *,
        max_age: float = 10.0,
        concurrency: int = 16,
        failure_ttl: float = 15.0,
        max_entries: int = 20_000,
        frame_width: int | None = 640,
        timeout: float = 15.0,
        from_stream: Callable[[str], Awaitable[Snapshot | None]] | None = None,
    ) -> None:
        """``from_stream``: a still of a camera already being streamed (live video), tried
        before the driver's own snapshot."""
        self.from_stream = from_stream
        self.max_age = max_age
        self.failure_ttl = failure_ttl
        self.max_entries = max_entries
        self.frame_width = frame_width
        self.timeout = timeout
        self._limit = asyncio.Semaphore(concurrency)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.fetches = 0
        self.hits = 0

    def cached(self, camera_id: str) -> Snapshot | None:
        entry = self._entries.get(camera_id)
        return entry.snapshot if entry else None

    async def get(
        self, camera_id: str, camera: Camera, *, max_age: float | None = None
    ) -> Snapshot:
        """The camera's current picture, from the cache when young enough."""
        max_age = self.max_age if max_age is None else max_age
        now = time.monotonic()
        entry = self._entries.get(camera_id)
        if entry is None:
            entry = self._entries[camera_id] = _Entry()
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(camera_id)
        if entry.snapshot is not None and now - entry.fetched_at <= max_age:
            self.hits += 1
            return entry.snapshot
        if entry.error is not None and now - entry.failed_at <= self.failure_ttl:
            raise entry.error
        if entry.inflight is None:
            entry.inflight = asyncio.get_running_loop().create_future()
            task = asyncio.get_running_loop().create_task(
                self._fetch(camera_id, camera, entry), name=f"snapshot:{camera_id}"
            )
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        # shield: one caller giving up must not cancel the fetch the others wait for
        return await asyncio.shield(entry.inflight)

    async def _fetch(self, camera_id: str, camera: Camera, entry: _Entry) -> None:
        future = entry.inflight
        assert future is not None
        try:
            async with self._limit:
                self.fetches += 1
                async with asyncio.timeout(self.timeout):
                    snapshot = await self._take(camera_id, camera)
        except BaseException as exc:
            error: BaseException = (
                TransientError(f"no snapshot within {self.timeout:g} s")
                if isinstance(exc, TimeoutError)
                else exc
            )
            entry.error, entry.failed_at = error, time.monotonic()
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning when unused
        else:
            entry.snapshot, entry.fetched_at = snapshot, time.monotonic()
            entry.error = None
            if not future.done():
                future.set_result(snapshot)
        finally:
            entry.inflight = None

    async def _take(self, camera_id: str, camera: Camera) -> Snapshot:
        # A camera being watched gives its still from the open stream's last key frame, when
        # it is young enough: many drivers would open a second stream session for a snapshot,
        # which the camera (and on many cameras its viewers) pays for with a pause.
        if self.from_stream is not None and (still := await self.from_stream(camera_id)):
            if (datetime.now(UTC) - still.taken_at).total_seconds() <= self.max_age:
                return still
        try:
            return await camera.snapshot()
        except NotSupported:
            uri = await camera.stream_uri()
            url = with_credentials(camera, uri.uri)
            settings = ProbeSettings(transport="tcp" if uri.transport != "udp" else "udp")
            return await in_camera_worker(grab_snapshot, url, settings, max_width=self.frame_width)
