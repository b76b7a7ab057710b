"""The register map: where a siren controller keeps its commands and its status.

Modbus has four tables, each addressed 0–65535: *coils* (bits the hub writes), *discrete
inputs* (bits it reads), *holding registers* (16-bit words it writes, or reads) and *input
registers* (16-bit words it reads). Every point of the map names one address in one table; any
point may be switched off with ``false`` (TOML has no null), and the optional ones are off
unless set. Addresses are the protocol's zero-based ones (a vendor's "40001" is holding
register 0).

The map is checked when the configuration is loaded: every address within 0–65535, no two
points on one address of one table (a command coil that is also the self-test coil, a message
register the device reports its state in), mains read from a discrete input *or* a register,
and a state table whose codes are numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

__all__ = ["COIL", "DISCRETE_INPUT", "HOLDING", "INPUT", "Point", "RegisterMap"]

COIL = "coil"
DISCRETE_INPUT = "discrete input"
HOLDING = "holding register"
INPUT = "input register"

Address = int | bool | None
"""An address 0–65535; ``false`` (or unset, for the optional points) leaves the point out."""

StateName = Literal["idle", "active", "fault"]


@dataclass(frozen=True)
class Point:
    """One point of the map: its key in the settings, its table and its address."""

    key: str
    table: str
    address: int

    def __str__(self) -> str:
        return f"{self.key} ({self.table} {self.address})"


class RegisterMap(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # -- commands (written) --------------------------------------------------------------------
    activate_coil: Address = 0
    """Coil: 1 starts the signal (after the message/duration registers are written)."""
    stop_coil: Address = 1
    """Coil: 1 stops the signal. With ``false``, cancel only writes 0 to ``activate_coil``."""
    self_test_coil: Address = 2
    """Coil: pulsed (1, then 0) to run the silent self-test."""
    message_register: Address = None
    """Holding register: the pre-recorded message (track) to play; 0 for the signal only."""
    duration_register: Address = None
    """Holding register: seconds of the «Внимание всем!» signal (0–180)."""
    repeat_register: Address = None
    """Holding register: how many times to play the message."""
    # -- status (read) -------------------------------------------------------------------------
    status_table: Literal["input", "holding"] = "input"
    """The table of the status registers below: input registers, or holding registers for
    controllers that keep everything there."""
    state_register: Address = 0
    """The device's state code, mapped through ``states``."""
    states: dict[str, StateName] = msgspec.field(
        default_factory=lambda: {"0": "idle", "1": "active", "2": "fault"}
    )
    """State codes → ``idle``, ``active`` or ``fault``; any other code is a fault."""
    battery_register: Address = 1
    """Battery charge; times ``battery_scale`` is percent."""
    battery_scale: float = 1.0
    self_test_result_register: Address = 2
    """The self-test's result: ``self_test_running`` while it runs, then
    ``self_test_passed``, or any other code for a failure."""
    self_test_running: int = 0
    self_test_passed: int = 1
    fault_register: Address = None
    """A fault code, read when the state is a fault; ``fault_codes`` gives it words."""
    fault_codes: dict[str, str] = {}
    mains_input: Address = 0
    """Discrete input: 1 while mains power is present."""
    mains_register: Address = None
    """Or a status register: non-zero while mains power is present (set ``mains_input =
    false``)."""
    tamper_input: Address = 1
    """Discrete input: 1 while the cabinet is open or the device tampered with."""

    def __post_init__(self) -> None:
        for key in _ADDRESS_KEYS:
            value = getattr(self, key)
            if value is False:
                setattr(self, key, None)
            elif value is True or (value is not None and not 0 <= value <= 65535):
                raise ValueError(f"{key}: {value!r} is not an address 0–65535 (or false)")
        if self.mains_input is not None and self.mains_register is not None:
            raise ValueError(
                "mains_input and mains_register are both set: read mains from one "
                "(mains_input = false to use the register)"
            )
        if self.self_test_result_register is not None and self.self_test_coil is None:
            raise ValueError("self_test_result_register needs a self_test_coil to start the test")
        if self.self_test_running == self.self_test_passed:
            raise ValueError("self_test_running and self_test_passed must differ")
        for name, table in (("states", self.states), ("fault_codes", self.fault_codes)):
            for code in table:
                if not (code.isdigit() and 0 <= int(code) <= 65535):
                    raise ValueError(f"{name}: {code!r} is not a register value 0–65535")
        if not any(state == "active" for state in self.states.values()):
            raise ValueError("states: no code means active, so no activation can be confirmed")
        if not self.battery_scale > 0:
            raise ValueError("battery_scale must be positive")
        seen: dict[tuple[str, int], str] = {}
        for point in self.points():
            other = seen.setdefault((point.table, point.address), point.key)
            if other != point.key:
                raise ValueError(
                    f"{point.key} and {other} are both {point.table} {point.address}: "
                    "each point needs its own address"
                )

    # -- the points, by table ------------------------------------------------------------------
    def point(self, key: str) -> Point | None:
        address = getattr(self, key)
        return None if address is None else Point(key, _table(self, key), address)

    def points(self) -> list[Point]:
        return [p for key in _ADDRESS_KEYS if (p := self.point(key)) is not None]

    def readable(self) -> list[Point]:
        """The points the hub reads (checked on the device when it starts)."""
        return [p for key in _READ_KEYS if (p := self.point(key)) is not None]

    def state_of(self, code: int) -> StateName | None:
        return self.states.get(str(code))


_WRITE_KEYS = {
    "activate_coil": COIL,
    "stop_coil": COIL,
    "self_test_coil": COIL,
    "message_register": HOLDING,
    "duration_register": HOLDING,
    "repeat_register": HOLDING,
}
_READ_KEYS = {
    "state_register": None,  # the status table
    "battery_register": None,
    "self_test_result_register": None,
    "fault_register": None,
    "mains_register": None,
    "mains_input": DISCRETE_INPUT,
    "tamper_input": DISCRETE_INPUT,
}
_ADDRESS_KEYS = [*_WRITE_KEYS, *_READ_KEYS]


def _table(registers: RegisterMap, key: str) -> str:
    table = _WRITE_KEYS.get(key) or _READ_KEYS.get(key)
    if table is None:
        return INPUT if registers.status_table == "input" else HOLDING
    return table
