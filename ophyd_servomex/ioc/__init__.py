"""The analyser on the controls network: a FastCS IOC over the driver, serving PVA and CA.

``ophyd-servomex ioc --prefix SMX1: PORT`` (or ``--config FILE`` for several) runs it; an
ophyd-async client reads it with ``ServomexAnalyser("pva://SMX1:")``. See ``docs/facility.md``.

Layering: imports the driver and the codec (and the transport, to open a shared RS485
bus); never ophyd, ophyd-async, bluesky or tiled. FastCS is imported by the modules here,
so import this package only where an IOC runs; it imports only FastCS's EPICS
transports (:mod:`.lean_import`).
"""

from . import lean_import

lean_import.install()  # before anything here imports FastCS

from .config import DEFAULT_POLL_PERIOD, AnalyserConfig, IocConfig, load_config  # noqa: E402
from .controller import AnalyserController, ChannelController, channel_alarm, flags_text  # noqa: E402
from .hooks import Alarm, AlarmedAttrR, AlarmKind, Severity  # noqa: E402
from .link import MAX_MISSES, Link  # noqa: E402
from .serve import build_controllers, serve  # noqa: E402

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
