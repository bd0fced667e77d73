"""Small helpers that build hub-backed signals and pull fields out of frames."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy
from ophyd_async.core import SignalDatatypeT, SignalR, StrictEnum

from ..codec.errors import ErrorContext
from ..codec.models import ChannelId, ProtocolKind, Reading, Unit
from .backends import FrameSignalBackend
from .frames import DeviceFrames, FrameSnapshot

__all__ = [
    "UNIT_PRECISION",
    "CalibrationPhase",
    "FrameSignalR",
    "find_reading",
    "float32_value",
    "frame_signal",
    "severity_of",
    "units_of",
    "value_of",
]

UNIT_PRECISION: dict[Unit, int] = {
    Unit.PERCENT: 3,
    Unit.VPM: 1,
    Unit.PPM: 1,
    Unit.MILLIAMP: 1,
}
"""Display precision per unit: what the continuous broadcast shows (3 decimals for %)."""


class CalibrationPhase(StrictEnum):
    """A calibration group's phase as the ``cal_group1`` … ``cal_group4`` fields report it
    (the values of :class:`~ophyd_servomex.codec.models.CalPhase`); being an ophyd-async
    ``StrictEnum``, ``describe()`` lists them as the data key's ``choices``."""

    IDLE = "idle"
    SAMPLING = "sampling"
    CAL_GAS_1 = "cal_gas_1"
    CAL_GAS_2 = "cal_gas_2"
    DONE = "done"
    STOPPED = "stopped"


def find_reading(snapshot: FrameSnapshot, channel: ChannelId) -> Reading | None:
    """The channel's reading in the snapshot's frame, or ``None`` if the frame lacks it."""
    for reading in snapshot.frame.readings:
        if reading.channel is channel:
            return reading
    return None


def units_of(unit: Unit, unit_text: str) -> str:
    """The units string for ``describe()``: the known unit, else the raw wire text."""
    return unit.value if unit is not Unit.UNKNOWN else unit_text


def severity_of(reading: Reading | None) -> int:
    """Alarm severity for a channel value: 2 (major) on fault, 1 (minor) on any alarm."""
    if reading is None:
        return 0
    if reading.status.fault:
        return 2
    return 1 if any(reading.status.alarms) else 0


def value_of(reading: Reading | None, protocol: ProtocolKind | None = None) -> float:
    """The reading's value, NaN when the analyser sent no number or the channel is absent.

    A Modbus value was a float32 register pair: it is given at float32's own precision,
    the shortest decimal that reads back as the same float32 (``20.378000259399414``,
    float32's nearest to 20.378, becomes ``20.378``), not with the digits the widening to
    a double made up. Continuous values are the analyser's decimal text and pass as they are.
    """
    if reading is None or reading.value is None:
        return math.nan
    if protocol in _FLOAT32_PROTOCOLS:
        return float32_value(reading.value)
    return reading.value


_FLOAT32_PROTOCOLS = frozenset({ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII})


def float32_value(value: float) -> float:
    """``value`` rounded to float32's meaningful precision: the shortest decimal that
    reads back as the same float32 (NaN and infinities pass unchanged)."""
    if not math.isfinite(value):
        return value
    return float(str(numpy.float32(value)))


class FrameSignalR(SignalR[SignalDatatypeT]):
    """A read-only signal over the frame hub that keeps a handle on its own backend.

    ``frame_backend`` stays the hub backend even in mock mode (when ophyd-async swaps the
    signal's live backend for a mock), so the device monitor can render a whole frame
    synchronously.
    """

    def __init__(self, backend: FrameSignalBackend[SignalDatatypeT], name: str = "") -> None:
        super().__init__(backend, timeout=None, name=name)
        self.frame_backend = backend


def frame_signal(
    datatype: type[SignalDatatypeT],
    hub: DeviceFrames,
    extract: Callable[[FrameSnapshot], SignalDatatypeT],
    *,
    source: str,
    default: SignalDatatypeT,
    units: str | None = None,
    precision: int | None = None,
    severity: Callable[[FrameSnapshot], int] | None = None,
    context: ErrorContext | None = None,
) -> FrameSignalR[SignalDatatypeT]:
    """A read-only signal whose value is one field of the hub's current frame."""
    backend = FrameSignalBackend(
        datatype,
        hub,
        extract,
        source=source,
        default=default,
        units=units,
        precision=precision,
        severity=severity,
        context=context,
    )
    return FrameSignalR(backend)
