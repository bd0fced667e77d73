"""Every fault injection, as it appears on the wire (exact bytes in the log and at the client)."""

from __future__ import annotations

from datetime import datetime

import anyio
import pytest
from simhelpers import assert_silent, receive_exactly, receive_line

from ophyd_servomex.codec.continuous import build_frame, parse_frame
from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexConnectionError,
    ServomexFrameError,
    ServomexValidationError,
)
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.sim import (
    DEFAULT_GARBAGE,
    Fault,
    FaultInjector,
    Framing,
    SimAnalyser,
    SimConfig,
    WireKind,
    bench_channels,
    serve_memory,
)

pytestmark = pytest.mark.anyio

FIXED_CLOCK = datetime(2020, 10, 6, 2, 54, 12)
LOOP_30 = bytes.fromhex("1E 08 00 00 AB CD 5C C1")
ASCII_LOOP = b":1E080000ABCD62\r\n"


def replies(log_events: list) -> list[tuple[WireKind, bytes, str]]:  # type: ignore[type-arg]
    return [(e.kind, e.data, e.note) for e in log_events if e.kind is not WireKind.REQUEST]


async def test_rtu_corrupt_crc_then_clean() -> None:
    async with serve_memory(SimConfig(noisy=False)) as sim:
        sim.faults.inject(Fault.CORRUPT_CHECKSUM, count=2)
        assert sim.faults.pending == ((Fault.CORRUPT_CHECKSUM, 2),)
        t = sim.transport
        for _ in range(2):
            await t.send(LOOP_30)
            assert await receive_exactly(t, 8) == bytes.fromhex("1E 08 00 00 AB CD A3 3E")
        await t.send(LOOP_30)
        assert await receive_exactly(t, 8) == LOOP_30
        assert sim.faults.pending == ()
        assert sim.faults.applied == 2
    assert replies(sim.log.events())[0] == (
        WireKind.REPLY,
        bytes.fromhex("1E 08 00 00 AB CD A3 3E"),
        "fault: corrupt_checksum",
    )


async def test_rtu_truncate_garbage_wrong_address() -> None:
    async with serve_memory(SimConfig(noisy=False)) as sim:
        t = sim.transport
        sim.faults.inject(Fault.TRUNCATE, keep=3)
        sim.faults.inject(Fault.GARBAGE)
        sim.faults.inject(Fault.GARBAGE, data=b"\x13\x37")
        sim.faults.inject(Fault.WRONG_ADDRESS)
        await t.send(LOOP_30)
        assert await receive_exactly(t, 3) == LOOP_30[:3]
        await assert_silent(t, 0.05)
        await t.send(LOOP_30)
        assert await receive_exactly(t, 12) == DEFAULT_GARBAGE + LOOP_30
        await t.send(LOOP_30)
        assert await receive_exactly(t, 10) == b"\x13\x37" + LOOP_30
        await t.send(LOOP_30)
        wrong = await receive_exactly(t, 8)
    assert wrong[0] == 31
    assert wrong[1:6] == LOOP_30[1:6]
    notes = [note for _, _, note in replies(sim.log.events())]
    assert notes == [
        "fault: truncate (kept 3 of 8 bytes)",
        "fault: garbage (4 bytes before the frame)",
        "fault: garbage (2 bytes before the frame)",
        "fault: wrong_address",
    ]


async def test_rtu_dropped_and_late_reply() -> None:
    async with serve_memory(SimConfig(noisy=False)) as sim:
        t = sim.transport
        sim.faults.inject(Fault.DROP)
        sim.faults.inject(Fault.DELAY, seconds=0.2)
        await t.send(LOOP_30)
        await assert_silent(t, 0.1)
        await t.send(LOOP_30)
        assert await receive_exactly(t, 8) == LOOP_30
    events = sim.log.events()
    assert [(e.kind, e.data, e.note) for e in events] == [
        (WireKind.REQUEST, LOOP_30, ""),
        (WireKind.SUPPRESSED, LOOP_30, "fault: drop"),
        (WireKind.REQUEST, LOOP_30, ""),
        (WireKind.REPLY, LOOP_30, "fault: delay (0.2 s)"),
    ]
    assert events[3].time - events[2].time >= 0.2
    assert sim.log.frames_sent == 1


async def test_rtu_disconnect_mid_reply() -> None:
    async with serve_memory(SimConfig(noisy=False)) as sim:
        t = sim.transport
        sim.faults.inject(Fault.DISCONNECT, keep=5)
        await t.send(LOOP_30)
        assert await receive_exactly(t, 5) == LOOP_30[:5]
        with pytest.raises(ServomexConnectionError), anyio.fail_after(1):
            await t.receive()
    kinds = [(e.kind, e.data) for e in sim.log.events()]
    assert kinds == [
        (WireKind.REQUEST, LOOP_30),
        (WireKind.REPLY, LOOP_30[:5]),
        (WireKind.DISCONNECT, b""),
    ]


