"""The recorder: the cameras ``[[recording.policy]]`` selects, written to segment files.

Each recorded camera is a *system viewer* of the live restreamer (:mod:`nabat.video`): a
camera recorded and watched is still one RTSP session. It takes the fragments through a
:class:`~nabat.recording.tap.SegmentTap` on the upstream's own thread, which writes them
and leaves what waits for the disk (``fsync``, finishing a segment) to the storage path's
:class:`~nabat.recording.disk.DiskWriter` thread: file I/O never runs on the event loop, and
the loop does nothing per fragment — it indexes each finished segment. A new segment starts
at the first key fragment after ``segment_seconds``, and on a new stream configuration. A
camera that stalls ends its segment: the index shows the gap. A camera that cannot be
streamed (offline, credentials refused, not running) is retried with backoff.

Storage paths are tried in the order configured, skipping those that failed or lack room; a
write that fails (disk full, unwritable) or a disk that stops answering (an operation waiting
``STALL_S``) takes the path out with a severe ``recording.storage.failed`` event — recording
goes on elsewhere or stops; nothing else in the hub does — and the path is checked again
every ``RECHECK_S``, on its own thread, until it works (``recording.storage.recovered``).
Retention (per policy, in days) and each path's quota remove the oldest footage first.

Several hub processes on one journal record each camera once: a camera is recorded only by
the process holding its **lease**, a journal record (``recording-leases``, key the camera,
body the process) taken and renewed every third of ``[storage] lease_ttl`` in one atomic
statement and lapsing ``lease_ttl`` after its holder stopped renewing (a SIGKILL: another
process records the camera within that long); a process that stops gives its leases up at
once. A process that loses a lease (its renewals were late) ends that recording. While the
journal cannot be reached, a recording under way goes on: a duplicate segment beats a hole in
the evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from ..config.model import RecordingPolicy, RecordingSettings, RecordingStorage
from ..delivery import process_identity
from ..events import Event, Severity, site_of
from ..instances import Instance, Instances
from ..interfaces import Camera, Job
from ..logs import get_logger
from ..video import LimitReached, LiveVideo, Viewer
from .disk import STALL_S, DiskWriter
from .index import Hold, Segment, SegmentIndex
from .segments import SegmentFile, camera_dir, recover
from .tap import SegmentTap, Target

__all__ = ["Hold", "Recorder", "Storage"]

log = get_logger("nabat.recording")

RECHECK_S = 30.0
"""How often a failed storage path is tried again."""
RETRY_MIN_S, RETRY_MAX_S = 2.0, 120.0
SOURCE = "/nabat/recording"
LEASES = "recording-leases"


@dataclass
class Storage:
    """One ``[[recording.storage]]`` path and what the recorder knows of it."""

    settings: RecordingStorage
    root: Path
    used: int = 0
    """Bytes of indexed footage on it."""
    failed: str | None = None
    """Why writing here stopped (None: it works)."""
    disk: DiskWriter | None = None
    """Its thread (while the recorder runs)."""

    @property
    def name(self) -> str:
        return self.settings.path

    @property
    def quota(self) -> int:
        return int(self.settings.quota_gb * 1024**3)

    def room(self) -> bool:
        """Whether a new segment may start here: working, under quota, and enough free."""
        if self.failed is not None or self.used >= self.quota:
            return False
        if self.disk is None or self.disk.stalled:
            return False
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return False
        return free >= self.settings.min_free_gb * 1024**3


@dataclass
class _Camera:
    id: str
    policy: RecordingPolicy
    until: float | None = None
    """Event recording: until when (monotonic); None: continuous."""
    reasons: list[str] = field(default_factory=list)
    viewer: Viewer | None = None
    extended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    state: str = "starting"
    reason: str = ""
    segments: int = 0
    bytes: int = 0
    since: datetime = field(default_factory=lambda: datetime.now(UTC))


class Recorder:
    """Records the cameras of continuous policies; built by the hub, started after its
    instances."""

    def __init__(
        self,
        settings: RecordingSettings,
        *,
        data_dir: Path,
        video: LiveVideo,
        index: SegmentIndex,
        instances: Instances,
        publish: Callable[[Event], Awaitable[None]],
        holds: Callable[[], Awaitable[list[Hold]]] | None = None,
        lease_ttl: float = 15.0,
    ) -> None:
        self.settings = settings
        self.lease_ttl = lease_ttl
        """A camera's recording lease lapses this long after its holder's last renewal."""
        self.holds = holds
        self.video = video
        self.index = index
        self.instances = instances
        self.publish = publish
        self.storages = [
            Storage(s, (data_dir / s.path) if not Path(s.path).is_absolute() else Path(s.path))
            for s in settings.storage
        ]
        self.cameras: dict[str, _Camera] = {}
        """Cameras recorded continuously."""
        self.events: dict[str, _Camera] = {}
        """Cameras recorded for an event, until their post-roll ends."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._results: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()
        """What the disk threads report, indexed in order: finished segments, failures."""
        self._indexer: asyncio.Task[None] | None = None
        self._post: Callable[..., None] = lambda *item: None
        self.owner = process_identity()
        """This process's name in the cameras' recording leases."""
        self.leases: set[str] = set()
        """Cameras whose recording lease this process holds."""
        event_policies = [p for p in settings.policy if p.mode == "event"]
        if event_policies:  # open streams keep the longest pre-roll asked for
            video.ring_seconds = max(video.ring_seconds, *(p.pre_roll for p in event_policies))

    # -- which cameras --------------------------------------------------------------------
    def policy_for(self, rt: Instance) -> RecordingPolicy | None:
        """The first continuous policy that selects the camera."""
        tags = set(getattr(rt.record, "tags", None) or ())
        for policy in self.settings.policy:
            if policy.mode != "continuous":
                continue
            if (
                rt.id in policy.cameras
                or (rt.entry.municipality or "") in policy.municipalities
                or tags.intersection(policy.tags)
            ):
                return policy
        return None

    def recorded(self) -> list[tuple[str, str, str]]:
        """(camera, municipality, policy) of every camera a continuous policy records."""
        found = []
        for rt in self.instances.cameras():
            policy = self.policy_for(rt)
            if policy is not None:
                found.append((rt.id, rt.entry.municipality or "", policy.name))
        return found

    # -- life -----------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.settings.policy:
            return
        loop = asyncio.get_running_loop()
        for storage in self.storages:
            await self._open_storage(storage)
            storage.disk = self._disk(storage, loop)
        self._indexer = asyncio.ensure_future(self._indexing())
        self._indexer.set_name("recording-index")
        self._spawn(self._keep_cameras(), "recording-cameras")
        self._spawn(self._recheck_storage(), "recording-storage")
        self._spawn(self._renew_leases(), "recording-leases")

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _disk(self, storage: Storage, loop: asyncio.AbstractEventLoop) -> DiskWriter:
        def post(*item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the hub is down
                loop.call_soon_threadsafe(self._results.put_nowait, item)

        self._post = post
        return DiskWriter(
            storage.name,
            on_finished=lambda file: post("segment", file, storage),
            on_failed=lambda exc: post("failed", storage, exc),
        )

    def _tap_failed(self, disk: DiskWriter, exc: OSError) -> None:
        """A tap's write failed (on an upstream's thread): raised on the loop."""
        storage = next((s for s in self.storages if s.disk is disk), None)
        if storage is not None:
            self._post("failed", storage, exc)

    async def stop(self) -> None:
        """Stop recording: every open segment is finished and indexed."""
        self._stopping = True
        cams = [*self.cameras.values(), *self.events.values()]
        tasks = [*self._tasks, *(c.task for c in cams if c.task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._give_up_leases()
        for storage in self.storages:
            disk, storage.disk = storage.disk, None
            if disk is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.wrap_future(disk.call(lambda: None)), 30)
                await asyncio.to_thread(disk.close, 5.0)
        if self._indexer is not None:
            self._results.put_nowait(None)  # after what the disks reported
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._indexer, 30)

    async def _indexing(self) -> None:
        """Index what the disk threads finished, in the order they did (a camera's chain
        follows its segments), and raise their failures."""
        while (item := await self._results.get()) is not None:
            try:
                if item[0] == "segment":
                    await self._index(item[1], item[2])
                else:
                    await self._storage_failed(item[1], item[2])
            except Exception as exc:  # the journal failing: the log must do, recording goes on
                log.error("recording.index_failed", item=item[0], error=repr(exc))

    async def _open_storage(self, storage: Storage) -> None:
        """Create the path, finish what a crash left there, and count what it holds."""
        try:
            await asyncio.to_thread(storage.root.mkdir, parents=True, exist_ok=True)
            cameras = {camera_dir(rt.id): rt.id for rt in self.instances.cameras()}
            finished, removed = await asyncio.to_thread(recover, storage.root, cameras)
        except OSError as exc:
            await self._storage_failed(storage, exc)
            return
        for file in finished:
            policy = self._policy_name(file.camera)
            await self.index.add(file, storage=storage.name, policy=policy, recovered=True)
        if finished or removed:
            log.warning(
                "recording.recovered",
                storage=storage.name,
                finished=len(finished),
                removed=[str(p) for p in removed],
            )
        storage.used = 0
        async for segment in self.index.all():
            if segment.storage == storage.name:
                storage.used += segment.size

    def _policy_name(self, camera_id: str) -> str:
        rt = self.instances.get(camera_id)
        policy = self.policy_for(rt) if rt is not None else None
        return policy.name if policy else ""

    async def _keep_cameras(self) -> None:
        """Start recording every selected camera, and stop those no longer selected (the
        inventory changes), every few seconds."""
        while True:
            wanted: dict[str, RecordingPolicy] = {}
            for rt in self.instances.cameras():
                policy = self.policy_for(rt)
                if policy is not None and not rt.disabled:
                    wanted[rt.id] = policy
            for camera_id, policy in wanted.items():
                if camera_id not in self.cameras:
                    cam = self.cameras[camera_id] = _Camera(camera_id, policy)
                    cam.task = self._spawn(self._record(cam), f"record:{camera_id}")
            for camera_id in [c for c in self.cameras if c not in wanted]:
                cam = self.cameras.pop(camera_id)
                if cam.task:
                    cam.task.cancel()
                    await asyncio.gather(cam.task, return_exceptions=True)
                if camera_id not in self.events:
                    await self._lease(camera_id, give_up=True)
            await asyncio.sleep(5.0)

    # -- events ---------------------------------------------------------------------------
    def event_policy(self, name: str | None = None) -> RecordingPolicy | None:
        """The event policy of that name, or the first one."""
        return next(
            (p for p in self.settings.policy if p.mode == "event" and name in (None, p.name)),
            None,
        )

    def _selects(self, policy: RecordingPolicy, rt: Instance) -> bool:
        if not (policy.cameras or policy.tags or policy.municipalities):
            return True  # an event policy selecting nothing takes every camera it is given
        tags = set(getattr(rt.record, "tags", None) or ())
        return (
            rt.id in policy.cameras
            or (rt.entry.municipality or "") in policy.municipalities
            or bool(tags.intersection(policy.tags))
        )

    def trigger(
        self, camera_id: str, policy: RecordingPolicy, reason: str, seconds: float | None = None
    ) -> bool:
        """Record ``camera_id`` from its pre-roll until ``seconds`` (else the policy's
        post-roll) from now; a later trigger extends it. False when the camera is unknown,
        not selected by the policy, or the recorder is stopping."""
        rt = self.instances.get(camera_id)
        if self._stopping or rt is None or not rt.is_camera or not self._selects(policy, rt):
            return False
        if camera_id in self.cameras:
            return True  # recorded continuously anyway
        until = time.monotonic() + (policy.post_roll if seconds is None else seconds)
        cam = self.events.get(camera_id)
        if cam is not None:
            cam.until = max(cam.until or 0.0, until)
            cam.extended.set()
            if reason not in cam.reasons:
                cam.reasons.append(reason)
            return True
        cam = self.events[camera_id] = _Camera(camera_id, policy, until=until, reasons=[reason])
        cam.task = self._spawn(self._record_event(cam), f"record-event:{camera_id}")
        log.info("recording.event_started", camera=camera_id, policy=policy.name, reason=reason)
        return True

    def record_for_rule(
        self, cameras: list[str], policy_name: str | None, seconds: float | None, reason: str
    ) -> int:
        """A ``[[rules]]`` ``record`` action: how many of ``cameras`` are now recorded."""
        policy = self.event_policy(policy_name)
        if policy is None:
            return 0
        return sum(self.trigger(camera, policy, reason, seconds) for camera in cameras)

    async def on_incident(self, event: Event) -> None:
        """``incident.*``: an open incident records its linked cameras (event policies with
        ``incidents``)."""
        if site_of(event) is not None:
            return  # another site's incident: its cameras are that site's
        data = event.data if isinstance(event.data, dict) else msgspec.to_builtins(event.data)
        if not isinstance(data, dict):
            return
        if data.get("status") == "closed":
            return
        cameras = [c.get("id") for c in data.get("cameras") or () if isinstance(c, dict)]
        for policy in self.settings.policy:
            if policy.mode != "event" or not policy.incidents:
                continue
            for camera_id in cameras:
                if isinstance(camera_id, str):
                    self.trigger(camera_id, policy, f"incident:{event.subject}")

    async def _record_event(self, cam: _Camera) -> None:
        """Record until the post-roll ends (extended by later triggers)."""
        stream = self._spawn(self._record(cam), f"record-stream:{cam.id}")
        try:
            while cam.until is not None and not stream.done():
                remaining = cam.until - time.monotonic()
                if remaining <= 0:
                    break
                cam.extended.clear()
                woken = asyncio.ensure_future(cam.extended.wait())
                try:  # until the post-roll ends, a trigger moves it, or the stream task ends
                    await asyncio.wait(
                        {stream, woken}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    woken.cancel()
        finally:
            cam.until = 0.0  # no retry after this
            if cam.viewer is not None:
                cam.viewer.stop("the post-roll is over")
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(stream), 10)
            if self.events.get(cam.id) is cam:
                del self.events[cam.id]
            if cam.id not in self.cameras and not self._stopping:
                await self._lease(cam.id, give_up=True)
            log.info("recording.event_ended", camera=cam.id, segments=cam.segments)

    # -- one camera -----------------------------------------------------------------------
    def _wanted(self, cam: _Camera) -> bool:
        return not self._stopping and (cam.until is None or time.monotonic() < cam.until)

    # -- leases ---------------------------------------------------------------------------
    @property
    def lease_renew(self) -> float:
        return self.lease_ttl / 3

    async def _lease(self, camera_id: str, give_up: bool = False) -> bool | None:
        """Take or renew ``camera_id``'s lease (or give it up); None when the journal did
        not answer."""
        seconds = 0.0 if give_up else self.lease_ttl
        expires = datetime.now(UTC) + timedelta(seconds=seconds)
        try:
            held = await self.index.journal.put_record(
                LEASES, camera_id, self.owner.encode(), expires=expires, claim=True
            )
        except Exception as exc:  # the journal is down: nobody can take it over meanwhile
            log.warning("recording.lease_unknown", camera=camera_id, error=str(exc))
            return None
        if held and not give_up:
            if camera_id not in self.leases:
                log.info("recording.lease_taken", camera=camera_id, owner=self.owner)
            self.leases.add(camera_id)
        else:
            self.leases.discard(camera_id)
        return held

    async def _renew_leases(self) -> None:
        """Renew the lease of every camera being recorded; a lost one ends its recording."""
        while True:
            await asyncio.sleep(self.lease_renew)
            for camera_id in list(self.leases):  # once per camera, recorded for any reason
                if await self._lease(camera_id) is False:
                    log.warning("recording.lease_lost", camera=camera_id, owner=self.owner)
                    for cam in (self.cameras.get(camera_id), self.events.get(camera_id)):
                        if cam is not None and cam.viewer is not None:
                            cam.viewer.stop("another hub process records this camera now")

    async def _give_up_leases(self) -> None:
        """The process stops: others may record its cameras at once."""
        for camera_id in list(self.leases):
            await self._lease(camera_id, give_up=True)

    async def _record(self, cam: _Camera) -> None:
        wait = RETRY_MIN_S
        while self._wanted(cam):
            rt = self.instances.get(cam.id)
            driver = rt.driver if rt is not None else None
            if not isinstance(driver, Camera) or not self.instances.running(cam.id):
                cam.state, cam.reason = "waiting", "the camera's instance is not running"
            elif not await self._lease(cam.id):
                # Another process records it (or the journal is down: it may): wait, and
                # take it over when that process's lease lapses.
                cam.state, cam.reason = "elsewhere", "another hub process records this camera"
                await asyncio.sleep(self.lease_renew)
                continue
            else:
                try:
                    ended = await self._stream(cam, driver)
                except LimitReached as exc:
                    ended = str(exc)
                cam.state, cam.reason = "retrying", ended
                if cam.segments:
                    wait = RETRY_MIN_S
            if not self._wanted(cam):
                return
            await asyncio.sleep(wait)
            wait = min(RETRY_MAX_S, wait * 2)

    async def _stream(self, cam: _Camera, driver: Camera) -> str:
        """Record until the stream ends; returns why it ended."""
        preroll = cam.policy.pre_roll if cam.until is not None and not cam.segments else 0.0

        def on_state(state: str, reason: str) -> None:  # on the upstream's thread
            cam.state, cam.reason = state, reason

        tap = SegmentTap(
            cam.id,
            segment_seconds=self.settings.segment_seconds,
            sync_seconds=self.settings.sync_seconds,
            pick=self._pick,
            on_state=on_state,
            on_failed=self._tap_failed,
        )
        viewer = self.video.watch(
            cam.id, driver, user="recorder", system=True, preroll=preroll, tap=tap
        )
        cam.viewer = viewer
        try:
            async for _message in viewer.messages():
                pass  # status messages: the tap acted on them on the upstream's thread
            return viewer.end.detail if viewer.end else "the stream ended"
        finally:
            cam.viewer = None
            viewer.close()
            done = tap.close()
            if done is not None:  # the open segment, finished (then indexed in turn)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(done)), 30)

    async def _index(self, file: SegmentFile, storage: Storage) -> Segment:
        cam = self.cameras.get(file.camera) or self.events.get(file.camera)
        policy = cam.policy.name if cam is not None else self._policy_name(file.camera)
        segment = await self.index.add(file, storage=storage.name, policy=policy)
        storage.used += segment.size
        if cam is not None:
            cam.segments += 1
            cam.bytes += segment.size
        return segment

    # -- storage --------------------------------------------------------------------------
    def _pick(self) -> Target | None:
        """The first path with room (called on upstreams' threads: reads only)."""
        for storage in self.storages:
            disk = storage.disk
            if disk is not None and storage.room():
                return Target(storage.root, disk)
        return None

    async def _storage_failed(self, storage: Storage, exc: OSError) -> None:
        reason = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
        if storage.failed is not None:
            return
        storage.failed = reason
        log.error("recording.storage_failed", storage=storage.name, error=reason)
        await self._event("recording.storage.failed", storage, Severity.SEVERE, reason)

    async def _recheck_storage(self) -> None:
        """A stalled disk is failed at once; a failed path is tried every ``RECHECK_S``."""
        waited = 0.0
        while True:
            await asyncio.sleep(STALL_S / 4)
            waited += STALL_S / 4
            for storage in self.storages:
                disk = storage.disk
                if disk is not None and disk.stalled and storage.failed is None:
                    seconds = round(disk.stalled)
                    await self._storage_failed(
                        storage,
                        OSError(errno.ETIMEDOUT, f"the disk has not answered for {seconds} s"),
                    )
            if waited < RECHECK_S:
                continue
            waited = 0.0
            for storage in self.storages:
                if storage.failed is not None and await _probe_on(storage.disk, storage):
                    storage.failed = None
                    log.info("recording.storage_recovered", storage=storage.name)
                    await self._event(
                        "recording.storage.recovered", storage, Severity.INFO, "writable again"
                    )

    async def _event(self, type_: str, storage: Storage, severity: Severity, detail: str) -> None:
        try:
            await self.publish(
                Event(
                    type=type_,
                    source=SOURCE,
                    subject=storage.name,
                    severity=severity,
                    data={"storage": storage.name, "detail": detail},
                )
            )
        except Exception as exc:  # the journal itself is failing: the log must do
            log.error("recording.event_failed", type=type_, error=repr(exc))

    # -- retention ------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        if not self.settings.policy:
            return []
        return [Job(id="recording-retention", func=self.apply_retention, every=60, jitter=10)]

    async def apply_retention(self, now: datetime | None = None) -> int:
        """Remove footage past its policy's retention, then the oldest on each path over its
        quota; returns how many segments went. Footage on hold is kept (none yet)."""
        now = now or datetime.now(UTC)
        holds = await self.holds() if self.holds is not None else []
        held: dict[str, list[Hold]] = {}
        for hold in holds:
            held.setdefault(hold.camera, []).append(hold)

        def on_hold(segment: Segment) -> bool:
            return any(
                h.start <= segment.end and segment.start <= h.end
                for h in held.get(segment.camera, ())
            )

        keep = {p.name: timedelta(days=p.retention_days) for p in self.settings.policy}
        longest = max(keep.values(), default=timedelta(days=30))
        by_storage: dict[str, list[Segment]] = {s.name: [] for s in self.storages}
        expired: list[Segment] = []
        async for segment in self.index.all():
            if on_hold(segment):
                continue  # an open incident's or an export's: kept until released
            if now - segment.end > keep.get(segment.policy, longest):
                expired.append(segment)
            else:
                by_storage.setdefault(segment.storage, []).append(segment)
        removed = 0
        for segment in expired:
            removed += await self._remove(segment, "retention")
        for storage in self.storages:
            over = storage.used - storage.quota
            for segment in sorted(by_storage.get(storage.name, []), key=lambda s: s.start):
                if over <= 0:
                    break
                removed += await self._remove(segment, "quota")
                over -= segment.size
            if over > 0:
                log.warning(
                    "recording.quota_held",
                    storage=storage.name,
                    over_bytes=over,
                    detail="over quota with footage on hold: nothing more can go",
                )
        if removed:
            log.info("recording.retention", removed=removed)
        return removed

    async def _remove(self, segment: Segment, reason: str) -> int:
        storage = next((s for s in self.storages if s.name == segment.storage), None)
        if storage is not None:
            path = storage.root / segment.name
            try:
                await asyncio.to_thread(path.unlink, missing_ok=True)
            except OSError as exc:
                log.warning("recording.remove_failed", file=str(path), error=str(exc))
                return 0
            storage.used = max(0, storage.used - segment.size)
        await self.index.remove(segment, reason)
        return 1

    def file_of(self, segment: Segment) -> Path | None:
        """The segment's file under the storage path its record names (None: not one of
        this hub's paths, or a name that would leave it)."""
        for storage in self.storages:
            if storage.name == segment.storage:
                root = storage.root.resolve()
                path = (root / segment.name).resolve()
                return path if path.is_relative_to(root) else None
        return None

    # -- what the API and /metrics read -----------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "camera": c.id,
                "policy": c.policy.name,
                "state": c.state,
                "reason": c.reason,
                "segments": c.segments,
                "bytes": c.bytes,
            }
            for c in self.cameras.values()
        ]


async def _probe_on(disk: DiskWriter | None, storage: Storage) -> bool:
    if disk is None or disk.stalled:
        return False
    try:  # on the path's own thread: a disk that hangs holds that one, not the executor's
        return bool(
            await asyncio.wait_for(
                asyncio.wrap_future(disk.call(lambda: _writable(storage))), STALL_S
            )
        )
    except (TimeoutError, OSError):
        return False


def _writable(storage: Storage) -> bool:
    """A real write and fsync on the path, and room for footage."""
    probe = storage.root / f".nabat-probe-{os.getpid()}-{time.monotonic_ns()}"
    try:
        storage.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError:
        return False
    return shutil.disk_usage(storage.root).free >= storage.settings.min_free_gb * 1024**3
