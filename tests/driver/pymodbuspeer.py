"""An independent Modbus slave for the driver tests: pymodbus's ``ModbusSerialServer``.

The register map is built here by hand (``struct`` floats, raw display bytes, status bits)
and served on one end of a :class:`PtyBridge`; the driver opens the other end like a serial
port. Nothing on the slave side comes from our codec or simulator. Every request pymodbus
receives is recorded byte for byte (``PymodbusPeer.received``), and every datastore access
as ``(function, address, count, written values)``.

``registers`` maps a first PDU address to a run of input registers: addresses between runs
do not exist, so a read that touches them is refused with exception 02 (a unit with a
smaller map than the bench's).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from driverpeers import PtyBridge
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ophyd_servomex.codec.models import ProtocolKind

FRAMERS = {ProtocolKind.MODBUS_RTU: FramerType.RTU, ProtocolKind.MODBUS_ASCII: FramerType.ASCII}

type Slot = tuple[float, bytes, bytes]
"""One channel slot as the analyser holds it: value, 6 name bytes, 4 unit bytes."""


def words(data: bytes) -> list[int]:
    """Big-endian 16-bit registers, the first character in the high byte."""
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def slot_registers(slot: Slot) -> list[int]:
    """The seven input registers of one slot (float32 high word first, name, unit)."""
    value, name, unit = slot
    assert len(name) == 6
    assert len(unit) == 4
    return words(struct.pack(">f", value)) + words(name) + words(unit)


@dataclass
class PymodbusPeer:
    """A pymodbus slave at ``address`` with a hand-built map and a recorder."""

    address: int
    registers: Mapping[int, Sequence[int]]
    channel_bits: Sequence[bool] = (False,) * 80
    analyser_bits: Sequence[bool] = (False,) * 16
    accesses: list[tuple[int, int, int, list[bool] | list[int] | None]] = field(
        default_factory=list
    )
    received: list[bytes] = field(default_factory=list)

    def device(self) -> SimDevice:
        return SimDevice(
            id=self.address,
            simdata=(
                [SimData(0, values=[False] * 9, datatype=DataType.BITS)],
                [
                    SimData(0, values=list(self.channel_bits), datatype=DataType.BITS),
                    SimData(1000, values=list(self.analyser_bits), datatype=DataType.BITS),
                ],
                [SimData(0, values=[0], datatype=DataType.REGISTERS)],
                [
                    SimData(start, values=list(run), datatype=DataType.REGISTERS)
                    for start, run in self.registers.items()
                ],
            ),
            action=self._action,
        )

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        self.accesses.append((function_code, address, count, set_values))

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self.received.append(bytes(data))
        return data

    @property
    def reads(self) -> list[tuple[int, int, int]]:
        """``(function, address, count)`` of every read that reached the datastore."""
        return [(fc, a, n) for fc, a, n, v in self.accesses if v is None]


@asynccontextmanager
async def serving(peer: PymodbusPeer, mode: ProtocolKind) -> AsyncIterator[str]:
    """Serve ``peer`` in ``mode``; yields the device path the driver opens."""
    bridge = PtyBridge()
    server = ModbusSerialServer(
        peer.device(),
        framer=FRAMERS[mode],
        port=bridge.path_b,
        baudrate=19200,
        trace_packet=peer._trace,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve_forever)
            await anyio.sleep(0.2)  # let pymodbus open its end
            try:
                yield bridge.path_a
            finally:
                await server.shutdown()
                tg.cancel_scope.cancel()
    finally:
        bridge.close()