async def test_ascii_corrupt_lrc_and_truncate() -> None:
    async with serve_memory(SimConfig(mode=ProtocolKind.MODBUS_ASCII, noisy=False)) as sim:
        t = sim.transport
        sim.faults.inject(Fault.CORRUPT_CHECKSUM)
        sim.faults.inject(Fault.TRUNCATE)
        await t.send(ASCII_LOOP)
        assert await receive_line(t) == b":1E080000ABCD9D\r\n"  # LRC 0x62 inverted
        await t.send(ASCII_LOOP)
        assert await receive_exactly(t, 8) == ASCII_LOOP[:8]
        await t.send(ASCII_LOOP)
        assert await receive_line(t) == ASCII_LOOP  # the rest of the cut line never comes


def continuous(period: float = 0.05) -> SimConfig:
    """Continuous mode with a fixed analyser clock, so every frame has the same bytes."""
    analyser = SimAnalyser(bench_channels(noisy=False), analyser_clock=lambda: FIXED_CLOCK)
    return SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, analysers=[analyser], period=period)


async def test_continuous_corrupt_checksum_and_wrong_count() -> None:
    async with serve_memory(continuous()) as sim:
        sim.faults.inject(Fault.CORRUPT_CHECKSUM)
        sim.faults.inject(Fault.WRONG_CHANNEL_COUNT)
        t = sim.transport
        corrupt = await receive_line(t)
        wrong = await receive_line(t)
        clean = await receive_line(t)
    good = parse_frame(clean)
    assert good.values == sim.analyser.truth().values
    with pytest.raises(ServomexChecksumError) as info:
        parse_frame(corrupt)
    assert info.value.expected == info.value.actual ^ 0xFFFF
    assert corrupt[:199] == clean[:199]
    assert wrong[31:33] == b"06"
    assert int(wrong[199:203], 16) == sum(wrong[1:199])  # checksum stays right
    with pytest.raises(ServomexFrameError):
        parse_frame(wrong)
    sent = [e for e in sim.log.events() if e.kind is WireKind.BROADCAST]
    assert [e.data for e in sent[:3]] == [corrupt, wrong, clean]
    assert [e.note for e in sent[:3]] == [
        "fault: corrupt_checksum",
        "fault: wrong_channel_count",
        "",
    ]


async def test_continuous_truncate_garbage_drop_delay() -> None:
    async with serve_memory(continuous(period=0.1)) as sim:
        sim.faults.inject(Fault.TRUNCATE, keep=50)
        sim.faults.inject(Fault.GARBAGE, data=b"##")
        sim.faults.inject(Fault.DROP)
        sim.faults.inject(Fault.DELAY, seconds=0.06)
        t = sim.transport
        first = await receive_line(t)  # truncated frame runs into the garbage + next frame
        last = await receive_line(t)  # the delayed frame (the dropped one never came)
        await receive_line(t)
    frame = build_frame(sim.analyser.truth())
    assert first[:50] == frame[:50]
    assert first[50:52] == b"##"
    assert first[52:] == frame  # the next whole frame
    assert len(first) == 50 + 2 + 206
    parse_frame(last)
    events = [e for e in sim.log.events() if e.direction == "tx"]
    assert [(e.kind, e.note) for e in events[:4]] == [
        (WireKind.BROADCAST, "fault: truncate (kept 50 of 206 bytes)"),
        (WireKind.BROADCAST, "fault: garbage (2 bytes before the frame)"),
        (WireKind.SUPPRESSED, "fault: drop"),
        (WireKind.BROADCAST, "fault: delay (0.06 s)"),
    ]
    assert len(events[0].data) == 50
    # the schedule does not move: the delayed frame left 60 ms after its slot, two periods
    # after the garbage frame's slot (0.26 s; without the delay 0.20 s). The garbage frame
    # may itself leave late on a loaded machine, which shortens the gap: allow for that.
    gap = events[3].time - events[1].time
    assert 0.26 - 0.045 <= gap <= 0.26 + 0.06


async def test_continuous_disconnect_mid_frame() -> None:
    async with serve_memory(continuous()) as sim:
        sim.faults.inject(Fault.DISCONNECT, keep=100)
        received: list[bytes] = []

        async def read_until_lost() -> None:
            with anyio.fail_after(1):
                while True:
                    received.append(await sim.transport.receive())  # type: ignore[union-attr]

        with pytest.raises(ServomexConnectionError):
            await read_until_lost()
    data = b"".join(received)
    assert len(data) == 100
    assert data == build_frame(sim.analyser.truth())[:100]
    assert [e.kind for e in sim.log.events()] == [WireKind.BROADCAST, WireKind.DISCONNECT]


def test_injection_validation() -> None:
    modbus = FaultInjector(Framing.RTU)
    with pytest.raises(ServomexValidationError):
        modbus.inject(Fault.WRONG_CHANNEL_COUNT)
    with pytest.raises(ServomexValidationError):
        modbus.inject(Fault.DROP, count=0)
    with pytest.raises(ServomexValidationError):
        modbus.inject(Fault.DELAY, keep=3)
    with pytest.raises(ServomexValidationError, match="nonsense"):
        modbus.inject("nonsense")
    with pytest.raises(ServomexValidationError):
        FaultInjector("serial")  # type: ignore[arg-type]
    line = FaultInjector(Framing.CONTINUOUS)
    with pytest.raises(ServomexValidationError):
        line.inject(Fault.WRONG_ADDRESS)
    line.inject("drop", count=3)
    line.inject(Fault.GARBAGE)
    assert line.pending == ((Fault.DROP, 3), (Fault.GARBAGE, 1))
    line.clear()
    assert line.pending == ()
