"""Continuous mode: frames parse with the foundation codec, on an absolute schedule."""

from __future__ import annotations

import anyio
import pytest
from simhelpers import receive_line

from ophyd_servomex.codec.continuous import ContinuousDecoder, checksum, parse_frame
from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import ChannelId, Frame, ProtocolKind, SerialSettings
from ophyd_servomex.sim import (
    ContinuousBroadcaster,
    Direction,
    SimAnalyser,
    SimConfig,
    WireKind,
    bench_channels,
    serve_memory,
)

pytestmark = pytest.mark.anyio


def config(period: float, **kwargs: object) -> SimConfig:
    return SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=period, **kwargs)  # type: ignore[arg-type]


async def test_frames_parse_with_the_codec() -> None:
    async with serve_memory(config(0.02, seed=11)) as sim:
        lines = [await receive_line(sim.transport) for _ in range(5)]
    for line in lines:
        assert line.endswith(b";\r\n")
        assert len(line) == 39 + 33 * 5 + 2
        assert int(line[199:203], 16) == checksum(line[1:199])
        frame = parse_frame(line)
        assert frame.channels == (
            ChannelId.I1,
            ChannelId.I2,
            ChannelId.I3,
            ChannelId.E1,
            ChannelId.E2,
        )
        assert [r.name for r in frame.readings] == ["Oxygen", "CO", "CO2", None, None]
        o2 = frame.channel("I1").value
        assert o2 is not None
        assert abs(o2 - 20.378) < 0.02  # noisy, but near the bench value
    sent = [e.data for e in sim.log.events(WireKind.BROADCAST)]
    assert sent[:5] == lines
    assert sim.log.frames_sent >= 5


async def test_schedule_is_absolute() -> None:
    period = 0.05
    async with serve_memory(config(period, noisy=False)) as sim:
        decoder = ContinuousDecoder()
        frames: list[Frame] = []
        with anyio.fail_after(5):
            while len(frames) < 12:
                frames += [
                    f for f in decoder.feed(await sim.transport.receive()) if isinstance(f, Frame)
                ]
    times = [e.time for e in sim.log.events(WireKind.BROADCAST)][:12]
    start = times[0]
    # each frame leaves at its slot start + k·period: no accumulated drift
    for k, t in enumerate(times):
        assert t - start == pytest.approx(k * period, abs=0.03)
    assert decoder.errors == 0


async def test_input_is_ignored_and_logged() -> None:
    async with serve_memory(config(0.05, noisy=False)) as sim:
        await sim.transport.send(bytes.fromhex("1E 08 00 00 AB CD 5C C1"))
        first = await receive_line(sim.transport)
        second = await receive_line(sim.transport)
    parse_frame(first)
    parse_frame(second)  # broadcasts only, no echo of the probe
    ignored = sim.log.events(WireKind.DISCARDED)
    assert [(e.direction, e.data, e.note) for e in ignored] == [
        (Direction.RX, bytes.fromhex("1E 08 00 00 AB CD 5C C1"), "continuous mode: input ignored")
    ]


async def test_realistic_timing_paces_the_frame() -> None:
    settings = SerialSettings("", baudrate=19200)
    async with serve_memory(config(1.0, noisy=False, realistic_timing=True)) as sim:
        t0 = anyio.current_time()
        chunks = []
        with anyio.fail_after(3):
            while sum(len(c) for c in chunks) < 206:
                chunks.append(await sim.transport.receive())
        elapsed = anyio.current_time() - t0
    assert b"".join(chunks).endswith(b";\r\n")
    assert len(chunks) >= 206 // 16  # trickled out in 16-byte pieces
    assert elapsed >= settings.wire_time(206) * 0.9


async def test_period_zero_sends_nothing() -> None:
    async with serve_memory(config(0.0)) as sim:
        await anyio.sleep(0.1)
    assert sim.log.frames_sent == 0


def test_broadcaster_validation() -> None:
    analyser = SimAnalyser(bench_channels())
    with pytest.raises(ServomexValidationError):
        ContinuousBroadcaster(analyser, period=-1)
    with pytest.raises(ServomexValidationError):
        ContinuousBroadcaster(analyser, period=float("inf"))
