"""record(): the absolute schedule (1000 ticks on a fake clock, a short real-time run),
late and missed ticks, the overflow policies, timeouts, reconnection and the summary."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

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
from ophyd_servomex.codec.models import ChannelId, ProtocolKind, Sample
from ophyd_servomex.driver import (
    AcquisitionSummary,
    OverflowPolicy,
    PollSource,
    Recording,
    ServomexManager,
    open_device,
    record,
)
from ophyd_servomex.driver.record import percentile, source_names
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

    async def poll_samples(self) -> list[Sample]:
        index = len(self.starts)
        self.starts.append(self.clock())
        samples = await self.inner.poll_samples()
        if self.latency is not None and self.advance is not None:
            self.advance.now += self.latency(index)
        return samples


class Counter:
    """A synthetic source: sample *i* has timestamp *i*."""

    def __init__(self, name: str = "c", fail_at: Sequence[int] = ()) -> None:
        self.name = name
        self.calls = 0
        self.fail_at = set(fail_at)

    async def poll_samples(self) -> list[Sample]:
        index = self.calls
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if index in self.fail_at:
            raise ServomexConnectionError(f"link lost at poll {index}")
        return [Sample(name=self.name, timestamp=float(index))]


def slots_of(starts: Sequence[float], t0: float, period: float) -> list[int]:
    """The slot each start belongs to, checking it lies within one period after it."""
    slots = []
    for start in starts:
        k = math.floor((start - t0) / period + 1e-9)  # 1e-9 period: float rounding only
        assert t0 + (k - 1e-9) * period <= start < t0 + (k + 1) * period
        slots.append(k)
    return slots


async def drain(recording: Recording) -> list[list[Sample]]:
    return [batch async for batch in recording.stream]


# --- the schedule ---------------------------------------------------------------------------


async def test_1000_ticks_at_10_hz_against_a_zero_latency_simulator() -> None:
    clock = FakeClock()
    async with (
        serve_memory(quiet_config(RTU, addresses=(30,))) as sim,
        open_device(sim.transport, protocol=RTU, address=30, inter_frame_idle=0) as analyser,
    ):
        source = Timed(analyser, clock)
        async with record(source, rate_hz=10, duration=100, clock=clock, sleep=clock.sleep) as rec:
            batches = await drain(rec)

    summary = rec.summary
    assert summary.t0 == 1000.0
    assert len(batches) == 1000
    assert (summary.ticks, summary.missed_ticks, summary.late_ticks) == (1000, 0, 0)
    assert summary.acquired == summary.samples == 1000
    assert summary.error_samples == summary.dropped == summary.disconnects == 0
    # every tick started on its own slot: t0 + k/10, computed absolutely
    assert source.starts == pytest.approx([1000.0 + k / 10 for k in range(1000)], abs=1e-9)
    assert summary.max_drift == pytest.approx(0.0, abs=1e-9)
    values = bench_values(RTU)
    for batch in batches:
        assert len(batch) == 1
        sample = batch[0]
        assert sample.name == analyser.name
        assert sample.frame is not None
        assert sample.frame.values[ChannelId.I1] == values[ChannelId.I1]
        assert sample.frame.values[ChannelId.I3] == values[ChannelId.I3]
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
    async with record(source, rate_hz=10, ticks=1000, clock=clock, sleep=clock.sleep) as rec:
        batches = await drain(rec)

    period, summary = 0.1, rec.summary
    slots = slots_of(source.starts, 1000.0, period)  # each start within one period
    assert slots == sorted(set(slots))
    assert slots[-1] == 999  # the last slot is still slot 999: nothing accumulated
    assert summary.ticks == len(batches) == len(slots)
    assert summary.ticks + summary.missed_ticks == 1000
    drifts = [s - (1000.0 + k * period) for s, k in zip(source.starts, slots, strict=True)]
    assert summary.max_drift == pytest.approx(max(drifts))
    assert summary.max_drift < period
    assert summary.late_ticks == sum(1 for d in drifts if d > 0.5 * period)
    assert summary.late_ticks > 0
    assert summary.tick_p50 is not None
    assert summary.tick_p99 is not None
    assert summary.tick_p50 <= summary.tick_p99 <= 0.160 + 1e-9


async def test_a_late_tick_is_counted_and_does_not_shift_the_next_ones() -> None:
    clock = FakeClock(0.0)
    overrun = {2: 0.17, 5: 0.28}  # poll 2 takes 1.7 periods, poll 5 takes 2.8 periods
    source = Timed(Counter(), clock, lambda i: overrun.get(i, 0.0), clock)
    async with record(source, rate_hz=10, ticks=10, clock=clock, sleep=clock.sleep) as rec:
        await drain(rec)

    # slot 3 starts 0.07 s late (late: more than half a period); slot 4 is on time again.
    # The poll of slot 5 ends at 0.78 s: slot 6 has passed entirely (skipped, missed),
    # slot 7 runs 0.08 s late, and slot 8 is on time again.
    assert source.starts == pytest.approx([0.0, 0.1, 0.2, 0.37, 0.4, 0.5, 0.78, 0.8, 0.9])
    summary = rec.summary
    assert (summary.ticks, summary.late_ticks, summary.missed_ticks) == (9, 2, 1)
    assert summary.max_drift == pytest.approx(0.08)
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
        async with record(source, rate_hz=rate, ticks=total, clock=clock, sleep=clock.sleep) as rec:
            await drain(rec)
        return source.starts, rec.summary

    starts, summary = anyio.run(main)
    slots = slots_of(starts, 12.5, period)
    assert slots == sorted(set(slots))
    assert slots[0] == 0
    assert summary.ticks == len(starts)
    assert summary.ticks + summary.missed_ticks == total
    assert 0.0 <= summary.max_drift < period


async def test_a_short_real_time_run_does_not_drift() -> None:
    async with (
        serve_memory(quiet_config(RTU, addresses=(30,))) as sim,
        open_device(sim.transport, protocol=RTU, address=30, inter_frame_idle=0) as analyser,
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
    assert summary.max_drift < period
    assert all(batch[0].ok for batch in batches)


# --- overflow -----------------------------------------------------------------------------


async def run_unread(
    policy: OverflowPolicy, *, ticks: int = 10, size: int = 3
) -> tuple[Recording, list[float]]:
    """Record ``ticks`` ticks without reading until the producer has finished; then read."""
    clock = FakeClock()
    async with record(
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
        kept = [batch[0].timestamp for batch in await drain(rec)]
    return rec, kept


async def test_drop_newest_keeps_the_first_batches() -> None:
    rec, kept = await run_unread(OverflowPolicy.DROP_NEWEST)
    assert kept == [0.0, 1.0, 2.0]
    summary = rec.summary
    assert (summary.ticks, summary.dropped, summary.dropped_samples) == (10, 7, 7)
    assert (summary.acquired, summary.samples) == (10, 3)


async def test_drop_oldest_keeps_the_newest_batches() -> None:
    rec, kept = await run_unread(OverflowPolicy.DROP_OLDEST)
    assert kept == [7.0, 8.0, 9.0]
    summary = rec.summary
    assert (summary.ticks, summary.dropped, summary.dropped_samples) == (10, 7, 7)
    assert (summary.acquired, summary.samples) == (10, 3)


async def test_block_loses_nothing_and_a_slow_consumer_costs_ticks() -> None:
    clock = FakeClock(0.0)
    async with record(
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
        assert len(rec.stream) == 2
        kept = []
        async for batch in rec.stream:
            kept.append(batch[0].timestamp)
            clock.now += 0.25  # the consumer takes two and a half periods per batch
    summary = rec.summary
    assert kept == [float(i) for i in range(summary.ticks)]  # in order, none lost
    assert summary.dropped == 0
    assert summary.missed_ticks > 0
    assert summary.ticks + summary.missed_ticks == 20


# --- timeouts, lost links and reconnection ------------------------------------------------


class Slow:
    """A source whose poll takes ``seconds`` of real time."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def poll_samples(self) -> list[Sample]:
        await anyio.sleep(self.seconds)
        return [Sample(name=self.name, timestamp=0.0)]


