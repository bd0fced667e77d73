"""The Modbus path against an independent slave: pymodbus's ``ModbusSerialServer``.

pymodbus serves a register map built here by hand (``struct`` floats, raw display bytes,
status bits) on one end of a pseudo-terminal pair; the driver opens the other end like a
serial port, in RTU and in ASCII. Nothing on the slave side comes from our codec or
simulator, so this checks our framing, addressing and decoding against a second opinion.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from driverpeers import PtyBridge
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ophyd_servomex.codec.models import CalPhase, ChannelId, ProtocolKind, Unit
from ophyd_servomex.driver import Analyzer

pytestmark = pytest.mark.anyio

ADDRESS = 30
FRAMERS = {ProtocolKind.MODBUS_RTU: FramerType.RTU, ProtocolKind.MODBUS_ASCII: FramerType.ASCII}
BLANK = (0.0, b" " * 6, b"\x00" * 4)
SLOTS = [  # value, 6 name bytes (display charset), 4 unit bytes: I1…I4, D1…D4, E1, E2
    (20.5, b"Oxygen", b" % \x00"),
    (0.125, b"CO    ", b" % \x00"),
    (0.25, b"CO\x82   ", b" % \x00"),  # CO₂ with the display's subscript two
    BLANK,
    BLANK,
    BLANK,
    BLANK,
    BLANK,
    (4.0, b"||||||", b" mA\x00"),
    (0.0, b"||||||", b" mA\x00"),
]


def words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def register_map() -> list[int]:
    out: list[int] = []
    for value, name, unit in SLOTS:
        out += words(struct.pack(">f", value)) + words(name) + words(unit)
    assert len(out) == 70
    return out


class Peer:
    """A pymodbus slave with a recorder of every access."""

    def __init__(self) -> None:
        self.accesses: list[tuple[int, int, list[bool] | list[int] | None]] = []
        channel_bits = [False] * 80
        channel_bits[8 + 0] = True  # I2 fault
        channel_bits[16 + 4] = True  # I3 alarm 1
        analyser_bits = [False] * 16
        analyser_bits[1] = True  # maintenance
        analyser_bits[8 + 4] = True  # group 3 calibrating (discrete 1012)…
        analyser_bits[8 + 5] = True  # … with gas 2 (1013)
        self.device = SimDevice(
            id=ADDRESS,
            simdata=(
                [SimData(0, values=[False] * 9, datatype=DataType.BITS)],
                [
                    SimData(0, values=channel_bits, datatype=DataType.BITS),
                    SimData(1000, values=analyser_bits, datatype=DataType.BITS),
                ],
                [SimData(0, values=[0], datatype=DataType.REGISTERS)],
                [SimData(0, values=register_map(), datatype=DataType.REGISTERS)],
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
        self.accesses.append((function_code, address, set_values))


@asynccontextmanager
async def pymodbus_analyser(mode: ProtocolKind) -> AsyncIterator[tuple[Peer, Analyzer]]:
    peer = Peer()
    bridge = PtyBridge()
    server = ModbusSerialServer(
        peer.device, framer=FRAMERS[mode], port=bridge.path_b, baudrate=19200
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve_forever)
            await anyio.sleep(0.2)  # let pymodbus open its end
            async with Analyzer(bridge.path_a, protocol=mode, address=ADDRESS) as analyser:
                yield peer, analyser
            await server.shutdown()
            tg.cancel_scope.cancel()
    finally:
        bridge.close()


@pytest.mark.parametrize("mode", list(FRAMERS), ids=lambda m: m.value)
async def test_every_modbus_method_against_pymodbus(mode: ProtocolKind) -> None:
    async with pymodbus_analyser(mode) as (peer, analyser):
        assert analyser.info is not None
        assert [(c.channel, c.name, c.unit) for c in analyser.info.channels] == [
            (ChannelId.I1, "Oxygen", Unit.PERCENT),
            (ChannelId.I2, "CO", Unit.PERCENT),
            (ChannelId.I3, "CO₂", Unit.PERCENT),
            (ChannelId.E1, None, Unit.MILLIAMP),
            (ChannelId.E2, None, Unit.MILLIAMP),
        ]
        frame = await analyser.poll()
        assert frame.values == {
            ChannelId.I1: 20.5,
            ChannelId.I2: 0.125,
            ChannelId.I3: 0.25,
            ChannelId.E1: 4.0,
            ChannelId.E2: 0.0,
        }
        assert frame.channel("I2").status.fault
        assert frame.channel("I3").status.alarms == (True, False, False, False)
        assert frame.analyser.maintenance
        assert not frame.analyser.fault

        reading = await analyser.read_channel("I3")
        assert (reading.value, reading.name, reading.unit_text) == (0.25, "CO₂", "%")
        assert (await analyser.status("I2")).fault
        assert (await analyser.status("I1")).ok
        status = await analyser.analyser_status()
        assert status.maintenance
        assert status.group(3).phase is CalPhase.CAL_GAS_2
        assert (await analyser.calibration_status(3)).phase is CalPhase.CAL_GAS_2
        assert (await analyser.calibration_status(1)).phase is CalPhase.IDLE
        assert await analyser.loopback(b"\xab\xcd") == b"\xab\xcd"

        await analyser.start_calibration(2, confirm=True)
        await analyser.stop_calibration(confirm=True)
        # each pulse: write ON, read back, write OFF (pymodbus reports a write's values once)
        pulses = [(fc, a, v) for fc, a, v in peer.accesses if fc == 1 or (fc == 5 and v)]
        assert pulses == [
            (5, 1, [True]),
            (1, 1, None),
            (5, 1, [False]),
            (5, 8, [True]),
            (1, 8, None),
            (5, 8, [False]),
        ]
        async with analyser.stream(rate_hz=20, count=2 * len(frame.readings)) as session:
            samples = [s async for s in session]
        assert [s.ok for s in samples] == [True] * (2 * len(frame.readings))
        assert [(s.channel, s.value) for s in samples] == 2 * list(frame.values.items())
