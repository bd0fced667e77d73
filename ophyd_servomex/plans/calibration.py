"""The calibration plans: start an autocalibration, wait with progress, return the result.

:func:`calibrate` is the bare stub (no run of its own, so it composes into any plan);
:func:`calibration_run` wraps it in a run so the catalog keeps what happened.

While the calibration runs, the waiting plan reaches a checkpoint every
:data:`CHECKPOINT_PERIOD` seconds. bluesky's first Ctrl-C requests a *deferred* pause that
only takes effect at a checkpoint, so one Ctrl-C pauses the plan within about a second
(bluesky adds half a second of its own at the checkpoint), and pausing stops the
calibration: the RunEngine calls ``stop()`` on the calibration, which sends the stop-all
pulse. A resumed plan finds its calibration stopped and fails with
:class:`~ophyd_servomex.devices.calibration.CalibrationStoppedError` rather than carrying
on as if the analyser had been calibrated.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import MsgGenerator, RunEngineControlException

from ..codec.errors import ServomexCapabilityError, ServomexValidationError
from ..codec.models import CalibrationProgress, CalPhase, ProtocolKind
from ..devices import ServomexAnalyser
from ..devices.calibration import (
    CalibrationStoppedError,
    check_confirm,
    check_gas_time,
    check_group,
)
from .monitoring import monitor_stream_name

__all__ = ["CHECKPOINT_PERIOD", "calibrate", "calibration_run"]

CHECKPOINT_PERIOD = 0.1
"""Seconds between the checkpoints the waiting plan reaches while a calibration runs."""


def calibrate(
    analyser: ServomexAnalyser,
    group: int,
    *,
    confirm: bool = False,
    poll_period: float | None = None,
    timeout: float | None = None,
    gas_time: float | None = None,
) -> MsgGenerator[CalibrationProgress]:
    """Run autocalibration of ``group`` (1–4) on ``analyser`` and return its final progress.

    The calibration runs as ``bps.abs_set(analyser.calibration, group, confirm=True)``
    followed by short waits on its status with a checkpoint before each, so a RunEngine
    with ``waiting_hook=CalibrationProgressManager()`` (or bluesky's
    ``ProgressBarManager``) shows its phases (sampling → gas 1 → gas 2 → gas 1 → done), and
    one Ctrl-C stops the calibration gas within about a second: pausing, aborting or
    stopping the plan sends the stop-all pulse. A plan resumed after such a pause raises
    :class:`~ophyd_servomex.devices.calibration.CalibrationStoppedError`, as does any
    wait that finds the calibration stopped. ``gas_time`` is the seconds each calibration
    gas flows, as set on the analyser's panel, for the progress display only.

    Nothing is sent, and the plan raises before yielding any message, unless ``confirm``
    is exactly ``True`` (:class:`ServomexConfirmationRequiredError`: ``"true"``, ``1``
    or ``numpy.bool_(True)`` do not confirm) or for a group outside 1–4 or a bad
    ``gas_time`` (:class:`ServomexValidationError`); a continuous-mode analyser fails
    after one read of its configuration, before any write (:class:`ServomexCapabilityError`).
    """
    _check_request(analyser, group, confirm, gas_time)
    yield from _check_modbus(analyser)
    progress = yield from _calibrate(analyser, group, poll_period, timeout, gas_time)
    return progress


def _calibrate(
    analyser: ServomexAnalyser,
    group: int,
    poll_period: float | None,
    timeout: float | None,
    gas_time: float | None,
) -> MsgGenerator[CalibrationProgress]:
    """Start the (already checked and confirmed) calibration and wait for it at checkpoints."""
    options: dict[str, Any] = {"confirm": True}
    if poll_period is not None:
        options["poll_period"] = poll_period
    if timeout is not None:
        options["timeout"] = timeout
    if gas_time is not None:
        options["gas_time"] = gas_time
    calibration = analyser.calibration
    wait_group = f"calibration-{uuid.uuid4()}"  # its own group: never waited on before
    yield from bps.abs_set(calibration, group, group=wait_group, **options)
    try:
        done = False
        while not done:
            yield from bps.checkpoint()  # where one Ctrl-C (a deferred pause) takes effect
            done = yield from bps.wait(
                wait_group, timeout=CHECKPOINT_PERIOD, error_on_timeout=False
            )
            if done is None:  # no answer: a wait cut short by a pause, or no RunEngine
                if calibration.running:
                    continue  # a pause whose stop failed: keep waiting, at checkpoints
                break
    except Exception:
        # An abort, a stop or a failure while the gas flows: stop it now, not only when
        # the RunEngine gets round to stop() after the run is closed.
        yield from bps.stop(calibration)
        raise
    progress = calibration.last_progress
    if progress is None:  # only when the plan is list()-ed without a RunEngine
        progress = CalibrationProgress(group=group, phase=CalPhase.IDLE)
    if progress.phase is CalPhase.STOPPED:
        raise CalibrationStoppedError(
            f"the calibration of group {group} on {analyser.name or 'the analyser'} was "
            f"stopped after {progress.elapsed:.1f} s, before it finished; it has not "
            "calibrated the analyser",
            context=analyser.context,
        )
    return progress


def calibration_run(
    analyser: ServomexAnalyser,
    group: int,
    *,
    confirm: bool = False,
    poll_period: float | None = None,
    timeout: float | None = None,
    gas_time: float | None = None,
    md: Mapping[str, Any] | None = None,
) -> MsgGenerator[str]:
    """One run around an autocalibration of ``group``, so the catalog keeps what happened.

    The ``primary`` stream holds one reading before and one after the calibration; the
    ``<name>_monitor`` stream holds every frame while it runs (Modbus: the background poll
    at the analyser's ``poll_rate_hz``), so the cal-group phases and the channels'
    calibrating flags can be replayed. The progress display and the stop-on-Ctrl-C,
    stop-on-abort behaviour are :func:`calibrate`'s. A run whose calibration did not
    finish never ends as ``success``: aborted, it ends ``abort``; stopped with
    ``RE.stop()``, also ``abort`` (bluesky would call that a success); resumed after a
    pause, ``fail`` with :class:`~ophyd_servomex.devices.calibration.CalibrationStoppedError`.
    Like :func:`calibrate`, this plan raises before yielding any message (so before any
    run is opened) unless ``confirm is True`` or for a group outside 1–4, and a
    continuous-mode analyser fails before the run opens. Returns the run's uid.
    """
    _check_request(analyser, group, confirm, gas_time)
    yield from _check_modbus(analyser)  # before the run opens: no failed run left behind
    stream = monitor_stream_name(analyser)
    metadata: dict[str, Any] = {
        "plan_name": "calibrate",
        "detectors": [analyser.name],
        "plan_args": {"analyser": repr(analyser), "group": group},
        "calibration_group": group,
        "hints": {"monitors": [stream]},
    }
    metadata.update(md or {})
    finished = False

    def body() -> MsgGenerator[None]:
        nonlocal finished
        yield from bps.trigger_and_read([analyser])
        yield from bps.monitor(analyser, name=stream)
        yield from _calibrate(analyser, group, poll_period, timeout, gas_time)
        finished = True
        yield from bps.unmonitor(analyser)
        yield from bps.trigger_and_read([analyser])

    def close_unfinished(exc: Exception) -> MsgGenerator[None]:
        if isinstance(exc, RunEngineControlException):
            status = getattr(exc, "exit_status", "abort")
            reason = None
            if not finished and status == "success":
                status = "abort"
                reason = f"stopped during the calibration of group {group}; it did not finish"
            yield from bps.close_run(exit_status=status, reason=reason)
        else:
            yield from bps.close_run(exit_status="fail", reason=str(exc))

    def wrapped() -> MsgGenerator[str]:
        uid: str = yield from bps.open_run(metadata)
        contingency = cast(Callable[..., MsgGenerator[None]], bpp.contingency_wrapper)
        yield from contingency(body(), except_plan=close_unfinished, else_plan=bps.close_run)
        return uid

    uid: str = yield from wrapped()
    return uid


def _check_request(
    analyser: ServomexAnalyser, group: int, confirm: object, gas_time: object = None
) -> None:
    """Refuse, before any message, a calibration without ``confirm is True`` or of a bad group."""
    context = analyser.context
    check_confirm(
        confirm,
        f"calibrating {analyser.name or 'the analyser'} injects calibration gas into the process",
        context=context,
    )
    try:
        check_group(group)
        check_gas_time(gas_time)
    except ServomexValidationError as exc:
        raise exc.with_context(port=context.port, address=context.address) from None


def _check_modbus(analyser: ServomexAnalyser) -> MsgGenerator[None]:
    """Fail with :class:`ServomexCapabilityError` unless the analyser speaks Modbus."""
    protocol = yield from bps.rd(analyser.protocol, default_value=ProtocolKind.MODBUS_RTU.value)
    kind = ProtocolKind(protocol)
    if not kind.is_modbus:
        raise ServomexCapabilityError(
            f"{analyser.name or 'the analyser'} is in {kind.value} mode, which cannot "
            "calibrate (switch it to Modbus on the front panel)",
            context=analyser.context.merged(protocol=kind.value),
        )
