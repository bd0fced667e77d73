"""The calibration plans: start an autocalibration, wait with progress, return the result.

:func:`calibrate` is the bare stub (no run of its own, so it composes into any plan);
:func:`calibration_run` wraps it in a run so the catalog keeps what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import MsgGenerator

from ..codec.errors import (
    ServomexCapabilityError,
    ServomexConfirmationRequiredError,
    ServomexValidationError,
)
from ..codec.models import CalibrationProgress, CalPhase, ProtocolKind
from ..devices import ServomexAnalyser
from ..devices.calibration import check_group
from .monitoring import monitor_stream_name

__all__ = ["calibrate", "calibration_run"]


def calibrate(
    analyser: ServomexAnalyser,
    group: int,
    *,
    confirm: bool = False,
    poll_period: float | None = None,
    timeout: float | None = None,
) -> MsgGenerator[CalibrationProgress]:
    """Run autocalibration of ``group`` (1–4) on ``analyser`` and return its final progress.

    The calibration runs as ``bps.abs_set(analyser.calibration, group, confirm=True,
    wait=True)``, so a RunEngine with ``waiting_hook=ProgressBarManager()`` draws its
    phases (sampling → gas 1 → gas 2 → gas 1 → done); pausing or aborting the plan stops it
    with the stop-all pulse. Nothing is sent, and the plan raises before yielding any
    message, without ``confirm=True`` (:class:`ServomexConfirmationRequiredError`) or for
    a group outside 1–4 (:class:`ServomexValidationError`); a continuous-mode analyser
    fails after one read of its configuration, before any write
    (:class:`ServomexCapabilityError`).
    """
    _check_request(analyser, group, confirm)
    yield from _check_modbus(analyser)
    options: dict[str, Any] = {"confirm": True}
    if poll_period is not None:
        options["poll_period"] = poll_period
    if timeout is not None:
        options["timeout"] = timeout
    yield from bps.abs_set(analyser.calibration, group, wait=True, **options)
    progress = analyser.calibration.last_progress
    if progress is None:  # only when the plan is list()-ed without a RunEngine
        progress = CalibrationProgress(group=group, phase=CalPhase.IDLE)
    return progress


def calibration_run(
    analyser: ServomexAnalyser,
    group: int,
    *,
    confirm: bool = False,
    poll_period: float | None = None,
    timeout: float | None = None,
    md: Mapping[str, Any] | None = None,
) -> MsgGenerator[str]:
    """One run around an autocalibration of ``group``, so the catalog keeps what happened.

    The ``primary`` stream holds one reading before and one after the calibration; the
    ``<name>_monitor`` stream holds every frame while it runs (Modbus: the background poll
    at the analyser's ``poll_rate_hz``), so the cal-group phases and the channels'
    calibrating flags can be replayed. The progress bar and the stop-on-abort behaviour are
    :func:`calibrate`'s; like it, this plan raises before yielding any message (so before
    any run is opened) without ``confirm=True`` or for a group outside 1–4, and a
    continuous-mode analyser fails before the run opens. Returns the run's uid.
    """
    _check_request(analyser, group, confirm)
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

    def body() -> MsgGenerator[None]:
        yield from bps.trigger_and_read([analyser])
        yield from bps.monitor(analyser, name=stream)
        yield from calibrate(
            analyser, group, confirm=True, poll_period=poll_period, timeout=timeout
        )
        yield from bps.unmonitor(analyser)
        yield from bps.trigger_and_read([analyser])

    run_wrapper = cast(Callable[..., MsgGenerator[str]], bpp.run_wrapper)
    uid: str = yield from run_wrapper(body(), md=metadata)
    return uid


def _check_request(analyser: ServomexAnalyser, group: int, confirm: bool) -> None:
    """Refuse, before any message, a calibration without confirm or of a bad group."""
    context = analyser.context
    if not confirm:
        raise ServomexConfirmationRequiredError(
            f"calibrating {analyser.name or 'the analyser'} injects calibration gas into the "
            "process: pass confirm=True",
            context=context,
        )
    try:
        check_group(group)
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
