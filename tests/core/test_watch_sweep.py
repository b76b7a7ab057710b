"""A sweep of many cameras reports its progress (start, every 10 %, finish with its rate)."""

from __future__ import annotations

import logging

from nabat.testing import eventually, run_hub


def _config(cameras: int) -> str:
    lines = [
        '[hub]\nlanguage = "en"\ndata_dir = "data"',
        "[plugins.eventlog]\nenabled = false",
        "[plugins.simulator]\nsettings = { incident_every = 3600.0, exercise_every = 3600.0 }",
        "[plugins.watch.settings]\ncamera_interval = 0.5\njitter = 0.0\nconcurrency = 8",
    ]
    for i in range(cameras):
        lines.append(
            f'[instances.cam-{i:03d}]\nkind = "simulator.camera"\nmunicipality = "sochi"\n'
            "settings = { fault_rate = 0.0 }"
        )
    return "\n\n".join(lines) + "\n"


async def test_a_sweep_of_many_cameras_logs_its_progress(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nabat.watch")
    async with run_hub(_config(150), tmp_path) as hub:

        def finished():
            return [r for r in caplog.records if r.getMessage() == "watch.sweep_finished"]

        done = await eventually(finished, what="a finished sweep", timeout=15)
        assert done[0].fields["total"] == 150 and done[0].fields["per_second"] > 0
        progress = [r.fields for r in caplog.records if r.getMessage() == "watch.sweep_progress"]
        assert progress and all(0 < p["done"] < 150 for p in progress)
        assert hub.state_of("cam-149") == "running"
        # ... and on /metrics: the sweep's progress, every camera's state, unit counts.
        from nabat.api.metrics import ApiMetrics

        async def rendered() -> str | None:
            # The sweep's health changes reach the camera states through the bus a moment
            # after the sweep says it finished.
            await hub.bus.drain()
            text = (await ApiMetrics(hub).render()).decode()
            return text if 'nabat_cameras{municipality="sochi",state="ok"} 150.0' in text else None

        text = await eventually(rendered, timeout=10, what="every camera's state on /metrics")
        assert 'nabat_progress_total{task="sweep.camera"} 150.0' in text
        assert 'nabat_progress_done{task="sweep.camera"} 150.0' in text
        assert 'nabat_progress_running{task="sweep.camera"} 0.0' in text
        assert 'nabat_cameras{municipality="sochi",state="ok"} 150.0' in text
        assert 'nabat_units{kind="instance",state="running"} 150.0' in text
