"""The Modbus slave on the wire: silence rules, multidrop, resync and realistic timing."""

from __future__ import annotations

import anyio
import pytest
from simhelpers import assert_silent, receive_exactly, receive_line

from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.modbus_frames import decode_rtu, encode_rtu
from ophyd_servomex.codec.models import ProtocolKind, SerialSettings
from ophyd_servomex.sim import (
    Direction,
    ModbusSlave,
    SimAnalyser,
    SimConfig,
    WireEvent,
    WireKind,
    bench_channels,
    serve_memory,
)

pytestmark = pytest.mark.anyio

LOOP_30 = bytes.fromhex("1E 08 00 00 AB CD 5C C1")
LOOP_31 = encode_rtu(31, bytes.fromhex("080000ABCD"))


async def test_wrong_address_bad_crc_and_broadcast_are_silent() -> None:
    async with serve_memory(SimConfig(noisy=False)) as sim:
        t = sim.transport
        await t.send(LOOP_31)
        await assert_silent(t)
        await t.send(LOOP_30[:-1] + b"\x00")  # bad CRC
        await assert_silent(t)
        await t.send(encode_rtu(0, bytes.fromhex("050000FF00")))  # broadcast coil write
        await assert_silent(t)
        await t.send(LOOP_30)
        assert await receive_exactly(t, 8) == LOOP_30
    events = sim.log.events()
    assert [(e.kind, e.data, e.address) for e in events] == [
        (WireKind.REQUEST, LOOP_31, 31),
        (WireKind.DISCARDED, LOOP_30[:-1] + b"\x00", None),
        (WireKind.REQUEST, encode_rtu(0, bytes.fromhex("050000FF00")), 0),
        (WireKind.REQUEST, LOOP_30, 30),
        (WireKind.REPLY, LOOP_30, 30),
    ]
    assert events[0].note == "no analyser at address 31: silent"
    assert events[1].note == "bad CRC (or not a request)"
    assert events[2].note == "broadcast address 0: ignored"
    assert sim.analyser.coils == (False,) * 9
    assert sim.log.frames_sent == 1
    assert sim.log.requests_received == 3


async def test_ascii_bad_lrc_and_wrong_address_are_silent() -> None:
    config = SimConfig(mode=ProtocolKind.MODBUS_ASCII, noisy=False)
    async with serve_memory(config) as sim:
        t = sim.transport
        await t.send(b":1E080000ABCD63\r\n")
        await t.send(b":1F080000ABCD61\r\n")
        await assert_silent(t)
        await t.send(b":1E080000ABCD62\r\n")
        assert await receive_line(t) == b":1E080000ABCD62\r\n"
    kinds = [(e.kind, e.address) for e in sim.log.events()]
    assert kinds == [
        (WireKind.DISCARDED, None),
        (WireKind.REQUEST, 31),
        (WireKind.REQUEST, 30),
        (WireKind.REPLY, 30),
    ]


async def test_garbage_before_a_request_is_skipped() -> None:
    async with serve_memory(SimConfig(noisy=False)) as sim:
        t = sim.transport
        await t.send(b"\x00\xff\x37" + LOOP_30)
        assert await receive_exactly(t, 8) == LOOP_30
        await t.send(LOOP_30[:3])  # a request split across writes still works
        await anyio.sleep(0.005)
        await t.send(LOOP_30[3:])
        assert await receive_exactly(t, 8) == LOOP_30
    assert [e.kind for e in sim.log.events()] == [
        WireKind.DISCARDED,
        WireKind.REQUEST,
        WireKind.REPLY,
        WireKind.REQUEST,
        WireKind.REPLY,
    ]
    assert sim.log.events()[0].data == b"\x00\xff\x37"


async def test_several_analysers_share_one_bus() -> None:
    config = SimConfig(addresses=(30, 31, 32), noisy=False)
    async with serve_memory(config) as sim:
        sim.analyser_at(31).set_setpoint("I1", 1.5)
        t = sim.transport
        replies = {}
        for address in (30, 31, 32):
            await t.send(encode_rtu(address, bytes.fromhex("0400000002")))
            replies[address] = decode_rtu(await receive_exactly(t, 9))
    assert replies == {
        30: (30, bytes.fromhex("040441A30625")),
        31: (31, bytes.fromhex("04043FC00000")),
        32: (32, bytes.fromhex("040441A30625")),
    }
    with pytest.raises(ServomexValidationError):
        sim.analyser_at(33)


def test_bus_validation() -> None:
    one = SimAnalyser(bench_channels(), address=30)
    two = SimAnalyser(bench_channels(), address=30)
    with pytest.raises(ServomexValidationError):
        ModbusSlave([one, two])
    with pytest.raises(ServomexValidationError):
        ModbusSlave([])
    with pytest.raises(ServomexValidationError):
        SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, addresses=(30, 31)).build_analysers()
    with pytest.raises(ServomexValidationError):
        SimConfig(mode=ProtocolKind.AUTO).build_analysers()


async def test_realistic_timing_turnaround_wire_time_and_drops() -> None:
    settings = SerialSettings("", baudrate=9600)
    config = SimConfig(noisy=False, realistic_timing=True, settings=settings, seed=1)
    request = bytes.fromhex("1E 04 00 00 00 46 73 97")
    async with serve_memory(config) as sim:
        t = sim.transport
        await t.send(request)
        reply = await receive_exactly(t, 145)
        # a request 10 ms after the reply ended is dropped by the analyser
        await anyio.sleep(0.01)
        await t.send(LOOP_30)
        await assert_silent(t, 0.08)
        # after ≥ 50 ms of silence the next one is answered
        await t.send(LOOP_30)
        assert await receive_exactly(t, 8) == LOOP_30
    events = sim.log.events()
    assert [(e.direction, e.kind) for e in events] == [
        (Direction.RX, WireKind.REQUEST),
        (Direction.TX, WireKind.REPLY),
        (Direction.RX, WireKind.REQUEST),
        (Direction.RX, WireKind.REQUEST),
        (Direction.TX, WireKind.REPLY),
    ]
    assert events[1].data == reply
    assert events[2].note.startswith("dropped: ")
    assert events[2].note.endswith("ms after the previous transaction (< 50 ms)")
    assert events[3].note == ""
    wire = settings.wire_time(8) + settings.wire_time(145)  # ≈ 159 ms at 9600 baud
    latency = events[1].time - events[0].time
    assert wire + 0.020 <= latency
    loop_latency = events[4].time - events[3].time
    assert 2 * settings.wire_time(8) + 0.020 <= loop_latency


async def test_zero_latency_without_realistic_timing() -> None:
    async with serve_memory(SimConfig(noisy=False)) as sim:
        t = sim.transport
        for _ in range(20):  # back to back, no gap: every request answered
            await t.send(LOOP_30)
            assert await receive_exactly(t, 8) == LOOP_30
    assert sim.log.frames_sent == 20


def test_wire_event_is_plain_data() -> None:
    event = WireEvent(1.0, Direction.TX, WireKind.REPLY, b"\x01", 30, "")
    assert event == WireEvent(1.0, Direction.TX, WireKind.REPLY, b"\x01", 30)
