"""The last reported health of every camera, kept across restarts and shared by hub processes.

Every ``camera.health.<state>`` event updates the camera's entry here; the entries are written
to the journal's records (collection ``camera_health``) in batches, so a restarted hub starts
from what it last reported: the watch's hysteresis resumes from it (a restart does not
re-announce 10,000 unchanged cameras) and the API and the district report know each camera's
state and since when without reading the whole event history.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec

from ..events import Event
from ..interfaces.camera import HealthState
from ..interfaces.payloads import CameraHealthChange
from ..logs import get_logger
from ..store import Journal

__all__ = ["COLLECTION", "CameraState", "CameraStates", "from_the_camera"]

COLLECTION = "camera_health"
log = get_logger("nabat.cameras")


class CameraState(msgspec.Struct, frozen=True, kw_only=True):
    """A camera's reported health: the state, since when, and what the probe measured."""

    state: HealthState
    since: datetime
    """When this state was reported (the time of the ``camera.health`` event)."""
    checked_at: datetime
    """When the probe that found this state ran."""
    reason: str = ""
    reason_code: str = ""
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CameraState)


def from_the_camera(event: Event, change: CameraHealthChange) -> bool:
    """Whether a health change was published by the camera's own instance (the hub's watch).
    Anything else claiming a camera's health — a plugin's slip, or an event written before
    the ingest API reserved ``camera.*`` — is not believed: keyed on ``data.camera`` alone,
    anyone could make a dead camera show as working."""
    return event.source == f"/nabat/instances/{change.camera}"


class CameraStates:
    def __init__(self, journal: Journal, *, flush_every: float = 1.0) -> None:
        self.journal = journal
        self.flush_every = flush_every
        self._states: dict[str, CameraState] = {}
        self._dirty: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self.probed: dict[str, datetime] = {}
        """When each camera was last probed by this process (every probe, not only changes;
        in memory only)."""

    def get(self, camera_id: str) -> CameraState | None:
        return self._states.get(camera_id)

    def all(self) -> dict[str, CameraState]:
        return self._states

    async def load(self) -> None:
        async for record in self.journal.all_records(COLLECTION, page=2000):
            try:
                self._states[record.key] = _decoder.decode(record.body)
            except msgspec.DecodeError:
                continue  # written by another version; the next change rewrites it

    def on_event(self, event: Event) -> None:
        """Bus listener for ``camera.health.*`` (from this process or, via the journal,
        another one). Older news never overwrites newer."""
        change = event.data
        if not isinstance(change, CameraHealthChange) or not from_the_camera(event, change):
            return
        current = self._states.get(change.camera)
        if current is not None and current.since > event.time:
            return
        self._states[change.camera] = CameraState(
            state=change.state,
            since=event.time,
            checked_at=change.checked_at,
            reason=change.reason,
            reason_code=change.reason_code,
            codec=change.codec,
            width=change.width,
            height=change.height,
            fps=change.fps,
        )
        self._dirty.add(change.camera)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def forget(self, camera_id: str) -> None:
        """A camera deleted from the inventory: its state goes too."""
        self._states.pop(camera_id, None)
        self.probed.pop(camera_id, None)
        self._dirty.discard(camera_id)
        try:
            await self.journal.delete_record(COLLECTION, camera_id)
        except Exception as exc:  # a leftover entry is harmless: no camera refers to it
            log.warning("camera_states.forget_failed", camera=camera_id, error=repr(exc))

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_every)  # one write for a burst of changes
        await self.flush()

    async def flush(self) -> None:
        if not self._dirty:
            return
        ids, self._dirty = self._dirty, set()
        rows = [(i, _encoder.encode(self._states[i]), None) for i in ids if i in self._states]
        try:
            for start in range(0, len(rows), 500):
                await self.journal.put_records(COLLECTION, rows[start : start + 500])
        except Exception as exc:  # kept in memory; the events are in the journal anyway
            self._dirty |= ids
            log.warning("camera_states.flush_failed", error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()
