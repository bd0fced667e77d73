"""The analyser on the controls network: a FastCS IOC over the driver, serving PVA and CA.

``ophyd-servomex ioc --prefix SMX1: PORT`` (or ``--config FILE`` for several) runs it; an
ophyd-async client reads it with ``ServomexAnalyser("pva://SMX1:")``. See ``docs/facility.md``.

Layering: imports the driver and the codec (and the transport, to open a shared RS485
bus); never ophyd, ophyd-async, bluesky or tiled. FastCS is imported by the modules here,
so import this package only where an IOC runs.
"""

from .config import DEFAULT_POLL_PERIOD, AnalyserConfig, IocConfig, load_config
from .controller import AnalyserController, ChannelController, channel_alarm, flags_text
from .hooks import Alarm, AlarmedAttrR, AlarmKind, Severity
from .link import MAX_MISSES, Link
from .serve import build_controllers, serve

__all__ = [
    "DEFAULT_POLL_PERIOD",
    "MAX_MISSES",
    "Alarm",
    "AlarmKind",
    "AlarmedAttrR",
    "AnalyserConfig",
    "AnalyserController",
    "ChannelController",
    "IocConfig",
    "Link",
    "Severity",
    "build_controllers",
    "channel_alarm",
    "flags_text",
    "load_config",
    "serve",
]
