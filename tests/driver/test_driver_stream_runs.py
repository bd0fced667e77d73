"""``Analyzer.stream`` over a couple of seconds, and closed part-way.

Samples are long-format rows, one per channel: a frame (a sweep, a broadcast) is the run
of consecutive rows that share its reception time. Modbus: polls on an absolute schedule —
``rate × duration`` sweeps (± 1), each one of its own (three requests on the wire), the
ticks not drifting. Continuous: every broadcast of the stream's span arrives once, in
order, none twice and none skipped. Closing a stream in the middle — leaving its block, or
cancelling it during a poll — leaves no task behind and the analyser working.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

import anyio
import pytest
from driverhelpers import ADDRESS, MODBUS_MODES, bench_values, quiet_config, requests

from ophyd_servomex.codec.continuous import parse_frame
from ophyd_servomex.codec.errors import ServomexConfigurationError
from ophyd_servomex.codec.models import ProtocolKind, Reading, Sample, StreamMode
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.sim import SimAnalyser, WireKind, bench_channels, serve_pty

pytestmark = pytest.mark.anyio

CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


def frames_of(samples: Sequence[Sample]) -> list[list[Sample]]:
    """The rows grouped back into their frames: consecutive rows of one reception."""
    return [list(rows) for _, rows in itertools.groupby(samples, key=lambda s: s.monotonic_ns)]


@pytest.mark.parametrize("mode", MODBUS_MODES, ids=lambda m: m.value)
async def test_a_modbus_stream_polls_on_an_absolute_schedule(mode: ProtocolKind) -> None:
    rate, duration = 5.0, 2.0
    async with (
        serve_pty(quiet_config(mode)) as sim,
        Analyzer(sim.port, protocol=mode, address=ADDRESS, inter_frame_idle=0.005) as analyser,
    ):
        before = len(requests(sim))
        started = anyio.current_time()
        async with analyser.stream(rate_hz=rate, duration=duration) as session:
            samples = [s async for s in session]
        elapsed = anyio.current_time() - started
        sweeps = frames_of(samples)
        assert abs(len(sweeps) - rate * duration) <= 1
        assert (session.samples, session.errors) == (len(samples), 0)
        values = list(bench_values(mode).items())
        for sweep in sweeps:  # one row per channel, every sweep the bench unit's five
            assert [(s.channel, s.value) for s in sweep] == values
            assert all(s.ok and s.device == analyser.name for s in sweep)
            assert len({s.received_at for s in sweep}) == 1
        assert len(samples) == 5 * len(sweeps)
        # each sweep is a fresh one: three requests apiece, distinct frames in order
        assert len(requests(sim)) - before == 3 * len(sweeps)
        stamps = [sweep[0].timestamp for sweep in sweeps]
        assert stamps == sorted(set(stamps))
        # the ticks sit on start + k / rate: the mean spacing is one period (no drift)
        # however long each poll took; the run ends with its duration
        assert (stamps[-1] - stamps[0]) / (len(stamps) - 1) == pytest.approx(1 / rate, rel=0.25)
        assert elapsed == pytest.approx(duration, abs=0.5)


async def test_a_continuous_stream_gets_every_broadcast_once() -> None:
    tick = itertools.count()
    epoch = datetime(2026, 1, 1)

    def analyser_clock() -> datetime:
        # a new analyser time and a new O₂ value for every frame: no two broadcasts alike
        n = next(tick)
        unit.set_setpoint("I1", 20.0 + n / 1000)  # shows in the next frame (3 decimals)
        return epoch + timedelta(seconds=n)

    unit = SimAnalyser(bench_channels(noisy=False), analyser_clock=analyser_clock)
    async with (
        serve_pty(quiet_config(CONTINUOUS, analysers=(unit,), period=0.1)) as sim,
        Analyzer(sim.port, protocol=CONTINUOUS) as analyser,
    ):
        async with analyser.stream(duration=2.0) as session:
            samples = [s async for s in session]
        broadcasts = [e.data.rstrip(b"\r\n") for e in sim.log.events(WireKind.BROADCAST)]
    received = [[s.reading for s in frame] for frame in frames_of(samples)]
    sent: list[list[Reading | None]] = [list(parse_frame(b).readings) for b in broadcasts]
    assert len(samples) == session.samples == 5 * len(received)
    assert all(s.ok and s.requested_at is None for s in samples)  # passive: nobody asked
    assert 15 <= len(received) <= 21
    first = sent.index(received[0])
    assert received == sent[first : first + len(received)]  # contiguous: none lost, none twice
    assert (session.errors, session.dropped) == (0, 0)


@pytest.mark.parametrize("mode", [ProtocolKind.MODBUS_RTU, CONTINUOUS], ids=lambda m: m.value)
async def test_leaving_a_stream_early_leaves_nothing_running(mode: ProtocolKind) -> None:
    async with (
        serve_pty(quiet_config(mode)) as sim,
        Analyzer(sim.port, protocol=mode, address=ADDRESS, inter_frame_idle=0.005) as analyser,
    ):
        hub = analyser._hub  # the frame hub's subscribers, to see the stream let go
        tasks = other_tasks()
        subscribers = hub.subscriber_count
        async with analyser.stream(rate_hz=20) as session:
            async for sample in session:
                assert sample.ok
                if session.samples == 3 * 5:  # three frames of the bench unit's 5 channels
                    break
        assert hub.subscriber_count == subscribers
        assert other_tasks() == tasks
        assert [s async for s in session] == []  # a closed stream yields nothing more
        assert (await analyser.poll()).values == bench_values(mode)
    assert sim.log.events(WireKind.DISCARDED) == []


async def test_a_stream_cancelled_during_a_poll_leaves_the_analyser_working() -> None:
    async with (
        serve_pty(quiet_config(ProtocolKind.MODBUS_RTU, realistic_timing=True)) as sim,
        Analyzer(sim.port, protocol=ProtocolKind.MODBUS_RTU, address=ADDRESS) as analyser,
    ):
        tasks = other_tasks()
        for delay in (0.01, 0.07, 0.13, 0.2):  # inside one of the sweep's three reads
            async with analyser.stream(rate_hz=20) as session:
                with anyio.move_on_after(delay):
                    async for _ in session:
                        pass
        await anyio.sleep(0.5)  # the owner finishes the abandoned sweep
        assert other_tasks() == tasks
        assert (await analyser.poll()).values == bench_values(ProtocolKind.MODBUS_RTU)
        assert analyser.modbus is not None
        assert analyser.modbus.line.retried == 0
    # every request whole and in turn: nothing cut, interleaved or too soon after the last
    assert [e.note for e in sim.log.events(WireKind.REQUEST) if e.note] == []
    assert sim.log.events(WireKind.DISCARDED) == []


async def test_a_stream_left_by_break_without_closing_unsubscribes() -> None:
    """``async for … in analyser.stream(): break`` with no ``async with``: nothing calls
    ``aclose``, yet the abandoned stream must not stay subscribed (buffering frames for
    nobody until the analyser closes)."""
    async with (
        serve_pty(quiet_config(CONTINUOUS)) as sim,
        Analyzer(sim.port, protocol=CONTINUOUS) as analyser,
    ):
        hub = analyser._hub
        subscribers = hub.subscriber_count
        for _ in range(3):
            async for sample in analyser.stream():
                assert sample.ok
                break
        assert hub.subscriber_count == subscribers
        assert (await analyser.poll()).values == bench_values(CONTINUOUS)


async def test_a_modbus_stream_needs_its_block() -> None:
    """A polled stream's loop lives in the session's task group: iterating it without
    ``async with`` is refused before any poll, and so is the broadcast mode."""
    mode = ProtocolKind.MODBUS_RTU
    async with (
        serve_pty(quiet_config(mode)) as sim,
        Analyzer(sim.port, protocol=mode, address=ADDRESS, inter_frame_idle=0.005) as analyser,
    ):
        before = len(requests(sim))
        session = analyser.stream(rate_hz=20)
        assert session.mode is StreamMode.POLL
        with pytest.raises(ServomexConfigurationError, match=r"async with analyzer\.stream"):
            await session.__anext__()
        await session.aclose()
        with pytest.raises(ServomexConfigurationError, match="not autoprint"):
            analyser.stream(mode=StreamMode.AUTOPRINT)
        assert len(requests(sim)) == before
