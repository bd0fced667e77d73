"""ophyd-async devices for Servomex SERVOPRO 4000-series analysers.

:class:`ServomexAnalyser` is the device to use; :class:`ServomexBus` shares one RS485
line between several analysers. The rest is the machinery behind them: the connector
that owns the driver session, the frames every signal reads, the backends, the
calibration ``Movable`` and the mock behaviour. :mod:`.status` documents each channel's
``status`` field and filters a run's rows by one of its flags.
"""

from .analyser import ChannelSpec, ServomexAnalyser
from .analyser_session import AnalyserSession, SessionFactory, device_session_factory
from .backends import FrameSignalBackend, SessionCommandBackend, SettingBackend, StateBackend
from .bus import ServomexBus
from .calibration import CALIBRATION_STEPS, CalibrationTracker, ServomexCalibration
from .channel import ServomexChannel
from .connector import ServomexConnector, select_channels
from .frames import DeviceFrames, FrameListener, FrameSnapshot
from .link import LinkState, ReconnectPolicy
from .mock import (
    BENCH_CHANNELS,
    BENCH_IDLE_VALUES,
    DEFAULT_MOCK_CHANNELS,
    MockAutocal,
    ServomexAnalyserMock,
)
from .signals import CalibrationPhase
from .status import (
    STATUS_FLAGS,
    STATUS_OK,
    has_flag,
    rows_with_flag,
    status_flags,
    status_mask,
    status_text,
)

__all__ = [
    "BENCH_CHANNELS",
    "BENCH_IDLE_VALUES",
    "CALIBRATION_STEPS",
    "DEFAULT_MOCK_CHANNELS",
    "STATUS_FLAGS",
    "STATUS_OK",
    "AnalyserSession",
    "CalibrationPhase",
    "CalibrationTracker",
    "ChannelSpec",
    "DeviceFrames",
    "FrameListener",
    "FrameSignalBackend",
    "FrameSnapshot",
    "LinkState",
    "MockAutocal",
    "ReconnectPolicy",
    "ServomexAnalyser",
    "ServomexAnalyserMock",
    "ServomexBus",
    "ServomexCalibration",
    "ServomexChannel",
    "ServomexConnector",
    "SessionCommandBackend",
    "SessionFactory",
    "SettingBackend",
    "StateBackend",
    "device_session_factory",
    "has_flag",
    "rows_with_flag",
    "select_channels",
    "status_flags",
    "status_mask",
    "status_text",
]
