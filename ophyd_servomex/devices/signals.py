"""Small helpers that build hub-backed signals and pull fields out of frames."""

from __future__ import annotations

import math
from collections.abc import Callable

from ophyd_async.core import SignalDatatypeT, SignalR

from ..codec.errors import ErrorContext
from ..codec.models import ChannelId, Reading, Unit
from .backends import FrameSignalBackend
from .hub import FrameHub, FrameSnapshot

__all__ = [
    "UNIT_PRECISION",
    "FrameSignalR",
    "find_reading",
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


def value_of(reading: Reading | None) -> float:
    """The reading's value, NaN when the analyser sent no number or the channel is absent."""
    if reading is None or reading.value is None:
        return math.nan
    return reading.value


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
    hub: FrameHub,
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
