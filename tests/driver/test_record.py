"""record(): the absolute schedule (1000 ticks on a fake clock, a short real-time run),
late and missed ticks, the overflow policies, timeouts, reconnection and the summary."""

from __future__ import annotations

import gc
import math
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import anyio
import anyio.lowlevel
import pytest
from driverhelpers import bench_values, quiet_config
from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.errors import (
    ServomexConfigurationError,
    ServomexConnectionError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ophyd_servomex.codec.models import (
    ChannelId,
    Frame,
    ProtocolKind,
    Reading,
    Sample,
    StreamMode,
)
from ophyd_servomex.driver import (
    AcquisitionSummary,
    Analyzer,
    OverflowPolicy,
    PollSource,
    Recording,
    ServomexManager,
    record,
)
from ophyd_servomex.driver.record import RecordingStream, _record, percentile, source_names
from ophyd_servomex.driver.session import StreamingSession
from ophyd_servomex.sim import Fault, WireKind, serve_memory, serve_tcp

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU


class FakeClock:
    """A clock that only moves when someone sleeps or a poll is said to take time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


class Timed:
    """Wraps a source: notes the clock when each poll starts, and lets each poll 'take'
    ``latency(i)`` seconds of the fake clock."""

    def __init__(
        self,
        inner: PollSource,
        clock: Callable[[], float],
        latency: Callable[[int], float] | None = None,
        advance: FakeClock | None = None,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.latency = latency
        self.advance = advance
        self.starts: list[float] = []

    @property
    def names(self) -> tuple[str, ...]:
        return source_names(self.inner)

    async def poll_samples(
        self,
        names: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the PollSource signature)
    ) -> Sequence[Sample]:
        index = len(self.starts)
        self.starts.append(self.clock())
        samples = await self.inner.poll_samples(names, timeout)
        if self.latency is not None and self.advance is not None:
            self.advance.now += self.latency(index)
        return samples


COUNTER_CHANNELS = (ChannelId.I1, ChannelId.I2)
"""The channels a :class:`Counter` reads: each poll is a batch of two samples."""


class Counter:
    """A synthetic source: poll *i* reads the value *i* on each of its two channels."""

    def __init__(self, name: str = "c", fail_at: Sequence[int] = ()) -> None:
        self.name = name
        self.calls = 0
        self.fail_at = set(fail_at)

    async def poll_samples(
        self,
        names: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the PollSource signature)
    ) -> list[Sample]:
        index = self.calls
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if index in self.fail_at:
            raise ServomexConnectionError(f"link lost at poll {index}")
        readings = tuple(Reading(channel, float(index)) for channel in COUNTER_CHANNELS)
        return Frame(readings, protocol=RTU).as_samples(self.name)


def poll_index(batch: Sequence[Sample]) -> float:
    """The poll a Counter batch came from: one sample per channel, all with its index."""
    assert [s.channel for s in batch] == list(COUNTER_CHANNELS)
    assert all(s.ok for s in batch)
    (index,) = {s.value for s in batch}
    assert index is not None
    return index


def slots_of(starts: Sequence[float], t0: float, period: float) -> list[int]:
    """The slot each start belongs to, checking it lies within one period after it."""
    slots = []
    for start in starts:
        k = math.floor((start - t0) / period + 1e-9)  # 1e-9 period: float rounding only
        assert t0 + (k - 1e-9) * period <= start < t0 + (k + 1) * period
        slots.append(k)
    return slots


async def drain(recording: Recording[Sequence[Sample]]) -> list[Sequence[Sample]]:
    return [batch async for batch in recording.stream]


# --- the schedule ---------------------------------------------------------------------------


async def test_1000_ticks_at_10_hz_against_a_zero_latency_simulator() -> None:
    clock = FakeClock()
    async with (
        serve_memory(quiet_config(RTU, addresses=(30,))) as sim,
        Analyzer(sim.transport, protocol=RTU, address=30, inter_frame_idle=0) as analyser,
    ):
        source = Timed(analyser, clock)
        async with _record(source, rate_hz=10, duration=100, clock=clock, sleep=clock.sleep) as rec:
            batches = await drain(rec)

    summary = rec.summary
    assert summary.t0 == 1000.0
    assert len(batches) == 1000
    assert (summary.ticks, summary.missed_ticks, summary.late_ticks) == (1000, 0, 0)
    assert (summary.samples_emitted, summary.samples_late) == (1000, 0)
    # one sample per channel: the bench unit's five channels in every batch
    assert summary.acquired == summary.delivered == 5 * 1000
    assert summary.error_samples == summary.dropped == summary.disconnects == 0
    # every tick started on its own slot: t0 + k/10, computed absolutely
    assert source.starts == pytest.approx([1000.0 + k / 10 for k in range(1000)], abs=1e-9)
    assert summary.max_drift_ms == pytest.approx(0.0, abs=1e-6)
    values = list(bench_values(RTU).items())
    for batch in batches:
        assert [(s.channel, s.value) for s in batch] == values
        assert {s.device for s in batch} == {analyser.name}
        assert all(s.ok and s.protocol is RTU for s in batch)
    assert sim.log.requests_received == 1 + 3 * 1000  # identify's FC04, then 1000 sweeps


@pytest.fixture
def jitter() -> Callable[[int], float]:
    """Deterministic poll times: 0–99 ms, and every 97th poll 160 ms (late next tick)."""

    def latency(i: int) -> float:
        return 0.160 if i % 97 == 50 else (i * 37 % 100) / 1000

    return latency


async def test_1000_jittered_ticks_stay_within_one_period_of_their_slots(
    jitter: Callable[[int], float],
) -> None:
    clock = FakeClock()
    source = Timed(Counter(), clock, jitter, clock)
    async with _record(source, rate_hz=10, ticks=1000, clock=clock, sleep=clock.sleep) as rec:
        batches = await drain(rec)

    period, summary = 0.1, rec.summary
    slots = slots_of(source.starts, 1000.0, period)  # each start within one period
    assert slots == sorted(set(slots))
    assert slots[-1] == 999  # the last slot is still slot 999: nothing accumulated
    assert summary.ticks == summary.samples_emitted == len(batches) == len(slots)
    assert summary.ticks + summary.missed_ticks == 1000
    assert [poll_index(b) for b in batches] == [float(i) for i in range(len(batches))]
    drifts = [s - (1000.0 + k * period) for s, k in zip(source.starts, slots, strict=True)]
    assert summary.max_drift_ms == pytest.approx(max(drifts) * 1000)
    assert summary.max_drift_ms < period * 1000
    assert summary.late_ticks == sum(1 for d in drifts if d > 0.5 * period)
    assert summary.late_ticks > 0
    assert summary.samples_late == summary.late_ticks + summary.missed_ticks
    # a tick lasts as long as its poll: the percentiles of the polls' times, in ms
    polls = [jitter(i) for i in range(summary.ticks)]
    p50, p99 = percentile(polls, 0.5), percentile(polls, 0.99)
    assert p50 is not None
    assert p99 is not None
    assert summary.tick_duration_ms_p50 == pytest.approx(p50 * 1000)
    assert summary.tick_duration_ms_p99 == pytest.approx(p99 * 1000)
    assert summary.tick_max_ms == pytest.approx(160.0)
    assert 0 < summary.tick_duration_ms_p50 <= summary.tick_duration_ms_p99 <= 160.0 + 1e-6


async def test_a_late_tick_is_counted_and_does_not_shift_the_next_ones() -> None:
    clock = FakeClock(0.0)
    overrun = {2: 0.17, 5: 0.28}  # poll 2 takes 1.7 periods, poll 5 takes 2.8 periods
    source = Timed(Counter(), clock, lambda i: overrun.get(i, 0.0), clock)
    async with _record(source, rate_hz=10, ticks=10, clock=clock, sleep=clock.sleep) as rec:
        batches = await drain(rec)

    # slot 3 starts 0.07 s late (late: more than half a period); slot 4 is on time again.
    # The poll of slot 5 ends at 0.78 s: slot 6 has passed entirely (skipped, missed),
    # slot 7 runs 0.08 s late, and slot 8 is on time again.
    assert source.starts == pytest.approx([0.0, 0.1, 0.2, 0.37, 0.4, 0.5, 0.78, 0.8, 0.9])
    summary = rec.summary
    assert (summary.ticks, summary.late_ticks, summary.missed_ticks) == (9, 2, 1)
    assert (summary.samples_emitted, summary.samples_late) == (9, 3)
    assert [poll_index(b) for b in batches] == [float(i) for i in range(9)]
    assert summary.max_drift_ms == pytest.approx(80.0)
    assert summary.elapsed == pytest.approx(0.9)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([1.0, 3.0, 10.0, 50.0, 400.0]),
    latencies=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=40),
)
def test_every_tick_within_one_period_whatever_the_poll_times(
    rate: float, latencies: list[float]
) -> None:
    period = 1.0 / rate
    total = 60

    async def main() -> tuple[list[float], AcquisitionSummary]:
        clock = FakeClock(12.5)
        source = Timed(Counter(), clock, lambda i: latencies[i % len(latencies)] * period, clock)
        async with _record(
            source, rate_hz=rate, ticks=total, clock=clock, sleep=clock.sleep
        ) as rec:
            await drain(rec)
        return source.starts, rec.summary

    starts, summary = anyio.run(main)
    slots = slots_of(starts, 12.5, period)
    assert slots == sorted(set(slots))
    assert slots[0] == 0
    assert summary.ticks == len(starts)
    assert summary.ticks + summary.missed_ticks == total
    assert summary.samples_late == summary.late_ticks + summary.missed_ticks
    assert 0.0 <= summary.max_drift_ms < period * 1000


async def test_a_short_real_time_run_does_not_drift() -> None:
    async with (
        serve_memory(quiet_config(RTU, addresses=(30,))) as sim,
        Analyzer(sim.transport, protocol=RTU, address=30, inter_frame_idle=0) as analyser,
    ):
        source = Timed(analyser, anyio.current_time)
        async with record(source, rate_hz=50, duration=2.0) as rec:
            batches = await drain(rec)

    summary = rec.summary
    assert summary.t0 is not None
    period = 1 / 50
    slots = slots_of(source.starts, summary.t0, period)  # never early, never a period late
    assert summary.ticks == len(batches) == len(slots)
    assert summary.ticks + summary.missed_ticks == 100
    assert slots[-1] == 99  # still on slot 99 after two seconds: no accumulated drift
    drifts = sorted(
        s - (summary.t0 + k * period) for s, k in zip(source.starts, slots, strict=True)
    )
    assert drifts[len(drifts) // 2] < period / 2
    assert summary.max_drift_ms < period * 1000
    assert summary.acquired == 5 * summary.ticks  # five channels a sweep
    assert all(len(batch) == 5 and all(s.ok for s in batch) for batch in batches)


# --- overflow -----------------------------------------------------------------------------


async def run_unread(
    policy: OverflowPolicy, *, ticks: int = 10, size: int = 3
) -> tuple[Recording[Sequence[Sample]], list[float]]:
    """Record ``ticks`` ticks without reading until the producer has finished; then read."""
    clock = FakeClock()
    async with _record(
        Counter(),
        rate_hz=10,
        ticks=ticks,
        overflow=policy,
        buffer_size=size,
        clock=clock,
        sleep=clock.sleep,
    ) as rec:
        await anyio.wait_all_tasks_blocked()  # the producer ran every tick and ended
        assert rec.summary.finished
        kept = [poll_index(batch) for batch in await drain(rec)]
    return rec, kept


async def test_drop_newest_keeps_the_first_batches() -> None:
    rec, kept = await run_unread(OverflowPolicy.DROP_NEWEST)
    assert kept == [0.0, 1.0, 2.0]
    summary = rec.summary
    assert (summary.ticks, summary.dropped, summary.dropped_samples) == (10, 7, 14)
    assert (summary.acquired, summary.delivered) == (20, 6)  # two channels a batch
    # every tick's batch was emitted; the seven dropped ones count as late (none ran late)
    assert (summary.samples_emitted, summary.samples_late, summary.late_ticks) == (10, 7, 0)


async def test_drop_oldest_keeps_the_newest_batches() -> None:
    rec, kept = await run_unread(OverflowPolicy.DROP_OLDEST)
    assert kept == [7.0, 8.0, 9.0]
    summary = rec.summary
    assert (summary.ticks, summary.dropped, summary.dropped_samples) == (10, 7, 14)
    assert (summary.acquired, summary.delivered) == (20, 6)
    assert (summary.samples_emitted, summary.samples_late, summary.late_ticks) == (10, 7, 0)


async def test_block_loses_nothing_and_a_slow_consumer_costs_ticks() -> None:
    clock = FakeClock(0.0)
    async with _record(
        Counter(),
        rate_hz=10,
        ticks=20,
        overflow="block",
        buffer_size=2,
        clock=clock,
        sleep=clock.sleep,
    ) as rec:
        await anyio.wait_all_tasks_blocked()  # the producer filled the buffer and waits
        assert rec.summary.ticks == 3  # two buffered, the third waits for room
        assert isinstance(rec.stream, RecordingStream)
        assert len(rec.stream) == 2
        kept = []
        async for batch in rec.stream:
            kept.append(poll_index(batch))
            clock.now += 0.25  # the consumer takes two and a half periods per batch
    summary = rec.summary
    assert kept == [float(i) for i in range(summary.ticks)]  # in order, none lost
    assert summary.dropped == summary.dropped_samples == 0
    assert summary.delivered == summary.acquired == 2 * summary.ticks
    assert summary.missed_ticks > 0
    assert summary.ticks + summary.missed_ticks == 20
    assert summary.samples_late == summary.late_ticks + summary.missed_ticks


async def test_drop_oldest_with_a_reader_keeps_order_and_counts_exactly() -> None:
    """Read two batches in the middle of a run of unread ones: every batch is either
    delivered, in order, or counted as dropped, never both."""
    clock = FakeClock()
    async with _record(
        Counter(),
        rate_hz=10,
        overflow=OverflowPolicy.DROP_OLDEST,
        buffer_size=2,
        clock=clock,
        sleep=clock.sleep,
    ) as rec:
        stream = rec.stream
        assert isinstance(stream, RecordingStream)
        while rec.summary.ticks < 5:  # polls 0 … 4 into a buffer of 2: 0, 1, 2 evicted
            await anyio.lowlevel.checkpoint()
        rec.stop()
        await anyio.wait_all_tasks_blocked()
        kept = [poll_index(batch) for batch in await drain(rec)]
    summary = rec.summary
    assert kept == [float(summary.ticks - 2), float(summary.ticks - 1)]
    assert summary.dropped == summary.ticks - 2
    assert summary.dropped_samples == 2 * summary.dropped
    assert summary.delivered == 4
    assert summary.samples_late == summary.dropped


async def test_the_error_that_ended_a_recording_keeps_its_cause() -> None:
    class Unplugged(Counter):
        async def poll_samples(
            self,
            names: Sequence[str] | None = None,
            timeout: float | None = None,  # noqa: ASYNC109 (the PollSource signature)
        ) -> list[Sample]:
            try:
                raise OSError(5, "Input/output error")
            except OSError as exc:
                raise ServomexConnectionError("the port went away") from exc

    clock = FakeClock()
    async with _record(Unplugged(), rate_hz=10, clock=clock, sleep=clock.sleep) as rec:
        with pytest.raises(ServomexConnectionError, match="went away") as caught:
            await drain(rec)
    assert isinstance(caught.value.__cause__, OSError)


def test_a_stream_nobody_read_to_the_end_closes_its_memory_streams() -> None:
    async def main() -> None:
        clock = FakeClock()
        async with _record(Counter(), rate_hz=10, ticks=3, clock=clock, sleep=clock.sleep) as rec:
            await anyio.wait_all_tasks_blocked()
            assert len(rec.stream) == 3  # type: ignore[arg-type]  # (a RecordingStream)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anyio.run(main)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_a_polled_streaming_session_reads_the_recording_and_ends_on_a_lost_link() -> None:
    """StreamingSession's POLL path is record() itself: every sample polled before the
    link was lost comes out, in order, then the loss is raised; the poll loop is gone
    when the session is left."""
    source = Counter(fail_at=[3])
    session = StreamingSession(source, mode=StreamMode.POLL, rate_hz=1000)  # type: ignore[arg-type]
    seen: list[float | None] = []

    async def read_all() -> None:
        async with session:
            async for sample in session:
                seen.append(sample.value)

    with pytest.raises(ServomexConnectionError, match="link lost at poll 3"):
        await read_all()
    assert seen == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]  # two channels a poll
    assert (session.samples, session.errors) == (6, 0)
    assert source.calls == 4
    await anyio.sleep(0.01)
    assert source.calls == 4  # no poll after the session ended


# --- timeouts, lost links and reconnection ------------------------------------------------


class Slow:
    """A source whose poll takes ``seconds`` of real time."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def poll_samples(
        self,
        names: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (ignored: the recording bounds it)
    ) -> list[Sample]:
        await anyio.sleep(self.seconds)
        return Frame((Reading(ChannelId.I1, 1.0),), protocol=RTU).as_samples(self.name)


