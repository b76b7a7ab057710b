"""``modbus.siren`` against a real pymodbus TCP server simulating a siren controller: alerts
write the message and duration registers and the activate coil and are confirmed from the
state register; a lost answer is retried without writing the coil twice; cancel, status and
self-test read and write the points of the map; a device in fault, a stopped server, a point
the device does not have and a map that cannot work are each reported with their reason."""

from __future__ import annotations

import asyncio
import contextlib

import nabat_modbus.plugin
import pytest
from nabat.interfaces.alerting import (
    Alert,
    WarningMessage,
)
from nabat.testing import eventually, exercise_alert, free_port, record, run_hub
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

PLUGINS = {"modbus": nabat_modbus.plugin}
ACTIVATE, STOP, SELF_TEST = 0, 1, 2  # coils
MESSAGE, DURATION = 0, 1  # holding registers
STATE, BATTERY, TEST_RESULT, FAULT = 0, 1, 2, 3  # input registers
MAINS, TAMPER = 0, 1  # discrete inputs
_FC_TABLE = {5: "coil", 15: "coil", 6: "holding", 16: "holding"}


class Controller:
    """A siren controller behind a real pymodbus TCP server (points 0–15 of each table).

    The activate coil makes it active (after ``delay``), the stop coil or a 0 on the activate
    coil idle; the self-test coil sets the result register to 0 (running), then 1 (passed) or
    2 (failed). ``mode``: ``ok``; ``fault`` (amplifier fault, code 3: never becomes active);
    ``slow`` (the first activation is carried out but its answer comes too late).
    ``writes`` is every write the server received: (table, address, value)."""

    def __init__(self, port: int, mode: str = "ok") -> None:
        self.port, self.mode = port, mode
        self.delay = 0.1
        self.writes: list[tuple[str, int, int]] = []
        self.state = 2 if mode == "fault" else 0
        self.fault = 3 if mode == "fault" else 0
        self.battery = 960  # tenths of a percent
        self.test_result = 1
        self.mains, self.tamper = True, False
        self.late = False  # ``slow``: the late answer was given
        self.release = asyncio.Event()  # ends it
        self.server: ModbusTcpServer | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        def block(bits: bool) -> list[SimData]:
            if bits:
                return [SimData(0, count=16, values=False, datatype=DataType.BITS)]
            return [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)]

        device = SimDevice(
            id=0, simdata=(block(True), block(True), block(False), block(False)), action=self._on
        )
        self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)
        await self.publish()

    async def stop(self) -> None:
        self.release.set()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def publish(self) -> None:
        """Show the controller's state in its input registers and discrete inputs."""
        if self.server is None:
            return
        registers = [self.state, self.battery, self.test_result, self.fault]
        await self.server.async_setValues(0, 4, STATE, registers)
        await self.server.async_setValues(0, 2, MAINS, [self.mains, self.tamper])

    def later(self, **change: int) -> None:
        async def apply() -> None:
            await asyncio.sleep(self.delay)
            for name, value in change.items():
                setattr(self, name, value)
            await self.publish()

        task = asyncio.get_running_loop().create_task(apply())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def coil_writes(self, address: int) -> list[int]:
        return [v for t, a, v in self.writes if t == "coil" and a == address]

    async def _on(self, fc, start, address, count, registers, values):
        if values is None or fc not in _FC_TABLE:  # reads, and publish() itself
            return None
        table = _FC_TABLE[fc]
        for i, value in enumerate(values):
            self.writes.append((table, address + i, int(value)))
        if table != "coil" or not values[0]:
            if table == "coil" and address == ACTIVATE and self.mode != "fault":
                self.later(state=0)
            return None
        if address == ACTIVATE and self.mode == "slow" and not self.late:
            self.late, self.state = True, 1
            await self.publish()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await self.release.wait()  # the answer is late: the hub has given up
        elif address == ACTIVATE and self.mode != "fault":
            self.later(state=1)
        elif address == STOP and self.mode != "fault":
            self.later(state=0)
        elif address == SELF_TEST:
            self.test_result = 0
            await self.publish()
            self.later(test_result=2 if self.mode == "fault" else 1)
        return None


@pytest.fixture
async def controllers():
    made: list[Controller] = []

    async def make(mode: str = "ok", *, start: bool = True) -> Controller:
        controller = Controller(free_port(), mode)
        made.append(controller)
        if start:
            await controller.start()
        return controller

    yield make
    for controller in made:
        await controller.stop()


