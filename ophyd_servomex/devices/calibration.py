"""Autocalibration as a bluesky ``Movable``: ``set(group)`` runs one, ``stop()`` ends it.

``analyser.calibration.set(group, confirm=True)`` pulses the group's start coil, then polls
the group's state and reports progress through a :class:`WatchableAsyncStatus`. The phases
run sampling (start requested) → gas 1 → gas 2 → gas 1 → done. Every poll sends a
:class:`WatcherUpdate` whose ``name`` is the phase (``"gas group 1: cal_gas_2"``), whose
``current`` is the seconds spent in that phase and whose ``target`` is the phase's
expected seconds when the calibration gas time is known (``gas_time``, as set on the
analyser's panel: the protocol cannot read it); ``unit`` is ``"s"`` and ``fraction`` the
share of the sequence done (steps / 4). :class:`~ophyd_servomex.plans.CalibrationProgressManager`
draws it, and so does bluesky's ``ProgressBarManager``.

Only ``confirm is True`` starts a calibration: any other value — ``"true"``, ``1``,
``numpy.bool_(True)``, ``[True]`` — raises :class:`ServomexConfirmationRequiredError`
before anything is sent.

``stop()`` sends the stop-all pulse and finishes the status with the phase ``stopped``;
the RunEngine calls it when a plan that set the calibration is paused, aborted or fails.
A calibration that ends any other way while gas may still flow — its status cancelled,
its ``timeout`` passed, a poll failing — also sends the stop pulse before the status
fails. The stop pulse only ever goes out while a calibration started here (which needed
``confirm=True``) is still running, so the confirmation of the start also covers the stop.

The coil writes and the state reads go through three :class:`~ophyd_async.core.Command`
children, so in mock mode ophyd-async's mock commands stand in for the analyser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bluesky.protocols import Movable, Pausable, Stoppable
from bluesky.utils import NoReplayAllowed
from ophyd_async.core import Command, Device, WatchableAsyncStatus, WatcherUpdate

from ..codec.checks import check_group  # re-exported: the plans and tests import it here
from ..codec.errors import (
    ErrorContext,
    ServomexCapabilityError,
    ServomexConfigurationError,
    ServomexConfirmationRequiredError,
    ServomexError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.models import CalibrationProgress, CalPhase, ProtocolKind
from .backends import SessionCommandBackend, execute

__all__ = [
    "CALIBRATION_STEPS",
    "CalibrationStoppedError",
    "CalibrationTracker",
    "ServomexCalibration",
    "check_confirm",
    "check_gas_time",
    "check_group",
]

_log = logging.getLogger(__name__)

CALIBRATION_STEPS: tuple[CalPhase, ...] = (
    CalPhase.SAMPLING,
    CalPhase.CAL_GAS_1,
    CalPhase.CAL_GAS_2,
    CalPhase.CAL_GAS_1,
    CalPhase.DONE,
)
"""The phases a calibration passes through, in order; progress is the step's index / 4."""

_LAST_STEP = len(CALIBRATION_STEPS) - 1

# The watcher updates carry seconds (float) and a target that is ``None`` while the
# phase's duration is unknown; ``Any`` also keeps the status assignable to callers that
# still annotate it ``WatchableAsyncStatus[int]``.
_Update = WatcherUpdate[Any]
_GAS_STEPS = (1, 2, 3)


class CalibrationStoppedError(ServomexError):
    """A calibration was stopped (a pause, an abort, ``stop()``) before it finished.

    Raised by the calibration plans when they find their calibration stopped, so a run
    resumed after a pause does not carry on as if the analyser had been calibrated.
    """


def check_confirm(confirm: object, what: str, context: ErrorContext | None = None) -> None:
    """Raise :class:`ServomexConfirmationRequiredError` unless ``confirm is True``.

    Only the ``True`` singleton confirms: ``"true"``, ``1``, ``1.0``, ``[True]`` or
    ``numpy.bool_(True)`` do not, so a confirmation cannot come from a truthy accident.
    """
    if confirm is not True:
        raise ServomexConfirmationRequiredError(
            f"{what}: pass confirm=True (exactly True, not {confirm!r})",
            context=context or ErrorContext(),
        )


