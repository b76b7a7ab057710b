"""The simulator plugin: drivers plus scheduled scenario jobs."""

from __future__ import annotations

from typing import Annotated

import msgspec
from nabat.hookspecs import hookimpl
from nabat.interfaces import Camera, HubAPI, Job

from .camera import SimulatedCamera
from .scenario import Scenario
from .siren import SimulatedSiren


class SimulatorSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    incident_every: float | None = 20.0
    """Seconds between synthetic 112 incidents (none when unset)."""
    incident_lasts: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    """Seconds until the simulator closes an incident it reported."""
    exercise_every: float | None = 60.0
    """Seconds between siren exercises (none when unset)."""
    seed: int | None = None


class SimulatorPlugin:
    """Class-based plugin: the hub makes one per run, so scenario state is per hub."""

    @hookimpl
    def plugin_settings(self) -> type[SimulatorSettings]:
        return SimulatorSettings

    @hookimpl
    def register_drivers(self) -> list[type]:
        return [SimulatedCamera, SimulatedSiren]

    @hookimpl
    def register_jobs(self, hub: HubAPI, settings: SimulatorSettings) -> list[Job]:
        def municipalities() -> list[str]:
            return sorted(
                {c.context.municipality for c in hub.instances(Camera) if c.context.municipality}
            )

        scenario = Scenario(
            hub,
            [],
            settings.seed,
            incident_lasts=settings.incident_lasts,
            state_dir=hub.data_dir / "simulator",
        )

        async def incident() -> None:
            scenario.municipalities = municipalities()
            await scenario.incident()

        jobs = []
        if settings.incident_every:
            jobs.append(
                Job(
                    id="incidents",
                    func=incident,
                    every=settings.incident_every,
                    jitter=settings.incident_every / 4,
                )
            )
            # Closing has its own beat, so incidents close on time however rare new ones are.
            jobs.append(
                Job(
                    id="incidents-close",
                    func=scenario.close_due,
                    every=min(30.0, max(0.05, settings.incident_lasts / 4)),
                )
            )
        if settings.exercise_every:
            jobs.append(Job(id="exercise", func=scenario.exercise, every=settings.exercise_every))
        return jobs
