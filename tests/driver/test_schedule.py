"""Schedule: exact due times on a fake clock, skipped slots counted once, a period change
that cuts a wait short, a restart after an idle spell, stop, limit, and plain asyncio."""

from __future__ import annotations

import asyncio
import math

import anyio
import anyio.lowlevel
import pytest

from ophyd_servomex.codec.errors import ServomexConfigurationError, ServomexValidationError
from ophyd_servomex.driver.schedule import LATE_FRACTION, Schedule, Tick

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]  # a wait never woken fails


class ManualClock:
    """A fake clock that moves only when the test says so; a sleep lasts until then.

    ``sleeps`` notes every sleep asked for; :meth:`advance` moves the time and wakes the
    sleepers whose time has come.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._moved = anyio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        until = self.now + seconds
        while self.now < until:
            await self._moved.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        moved, self._moved = self._moved, anyio.Event()
        moved.set()


class SleepyClock(ManualClock):
    """A fake clock whose sleeps move the time themselves (no other task needed)."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def ticks_of(schedule: Schedule, n: int) -> list[Tick]:
    out = []
    for _ in range(n):
        tick = await schedule.wait()
        assert tick is not None
        out.append(tick)
    return out


async def wait_into(schedule: Schedule, got: list[Tick | None], count: int = 2) -> None:
    """Wait for ``count`` ticks, one after the other, appending each (``None`` once stopped)
    to ``got``: a task a test starts and then drives by the clock."""
    for _ in range(count):
        got.append(await schedule.wait())


async def test_slots_are_due_at_exact_times_from_the_anchor() -> None:
    clock = SleepyClock(100.0)
    schedule = Schedule(0.1, clock=clock, sleep=clock.sleep)
    assert schedule.origin is None
    ticks = await ticks_of(schedule, 1000)
    assert schedule.origin == 100.0  # anchored at the first wait
    # every slot is computed from the anchor, not by adding periods
    assert [t.due for t in ticks] == [100.0 + k * 0.1 for k in range(1000)]
    assert [t.index for t in ticks] == list(range(1000))
    assert all(t.drift == 0.0 and t.started == t.due for t in ticks)
    assert not any(t.late or t.skipped for t in ticks)
    assert (schedule.ticks, schedule.missed, schedule.late, schedule.max_drift) == (1000, 0, 0, 0)
    assert clock.sleeps[0] == pytest.approx(0.1)  # tick 0 was due at once: no sleep for it


async def test_work_that_overruns_its_slot_does_not_shift_the_next_ones() -> None:
    clock = SleepyClock(0.0)
    schedule = Schedule(1.0, clock=clock, sleep=clock.sleep)
    first = await schedule.wait()
    clock.now += 0.7  # the work of tick 0 took 0.7 s
    second = await schedule.wait()
    assert second == Tick(1, 1.0, 1.0, 0.0, 0, False)
    assert clock.sleeps == [pytest.approx(0.3)]
    assert first == Tick(0, 0.0, 0.0, 0.0, 0, False)


async def test_a_late_tick_keeps_its_slot_and_is_counted_late() -> None:
    clock = SleepyClock(0.0)
    schedule = Schedule(1.0, clock=clock, sleep=clock.sleep)
    await schedule.wait()
    clock.now += 1.6  # slot 1 (due 1.0) is 0.6 s behind: late, but not passed
    tick = await schedule.wait()
    assert tick is not None
    assert (tick.index, tick.due, tick.started, tick.skipped, tick.late) == (1, 1.0, 1.6, 0, True)
    assert tick.drift == pytest.approx(0.6)
    assert LATE_FRACTION * 1.0 < 0.6
    clock.now += 0.1
    after = await schedule.wait()  # slot 2 keeps its own time
    assert after is not None
    assert (after.index, after.due, after.drift, after.late) == (2, 2.0, 0.0, False)
    assert (schedule.late, schedule.missed) == (1, 0)
    assert schedule.max_drift == pytest.approx(0.6)


async def test_a_slot_whose_period_has_passed_is_skipped_and_counted_once() -> None:
    clock = SleepyClock(0.0)
    schedule = Schedule(1.0, clock=clock, sleep=clock.sleep)
    await schedule.wait()
    clock.now += 2.5  # slot 1 (due 1.0) has wholly passed; the clock is in slot 2
    tick = await schedule.wait()
    assert tick == Tick(2, 2.0, 2.5, 0.5, 1, False)  # drift 0.5: not more than half
    following = await schedule.wait()
    assert following == Tick(3, 3.0, 3.0, 0.0, 0, False)  # the skip is told once
    clock.now += 10.0  # slots 4 … 13 pass; the clock is at 13.0, slot 13 due now
    caught_up = await schedule.wait()
    assert caught_up == Tick(13, 13.0, 13.0, 0.0, 9, False)
    assert (schedule.ticks, schedule.missed) == (4, 10)  # never a burst to catch up


async def test_a_period_change_cuts_a_wait_short_and_re_anchors() -> None:
    clock = ManualClock(0.0)
    schedule = Schedule(10.0, clock=clock, sleep=clock.sleep)
    got: list[Tick | None] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_into, schedule, got)
        await anyio.wait_all_tasks_blocked()
        assert got == [Tick(0, 0.0, 0.0, 0.0, 0, False)]  # now waiting 10 s for slot 1
        clock.advance(3.0)
        await anyio.wait_all_tasks_blocked()
        assert len(got) == 1
        schedule.period = 1.0  # slot 0's time + 1 s has passed: the next slot is due now
        await anyio.wait_all_tasks_blocked()
    assert got[1] == Tick(1, 3.0, 3.0, 0.0, 0, False)
    assert schedule.origin == 3.0
    assert clock.sleeps == [10.0]
    # the new period runs from the new anchor
    clock.advance(0.25)
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_into, schedule, got, 1)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleeps[-1] == pytest.approx(0.75)
        clock.advance(0.75)
    assert got[2] == Tick(2, 4.0, 4.0, 0.0, 0, False)
    assert schedule.missed == 0


