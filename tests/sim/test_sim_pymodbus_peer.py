"""Acceptance: read the simulated analyser through pymodbus, an independent Modbus stack.

pymodbus builds every request and decodes every reply from the raw bytes, in RTU and in
ASCII (its framers over an in-memory link, and its own serial client over a pty). Values
are decoded here with ``struct`` and names with our display charset from the raw register
bytes, so nothing in the check comes from the simulator's own encoder.
"""

from __future__ import annotations

import struct

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteMultipleCoilsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.diag_message import ReturnQueryDataRequest
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)
from simhelpers import transact

from ophyd_servomex.codec.charset import decode_display
from ophyd_servomex.codec.models import CalPhase, ChannelId, ProtocolKind
from ophyd_servomex.sim import SimConfig, SimulatorThread, serve_memory

pytestmark = pytest.mark.anyio

MODES = {"rtu": ProtocolKind.MODBUS_RTU, "ascii": ProtocolKind.MODBUS_ASCII}


def raw_bytes(registers: list[int]) -> bytes:
    return b"".join(r.to_bytes(2, "big") for r in registers)


def as_float(hi: int, lo: int) -> float:
    return float(struct.unpack(">f", raw_bytes([hi, lo]))[0])


def f32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def slot(registers: list[int], index: int) -> tuple[float, bytes, bytes]:
    block = registers[7 * index : 7 * index + 7]
    return as_float(block[0], block[1]), raw_bytes(block[2:5]), raw_bytes(block[5:7])


@pytest.mark.parametrize("framing", ["rtu", "ascii"])
async def test_input_registers_values_names_units(framing: str) -> None:
    async with serve_memory(SimConfig(mode=MODES[framing], noisy=False)) as sim:
        reply, _ = await transact(
            sim.transport, framing, ReadInputRegistersRequest(address=0, count=70, dev_id=30)
        )
    assert not reply.isError()
    regs = list(reply.registers)
    assert len(regs) == 70
    # docs/protocol.md §5.4 vectors, register by register
    assert regs[0:2] == [0x41A3, 0x0625]
    assert regs[7:9] == [0x3DAC, 0x0831]
    assert regs[14:16] == [0x3E80, 0x0000]
    expected = {
        0: (f32(20.378), "Oxygen", "%"),  # I1
        1: (f32(0.084), "CO", "%"),  # I2
        2: (0.25, "CO₂", "%"),  # I3
        8: (0.0, "||||||", "mA"),  # E1
        9: (0.0, "||||||", "mA"),  # E2
    }
    for index, (value, name, unit) in expected.items():
        got_value, name_bytes, unit_bytes = slot(regs, index)
        assert got_value == value
        assert decode_display(name_bytes).strip() == name
        assert decode_display(unit_bytes).strip(" \x00") == unit
    assert slot(regs, 2)[1] == bytes.fromhex("43 4F 82 20 20 20")  # CO₂ on the display
    assert slot(regs, 0)[2] == b" % \x00"
    # I4 and D1–D4 are unconfigured: 0.0, blank names, NUL units
    for index in (3, 4, 5, 6, 7):
        assert slot(regs, index) == (0.0, b" " * 6, b"\x00" * 4)


@pytest.mark.parametrize("framing", ["rtu", "ascii"])
async def test_status_bits_and_analyser_bits(framing: str) -> None:
    async with serve_memory(SimConfig(mode=MODES[framing], noisy=False)) as sim:
        analyser = sim.analyser
        analyser.set_fault(channel="I2")
        analyser.set_maintenance(channel="I1")
        analyser.set_warming_up(channel="I3")
        analyser.set_fault(channel="E1")  # Invalid on an external input
        analyser.set_maintenance()  # analyser level
        reply, _ = await transact(
            sim.transport, framing, ReadDiscreteInputsRequest(address=0, count=80, dev_id=30)
        )
        bits = list(reply.bits[:80])
        assert len(reply.bits) == 80
        on = {i for i, b in enumerate(bits) if b}
        assert on == {1, 8, 16 + 3, 64}  # I1 maintenance, I2 fault, I3 warm-up, E1 invalid
        reply, _ = await transact(
            sim.transport, framing, ReadDiscreteInputsRequest(address=1000, count=16, dev_id=30)
        )
        assert list(reply.bits[:16]) == [False, True] + [False] * 14