async def test_a_poll_over_the_timeout_becomes_an_error_batch() -> None:
    # two slots (0.2 s at 10 Hz): each poll is cut after 0.05 s, well inside its period
    async with record(Slow(10.0), rate_hz=10, duration=0.2, timeout=0.05) as rec:
        batches = await drain(rec)
    assert [[s.device for s in b] for b in batches] == [["slow"], ["slow"]]
    for batch in batches:
        (sample,) = batch
        assert isinstance(sample.error, ServomexTimeoutError)
        assert "0.05 s" in str(sample.error)
        assert (sample.channel, sample.reading, sample.value) == (None, None, None)
        assert not sample.ok
    summary = rec.summary
    assert (summary.timeouts, summary.error_samples, summary.acquired) == (2, 2, 2)
    assert (summary.ticks, summary.samples_emitted, summary.missed_ticks) == (2, 2, 0)


async def test_a_lost_link_ends_the_recording_after_the_batches_already_polled() -> None:
    clock = FakeClock()
    async with _record(
        Counter(fail_at=[3]), rate_hz=10, ticks=10, clock=clock, sleep=clock.sleep
    ) as rec:
        seen: list[float] = []

        async def read_all() -> None:
            async for batch in rec.stream:
                seen.append(poll_index(batch))

        with pytest.raises(ServomexConnectionError, match="link lost at poll 3"):
            await read_all()
    assert seen == [0.0, 1.0, 2.0]
    assert rec.summary.disconnects == 1
    assert (rec.summary.samples_emitted, rec.summary.delivered) == (3, 6)
    assert isinstance(rec.summary.error, ServomexConnectionError)
    assert rec.summary.finished


