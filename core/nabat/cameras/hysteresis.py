"""Hysteresis: publish a camera's health only when it has really changed.

One failed probe is not an outage (a dropped packet, a camera rebooting for its nightly
maintenance) and one good probe after an outage is not a recovery. A camera is reported down
after ``fail_after`` consecutive bad probes and back after ``recover_after`` consecutive good
ones; a down camera whose fault changes (black → unreachable) is reported again once the new
fault has held for ``fail_after`` probes. The first probe of a camera never seen before is
reported at once when it is good, and after ``fail_after`` when it is bad, so a hub restart
neither hides nor invents an outage. Rejected credentials, an unsupported codec and a refused
destination are reported at once: they are configuration faults, not flaps, and need an
operator.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..interfaces.camera import CameraHealth, HealthState

__all__ = ["HealthTracker"]

_DEFINITE = frozenset({HealthState.AUTH_FAILED, HealthState.UNSUPPORTED_CODEC})
_DEFINITE_CODES = frozenset({"destination_refused"})  # nabat.cameras.destinations.REASON_CODE


@dataclass
class HealthTracker:
    fail_after: int = 3
    recover_after: int = 2
    reported: HealthState | None = None
    """The state last published (None: nothing yet)."""
    _candidate: HealthState | None = None
    _streak: int = 0

    def __post_init__(self) -> None:
        if self.fail_after < 1 or self.recover_after < 1:
            raise ValueError("fail_after and recover_after must be at least 1")

    def observe(self, health: CameraHealth) -> HealthState | None:
        """Take one probe's result; return the state to publish now, or None."""
        state = health.state
        if state == self.reported:
            self._candidate, self._streak = None, 0
            return None
        if state == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = state, 1
        good = state is HealthState.OK
        if (
            (good and self.reported is None)
            or state in _DEFINITE
            or health.reason_code in _DEFINITE_CODES
        ):
            needed = 1
        elif good:
            needed = self.recover_after
        else:
            needed = self.fail_after
        if self._streak < needed:
            return None
        self.reported = state
        self._candidate, self._streak = None, 0
        return state