@pytest.mark.parametrize("framing", ["rtu", "ascii"])
async def test_coils_autocal_and_loopback(framing: str) -> None:
    config = SimConfig(mode=MODES[framing], noisy=False, flush_time=3600.0)
    async with serve_memory(config) as sim:
        t = sim.transport
        reply, raw = await transact(t, framing, ReturnQueryDataRequest(b"\xab\xcd", dev_id=30))
        assert reply.message == b"\xab\xcd"
        if framing == "rtu":
            assert raw == bytes.fromhex("1E 08 00 00 AB CD 5C C1")
        else:
            assert raw == b":1E080000ABCD62\r\n"
        reply, _ = await transact(
            t, framing, WriteSingleCoilRequest(address=0, bits=[True], dev_id=30)
        )
        assert (reply.address, list(reply.bits)) == (0, [True])
        reply, _ = await transact(t, framing, ReadCoilsRequest(address=0, count=9, dev_id=30))
        assert list(reply.bits[:9]) == [True] + [False] * 8
        # group 1 calibrates with gas 1: its channels show bit 2, discrete 1008 is set
        reply, _ = await transact(
            t, framing, ReadDiscreteInputsRequest(address=0, count=24, dev_id=30)
        )
        assert [reply.bits[8 * k + 2] for k in range(3)] == [True, True, True]
        reply, _ = await transact(
            t, framing, ReadDiscreteInputsRequest(address=1008, count=8, dev_id=30)
        )
        assert list(reply.bits[:8]) == [True] + [False] * 7
        assert sim.analyser.truth().analyser.group(1).phase is CalPhase.CAL_GAS_1
        # FC15: release coil 0 and pulse "stop all" in one write
        bits = [False] * 8 + [True]
        reply, _ = await transact(
            t, framing, WriteMultipleCoilsRequest(address=0, bits=bits, dev_id=30)
        )
        assert (reply.address, reply.count) == (0, 9)
        assert sim.analyser.coils == (False,) * 8 + (True,)
        assert sim.analyser.calibrating_group is None
        reply, _ = await transact(
            t, framing, ReadDiscreteInputsRequest(address=1008, count=8, dev_id=30)
        )
        assert list(reply.bits[:8]) == [False] * 8


@pytest.mark.parametrize("framing", ["rtu", "ascii"])
@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (ReadHoldingRegistersRequest(address=0, count=2, dev_id=30), 1),
        (WriteSingleRegisterRequest(address=0, registers=[1], dev_id=30), 1),
        (WriteMultipleRegistersRequest(address=0, registers=[1, 2], dev_id=30), 1),
        (ReadInputRegistersRequest(address=0, count=71, dev_id=30), 2),
        (ReadInputRegistersRequest(address=69, count=2, dev_id=30), 2),
        (ReadDiscreteInputsRequest(address=80, count=1, dev_id=30), 2),
        (ReadDiscreteInputsRequest(address=999, count=2, dev_id=30), 2),
        (ReadDiscreteInputsRequest(address=1008, count=9, dev_id=30), 2),
        (ReadDiscreteInputsRequest(address=72, count=936, dev_id=30), 2),
        (ReadCoilsRequest(address=0, count=10, dev_id=30), 2),
        (WriteSingleCoilRequest(address=9, bits=[True], dev_id=30), 2),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, int) else f"exc{v:02d}",
)
async def test_exceptions_decoded_by_pymodbus(framing: str, request_: object, code: int) -> None:
    async with serve_memory(SimConfig(mode=MODES[framing], noisy=False)) as sim:
        reply, _ = await transact(sim.transport, framing, request_)  # type: ignore[arg-type]
    assert isinstance(reply, ExceptionResponse)
    assert reply.exception_code == code
    assert sim.analyser.coils == (False,) * 9  # nothing was written


@pytest.mark.parametrize("framer", [FramerType.RTU, FramerType.ASCII])
def test_pymodbus_serial_client_over_a_pty(framer: FramerType) -> None:
    """pymodbus's own serial client (pyserial) on the simulator's pty, two analysers."""
    mode = ProtocolKind.MODBUS_RTU if framer is FramerType.RTU else ProtocolKind.MODBUS_ASCII
    with SimulatorThread(SimConfig(mode=mode, addresses=(30, 31), noisy=False)) as sim:
        sim.analysers[1].set_setpoint("I1", 21.5)
        client = ModbusSerialClient(sim.port, framer=framer, baudrate=19200, timeout=1, retries=0)
        assert client.connect()
        try:
            for address, o2 in ((30, 20.378), (31, 21.5)):
                reply = client.read_input_registers(0, count=7, device_id=address)
                assert not reply.isError()
                regs = list(reply.registers)
                assert as_float(regs[0], regs[1]) == f32(o2)
                assert decode_display(raw_bytes(regs[2:5])) == "Oxygen"
            reply = client.read_discrete_inputs(1000, count=16, device_id=30)
            assert list(reply.bits[:16]) == [False] * 16
            echo = client.diag_query_data(b"\xa5\x5a", device_id=31)
            assert echo.message == b"\xa5\x5a"
        finally:
            client.close()
        assert {e.address for e in sim.log.events()} == {30, 31}
        assert sim.analysers[0].channels == (
            ChannelId.I1,
            ChannelId.I2,
            ChannelId.I3,
            ChannelId.E1,
            ChannelId.E2,
        )
