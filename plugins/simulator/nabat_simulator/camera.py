"""``simulator.camera``: a camera whose health follows a seeded random walk."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from importlib import resources
from typing import Literal

import msgspec
from nabat.interfaces import (
    Camera,
    CameraHealth,
    CameraInfo,
    ContinuousMove,
    DriverContext,
    GotoHome,
    GotoPreset,
    HealthState,
    MediaProfile,
    NotSupported,
    PtzCommand,
    PtzPreset,
    SetPreset,
    Snapshot,
    Stop,
    StreamUri,
    TransientError,
)

Fault = Literal["unreachable", "black", "frozen", "no_signal"]


def _image(name: str) -> bytes:
    return (resources.files(__package__) / "images" / name).read_bytes()


LIVE_FRAMES = [_image(f"live-{i}.jpg") for i in range(4)]
BLACK_FRAME = _image("black.jpg")


class CameraSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    seed: int | None = None
    """Seed of the fault walk (default: derived from the instance id, so runs repeat)."""
    fault_rate: float = 0.1
    """Chance, per probe, that a working camera develops a fault."""
    recover_rate: float = 0.4
    """Chance, per probe, that a faulty camera recovers."""
    faults: list[Fault] = msgspec.field(default_factory=lambda: ["unreachable", "black", "frozen"])
    ptz: bool = False
    codec: str = "H264"
    width: int = 1920
    height: int = 1080
    fps: float = 25.0
    stream_url: str | None = None
    """An RTSP stream this simulated camera gives as its live video (e.g. a test server's);
    none: it has no video, and says so."""


class SimulatedCamera(Camera):
    kind = "simulator.camera"
    Settings = CameraSettings

    @classmethod
    def inventory_settings(cls, address, username, password):
        return {}  # a simulated camera needs no address; the default fault walk applies

    def __init__(self, context: DriverContext, settings: CameraSettings) -> None:
        super().__init__(context, settings)
        seed = settings.seed if settings.seed is not None else context.instance_id
        self._rng = random.Random(seed)
        self.state = HealthState.OK
        self._frame = 0
        self._position = (0.0, 0.0, 0.0)
        self._presets: dict[str, tuple[str, tuple[float, float, float]]] = {}

    def _advance(self) -> None:
        s = self.settings
        if self.state is HealthState.OK:
            if s.faults and self._rng.random() < s.fault_rate:
                self.state = HealthState(self._rng.choice(s.faults))
        elif self._rng.random() < s.recover_rate:
            self.state = HealthState.OK

    async def describe(self) -> CameraInfo:
        caps = {"media", "snapshot"} | ({"ptz"} if self.settings.ptz else set())
        return CameraInfo(
            manufacturer="Nabat",
            model="Simulated camera",
            firmware="sim-1",
            serial=self.context.instance_id,
            capabilities=frozenset(caps),
            clock_offset_s=0.0,
        )

    async def profiles(self) -> list[MediaProfile]:
        s = self.settings
        return [
            MediaProfile(
                token="main",
                name="Main",
                encoding=s.codec,
                width=s.width,
                height=s.height,
                fps=s.fps,
                ptz=s.ptz,
            ),
            MediaProfile(
                token="sub",
                name="Sub",
                encoding=s.codec,
                width=640,
                height=360,
                fps=s.fps / 2,
                ptz=s.ptz,
            ),
        ]

    async def stream_uri(self, profile: str | None = None) -> StreamUri:
        if self.settings.stream_url is None:
            raise NotSupported("a simulated camera has no video unless its stream_url is set")
        return StreamUri(uri=self.settings.stream_url, profile=profile or "main")

    async def snapshot(self, profile: str | None = None) -> Snapshot:
        if self.state in (HealthState.UNREACHABLE, HealthState.NO_SIGNAL):
            raise TransientError(f"camera is {self.state.value}")
        if self.state is HealthState.BLACK:
            content = BLACK_FRAME
        else:
            if self.state is HealthState.OK:
                self._frame += 1
            content = LIVE_FRAMES[self._frame % len(LIVE_FRAMES)]
        return Snapshot(content=content, taken_at=datetime.now(UTC), width=320, height=180)

    async def probe(self) -> CameraHealth:
        self._advance()
        s = self.settings
        now = datetime.now(UTC)
        reasons = {
            HealthState.OK: "",
            HealthState.UNREACHABLE: "connection timed out (simulated)",
            HealthState.BLACK: "mean luma 2/255 over 3 frames (simulated)",
            HealthState.FROZEN: "3 identical frames over 2 s (simulated)",
            HealthState.NO_SIGNAL: "stream opened but no frame decoded (simulated)",
        }
        codes = {
            HealthState.OK: "picture_changing",
            HealthState.UNREACHABLE: "no_answer",
            HealthState.BLACK: "black_picture",
            HealthState.FROZEN: "frozen_picture",
            HealthState.NO_SIGNAL: "no_frames",
        }
        measured = self.state in (HealthState.OK, HealthState.BLACK, HealthState.FROZEN)
        return CameraHealth(
            state=self.state,
            checked_at=now,
            reason=reasons.get(self.state, ""),
            reason_code=codes.get(self.state, ""),
            codec=s.codec if measured else None,
            width=s.width if measured else None,
            height=s.height if measured else None,
            fps=s.fps if self.state is HealthState.OK else (0.0 if measured else None),
        )

    async def ptz(self, command: PtzCommand) -> None:
        if not self.settings.ptz:
            raise NotSupported("this simulated camera has no PTZ")
        if isinstance(command, GotoPreset):
            if command.preset not in self._presets:
                raise NotSupported(f"no preset {command.preset!r}")
            self._position = self._presets[command.preset][1]
        elif isinstance(command, SetPreset):
            token = command.preset or f"p{len(self._presets) + 1}"
            self._presets[token] = (command.name, self._position)
        elif isinstance(command, GotoHome):
            self._position = (0.0, 0.0, 0.0)
        elif isinstance(command, ContinuousMove | Stop):
            pass  # velocity commands: nothing to integrate in a simulation
        else:
            pan = getattr(command, "pan", 0.0)
            tilt = getattr(command, "tilt", 0.0)
            zoom = getattr(command, "zoom", 0.0) or 0.0
            self._position = (pan, tilt, zoom)

    async def presets(self, profile: str | None = None) -> list[PtzPreset]:
        if not self.settings.ptz:
            raise NotSupported("this simulated camera has no PTZ")
        return [PtzPreset(token=t, name=n) for t, (n, _) in self._presets.items()]
