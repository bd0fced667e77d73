"""``Analyzer.stream`` over a couple of seconds, and closed part-way.

Modbus: polls on an absolute schedule — ``rate × duration`` samples (± 1), each one sweep of
its own (three requests on the wire), the ticks not drifting. Continuous: every broadcast
of the stream's span arrives once, in order, none twice and none skipped. Closing a stream
in the middle — leaving its block, or cancelling it during a poll — leaves no task behind
and the analyser working.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

import anyio
import pytest
from driverhelpers import ADDRESS, MODBUS_MODES, bench_values, quiet_config, requests

from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.driver import open_device
from ophyd_servomex.sim import SimAnalyser, WireKind, bench_channels, serve_pty

pytestmark = pytest.mark.anyio

CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


@pytest.mark.parametrize("mode", MODBUS_MODES, ids=lambda m: m.value)
async def test_a_modbus_stream_polls_on_an_absolute_schedule(mode: ProtocolKind) -> None:
    rate, duration = 5.0, 2.0
    async with (
        serve_pty(quiet_config(mode)) as sim,
        open_device(sim.port, protocol=mode, address=ADDRESS, inter_frame_idle=0.005) as analyser,
    ):
        before = len(requests(sim))
        started = anyio.current_time()
        async with analyser.stream(rate_hz=rate, duration=duration) as session:
            samples = [s async for s in session]
        elapsed = anyio.current_time() - started
        assert abs(len(samples) - rate * duration) <= 1
        assert (session.samples, session.errors) == (len(samples), 0)
        assert all(s.frame is not None and s.frame.values == bench_values(mode) for s in samples)
        # each sample is a fresh sweep: three requests apiece, distinct frames in order
        assert len(requests(sim)) - before == 3 * len(samples)
        stamps = [s.timestamp for s in samples]
        assert stamps == sorted(set(stamps))
        # the ticks sit on start + k / rate: the mean spacing is one period (no drift)
        # however long each poll took; the run ends with its duration
        assert (stamps[-1] - stamps[0]) / (len(stamps) - 1) == pytest.approx(1 / rate, rel=0.25)
        assert elapsed == pytest.approx(duration, abs=0.5)


async def test_a_continuous_stream_gets_every_broadcast_once() -> None:
    tick = itertools.count()
    epoch = datetime(2026, 1, 1)
    unit = SimAnalyser(  # a new analyser time per frame: every broadcast's text differs
        bench_channels(noisy=False), analyser_clock=lambda: epoch + timedelta(seconds=next(tick))
    )
    async with (
        serve_pty(quiet_config(CONTINUOUS, analysers=(unit,), period=0.1)) as sim,
        open_device(sim.port, protocol=CONTINUOUS) as analyser,
    ):
        async with analyser.stream(duration=2.0) as session:
            samples = [s async for s in session]
        broadcasts = [e.data.rstrip(b"\r\n") for e in sim.log.events(WireKind.BROADCAST)]
    raws = [s.frame.raw for s in samples if s.frame is not None]
    assert len(raws) == len(samples) == session.samples
    assert 15 <= len(samples) <= 21
    first = broadcasts.index(raws[0])
    assert raws == broadcasts[first : first + len(raws)]  # contiguous: none lost, none twice
    assert (session.errors, session.dropped) == (0, 0)


@pytest.mark.parametrize("mode", [ProtocolKind.MODBUS_RTU, CONTINUOUS], ids=lambda m: m.value)
async def test_leaving_a_stream_early_leaves_nothing_running(mode: ProtocolKind) -> None:
    async with (
        serve_pty(quiet_config(mode)) as sim,
        open_device(sim.port, protocol=mode, address=ADDRESS, inter_frame_idle=0.005) as analyser,
    ):
        hub = analyser._hub  # the frame hub's subscribers, to see the stream let go
        tasks = other_tasks()
        subscribers = hub.subscriber_count
        async with analyser.stream(rate_hz=20) as session:
            async for sample in session:
                assert sample.ok
                if session.samples == 3:
                    break
        assert hub.subscriber_count == subscribers
        assert other_tasks() == tasks
        assert [s async for s in session] == []  # a closed stream yields nothing more
        assert (await analyser.poll()).values == bench_values(mode)
    assert sim.log.events(WireKind.DISCARDED) == []


async def test_a_stream_cancelled_during_a_poll_leaves_the_analyser_working() -> None:
    async with (
        serve_pty(quiet_config(ProtocolKind.MODBUS_RTU, realistic_timing=True)) as sim,
        open_device(sim.port, protocol=ProtocolKind.MODBUS_RTU, address=ADDRESS) as analyser,
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
        open_device(sim.port, protocol=CONTINUOUS) as analyser,
    ):
        hub = analyser._hub
        subscribers = hub.subscriber_count
        for _ in range(3):
            async for sample in analyser.stream():
                assert sample.ok
                break
        assert hub.subscriber_count == subscribers
        assert (await analyser.poll()).values == bench_values(CONTINUOUS)