def check_gas_time(gas_time: object) -> float | None:
    """Return ``gas_time`` (seconds each calibration gas flows) as a float, or ``None``.

    Raises :class:`ServomexValidationError` unless it is ``None`` or a finite number > 0.
    """
    if gas_time is None:
        return None
    if (
        isinstance(gas_time, bool)
        or not isinstance(gas_time, int | float)
        or not math.isfinite(gas_time)
        or gas_time <= 0
    ):
        raise ServomexValidationError(
            f"the calibration gas time must be a number of seconds > 0, not {gas_time!r}"
        )
    return float(gas_time)


class CalibrationTracker:
    """Turns polled group states into the step sequence sampling → gas 1 → gas 2 → gas 1 → done.

    It is tolerant of polls that miss a short phase: seeing gas 2 before gas 1 jumps to the
    gas-2 step, and the group going idle after any calibrating phase means done. A group
    that is still idle right after the start (queued behind another group, or the valves
    not yet switched) stays in ``sampling``. ``gas_time`` (seconds each gas flows, when
    known) gives each gas phase its expected duration.
    """

    def __init__(self, group: int, gas_time: float | None = None) -> None:
        self.group = check_group(group)
        self.gas_time = check_gas_time(gas_time)
        self.step = 0
        self.stopped = False
        self._started = self._phase_started = time.monotonic()

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

    @property
    def elapsed(self) -> float:
        """Seconds since the calibration was requested."""
        return time.monotonic() - self._started

    @property
    def phase_elapsed(self) -> float:
        """Seconds since the current phase was first seen."""
        return time.monotonic() - self._phase_started

    @property
    def expected_phase_time(self) -> float | None:
        """Expected seconds of the current phase: ``gas_time`` for a gas phase, else ``None``."""
        if self.done or self.step not in _GAS_STEPS:
            return None
        return self.gas_time

    def remaining(self) -> float | None:
        """Expected seconds until done (``None`` when the gas time is unknown)."""
        if self.done:
            return 0.0
        if self.gas_time is None:
            return None
        if self.step not in _GAS_STEPS:  # sampling: every gas phase is still ahead
            return len(_GAS_STEPS) * self.gas_time
        later = _GAS_STEPS[-1] - self.step  # gas phases after this one
        return later * self.gas_time + max(0.0, self.gas_time - self.phase_elapsed)

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
        if self.step != before:
            self._phase_started = time.monotonic()
            return True
        return False

    def stop(self) -> None:
        """Mark the calibration stopped."""
        if not self.stopped:
            self.stopped = True
            self._phase_started = time.monotonic()

    def progress(self) -> CalibrationProgress:
        """The current progress as the codec's model."""
        return CalibrationProgress(
            group=self.group,
            phase=self.phase,
            fraction=1.0 if self.done and not self.stopped else self.fraction,
            elapsed=self.elapsed,
            remaining=self.remaining(),
        )