async def test_reconnect_swaps_in_a_new_source() -> None:
    clock = FakeClock()
    opened: list[str] = []
    closed: list[str] = []
    attempts = {"n": 0}

    @asynccontextmanager
    async def reopen() -> AsyncIterator[PollSource]:
        attempts["n"] += 1
        if attempts["n"] == 1:  # the first attempt finds the link still down
            raise ServomexConnectionError("still down")
        name = f"new{attempts['n']}"
        opened.append(name)
        try:
            yield Counter(name="c")
        finally:
            closed.append(name)

    async with _record(
        Counter(fail_at=[2]),
        rate_hz=10,
        ticks=8,
        auto_reconnect=True,
        reconnect_factory=reopen,
        clock=clock,
        sleep=clock.sleep,
    ) as rec:
        batches = await drain(rec)

    kinds = [
        [("ok" if s.error is None else type(s.error).__name__, s.device) for s in b]
        for b in batches
    ]
    ok = [("ok", "c")] * 2  # a Counter batch: one sample per channel
    assert kinds == [
        ok,
        ok,
        [("ServomexConnectionError", "c")],  # the lost link itself: one error sample
        [("ServomexConnectionError", "c")],  # reconnection failed: "still down"
        ok,
        ok,
        ok,
        ok,
    ]
    assert "still down" in str(batches[3][0].error)
    assert [b[0].channel for b in batches[2:4]] == [None, None]
    assert [poll_index(b) for b in batches[:2]] == [0.0, 1.0]
    assert [poll_index(b) for b in batches[4:]] == [0.0, 1.0, 2.0, 3.0]  # the new source
    summary = rec.summary
    assert (summary.disconnects, summary.reconnects, summary.ticks) == (1, 1, 8)
    # the two ticks of the gap are late (the clock never ran a tick late otherwise)
    assert (summary.samples_emitted, summary.samples_late, summary.late_ticks) == (8, 2, 0)
    assert (summary.acquired, summary.error_samples) == (2 * 6 + 2, 2)
    assert opened == closed == ["new2"]  # the recording closed what its factory opened