MAP = """message_register = 0
duration_register = 1
battery_scale = 0.1
fault_register = 3
fault_codes = { 3 = "amplifier" }
"""


def config(*instances: tuple[str, int, str]) -> str:
    """``instances``: (id, port, extra lines of the register map)."""
    lines = [
        '[hub]\nlanguage = "en"\ndata_dir = "data"\nretry_initial = 0.05\nretry_max = 0.2\n',
        "[plugins.eventlog]\nenabled = false\n",
        "[plugins.modbus]\n",
        "[plugins.watch.settings]\ndevice_interval = 3600.0\ncamera_interval = 3600.0\n",
        "[alerts]\nattempts = 3\nretry_delay = 0.05\n",
    ]
    for name, port, registers in instances:
        lines.append(
            f'[instances.{name}]\nkind = "modbus.siren"\nmunicipality = "anapa"\ntimeout = 1.0\n'
            f'[instances.{name}.settings]\nhost = "127.0.0.1"\nport = {port}\n'
            f"tracks = {{ flood = 4 }}\n"
            f"[instances.{name}.settings.registers]\n{registers}"
        )
    return "\n".join(lines)


def flood() -> Alert:
    return exercise_alert("anapa")


async def sound(hub, alert: Alert, message: WarningMessage | None = None) -> dict:
    record_ = await hub.alerts.issue(
        alert, message or WarningMessage(signal_seconds=60, audio="flood"), by="test"
    )
    done = await hub.alerts.wait(record_.id, 10)
    return {d.device: d for d in done.devices}


async def test_an_alert_activates_the_controller_and_cancel_status_self_test_read_it(
    tmp_path, controllers
):
    ok, broken = await controllers(), await controllers("fault")
    text = config(("s1", ok.port, MAP), ("s2", broken.port, MAP))
    async with run_hub(text, tmp_path, plugins=PLUGINS) as hub:
        assert hub.state_of("s1") == "running", hub.status_of("s1").reason
        alert = flood()
        results = await sound(hub, alert)
        s1, s2 = results["s1"], results["s2"]
        assert (s1.outcome.value, s1.attempts) == ("activated", 1), s1.detail
        assert s1.detail == "active (message 4, duration 60)"
        # The message (track "flood" = 4) and the duration first, then the coil; nothing else.
        assert ok.writes == [("holding", MESSAGE, 4), ("holding", DURATION, 60), ("coil", 0, 1)]
        # A device in fault does not sound: failed, with the device's own reason.
        assert s2.outcome.value == "failed"
        assert s2.detail == "the device reports a fault: code 3 (amplifier)"

        siren = hub.instance("s1")
        status = await siren.status()
        assert status.state == "active" and status.active_alert == alert.identifier
        assert (status.mains_ok, status.battery_pct, status.tamper) == (True, 96.0, False)
        # Idempotent per alert: activating it again does not write the coil again.
        again = await siren.activate(alert, WarningMessage(signal_seconds=60, audio="flood"))
        assert (again.outcome, again.detail) == ("activated", s1.detail)  # as remembered
        assert len(ok.writes) == 3

        # Mains lost and the cabinet opened: the status says so (and the watch publishes it).
        statuses = record(hub, "siren.status.*")
        ok.mains, ok.tamper, ok.battery = False, True, 415
        await ok.publish()
        status = await siren.status()
        assert (status.mains_ok, status.battery_pct, status.tamper) == (False, 41.5, True)
        watcher = hub.plugins["watch"].obj.watcher
        await watcher.poll_device(siren)  # idle when it started, active now: a change
        await hub.bus.drain()
        change = (await statuses.wait_for("siren.status.active", subject="s1")).data
        assert (change.mains_ok, change.battery_pct, change.tamper) == (False, 41.5, True)
        fault = await hub.instance("s2").status()
        assert fault.state == "fault"
        assert fault.detail == "the device reports a fault: code 3 (amplifier)"

        cancelled = await hub.alerts.cancel(alert.identifier, by="test")
        by_device = {d.device: d for d in cancelled.devices}
        assert by_device["s1"].outcome.value == "cancelled", by_device["s1"].detail
        assert ok.writes[3:] == [("coil", ACTIVATE, 0), ("coil", STOP, 1)]
        assert ok.state == 0 and (await siren.status()).state == "idle"

        # The silent self-test pulses its coil and reads the result.
        test = await siren.self_test(audible=False)
        assert test.passed and test.detail == "passed", test.detail
        assert ok.coil_writes(SELF_TEST) == [1, 0]
        failed = await hub.instance("s2").self_test()
        assert not failed.passed and failed.detail == "the device reports self-test result code 2"
        # Nothing of it was a sound: the activate coil was written once, by the alert.
        assert ok.coil_writes(ACTIVATE) == [1, 0]


