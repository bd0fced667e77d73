"""``Schedule``: drift-free absolute ticks, shared by ``record()`` and the device's poll.

::

    schedule = Schedule(0.5)                  # seconds between slots
    while (tick := await schedule.wait()) is not None:
        await poll()                          # tick.index, tick.due, tick.drift, tick.skipped

**Slots.** The schedule is anchored at a clock time ``origin`` (the first :meth:`wait`, or
:meth:`restart`): slot *k* is due at ``origin + (k - first) * period``, computed from the
anchor every time (never by adding periods, which would accumulate rounding and every
poll's overrun). :meth:`wait` sleeps until the next slot is due and returns its
:class:`Tick`; work that overruns its slot does not shift the slots after it.

**Late-tick policy.** A tick that starts after its slot has a positive ``drift``; it is
``late`` when the drift exceeds :data:`LATE_FRACTION` of a period, and still keeps its slot.
A slot whose whole period has passed before :meth:`wait` was called is *skipped*: the
schedule jumps to the slot the clock is in, counts the slots it jumped over once
(``Tick.skipped`` on the next tick, and :attr:`Schedule.missed`), and never bursts to catch
up. So no tick starts more than one period after its slot, and ``ticks + missed`` is the
number of slots that passed.

**Changing the rate, restarting, stopping.** Setting :attr:`Schedule.period` re-anchors the
schedule at once (the same value is a no-op): the next slot is due one new period after the
last tick's slot, or now if that has already passed, and the slots after it follow the new
period. A :meth:`wait` in progress is woken and sleeps again for the new slot, so a long
wait is cut short when the rate goes up. :meth:`restart` re-anchors at now (the next slot
is due at once), for a poll that resumes after an idle spell — the idle slots are neither
run nor counted as missed. :meth:`stop` ends the schedule: a :meth:`wait` in progress and
every later one return ``None``. With ``limit`` the schedule also ends after that many
slots (run or skipped) since it was made.

**Clock and sleep.** ``clock`` (default :func:`time.monotonic`) and ``sleep`` (default
:func:`anyio.sleep`) may be replaced by a fake pair in tests, to run thousands of ticks in
no real time. The wait is cut short by cancelling an :class:`anyio.CancelScope` around the
sleep, so it works in any task of an anyio event loop, including plain asyncio tasks (the
loop ophyd-async runs on). One task waits on a schedule at a time; ``period``,
:meth:`restart` and :meth:`stop` may be called from any code on the same event loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from ..codec.checks import check_positive
from ..codec.errors import ServomexConfigurationError, ServomexValidationError

__all__ = ["LATE_FRACTION", "Schedule", "Tick"]

LATE_FRACTION = 0.5
"""A tick is late when it starts more than this fraction of a period after its slot."""
_PASSED = 1.0 - 1e-6
"""A slot counts as passed this close to a whole period after it (floats are not exact)."""
_ROUNDING = 1e-9
"""Tolerance, in periods, for float rounding when finding the slot the clock is in."""


@dataclass(frozen=True, slots=True)
class Tick:
    """One slot that :meth:`Schedule.wait` handed out."""

    index: int
    """The slot's number, counted from 0 over the schedule's life (restarts included)."""
    due: float
    """The clock time the slot was due."""
    started: float
    """The clock time :meth:`Schedule.wait` returned it (``due + drift``)."""
    drift: float
    """Seconds the tick started after ``due`` (≥ 0, less than one period)."""
    skipped: int
    """Slots skipped since the previous tick because their whole period had passed."""
    late: bool
    """``drift`` exceeds :data:`LATE_FRACTION` of the period."""


def _checked_period(period: float) -> float:
    return check_positive("a schedule's period", period)


class Schedule:
    """Slots every ``period`` seconds on an absolute grid (see the module docstring).

    Args:
        period: seconds between slots (> 0, finite); settable later.
        limit: end after this many slots (run or skipped); ``None`` for no end.
        clock: the time source, in seconds (default :func:`time.monotonic`).
        sleep: sleeps a number of seconds (default :func:`anyio.sleep`).

    Raises:
        ServomexValidationError: a period that is not a positive finite number, or a
            negative ``limit``.
    """

    def __init__(
        self,
        period: float,
        *,
        limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise ServomexValidationError(f"a schedule's limit must not be negative: {limit!r}")
        self._period = _checked_period(period)
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._origin: float | None = None  # the time slot ``_first`` is due
        self._first = 0
        self._next = 0  # the slot the next wait hands out
        self._last_due: float | None = None
        self._skipped = 0  # skipped since the last tick
        self._stopped = False
        self._waiting = False
        self._wake: Callable[[], None] | None = None
        self.ticks = 0
        """Ticks handed out."""
        self.missed = 0
        """Slots skipped because their whole period had passed."""
        self.late = 0
        """Ticks that were late (see :attr:`Tick.late`)."""
        self.max_drift = 0.0
        """Largest drift of a tick, in seconds."""

    @property
    def period(self) -> float:
        """Seconds between slots; setting a new value re-anchors the schedule (see the
        module docstring) and wakes a :meth:`wait` in progress."""
        return self._period

    @period.setter
    def period(self, value: float) -> None:
        value = _checked_period(value)
        if value == self._period:
            return
        self._period = value
        if self._origin is not None:
            now = self._clock()
            start = now if self._last_due is None else max(now, self._last_due + value)
            self._anchor(start)
        self._poke()

    @property
    def origin(self) -> float | None:
        """The clock time of the current anchor, or ``None`` before the first wait."""
        return self._origin

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called or the ``limit`` was reached."""
        return self._stopped or (self._limit is not None and self._next >= self._limit)

    def restart(self) -> None:
        """Re-anchor at now: the next slot is due at once (after an idle spell, say)."""
        self._anchor(self._clock())
        self._poke()

    def stop(self) -> None:
        """End the schedule: the wait in progress and every later one return ``None``."""
        self._stopped = True
        self._poke()

    async def wait(self) -> Tick | None:
        """Sleep until the next slot is due and return its tick; ``None`` once stopped.

        Raises:
            ServomexConfigurationError: another task is already waiting on this schedule.
        """
        if self._waiting:
            raise ServomexConfigurationError("another task is already waiting on this schedule")
        self._waiting = True
        try:
            return await self._wait()
        finally:
            self._waiting = False

    async def _wait(self) -> Tick | None:
        if self._origin is None:
            self._anchor(self._clock())
        while not self.stopped:
            due = self._due(self._next)
            now = self._clock()
            if now < due:
                with anyio.CancelScope() as scope:
                    self._wake = scope.cancel
                    try:
                        await self._sleep(due - now)
                    finally:
                        self._wake = None
                continue  # look again: the period, the anchor or the stop may have changed
            period = self._period
            if now - due >= period * _PASSED:  # this slot has passed: go to the current one
                # (the current slot may lie a rounding error ahead: the loop waits for it)
                assert self._origin is not None
                current = self._first + math.floor((now - self._origin) / period + _ROUNDING)
                skipped = max(1, current - self._next)
                if self._limit is not None:
                    skipped = min(skipped, self._limit - self._next)
                self._skipped += skipped
                self.missed += skipped
                self._next += skipped
                continue
            drift = now - due
            tick = Tick(self._next, due, now, drift, self._skipped, drift > LATE_FRACTION * period)
            self._next += 1
            self._skipped = 0
            self._last_due = due
            self.ticks += 1
            self.late += tick.late
            self.max_drift = max(self.max_drift, drift)
            return tick
        return None

    def _due(self, index: int) -> float:
        assert self._origin is not None
        return self._origin + (index - self._first) * self._period

    def _anchor(self, start: float) -> None:
        self._origin = start
        self._first = self._next

    def _poke(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None:
            wake()
