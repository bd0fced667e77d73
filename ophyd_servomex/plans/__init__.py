"""Bluesky plans for Servomex analysers: calibration, broadcast monitoring, idle counting.

Every plan works on :class:`~ophyd_servomex.devices.ServomexAnalyser` devices, real or
connected in mock mode. :class:`CalibrationProgressManager` is a RunEngine
``waiting_hook`` that shows a calibration's phases, as plain lines when the output is not
a terminal.
"""

from ..devices.calibration import CalibrationStoppedError
from .calibration import CHECKPOINT_PERIOD, calibrate, calibration_run
from .conditions import calibrating_groups, count_when_idle, wait_for_stable
from .monitoring import monitor_broadcast, monitor_stream_name
from .progress import CalibrationProgressBar, CalibrationProgressManager, describe_update

__all__ = [
    "CHECKPOINT_PERIOD",
    "CalibrationProgressBar",
    "CalibrationProgressManager",
    "CalibrationStoppedError",
    "calibrate",
    "calibrating_groups",
    "calibration_run",
    "count_when_idle",
    "describe_update",
    "monitor_broadcast",
    "monitor_stream_name",
    "wait_for_stable",
]