async def test_a_slower_period_counts_from_the_last_slot_not_from_now() -> None:
    clock = SleepyClock(0.0)
    schedule = Schedule(1.0, clock=clock, sleep=clock.sleep)
    await ticks_of(schedule, 2)  # slots at 0.0 and 1.0
    clock.now += 0.5
    schedule.period = 5.0  # no extra tick now: the next is due at 1.0 + 5.0
    tick = await schedule.wait()
    assert tick == Tick(2, 6.0, 6.0, 0.0, 0, False)
    assert clock.sleeps == [1.0, pytest.approx(4.5)]
    schedule.period = 5.0  # the same period changes nothing
    assert schedule.origin == 6.0
    after = await schedule.wait()
    assert after is not None
    assert after.due == 11.0


async def test_a_period_set_before_the_first_wait_just_applies() -> None:
    clock = SleepyClock(7.0)
    schedule = Schedule(1.0, clock=clock, sleep=clock.sleep)
    schedule.period = 0.5
    ticks = await ticks_of(schedule, 3)
    assert [t.due for t in ticks] == [7.0, 7.5, 8.0]


async def test_restart_after_an_idle_spell_runs_now_and_counts_no_missed_slots() -> None:
    clock = SleepyClock(0.0)
    schedule = Schedule(1.0, clock=clock, sleep=clock.sleep)
    await ticks_of(schedule, 2)
    clock.now += 60.3  # nothing listened for a minute
    schedule.restart()
    tick = await schedule.wait()
    assert tick == Tick(2, 61.3, 61.3, 0.0, 0, False)
    after = await schedule.wait()
    assert after == Tick(3, 62.3, 62.3, 0.0, 0, False)
    assert (schedule.ticks, schedule.missed) == (4, 0)


async def test_stop_ends_a_wait_in_progress_and_every_later_one() -> None:
    clock = ManualClock(0.0)
    schedule = Schedule(1.0, clock=clock, sleep=clock.sleep)
    got: list[Tick | None] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_into, schedule, got)
        await anyio.wait_all_tasks_blocked()
        assert not schedule.stopped
        schedule.stop()
    assert got == [Tick(0, 0.0, 0.0, 0.0, 0, False), None]
    assert schedule.stopped
    assert await schedule.wait() is None
    assert clock.now == 0.0


async def test_stop_before_the_first_wait() -> None:
    schedule = Schedule(1.0)
    schedule.stop()
    assert await schedule.wait() is None
    assert schedule.ticks == 0


async def test_a_limit_ends_the_schedule_and_caps_the_skipped_slots() -> None:
    clock = SleepyClock(0.0)
    schedule = Schedule(1.0, limit=4, clock=clock, sleep=clock.sleep)
    await ticks_of(schedule, 2)
    clock.now += 50.0  # slots 2 … 51 passed, but only 2 and 3 are within the limit
    assert await schedule.wait() is None
    assert (schedule.ticks, schedule.missed) == (2, 2)
    assert schedule.stopped
    assert await Schedule(1.0, limit=0).wait() is None


async def test_a_second_task_may_not_wait_at_the_same_time() -> None:
    clock = ManualClock(0.0)
    schedule = Schedule(1.0, clock=clock, sleep=clock.sleep)
    assert await schedule.wait() is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(schedule.wait)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(ServomexConfigurationError, match="already waiting"):
            await schedule.wait()
        schedule.stop()


@pytest.mark.parametrize("period", [0, -1.0, math.nan, math.inf, True, "1"])
async def test_a_bad_period_is_refused(period: object) -> None:
    with pytest.raises(ServomexValidationError, match="period"):
        Schedule(period)  # type: ignore[arg-type]
    schedule = Schedule(1.0)
    with pytest.raises(ServomexValidationError, match="period"):
        schedule.period = period  # type: ignore[assignment]
    assert schedule.period == 1.0


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ServomexValidationError, match="limit"):
        Schedule(1.0, limit=-1)


def test_plain_asyncio_tasks_can_wait_and_be_woken_by_a_rate_change() -> None:
    """ophyd-async runs on plain asyncio: a wait in an ``asyncio`` task on the real clock is
    cut short by a period change from another task."""

    async def main() -> list[Tick | None]:
        schedule = Schedule(3600.0)  # an hour between slots
        got: list[Tick | None] = [await schedule.wait()]

        async def speed_up() -> None:
            await asyncio.sleep(0.01)
            schedule.period = 0.01

        task = asyncio.create_task(speed_up())
        async with asyncio.timeout(60):  # a wait for the hour-long slot would fail here
            got.append(await schedule.wait())
            got.append(await schedule.wait())
        await task
        schedule.stop()
        got.append(await schedule.wait())
        return got

    first, second, third, last = asyncio.run(main())
    assert first is not None
    assert second is not None
    assert third is not None
    assert (first.index, second.index, last) == (0, 1, None)
    assert third.index == 2 + third.skipped  # a loaded machine may skip 10 ms slots
    assert second.due - first.due < 3600.0
