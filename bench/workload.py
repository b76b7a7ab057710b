"""What the journal and delivery benchmarks share: the workload and small helpers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nabat.events import Event

MUNICIPALITIES = [f"mo-{i:02d}" for i in range(44)]


def make_events(n: int) -> list[Event]:
    """Camera health events shaped like the reference region's (~450-byte JSON bodies)."""
    return [
        Event(
            type="camera.health.offline",
            source=f"/nabat/instances/cams-{i % 44:02d}",
            subject=f"krd-cam-{i % 6500:05d}",
            municipality=MUNICIPALITIES[i % 44],
            severity="minor",
            correlationid=f"inc-{i // 50}" if i % 5 == 0 else None,
            data={
                "camera": f"krd-cam-{i % 6500:05d}",
                "reason": "no frames for 60 s",
                "stream": f"rtsp://10.{i % 200}.{i % 250}.10:554/main",
                "last_frame_age_s": 61.5,
                "probe": {"attempts": 3, "timeout_s": 5, "http_status": None},
            },
        )
        for i in range(n)
    ]


def percentile(sorted_values: Sequence[float], q: int) -> float:
    return sorted_values[min(len(sorted_values) - 1, len(sorted_values) * q // 100)]


def remove_sqlite(path: Path) -> None:
    """Delete a SQLite database with its WAL, shared-memory and rollback files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