async def test_a_lost_answer_is_retried_without_writing_the_coil_twice(tmp_path, controllers):
    late = await controllers("slow")
    async with run_hub(config(("s1", late.port, MAP)), tmp_path, plugins=PLUGINS) as hub:
        results = await sound(hub, flood())
        s1 = results["s1"]
        # The first attempt wrote the coil but its answer never came in time: the retry
        # reads the state, finds the device active and leaves the coil alone.
        assert (s1.outcome.value, s1.attempts) == ("activated", 2), s1.detail
        assert s1.detail == "active (confirmed on a retry)"
        assert late.coil_writes(ACTIVATE) == [1]


async def test_an_unreachable_controller_is_retried_with_the_reason_and_recovers(
    tmp_path, controllers
):
    gone = await controllers(start=False)
    async with run_hub(config(("s1", gone.port, MAP)), tmp_path, plugins=PLUGINS) as hub:
        # Down when the hub starts: retrying, with the reason; running once it is back.
        await eventually(lambda: hub.state_of("s1") == "retrying", what="retrying")
        assert hub.status_of("s1").reason == (
            f"cannot connect to the Modbus TCP device 127.0.0.1:{gone.port}: "
            "connection refused or host unreachable"
        )
        await gone.start()
        await eventually(lambda: hub.state_of("s1") == "running", what="running again")
        siren = hub.instance("s1")
        assert (await siren.status()).state == "idle"

        # Gone while running: every attempt is unreachable with the reason, the status offline.
        await gone.stop()
        results = await sound(hub, flood())
        s1 = results["s1"]
        assert (s1.outcome.value, s1.attempts) == ("unreachable", 3)
        assert f"cannot connect to the Modbus TCP device 127.0.0.1:{gone.port}" in s1.detail
        status = await siren.status()
        assert status.state == "offline" and "cannot connect" in status.detail
        assert gone.writes == []

        # Back: the same instance reconnects on its next call.
        await gone.start()
        assert (await siren.status()).state == "idle"
        results = await sound(hub, flood())
        assert results["s1"].outcome.value == "activated", results["s1"].detail
        assert gone.coil_writes(ACTIVATE) == [1]


async def test_a_register_map_that_cannot_work_is_a_config_error_naming_the_key(
    tmp_path, controllers
):
    device = await controllers()
    text = config(
        ("overlap", device.port, "stop_coil = 0\n"),
        ("range", device.port, "battery_register = 70000\n"),
        ("mains", device.port, "mains_register = 4\n"),
        ("missing", device.port, "tamper_input = 40\n"),
        ("nomsg", device.port, "message_register = 50\n"),
    )
    async with run_hub(text, tmp_path, plugins=PLUGINS) as hub:
        issues = {i.path: i.reason for i in hub.issues}
        path = "instances.{}.settings.registers"
        assert issues[path.format("overlap")] == (
            "stop_coil and activate_coil are both coil 0: each point needs its own address"
        )
        assert issues[path.format("range")] == (
            "battery_register: 70000 is not an address 0–65535 (or false)"
        )
        assert "mains_input and mains_register are both set" in issues[path.format("mains")]
        for name in ("overlap", "range", "mains"):
            assert hub.state_of(name) == "failed"
        # A point the device does not have: found when the instance starts.
        assert hub.state_of("missing") == "failed"
        assert hub.status_of("missing").reason == (
            "registers.tamper_input: discrete input 40 is not readable on the device "
            "(Modbus exception 2, illegal data address); fix the register map"
        )
        # A write the device refuses fails the activation, naming the point and the code.
        assert hub.state_of("nomsg") == "running", hub.status_of("nomsg").reason
        results = await sound(hub, flood())
        assert results["nomsg"].outcome.value == "failed"
        assert results["nomsg"].detail == (
            "write message_register (holding register 50): the device answered Modbus "
            "exception 2 (illegal data address)"
        )
        assert device.coil_writes(ACTIVATE) == []  # the signal was not started without it
