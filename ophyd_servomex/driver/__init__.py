"""The async driver: one I/O owner per port, continuous and Modbus clients, AUTO detection,
``open_device`` and ``Analyzer``.

Layering: imports the codec and the transport (and anymodbus, only in ``modbus.py`` and
``modbus_line.py``); never ophyd, bluesky or tiled.
"""

from .analyzer import Analyzer, open_continuous, open_device
from .auto import (
    DetectionAttempt,
    DetectionResult,
    ProtocolDetectionError,
    detect_protocol,
    listen_window,
)
from .continuous import ContinuousClient
from .hub import DEFAULT_SUBSCRIBER_BUFFER, FrameHub, HubItem, Subscription
from .modbus import (
    DEFAULT_INTER_FRAME_IDLE,
    DEFAULT_RETRIES,
    LOOPBACK_PROBE,
    ModbusClient,
    ModbusLine,
    PulseResult,
    WireRecord,
)
from .owner import PortOwner
from .session import DEFAULT_STREAM_RATE, StreamingSession

__all__ = [
    "DEFAULT_INTER_FRAME_IDLE",
    "DEFAULT_RETRIES",
    "DEFAULT_STREAM_RATE",
    "DEFAULT_SUBSCRIBER_BUFFER",
    "LOOPBACK_PROBE",
    "Analyzer",
    "ContinuousClient",
    "DetectionAttempt",
    "DetectionResult",
    "FrameHub",
    "HubItem",
    "ModbusClient",
    "ModbusLine",
    "PortOwner",
    "ProtocolDetectionError",
    "PulseResult",
    "StreamingSession",
    "Subscription",
    "WireRecord",
    "detect_protocol",
    "listen_window",
    "open_continuous",
    "open_device",
]

# Multidrop manager and drift-free recording.
from .manager import DeviceErrors, DeviceResult, ErrorPolicy, ServomexManager
from .record import (
    DEFAULT_BUFFER_SIZE,
    AcquisitionSummary,
    OverflowPolicy,
    PollSource,
    Recording,
    RecordingStream,
    record,
)

__all__ += [
    "DEFAULT_BUFFER_SIZE",
    "AcquisitionSummary",
    "DeviceErrors",
    "DeviceResult",
    "ErrorPolicy",
    "OverflowPolicy",
    "PollSource",
    "Recording",
    "RecordingStream",
    "ServomexManager",
    "record",
]
