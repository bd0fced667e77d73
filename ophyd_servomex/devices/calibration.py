"""Autocalibration as a bluesky ``Movable``: ``set(group)`` runs one, ``stop()`` ends it.

``analyser.calibration.set(group, confirm=True)`` pulses the group's start coil, then polls
the group's state and reports progress through a :class:`WatchableAsyncStatus`, so
``bps.abs_set(analyser.calibration, 1, confirm=True, wait=True)`` shows a progress bar
with bluesky's ``ProgressBarManager``. The phases run sampling (start requested) → gas 1 →
gas 2 → gas 1 → done.

``stop()`` sends the stop-all pulse and finishes the status with the phase ``stopped``;
the RunEngine calls it when a plan that set the calibration is paused, aborted or fails.
It only ever writes when a calibration started here (which needed ``confirm=True``) is
still running, so the confirmation of the start also covers the stop.

The coil writes and the state reads go through three :class:`~ophyd_async.core.Command`
children, so in mock mode ophyd-async's mock commands stand in for the analyser.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from bluesky.protocols import Movable, Stoppable
from ophyd_async.core import Command, Device, WatchableAsyncStatus, WatcherUpdate

from ..codec.errors import (
    ErrorContext,
    ServomexCapabilityError,
    ServomexConfigurationError,
    ServomexConfirmationRequiredError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.models import CalibrationProgress, CalPhase, ProtocolKind
from .backends import SessionCommandBackend, execute

__all__ = ["CALIBRATION_STEPS", "CalibrationTracker", "ServomexCalibration"]

CALIBRATION_STEPS: tuple[CalPhase, ...] = (
    CalPhase.SAMPLING,
    CalPhase.CAL_GAS_1,
    CalPhase.CAL_GAS_2,
    CalPhase.CAL_GAS_1,
    CalPhase.DONE,
)
"""The phases a calibration passes through, in order; progress is the step's index / 4."""

_LAST_STEP = len(CALIBRATION_STEPS) - 1


def check_group(group: object) -> int:
    """Return ``group`` as an int in 1–4, or raise :class:`ServomexValidationError`."""
    if isinstance(group, bool) or not isinstance(group, int) or not 1 <= group <= 4:
        raise ServomexValidationError(f"calibration group must be 1–4, not {group!r}")
    return group


class CalibrationTracker:
    """Turns polled group states into the step sequence sampling → gas 1 → gas 2 → gas 1 → done.

    It is tolerant of polls that miss a short phase: seeing gas 2 before gas 1 jumps to the
    gas-2 step, and the group going idle after any calibrating phase means done. A group
    that is still idle right after the start (queued behind another group, or the valves
    not yet switched) stays in ``sampling``.
    """

    def __init__(self, group: int) -> None:
        self.group = check_group(group)
        self.step = 0
        self.stopped = False
        self._started = time.monotonic()

    @property
    def phase(self) -> CalPhase:
        """The phase of the current step (``stopped`` after :meth:`stop`)."""
        return CalPhase.STOPPED if self.stopped else CALIBRATION_STEPS[self.step]

    @property
    def done(self) -> bool:
        """True once finished or stopped."""
        return self.stopped or self.step == _LAST_STEP

    @property
    def fraction(self) -> float:
        """Progress 0–1 (steps completed / 4)."""
        return self.step / _LAST_STEP

    def observe(self, phase: CalPhase) -> bool:
        """Feed one polled phase; returns True when the step changed."""
        if self.done:
            return False
        before = self.step
        if phase is CalPhase.CAL_GAS_1:
            if self.step == 0:
                self.step = 1
            elif self.step == 2:
                self.step = 3
        elif phase is CalPhase.CAL_GAS_2:
            if self.step < 2:
                self.step = 2
        elif phase in (CalPhase.IDLE, CalPhase.DONE, CalPhase.STOPPED) and self.step >= 1:
            self.step = _LAST_STEP
        return self.step != before

    def stop(self) -> None:
        """Mark the calibration stopped."""
        self.stopped = True

    def progress(self) -> CalibrationProgress:
        """The current progress as the codec's model."""
        return CalibrationProgress(
            group=self.group,
            phase=self.phase,
            fraction=1.0 if self.done and not self.stopped else self.fraction,
            elapsed=time.monotonic() - self._started,
            remaining=0.0 if self.done else None,
        )


