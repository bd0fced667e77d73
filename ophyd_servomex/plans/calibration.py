"""The calibration plan: start an autocalibration, wait with progress, return the result."""

from __future__ import annotations

from typing import Any

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

from ..codec.errors import (
    ServomexCapabilityError,
    ServomexConfirmationRequiredError,
    ServomexValidationError,
)
from ..codec.models import CalibrationProgress, CalPhase, ProtocolKind
from ..devices import ServomexAnalyser
from ..devices.calibration import check_group

__all__ = ["calibrate"]


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
    protocol = yield from bps.rd(analyser.protocol, default_value=ProtocolKind.MODBUS_RTU.value)
    kind = ProtocolKind(protocol)
    if not kind.is_modbus:
        raise ServomexCapabilityError(
            f"{analyser.name or 'the analyser'} is in {kind.value} mode, which cannot "
            "calibrate (switch it to Modbus on the front panel)",
            context=context.merged(protocol=kind.value),
        )
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
