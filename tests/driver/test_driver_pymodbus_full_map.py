"""Every slot populated, odd values and set status bits, against an independent pymodbus slave.

The bench unit has three transducers and two unlabelled inputs; this peer is unlike it:
all ten slots carry names (a derived ``O2 dry``, a ``CO₂`` through the display's 0x82),
one value is NaN and one +inf (both "no value"), the units are ``%``, ``vpm``, ``ppm``,
``mA`` and an unknown ``bar`` (kept as text), and status bits are set: I1 fault + alarm 2,
D1's copied bits 0–3 + alarm 4, E1 bit 0 (*Invalid* → fault, not ok), E2 bits 1–3 (reserved,
ignored), the analyser's fault and maintenance, an undocumented discrete, and autocal group
2 calibrating on gas 2. ``open_device`` in RTU and in ASCII must report exactly that.
"""

from __future__ import annotations

import math
import struct

import pytest
from pymodbuspeer import PymodbusPeer, serving, slot_registers

from ophyd_servomex.codec.modbus_frames import encode_ascii, encode_rtu
from ophyd_servomex.codec.models import (
    AnalyserStatus,
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelInfo,
    ChannelStatus,
    ProtocolKind,
    Reading,
    Unit,
)
from ophyd_servomex.driver import Analyzer

pytestmark = pytest.mark.anyio

ADDRESS = 17
MODES = (ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII)
C = ChannelId


def f32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


SLOTS = {  # value, 6 name bytes (display charset), 4 unit bytes
    C.I1: (20.5, b"Oxygen", b" % \x00"),
    C.I2: (math.nan, b"CO    ", b"vpm\x00"),
    C.I3: (0.25, b"CO\x82   ", b"ppm\x00"),
    C.I4: (math.inf, b"N2O   ", b" % \x00"),
    C.D1: (20.9, b"O2 dry", b" % \x00"),
    C.D2: (1250.0, b"CO vpm", b"vpm\x00"),
    C.D3: (-0.5, b"CO\x82 wt", b"bar\x00"),
    C.D4: (12.75, b"Dew pt", b"%\x00\x00\x00"),
    C.E1: (4.0, b"Flow  ", b" mA\x00"),
    C.E2: (20.0, b"Press ", b"mA\x00\x00"),
}


def channel_bits() -> list[bool]:
    bits = [False] * 80
    for channel, on in {
        C.I1: (0, 5),  # fault, alarm 2
        C.D1: (0, 1, 2, 3, 7),  # bits 0–3 copied from its transducer, alarm 4
        C.E1: (0,),  # Invalid
        C.E2: (1, 2, 3),  # reserved: ignored
    }.items():
        for bit in on:
            bits[channel.slot * 8 + bit] = True
    return bits


def analyser_bits() -> list[bool]:
    bits = [False] * 16
    for bit in (0, 1, 5, 10, 11):  # fault, maintenance, undocumented 1005, group 2 on gas 2
        bits[bit] = True
    return bits


def peer() -> PymodbusPeer:
    regs = [r for channel in ChannelId for r in slot_registers(SLOTS[channel])]
    return PymodbusPeer(ADDRESS, {0: regs}, channel_bits(), analyser_bits())


STATUS = {
    C.I1: ChannelStatus(fault=True, alarms=(False, True, False, False)),
    C.D1: ChannelStatus(
        fault=True,
        maintenance=True,
        calibrating=True,
        warming_up=True,
        alarms=(False, False, False, True),
    ),
    C.E1: ChannelStatus(fault=True),
}
EXPECTED = tuple(
    Reading(channel, value, name, unit, STATUS.get(channel, ChannelStatus()), text)
    for channel, value, name, unit, text in [
        (C.I1, 20.5, "Oxygen", Unit.PERCENT, "%"),
        (C.I2, None, "CO", Unit.VPM, "vpm"),
        (C.I3, 0.25, "CO₂", Unit.PPM, "ppm"),
        (C.I4, None, "N2O", Unit.PERCENT, "%"),
        (C.D1, f32(20.9), "O2 dry", Unit.PERCENT, "%"),
        (C.D2, 1250.0, "CO vpm", Unit.VPM, "vpm"),
        (C.D3, -0.5, "CO₂ wt", Unit.UNKNOWN, "bar"),
        (C.D4, 12.75, "Dew pt", Unit.PERCENT, "%"),
        (C.E1, 4.0, "Flow", Unit.MILLIAMP, "mA"),
        (C.E2, 20.0, "Press", Unit.MILLIAMP, "mA"),
    ]
)
ANALYSER = AnalyserStatus(
    fault=True,
    maintenance=True,
    cal_groups=(
        CalGroupState(1, CalPhase.IDLE, 1),
        CalGroupState(2, CalPhase.CAL_GAS_2, 2),
        CalGroupState(3, CalPhase.IDLE, 1),
        CalGroupState(4, CalPhase.IDLE, 1),
    ),
)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
async def test_a_fully_populated_unit_reads_exactly(mode: ProtocolKind) -> None:
    slave = peer()
    async with (
        serving(slave, mode) as path,
        Analyzer(path, protocol=mode, address=ADDRESS, inter_frame_idle=0.005) as analyser,
    ):
        assert analyser.info is not None
        assert analyser.info.channels == tuple(
            ChannelInfo(r.channel, r.name, r.unit, r.unit_text) for r in EXPECTED
        )
        assert (await analyser.identify()) == analyser.info

        frame = await analyser.poll()
        assert frame.readings == EXPECTED
        assert frame.analyser == ANALYSER
        assert (frame.protocol, frame.address) == (mode, ADDRESS)
        assert [r.status.ok for r in frame.readings] == [
            False,  # I1 fault + alarm 2
            *[True] * 3,
            False,  # D1
            *[True] * 3,
            False,  # E1 invalid
            True,  # E2: reserved bits ignored
        ]

        for expected in EXPECTED:
            assert (await analyser.read_channel(expected.channel)) == expected
            assert (await analyser.status(expected.channel)) == expected.status
        assert (await analyser.analyser_status()) == ANALYSER
        for group in (1, 2, 3, 4):
            assert (await analyser.calibration_status(group)) == ANALYSER.group(group)
        assert analyser.modbus is not None
        assert analyser.modbus.fallback_channels is None

    # identify at opening, identify, the three-read sweep, two reads per channel, the
    # analyser block, the cal-group block per group: exactly these requests on the wire
    plan = [(4, 0, 70), (4, 0, 70), (4, 0, 70), (2, 0, 80), (2, 1000, 16)]
    plan += [
        read
        for channel in ChannelId
        for read in ((4, channel.slot * 7, 7), (2, channel.slot * 8, 8), (2, channel.slot * 8, 8))
    ]
    plan += [(2, 1000, 16)] + [(2, 1008, 8)] * 4
    encode = encode_rtu if mode is ProtocolKind.MODBUS_RTU else encode_ascii
    assert slave.received == [
        encode(ADDRESS, struct.pack(">BHH", fc, start, count)) for fc, start, count in plan
    ]