async def test_a_poll_over_the_timeout_becomes_an_error_batch() -> None:
    async with record(Slow(10.0), rate_hz=20, ticks=2, timeout=0.05) as rec:
        batches = await drain(rec)
    assert [[s.name for s in b] for b in batches] == [["slow"], ["slow"]]
    for batch in batches:
        assert isinstance(batch[0].error, ServomexTimeoutError)
        assert "0.05 s" in str(batch[0].error)
    assert (rec.summary.timeouts, rec.summary.error_samples) == (2, 2)


async def test_a_lost_link_ends_the_recording_after_the_batches_already_polled() -> None:
    clock = FakeClock()
    async with record(
        Counter(fail_at=[3]), rate_hz=10, ticks=10, clock=clock, sleep=clock.sleep
    ) as rec:
        seen: list[float] = []

        async def read_all() -> None:
            async for batch in rec.stream:
                seen.append(batch[0].timestamp)

        with pytest.raises(ServomexConnectionError, match="link lost at poll 3"):
            await read_all()
    assert seen == [0.0, 1.0, 2.0]
    assert rec.summary.disconnects == 1
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

    async with record(
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
        ("ok" if b[0].error is None else type(b[0].error).__name__, b[0].name) for b in batches
    ]
    assert kinds == [
        ("ok", "c"),
        ("ok", "c"),
        ("ServomexConnectionError", "c"),  # the lost link itself
        ("ServomexConnectionError", "c"),  # reconnection failed: "still down"
        ("ok", "c"),
        ("ok", "c"),
        ("ok", "c"),
        ("ok", "c"),
    ]
    assert "still down" in str(batches[3][0].error)
    assert [b[0].timestamp for b in batches[4:]] == [0.0, 1.0, 2.0, 3.0]  # the new source
    summary = rec.summary
    assert (summary.disconnects, summary.reconnects, summary.ticks) == (1, 1, 8)
    assert opened == closed == ["new2"]  # the recording closed what its factory opened