class ServomexCalibration(Device, Movable[int], Stoppable, Pausable):
    """The analyser's autocalibration: ``set(group, confirm=True)`` and ``stop()``.

    Children (actions, faked by ophyd-async in mock mode): ``start_group(group, confirm)``,
    ``stop_all(confirm)`` and ``group_phase(group) -> str`` (a :class:`CalPhase` value).
    ``poll_period`` is how often the group state is read while a calibration runs;
    ``gas_time`` (seconds each calibration gas flows, as set on the analyser's panel, or
    ``None`` when unknown) gives the progress bar each gas phase's expected duration.

    When the RunEngine pauses, it calls :meth:`stop` (the stop pulse) and then
    :meth:`pause`, which refuses the replay of the messages since the last checkpoint if
    that stop ended a calibration: a resumed plan must not send the ``set`` again and
    restart the gas behind the operator's back.
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
        gas_time: float | None = None,
        context: ErrorContext | None = None,
        name: str = "",
    ) -> None:
        self.start_group = Command(SessionCommandBackend(start, source=f"{source}#cal_start"))
        self.stop_all = Command(SessionCommandBackend(stop, source=f"{source}#cal_stop"))
        self.group_phase = Command(SessionCommandBackend(phase, source=f"{source}#cal_state"))
        self._protocol = protocol
        self._context = context or ErrorContext()
        self.poll_period = poll_period
        self.gas_time = check_gas_time(gas_time)
        self._status: WatchableAsyncStatus[Any] | None = None
        self._tracker: CalibrationTracker | None = None
        self._stop_requested = asyncio.Event()
        self._start_sent = False
        self._stop_sent = False
        self._stopped_running = False  # stop() ended a running calibration; pause() refuses
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
        gas_time: float | None = None,
    ) -> WatchableAsyncStatus[Any]:
        """Start autocalibration of group ``value`` (1–4) and report its progress.

        Raises before anything is sent: :class:`ServomexConfirmationRequiredError` unless
        ``confirm is True`` (exactly ``True``: a truthy ``"yes"`` or ``1`` does not
        confirm), :class:`ServomexValidationError` for a group outside 1–4 or a bad
        ``gas_time``, :class:`ServomexConfigurationError` while another calibration runs.
        The status fails with :class:`ServomexCapabilityError` in continuous mode (checked
        before any byte) and with :class:`ServomexTimeoutError` if ``timeout`` seconds
        pass (after sending the stop pulse). ``gas_time`` overrides :attr:`gas_time` for
        this calibration.
        """
        check_confirm(
            confirm, "autocalibration changes the process gas flow", context=self._context
        )
        group = check_group(value)
        expected = self.gas_time if gas_time is None else check_gas_time(gas_time)
        if self.running:
            raise ServomexConfigurationError(
                "a calibration is already running on this analyser", context=self._context
            )
        period = self.poll_period if poll_period is None else poll_period
        self._stop_requested = asyncio.Event()
        self._start_sent = False
        self._stop_sent = False
        self._stopped_running = False
        self._tracker = CalibrationTracker(group, expected)
        self._last = self._tracker.progress()
        status = WatchableAsyncStatus(self._run(self._tracker, period, timeout), name=self.name)
        self._status = status
        return status

    async def _run(
        self, tracker: CalibrationTracker, period: float, limit: float | None
    ) -> AsyncIterator[_Update]:
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
        try:
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
                tracker.observe(phase)
                yield self._update(tracker)
                if not tracker.done and deadline is not None and time.monotonic() > deadline:
                    raise ServomexTimeoutError(
                        f"calibration of group {tracker.group} did not finish within {limit} s "
                        f"(last phase {tracker.phase.value}); it is being stopped",
                        context=self._context,
                    )
        except BaseException:
            # Cancelled, timed out, a poll failed, or nobody iterates any more: the gas
            # may still flow, so stop it (shielded: a cancellation must not cut it short).
            if not tracker.done:
                tracker.stop()
                self._last = tracker.progress()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(self._send_stop())
            raise

    async def _send_stop(self) -> None:
        """The stop-all pulse, at most once per calibration, only after a confirmed start."""
        if not self._start_sent or self._stop_sent:
            return
        self._stop_sent = True
        try:
            await execute(self.stop_all, True)
        except Exception:
            _log.exception("the stop pulse for %s failed", self.name or "the calibration")
            raise

    def _update(self, tracker: CalibrationTracker) -> _Update:
        self._last = progress = tracker.progress()
        expected = tracker.expected_phase_time
        in_phase = tracker.phase_elapsed
        label = f"{self.name or 'calibration'} group {tracker.group}: {progress.phase.value}"
        return WatcherUpdate(
            current=round(in_phase, 3),
            initial=0.0,
            target=expected,
            name=label,
            unit="s",
            precision=1,
            fraction=progress.fraction,
            time_elapsed=progress.elapsed,
            time_remaining=progress.remaining,
        )

    async def stop(self, success: bool = True) -> None:
        """Stop a running calibration: the stop-all pulse, then the status finishes.

        Does nothing (sends nothing) when no calibration started here is running, so the
        RunEngine calling it at the end of every plan is harmless.
        """
        status = self._status
        if status is None or status.done:
            return
        self._stopped_running = True
        self._stop_requested.set()
        await self._send_stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(status.task), timeout=max(5.0, self.poll_period))

    def pause(self) -> None:
        """Called by the RunEngine when it pauses, after :meth:`stop`.

        Raises :class:`~bluesky.utils.NoReplayAllowed` when that stop ended a running
        calibration, so the messages since the last checkpoint (possibly the ``set`` that
        started it) are not replayed on resume; the waiting plan then finds the
        calibration stopped. Otherwise does nothing.
        """
        if self._stopped_running:
            self._stopped_running = False
            raise NoReplayAllowed(f"{self.name or 'the calibration'} was stopped by the pause")

    def resume(self) -> None:
        """Called by the RunEngine when it resumes: nothing to do (nothing restarts)."""