class ServomexCalibration(Device, Movable[int], Stoppable):
    """The analyser's autocalibration: ``set(group, confirm=True)`` and ``stop()``.

    Children (actions, faked by ophyd-async in mock mode): ``start_group(group, confirm)``,
    ``stop_all(confirm)`` and ``group_phase(group) -> str`` (a :class:`CalPhase` value).
    ``poll_period`` is how often the group state is read while a calibration runs.
    """

    def __init__(
        self,
        *,
        start: Callable[[int, bool], Awaitable[None]],
        stop: Callable[[bool], Awaitable[None]],
        phase: Callable[[int], Awaitable[str]],
        protocol: Callable[[], Awaitable[str]],
        source: str,
        poll_period: float = 0.5,
        context: ErrorContext | None = None,
        name: str = "",
    ) -> None:
        self.start_group = Command(SessionCommandBackend(start, source=f"{source}#cal_start"))
        self.stop_all = Command(SessionCommandBackend(stop, source=f"{source}#cal_stop"))
        self.group_phase = Command(SessionCommandBackend(phase, source=f"{source}#cal_state"))
        self._protocol = protocol
        self._context = context or ErrorContext()
        self.poll_period = poll_period
        self._status: WatchableAsyncStatus[int] | None = None
        self._tracker: CalibrationTracker | None = None
        self._stop_requested = asyncio.Event()
        self._start_sent = False
        self._last: CalibrationProgress | None = None
        super().__init__(name=name)

    @property
    def running(self) -> bool:
        """True while a calibration started here has not finished."""
        return self._status is not None and not self._status.done

    @property
    def last_progress(self) -> CalibrationProgress | None:
        """The latest progress of the current or last calibration (``None`` before any)."""
        return self._last

    def set(
        self,
        value: int,
        *,
        confirm: bool = False,
        poll_period: float | None = None,
        timeout: float | None = None,
    ) -> WatchableAsyncStatus[int]:
        """Start autocalibration of group ``value`` (1–4) and report its progress.

        Raises before anything is sent: :class:`ServomexConfirmationRequiredError` without
        ``confirm=True``, :class:`ServomexValidationError` for a group outside 1–4,
        :class:`ServomexConfigurationError` while another calibration runs. The status
        fails with :class:`ServomexCapabilityError` in continuous mode (checked before
        any byte) and with :class:`ServomexTimeoutError` if ``timeout`` seconds pass.
        """
        if not confirm:
            raise ServomexConfirmationRequiredError(
                "autocalibration changes the process gas flow: pass confirm=True",
                context=self._context,
            )
        group = check_group(value)
        if self.running:
            raise ServomexConfigurationError(
                "a calibration is already running on this analyser", context=self._context
            )
        period = self.poll_period if poll_period is None else poll_period
        self._stop_requested = asyncio.Event()
        self._start_sent = False
        self._tracker = CalibrationTracker(group)
        self._last = self._tracker.progress()
        status = WatchableAsyncStatus(self._run(self._tracker, period, timeout), name=self.name)
        self._status = status
        return status

    async def _run(
        self, tracker: CalibrationTracker, period: float, limit: float | None
    ) -> AsyncIterator[WatcherUpdate[int]]:
        protocol = ProtocolKind(await self._protocol())
        if not protocol.is_modbus:
            raise ServomexCapabilityError(
                "autocalibration needs Modbus; the analyser is in continuous mode "
                "(the front panel selects the mode)",
                context=self._context.merged(protocol=protocol.value),
            )
        if self._stop_requested.is_set():
            tracker.stop()
            yield self._update(tracker)
            return
        self._start_sent = True
        await execute(self.start_group, tracker.group, True)
        yield self._update(tracker)
        deadline = None if limit is None else time.monotonic() + limit
        while not tracker.done:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._stop_requested.wait()
            if self._stop_requested.is_set():
                tracker.stop()
                yield self._update(tracker)
                return
            phase = CalPhase(await execute(self.group_phase, tracker.group))
            if tracker.observe(phase):
                yield self._update(tracker)
            elif deadline is not None and time.monotonic() > deadline:
                raise ServomexTimeoutError(
                    f"calibration of group {tracker.group} did not finish within {limit} s "
                    f"(last phase {tracker.phase.value})",
                    context=self._context,
                )

    def _update(self, tracker: CalibrationTracker) -> WatcherUpdate[int]:
        self._last = progress = tracker.progress()
        label = f"{self.name or 'calibration'} group {tracker.group}: {progress.phase.value}"
        return WatcherUpdate(
            current=tracker.step,
            initial=0,
            target=_LAST_STEP,
            name=label,
            unit=progress.phase.value,
            precision=0,
            fraction=progress.fraction,
        )

    async def stop(self, success: bool = True) -> None:
        """Stop a running calibration: the stop-all pulse, then the status finishes.

        Does nothing (sends nothing) when no calibration started here is running, so the
        RunEngine calling it at the end of every plan is harmless.
        """
        status = self._status
        if status is None or status.done:
            return
        self._stop_requested.set()
        if self._start_sent:
            await execute(self.stop_all, True)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(status.task), timeout=max(5.0, self.poll_period))
