"""The gap-free fallback against an independent slave whose register map has holes.

A pymodbus slave holds input registers only for its configured slots — I1, I2, D1, E1 and
E2, a topology unlike the bench's — so the broad FC04 read of 70 registers touches
addresses it does not have and is refused with exception 02 (docs/protocol.md §5.9). The driver
must find the populated slots one by one, then read only them, in merged gap-free spans,
and remember that: the exact requests on the wire prove it, in RTU and in ASCII.
"""

from __future__ import annotations

import struct

import pytest
from pymodbuspeer import PymodbusPeer, serving, slot_registers

from ophyd_servomex.codec.modbus_frames import encode_ascii, encode_rtu
from ophyd_servomex.codec.models import ChannelId, ChannelStatus, ProtocolKind, Unit
from ophyd_servomex.codec.registers import gap_free_plan
from ophyd_servomex.driver import Analyzer

pytestmark = pytest.mark.anyio

ADDRESS = 5
MODES = (ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII)
C = ChannelId
POPULATED = (C.I1, C.I2, C.D1, C.E1, C.E2)
SLOTS = {
    C.I1: (20.5, b"Oxygen", b" % \x00"),
    C.I2: (125.0, b"CO    ", b"vpm\x00"),
    C.D1: (21.0, b"O2 dry", b" % \x00"),
    C.E1: (4.0, b"Flow  ", b" mA\x00"),
    C.E2: (12.0, b"||||||", b" mA\x00"),
}


def peer() -> PymodbusPeer:
    runs = {  # first register → the slots stored from there on: holes between runs
        0: (C.I1, C.I2),
        28: (C.D1,),
        56: (C.E1, C.E2),
    }
    registers = {
        start: [r for channel in slots for r in slot_registers(SLOTS[channel])]
        for start, slots in runs.items()
    }
    bits = [False] * 80
    bits[C.D1.slot * 8 + 4] = True  # D1 alarm 1
    analyser = [False] * 16
    analyser[1] = True  # maintenance
    return PymodbusPeer(ADDRESS, registers, bits, analyser)


def wire(mode: ProtocolKind, reads: list[tuple[int, int, int]]) -> list[bytes]:
    encode = encode_rtu if mode is ProtocolKind.MODBUS_RTU else encode_ascii
    return [encode(ADDRESS, struct.pack(">BHH", fc, start, n)) for fc, start, n in reads]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
async def test_holes_in_the_map_fall_back_to_gap_free_reads_of_the_populated_slots(
    mode: ProtocolKind,
) -> None:
    slave = peer()
    async with (
        serving(slave, mode) as path,
        Analyzer(path, protocol=mode, address=ADDRESS, inter_frame_idle=0.005) as analyser,
    ):
        assert analyser.modbus is not None
        assert analyser.modbus.fallback_channels == POPULATED
        plan = gap_free_plan(POPULATED)
        assert [(r.function, r.start, r.count) for r in plan] == [
            (4, 0, 14),
            (4, 28, 7),
            (4, 56, 14),
            (2, 0, 16),
            (2, 32, 8),
            (2, 64, 16),
            (2, 1000, 16),
        ]
        assert analyser.modbus.plan == plan
        assert analyser.info is not None
        assert [(c.channel, c.name, c.unit) for c in analyser.info.channels] == [
            (C.I1, "Oxygen", Unit.PERCENT),
            (C.I2, "CO", Unit.VPM),
            (C.D1, "O2 dry", Unit.PERCENT),
            (C.E1, "Flow", Unit.MILLIAMP),
            (C.E2, None, Unit.MILLIAMP),
        ]
        opening = len(slave.received)
        for _ in range(2):  # remembered: the broad reads are not tried again
            frame = await analyser.poll()
            assert frame.values == {C.I1: 20.5, C.I2: 125.0, C.D1: 21.0, C.E1: 4.0, C.E2: 12.0}
            assert frame.channel("D1").status == ChannelStatus(alarms=(True, False, False, False))
            assert frame.analyser.maintenance
        polls = slave.received[opening:]

    # opening: the refused broad read, one 7-register read per slot (the five holes are
    # refused too), then identify's gap-free FC04 reads
    slots = [(4, channel.slot * 7, 7) for channel in ChannelId]
    fc04 = [(r.function, r.start, r.count) for r in plan if r.function == 4]
    assert slave.received[:opening] == wire(mode, [(4, 0, 70), *slots, *fc04])
    assert polls == wire(mode, [(r.function, r.start, r.count) for r in plan] * 2)