async def test_reconnect_to_a_simulator_after_a_pulled_cable() -> None:
    async with serve_tcp(quiet_config(RTU, addresses=(30,))) as sim:

        def reopen() -> PollSource:
            return open_device(sim.port, protocol=RTU, address=30, inter_frame_idle=0, timeout=0.5)

        async with record(
            None,
            rate_hz=20,
            ticks=12,
            auto_reconnect=True,
            reconnect_factory=reopen,  # type: ignore[arg-type]
        ) as rec:
            batches: list[list[Sample]] = []
            async for batch in rec.stream:
                batches.append(batch)
                if len(batches) == 3:
                    sim.faults.inject(Fault.DISCONNECT)  # the next reply is cut: the link drops
        oks = [b[0].ok for b in batches]
        assert len(batches) == 12
        assert oks[:3] == [True, True, True]
        assert oks.index(False) == 3
        assert oks[-1] is True
        summary = rec.summary
        assert summary.disconnects == 1
        assert summary.reconnects == 1
        assert all(isinstance(b[0].error, ServomexConnectionError) for b in batches if not b[0].ok)
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
        async with record(manager, rate_hz=100, ticks=3, names=["y"]) as rec:
            batches = await drain(rec)
        assert [[s.name for s in b] for b in batches] == [["y"]] * 3
        assert {e.address for e in sim.log.events(WireKind.REQUEST)} == {31}

        async with record(manager, rate_hz=100, ticks=2) as rec:
            batches = await drain(rec)
        assert [[s.name for s in b] for b in batches] == [["x", "y"]] * 2

        with pytest.raises(ServomexValidationError, match="unknown device name"):
            async with record(manager, rate_hz=1, names=["zz"]):
                pass


async def test_stop_ends_a_recording_without_waiting_for_the_next_slot() -> None:
    async with record(Counter(), rate_hz=0.1) as rec:  # one tick every ten seconds
        with anyio.fail_after(5):
            async for batch in rec.stream:
                assert batch[0].timestamp == 0.0
                rec.stop()
    assert rec.stopping
    assert rec.summary.ticks == 1
    assert rec.summary.finished


async def test_leaving_the_block_early_stops_the_producer() -> None:
    source = Counter()
    async with record(source, rate_hz=1000) as rec:
        async for _batch in rec.stream:
            break
    calls = source.calls
    await anyio.sleep(0.02)
    assert source.calls == calls
    assert rec.summary.finished
    assert rec.summary.tick_p50 is not None


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
    with pytest.raises(error, match=words):
        async with record(Counter(), **kwargs):  # type: ignore[arg-type]
            pass


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
    summary = AcquisitionSummary(rate_hz=10, ticks=3, samples=3, max_drift=0.0123)
    assert str(summary).startswith("3 ticks at 10 Hz, 3 samples emitted (0 errors)")
    assert "max drift 12.3 ms" in str(summary)
    assert source_names(Counter("q")) == ("q",)
    assert source_names(object()) == ()


async def test_an_error_in_the_block_leaves_unwrapped() -> None:
    source = Counter()
    recordings: list[Recording] = []

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
