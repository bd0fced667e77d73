"""Bluesky plans for Servomex analysers: calibration, broadcast monitoring, idle counting.

Every plan works on :class:`~ophyd_servomex.devices.ServomexAnalyser` devices, real or
connected in mock mode.
"""

from .calibration import calibrate, calibration_run
from .conditions import calibrating_groups, count_when_idle, wait_for_stable
from .monitoring import monitor_broadcast, monitor_stream_name

__all__ = [
    "calibrate",
    "calibrating_groups",
    "calibration_run",
    "count_when_idle",
    "monitor_broadcast",
    "monitor_stream_name",
    "wait_for_stable",
]
