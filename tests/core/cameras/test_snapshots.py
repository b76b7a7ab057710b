"""The snapshot cache: ages, single flight, concurrency limits, remembered failures, and the
fallback to a decoded frame for drivers without a snapshot of their own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from nabat.cameras.snapshots import SnapshotService
from nabat.interfaces import Camera, NotSupported, Snapshot, StreamUri, TransientError


class Ctx:
    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.timeout = 10.0


class SlowCamera(Camera):
    kind = "test.camera"
    running = 0
    peak = 0

    def __init__(self, name: str, *, delay: float = 0.05, fail: bool = False) -> None:
        super().__init__(Ctx(name), None)
        self.delay = delay
        self.fail = fail
        self.calls = 0

    async def snapshot(self, profile=None) -> Snapshot:
        self.calls += 1
        SlowCamera.running += 1
        SlowCamera.peak = max(SlowCamera.peak, SlowCamera.running)
        try:
            await asyncio.sleep(self.delay)
            if self.fail:
                raise TransientError("camera 10.0.0.9 refused the connection")
            return Snapshot(content=b"\xff\xd8jpeg\xff\xd9", taken_at=datetime.now(UTC))
        finally:
            SlowCamera.running -= 1


async def test_concurrent_requests_for_one_camera_share_one_fetch_and_then_the_cache():
    service = SnapshotService(max_age=60)
    camera = SlowCamera("cam-1")
    shots = await asyncio.gather(*(service.get("cam-1", camera) for _ in range(20)))
    assert camera.calls == 1 and len({id(s) for s in shots}) == 1
    again = await service.get("cam-1", camera)
    assert again is shots[0] and camera.calls == 1 and service.hits == 1
    fresh = await service.get("cam-1", camera, max_age=0)
    assert camera.calls == 2 and fresh.taken_at >= again.taken_at


async def test_at_most_concurrency_fetches_run_at_once():
    SlowCamera.peak = 0
    service = SnapshotService(concurrency=4)
    cameras = [SlowCamera(f"cam-{i}") for i in range(40)]
    await asyncio.gather(*(service.get(c.context.instance_id, c) for c in cameras))
    assert SlowCamera.peak == 4
    assert all(c.calls == 1 for c in cameras)


async def test_a_failure_is_remembered_for_a_while_and_then_retried():
    service = SnapshotService(failure_ttl=0.2)
    camera = SlowCamera("cam-dead", fail=True, delay=0.0)
    for _ in range(3):
        with pytest.raises(TransientError, match="refused"):
            await service.get("cam-dead", camera)
    assert camera.calls == 1
    await asyncio.sleep(0.25)
    with pytest.raises(TransientError):
        await service.get("cam-dead", camera)
    assert camera.calls == 2


async def test_a_hung_camera_is_cut_off_by_the_timeout():
    service = SnapshotService(timeout=0.2)
    with pytest.raises(TransientError, match=r"within 0\.2 s"):
        await service.get("cam-hung", SlowCamera("cam-hung", delay=30))


async def test_one_caller_giving_up_does_not_cancel_the_fetch_for_the_others():
    service = SnapshotService()
    camera = SlowCamera("cam-1", delay=0.2)
    impatient = asyncio.create_task(service.get("cam-1", camera))
    patient = asyncio.create_task(service.get("cam-1", camera))
    await asyncio.sleep(0.05)
    impatient.cancel()
    assert (await patient).content.startswith(b"\xff\xd8")
    assert camera.calls == 1


class StreamOnlyCamera(Camera):
    kind = "test.stream"

    def __init__(self, url: str) -> None:
        super().__init__(Ctx("cam-stream"), None)
        self.url = url

    async def snapshot(self, profile=None) -> Snapshot:
        raise NotSupported("no snapshot URI")

    async def stream_uri(self, profile=None) -> StreamUri:
        return StreamUri(uri=self.url)


async def test_a_driver_without_snapshots_gets_one_from_its_stream(rtsp_server):
    service = SnapshotService(frame_width=160)
    shot = await service.get("cam-stream", StreamOnlyCamera(rtsp_server.url("live")))
    assert shot.content[:2] == b"\xff\xd8" and shot.width == 160
