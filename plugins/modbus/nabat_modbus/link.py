"""One Modbus TCP connection to one device, reopened when it fails.

:class:`Link` wraps pymodbus's ``AsyncModbusTcpClient`` with its own automatic reconnection
off (``reconnect_delay=0``) and no retries of its own (``retries=0``): the driver decides when
to reconnect (on the next call after a failure) and the alert service when to retry. Every
request is bounded by the link's timeout. A connection that failed, timed out or was
cancelled in the middle of a request is dropped, so a late answer can never be taken for the
answer to the next request.

Failures become two exceptions with operator-readable texts: :class:`Unreachable` (no
connection, no answer) and :class:`DeviceRefused` (the device answered with a Modbus exception
response, naming the point and the exception code).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .registers import COIL, DISCRETE_INPUT, HOLDING, INPUT, Point

__all__ = ["EXCEPTION_CODES", "DeviceRefused", "Link", "Unreachable"]

EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_TRANSIENT_CODES = {5, 6, 10, 11}
"""Exception codes that say "not now" (busy, still working, a gateway without its device)."""


class Unreachable(Exception):
    """No connection to the device, or no answer within the timeout."""


class DeviceRefused(Exception):
    """The device answered a request with a Modbus exception response."""

    def __init__(self, action: str, point: Point, code: int) -> None:
        self.words = EXCEPTION_CODES.get(code, "unknown exception code")
        super().__init__(
            f"{action} {point}: the device answered Modbus exception {code} ({self.words})"
        )
        self.point = point
        self.code = code

    @property
    def transient(self) -> bool:
        return self.code in _TRANSIENT_CODES


class Link:
    def __init__(self, host: str, port: int, unit: int, timeout: float) -> None:
        self.host, self.port, self.unit, self.timeout = host, port, unit, timeout
        self.client: AsyncModbusTcpClient | None = None

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    async def connect(self) -> AsyncModbusTcpClient:
        if self.client is not None and self.client.connected:
            return self.client
        self.drop()
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,  # no background reconnection: the next call reconnects
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            ok = await client.connect()
        except BaseException:
            client.close()
            raise
        if not ok:
            client.close()
            # pymodbus keeps the OSError to itself; an early failure was a refusal.
            took = loop.time() - began
            why = (
                f"no answer within {self.timeout:g} s"
                if took >= self.timeout * 0.9
                else "connection refused or host unreachable"
            )
            raise Unreachable(f"cannot connect to the Modbus TCP device {self.peer}: {why}")
        self.client = client
        return client

    def drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    async def _call(self, action: str, point: Point, request: Any) -> Any:
        client = await self.connect()
        try:
            async with asyncio.timeout(self.timeout):
                response = await request(client)
        except TimeoutError:
            self.drop()
            raise Unreachable(
                f"no answer from {self.peer} (unit {self.unit}) within {self.timeout:g} s "
                f"to {action} {point}"
            ) from None
        except ModbusException as exc:
            self.drop()
            text = str(exc).removeprefix("Modbus Error: ")
            raise Unreachable(f"{action} {point} on {self.peer} failed: {text}") from None
        except OSError as exc:
            self.drop()
            raise Unreachable(f"{action} {point} on {self.peer} failed: {exc}") from None
        except BaseException:  # cancelled in the middle of a request: its answer may come later
            self.drop()
            raise
        if response.isError():
            raise DeviceRefused(action, point, getattr(response, "exception_code", 0))
        return response

    async def read(self, point: Point) -> int | bool:
        unit = self.unit
        if point.table == COIL:
            response = await self._call(
                "read", point, lambda c: c.read_coils(point.address, count=1, device_id=unit)
            )
            return bool(response.bits[0])
        if point.table == DISCRETE_INPUT:
            response = await self._call(
                "read",
                point,
                lambda c: c.read_discrete_inputs(point.address, count=1, device_id=unit),
            )
            return bool(response.bits[0])
        if point.table == HOLDING:
            response = await self._call(
                "read",
                point,
                lambda c: c.read_holding_registers(point.address, count=1, device_id=unit),
            )
            return int(response.registers[0])
        assert point.table == INPUT
        response = await self._call(
            "read",
            point,
            lambda c: c.read_input_registers(point.address, count=1, device_id=unit),
        )
        return int(response.registers[0])

    async def write(self, point: Point, value: int | bool) -> None:
        unit = self.unit
        if point.table == COIL:
            await self._call(
                "write",
                point,
                lambda c: c.write_coil(point.address, bool(value), device_id=unit),
            )
        elif point.table == HOLDING:
            await self._call(
                "write",
                point,
                lambda c: c.write_register(point.address, int(value), device_id=unit),
            )
        else:
            raise ValueError(f"{point} cannot be written")

    def close(self) -> None:
        self.drop()
