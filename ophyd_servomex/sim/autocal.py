"""The autocalibration state machine of the simulated analyser (docs/protocol.md §5.7, §9).

Pure and time-driven: every method takes the current *simulated* time in seconds, and
:meth:`Autocal.advance` replays every phase change that fell due since the last call at
its exact time, so the log does not depend on how often anyone looks.

A started group flows calibration gas 1, then gas 2, then gas 1 again, each for
``flush_time`` seconds, and then samples process gas again. Only one group calibrates at a
time; a group started while another runs waits in a queue. "Stop all" ends the running
group and empties the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ..codec.checks import check_group
from ..codec.errors import ServomexValidationError
from ..codec.models import CalGroupState, CalPhase

__all__ = ["DEFAULT_FLUSH_TIME", "DEFAULT_SEQUENCE", "Autocal", "CalLogEntry"]

DEFAULT_FLUSH_TIME = 60.0
"""Seconds (simulated) each calibration gas flows; the real figure is set on the panel."""

DEFAULT_SEQUENCE: tuple[int, ...] = (1, 2, 1)
"""The calibration gases a group flows, in order."""

GROUPS = (1, 2, 3, 4)


@dataclass(frozen=True, slots=True)
class CalLogEntry:
    """One event of the autocal state machine.

    ``phase`` is ``SAMPLING`` when a start was accepted and the group waits its turn,
    ``CAL_GAS_1`` / ``CAL_GAS_2`` when a gas phase begins, ``DONE`` when the sequence ends,
    ``STOPPED`` when "stop all" ends a running or queued group. ``time`` is simulated
    seconds since the analyser started.
    """

    time: float
    group: int
    phase: CalPhase


_GAS_PHASE = {1: CalPhase.CAL_GAS_1, 2: CalPhase.CAL_GAS_2}


class Autocal:
    """Four autocal groups, one calibrating at a time, the others queued."""

    def __init__(
        self, flush_time: float = DEFAULT_FLUSH_TIME, sequence: Sequence[int] = DEFAULT_SEQUENCE
    ) -> None:
        if flush_time <= 0:
            raise ServomexValidationError(f"flush time must be > 0, not {flush_time!r}")
        if not sequence or any(gas not in _GAS_PHASE for gas in sequence):
            raise ServomexValidationError(f"a gas sequence of 1s and 2s is needed: {sequence!r}")
        self.flush_time = float(flush_time)
        self.sequence = tuple(sequence)
        self.log: list[CalLogEntry] = []
        self._queue: deque[int] = deque()
        self._running: int | None = None
        self._step = 0
        self._step_start = 0.0
        self._now = 0.0

    # --- queries -------------------------------------------------------------------------

    @property
    def running(self) -> int | None:
        """The group calibrating now, or ``None``."""
        return self._running

    @property
    def queued(self) -> tuple[int, ...]:
        """Groups waiting their turn, first to start first."""
        return tuple(self._queue)

    def gas(self) -> int | None:
        """The calibration gas flowing now, or ``None`` while every group samples."""
        return None if self._running is None else self.sequence[self._step]

    def state(self, group: int) -> CalGroupState:
        """The wire-visible state of one group: calibrating with gas 1/2, or idle (gas 1)."""
        check_group(group)
        if group == self._running:
            gas = self.sequence[self._step]
            return CalGroupState(group, _GAS_PHASE[gas], cal_gas=gas)
        return CalGroupState(group, CalPhase.IDLE, cal_gas=1)

    def states(self) -> tuple[CalGroupState, CalGroupState, CalGroupState, CalGroupState]:
        """The states of groups 1–4."""
        return (self.state(1), self.state(2), self.state(3), self.state(4))

    def remaining(self) -> float:
        """Simulated seconds until the running group (if any) finishes."""
        if self._running is None:
            return 0.0
        end = self._step_start + self.flush_time * (len(self.sequence) - self._step)
        return max(0.0, end - self._now)

    # --- transitions ---------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Apply every phase change due up to simulated time ``now`` (never goes back)."""
        while self._running is not None:
            end = self._step_start + self.flush_time
            if end > now:
                break
            self._step += 1
            self._step_start = end
            if self._step < len(self.sequence):
                self._record(end, self._running, _GAS_PHASE[self.sequence[self._step]])
            else:
                self._record(end, self._running, CalPhase.DONE)
                self._running = None
                self._start_next(end)
        self._now = max(self._now, now)

    def start(self, group: int, now: float) -> bool:
        """Request group ``group`` at ``now``; False when it already runs or waits."""
        check_group(group)
        self.advance(now)
        if group == self._running or group in self._queue:
            return False
        self._queue.append(group)
        if self._running is None:
            self._start_next(now)
        else:
            self._record(now, group, CalPhase.SAMPLING)
        return True

    def stop_all(self, now: float) -> tuple[int, ...]:
        """End the running group and empty the queue; returns the groups stopped."""
        self.advance(now)
        stopped: list[int] = []
        if self._running is not None:
            stopped.append(self._running)
            self._running = None
        stopped.extend(self._queue)
        self._queue.clear()
        for group in stopped:
            self._record(now, group, CalPhase.STOPPED)
        return tuple(stopped)

    def _start_next(self, now: float) -> None:
        if not self._queue:
            return
        self._running = self._queue.popleft()
        self._step = 0
        self._step_start = now
        self._record(now, self._running, _GAS_PHASE[self.sequence[0]])

    def _record(self, time: float, group: int, phase: CalPhase) -> None:
        self.log.append(CalLogEntry(time, group, phase))