async def test_an_async_factory_gives_the_source_as_it_is() -> None:
    """An async callable factory; what it returns (an open source, no context manager)
    is polled as it is."""
    clock = FakeClock()
    made: list[Counter] = []

    async def reopen() -> PollSource:
        await anyio.lowlevel.checkpoint()
        made.append(Counter(name="c"))
        return made[-1]

    async with _record(
        Counter(fail_at=[1]),
        rate_hz=10,
        ticks=4,
        auto_reconnect=True,
        reconnect_factory=reopen,
        clock=clock,
        sleep=clock.sleep,
    ) as rec:
        batches = await drain(rec)
    assert [b[0].ok for b in batches] == [True, False, True, True]
    assert isinstance(batches[1][0].error, ServomexConnectionError)
    assert [poll_index(b) for b in batches[2:]] == [0.0, 1.0]  # the factory's Counter
    assert len(made) == 1
    assert made[0].calls == 2
    assert (rec.summary.disconnects, rec.summary.reconnects) == (1, 1)


@pytest.mark.parametrize("factory", ["sync", "async"])
async def test_reconnect_to_a_simulator_after_a_pulled_cable(factory: str) -> None:
    """The factory returns an Analyzer that is not open yet (from a plain callable, or
    from an async one like ``lambda: open_device(...)``): the recording enters it."""
    async with serve_tcp(quiet_config(RTU, addresses=(30,))) as sim:

        def analyser() -> Analyzer:
            return Analyzer(sim.port, protocol=RTU, address=30, inter_frame_idle=0, timeout=0.5)

        async def analyser_later() -> Analyzer:
            await anyio.lowlevel.checkpoint()
            return analyser()

        async with record(
            None,
            rate_hz=20,
            duration=0.6,  # twelve slots
            auto_reconnect=True,
            reconnect_factory=analyser if factory == "sync" else analyser_later,
        ) as rec:
            batches: list[Sequence[Sample]] = []
            async for batch in rec.stream:
                batches.append(batch)
                if len(batches) == 3:
                    sim.faults.inject(Fault.DISCONNECT)  # the next reply is cut: the link drops
        oks = [all(s.ok for s in b) for b in batches]
        summary = rec.summary
        # twelve slots: each one a batch, unless a loaded machine made it miss its period
        assert len(batches) == summary.ticks == summary.samples_emitted
        assert summary.ticks + summary.missed_ticks == 12
        assert len(batches) >= 6
        assert oks[:3] == [True, True, True]
        assert oks.index(False) == 3
        assert oks[-1] is True
        values = list(bench_values(RTU).items())
        for batch, ok in zip(batches, oks, strict=True):
            if ok:  # a sweep: the five channels of the analyser the factory opened
                assert [(s.channel, s.value) for s in batch] == values
                assert {s.device for s in batch} == {sim.port}
            else:  # a tick of the gap: one error sample for the device
                (sample,) = batch
                assert isinstance(sample.error, ServomexConnectionError)
                assert (sample.device, sample.channel) == (sim.port, None)
        assert summary.disconnects == 1
        assert summary.reconnects == 1
        gap = oks.count(False)
        late = summary.late_ticks + summary.missed_ticks
        assert gap + summary.missed_ticks <= summary.samples_late <= gap + late
        assert len(sim.log.events(WireKind.DISCONNECT)) == 1


# --- sources, names and validation --------------------------------------------------------


async def test_record_a_manager_with_a_subset_of_names() -> None:
    async with (
        serve_memory(quiet_config(RTU, addresses=(30, 31))) as sim,
        ServomexManager(inter_frame_idle=0) as manager,
    ):
        assert sim.transport is not None
        await manager.add("x", sim.transport, protocol=RTU, address=30)
        await manager.add("y", sim.transport, protocol=RTU, address=31)
        sim.log.clear()
        channels = list(bench_values(RTU))
        async with record(manager, rate_hz=20, duration=0.15, names=["y"]) as rec:  # 3 slots
            batches = await drain(rec)
        assert [[(s.device, s.channel) for s in b] for b in batches] == [
            [("y", channel) for channel in channels]
        ] * 3
        assert {e.address for e in sim.log.events(WireKind.REQUEST)} == {31}

        async with record(manager, rate_hz=20, duration=0.1) as rec:  # 2 slots
            batches = await drain(rec)
        assert [[(s.device, s.channel) for s in b] for b in batches] == [
            [(name, channel) for name in ("x", "y") for channel in channels]
        ] * 2
        assert rec.summary.acquired == 2 * 2 * 5

        with pytest.raises(ServomexValidationError, match="unknown device name"):
            async with record(manager, rate_hz=1, names=["zz"]):
                pass


async def test_stop_ends_a_recording_without_waiting_for_the_next_slot() -> None:
    async with record(Counter(), rate_hz=0.1) as rec:  # one tick every ten seconds
        with anyio.fail_after(5):
            async for batch in rec.stream:
                assert poll_index(batch) == 0.0
                rec.stop()
    assert rec.stopping
    assert rec.summary.ticks == rec.summary.samples_emitted == 1
    assert rec.summary.finished


async def test_leaving_the_block_early_stops_the_producer() -> None:
    source = Counter()
    async with record(source, rate_hz=1000) as rec:
        async for _batch in rec.stream:
            break
    calls = source.calls
    await anyio.sleep(0.02)
    assert source.calls == calls
    summary = rec.summary
    assert summary.finished
    assert summary.finished_at is not None
    assert summary.finished_at >= summary.started_at
    assert summary.tick_max_ms is not None  # the tick times were summed up on exit
    assert 0.0 <= summary.tick_duration_ms_p50 <= summary.tick_duration_ms_p99
    assert summary.tick_duration_ms_p99 <= summary.tick_max_ms


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"rate_hz": 0}, ServomexValidationError, "rate_hz"),
        ({"rate_hz": math.inf}, ServomexValidationError, "rate_hz"),
        ({"rate_hz": 1, "buffer_size": 0}, ServomexValidationError, "buffer_size"),
        ({"rate_hz": 1, "duration": -1}, ServomexValidationError, "duration"),
        ({"rate_hz": 1, "timeout": 0}, ServomexValidationError, "timeout"),
        ({"rate_hz": 1, "overflow": "spill"}, ServomexValidationError, "overflow"),
        ({"rate_hz": 1, "auto_reconnect": True}, ServomexConfigurationError, "reconnect_factory"),
    ],
)
async def test_bad_arguments_are_refused(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    source = Counter()
    recording = record(source, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=words):  # refused on entering, before any poll
        async with recording:
            pass
    assert source.calls == 0


async def test_a_source_without_poll_samples_is_refused() -> None:
    with pytest.raises(ServomexConfigurationError, match="no poll_samples"):
        async with record(object(), rate_hz=1):  # type: ignore[arg-type]
            pass
    with pytest.raises(ServomexConfigurationError, match="needs a source"):
        async with record(None, rate_hz=1):
            pass


def test_percentile_and_summary_text() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert percentile([5.0], 0.99) == 5.0
    summary = AcquisitionSummary(
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        rate_hz=10,
        ticks=3,
        samples_emitted=3,
        acquired=15,
        delivered=15,
        max_drift_ms=12.3,
    )
    assert str(summary) == (
        "3 batches at 10 Hz (15 samples, 0 errors), 0 late (0 missed, 0 dropped), "
        "max drift 12.3 ms, 0 disconnects; tick p50 0.0 ms, p99 0.0 ms"
    )
    assert summary.finished_at is None
    assert source_names(Counter("q")) == ("q",)
    assert source_names(object()) == ()


async def test_a_recording_of_no_slots_polls_nothing() -> None:
    source = Counter()
    async with record(source, rate_hz=10, duration=0) as rec:
        assert await drain(rec) == []
    summary = rec.summary
    assert source.calls == 0
    assert (summary.ticks, summary.samples_emitted, summary.samples_late) == (0, 0, 0)
    assert (summary.tick_duration_ms_p50, summary.tick_duration_ms_p99) == (0.0, 0.0)
    assert summary.finished_at is not None


async def test_an_error_in_the_block_leaves_unwrapped() -> None:
    source = Counter()
    recordings: list[Recording[Sequence[Sample]]] = []

    async def fail_in_the_block() -> None:
        async with record(source, rate_hz=100) as rec:
            recordings.append(rec)
            await rec.stream.__anext__()
            raise KeyError("from the body")

    with pytest.raises(KeyError, match="from the body"):
        await fail_in_the_block()
    assert recordings[0].summary.finished
    calls = source.calls
    await anyio.sleep(0.03)
    assert source.calls == calls  # the producer stopped with the block


async def test_a_factory_that_cannot_open_fails_on_entering() -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[PollSource]:
        raise ServomexConnectionError("no such port")
        yield Counter()  # pragma: no cover

    with pytest.raises(ServomexConnectionError, match="no such port"):
        async with record(None, rate_hz=10, reconnect_factory=broken):
            pass


async def test_a_source_the_factory_opened_stays_open_while_recording() -> None:
    state: list[str] = []

    @asynccontextmanager
    async def opener() -> AsyncIterator[PollSource]:
        state.append("open")
        try:
            yield Counter()
        finally:
            state.append("closed")

    async with record(None, rate_hz=100, reconnect_factory=opener) as rec:
        for _ in range(3):
            await rec.stream.__anext__()
        assert state == ["open"]
    assert state == ["open", "closed"]
