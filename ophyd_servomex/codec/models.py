"""The device model: channels, units, readings, frames and status, as frozen dataclasses.

Every decoder (continuous ASCII, Modbus register blocks) produces these types and every
higher layer consumes them, so a reading looks the same whichever mode the analyser is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .errors import ServomexValidationError

__all__ = [
    "AnalyserStatus",
    "Availability",
    "CalGroupState",
    "CalPhase",
    "CalibrationProgress",
    "Capability",
    "ChannelId",
    "ChannelInfo",
    "ChannelKind",
    "ChannelStatus",
    "DeviceInfo",
    "Frame",
    "ProtocolKind",
    "Reading",
    "SafetyTier",
    "Sample",
    "SerialSettings",
    "Unit",
    "UnitKind",
]

VPM_PER_PERCENT = 10_000.0


class ChannelKind(StrEnum):
    """What a channel slot measures."""

    TRANSDUCER = "transducer"
    DERIVED = "derived"
    EXTERNAL = "external"


class ChannelId(StrEnum):
    """The ten fixed channel slots, spelled as on the wire."""

    I1 = "I1"
    I2 = "I2"
    I3 = "I3"
    I4 = "I4"
    D1 = "D1"
    D2 = "D2"
    D3 = "D3"
    D4 = "D4"
    E1 = "E1"
    E2 = "E2"

    @property
    def kind(self) -> ChannelKind:
        """Transducer, derived or external input, from the first letter."""
        return _KIND_BY_LETTER[self.value[0]]

    @property
    def slot(self) -> int:
        """0-based position in the Modbus map (I1=0 … E2=9)."""
        return _SLOTS.index(self)

    @classmethod
    def parse(cls, value: str | ChannelId) -> ChannelId:
        """Accept ``"I1"``, ``"i1"`` or a ``ChannelId``; raise ``ServomexValidationError`` else."""
        if isinstance(value, ChannelId):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            raise ServomexValidationError(
                f"unknown channel {value!r}; expected one of {', '.join(c.value for c in cls)}"
            ) from None


_KIND_BY_LETTER = {"I": ChannelKind.TRANSDUCER, "D": ChannelKind.DERIVED, "E": ChannelKind.EXTERNAL}
_SLOTS: tuple[ChannelId, ...] = tuple(ChannelId)


class UnitKind(StrEnum):
    """The physical class of a unit."""

    CONCENTRATION = "concentration"
    CURRENT = "current"
    UNKNOWN = "unknown"


class Unit(StrEnum):
    """A channel's unit; the value is the display text."""

    PERCENT = "%"
    VPM = "vpm"
    PPM = "ppm"
    MILLIAMP = "mA"
    UNKNOWN = ""

    @property
    def kind(self) -> UnitKind:
        """Concentration, current or unknown."""
        if self in (Unit.PERCENT, Unit.VPM, Unit.PPM):
            return UnitKind.CONCENTRATION
        if self is Unit.MILLIAMP:
            return UnitKind.CURRENT
        return UnitKind.UNKNOWN

    @classmethod
    def from_text(cls, text: str) -> Unit:
        """Match wire text after trimming spaces and NULs, case-insensitively; never raises."""
        key = text.strip(" \x00").lower()
        return _UNIT_BY_TEXT.get(key, Unit.UNKNOWN)

    def convert(self, value: float, to: Unit) -> float:
        """Convert a concentration between %, vpm and ppm (1 % = 10 000 vpm)."""
        if self is to:
            return value
        factors = {Unit.PERCENT: VPM_PER_PERCENT, Unit.VPM: 1.0, Unit.PPM: 1.0}
        if self not in factors or to not in factors:
            raise ServomexValidationError(f"cannot convert {self.value!r} to {to.value!r}")
        return value * factors[self] / factors[to]


_UNIT_BY_TEXT = {"%": Unit.PERCENT, "vpm": Unit.VPM, "ppm": Unit.PPM, "ma": Unit.MILLIAMP}


class ProtocolKind(StrEnum):
    """The analyser's front-panel communication mode (AUTO asks the driver to find it)."""

    AUTO = "auto"
    CONTINUOUS_ASCII = "continuous"
    MODBUS_RTU = "modbus-rtu"
    MODBUS_ASCII = "modbus-ascii"

    @property
    def is_modbus(self) -> bool:
        """True for the two polled Modbus modes."""
        return self in (ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII)


class CalPhase(StrEnum):
    """Phase of an autocalibration group.

    Decoded frames use ``IDLE`` (sampling process gas, both modes), ``CAL_GAS_1`` and
    ``CAL_GAS_2``. A calibration in progress reported by a driver additionally passes
    through ``SAMPLING`` (requested, the analyser has not switched valves yet) and ends in
    ``DONE`` or ``STOPPED``.
    """

    IDLE = "idle"
    SAMPLING = "sampling"
    CAL_GAS_1 = "cal_gas_1"
    CAL_GAS_2 = "cal_gas_2"
    DONE = "done"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """Status flags of one channel. ``ok`` means no fault and no alarm active."""

    fault: bool = False
    maintenance: bool = False
    calibrating: bool = False
    warming_up: bool = False
    alarms: tuple[bool, bool, bool, bool] = (False, False, False, False)

    @property
    def ok(self) -> bool:
        """No fault and no alarm (maintenance, calibration and warm-up do not clear it)."""
        return not self.fault and not any(self.alarms)


@dataclass(frozen=True, slots=True)
class CalGroupState:
    """State of one autocalibration group (1–4)."""

    group: int
    phase: CalPhase = CalPhase.IDLE
    cal_gas: int | None = 1

    @property
    def calibrating(self) -> bool:
        """True while the group flows a calibration gas."""
        return self.phase in (CalPhase.CAL_GAS_1, CalPhase.CAL_GAS_2)


def _idle_groups() -> tuple[CalGroupState, CalGroupState, CalGroupState, CalGroupState]:
    return (CalGroupState(1), CalGroupState(2), CalGroupState(3), CalGroupState(4))


@dataclass(frozen=True, slots=True)
class AnalyserStatus:
    """Analyser-level status: fault, maintenance, the four cal groups and the analyser clock.

    ``clock`` is the analyser's own date and time (continuous mode only; it is often unset),
    ``clock_text`` the raw ``DD-MM-YY HH:MM:SS`` text when the date did not parse.
    """

    fault: bool = False
    maintenance: bool = False
    cal_groups: tuple[CalGroupState, CalGroupState, CalGroupState, CalGroupState] = field(
        default_factory=_idle_groups
    )
    clock: datetime | None = None
    clock_text: str | None = None

    @property
    def calibrating(self) -> bool:
        """True when any group calibrates."""
        return any(g.calibrating for g in self.cal_groups)

    def group(self, group: int) -> CalGroupState:
        """The state of group 1–4."""
        if not 1 <= group <= 4:
            raise ServomexValidationError(f"calibration group must be 1–4, not {group!r}")
        return self.cal_groups[group - 1]


@dataclass(frozen=True, slots=True)
class Reading:
    """One channel's reading in one frame.

    ``value`` is ``None`` when the analyser sent no number (over-range, blank, NaN);
    ``name`` is ``None`` for an unlabelled slot; ``unit_text`` keeps the trimmed wire text,
    so an unknown unit is not lost.
    """

    channel: ChannelId
    value: float | None
    name: str | None = None
    unit: Unit = Unit.UNKNOWN
    status: ChannelStatus = field(default_factory=ChannelStatus)
    unit_text: str = ""

    @property
    def populated(self) -> bool:
        """True when the slot carries a real name (the reference driver's rule)."""
        return self.name is not None

    def value_in(self, unit: Unit) -> float | None:
        """The value converted to another concentration unit (``%`` ↔ ``vpm``)."""
        return None if self.value is None else self.unit.convert(self.value, unit)


@dataclass(frozen=True, slots=True)
class Frame:
    """All channels of one analyser at one instant.

    ``timestamp`` is host time (``time.time()``) when the frame was received or, for
    Modbus, when the sweep finished; the analyser clock is in ``analyser.clock``.
    """

    readings: tuple[Reading, ...]
    analyser: AnalyserStatus = field(default_factory=AnalyserStatus)
    timestamp: float = 0.0
    protocol: ProtocolKind = ProtocolKind.CONTINUOUS_ASCII
    address: int | None = None
    raw: bytes | None = field(default=None, repr=False, compare=False)

    def channel(self, channel: str | ChannelId) -> Reading:
        """The reading of one channel (``"I1"`` or ``ChannelId.I1``)."""
        cid = ChannelId.parse(channel)
        for reading in self.readings:
            if reading.channel is cid:
                return reading
        raise ServomexValidationError(
            f"channel {cid.value} is not in this frame "
            f"(it has {', '.join(r.channel.value for r in self.readings) or 'none'})"
        )

    def __contains__(self, channel: object) -> bool:
        try:
            cid = ChannelId.parse(channel)  # type: ignore[arg-type]
        except ServomexValidationError:
            return False
        return any(r.channel is cid for r in self.readings)

    @property
    def channels(self) -> tuple[ChannelId, ...]:
        """The channel ids in wire order."""
        return tuple(r.channel for r in self.readings)

    @property
    def values(self) -> dict[ChannelId, float | None]:
        """Channel id → value, in wire order."""
        return {r.channel: r.value for r in self.readings}


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What ``identify()`` learnt about a channel slot."""

    channel: ChannelId
    name: str | None
    unit: Unit
    unit_text: str = ""

    @property
    def populated(self) -> bool:
        """True when the slot carries a real name."""
        return self.name is not None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Identity of one connected analyser."""

    port: str
    protocol: ProtocolKind
    address: int | None
    channels: tuple[ChannelInfo, ...]

    @property
    def populated(self) -> tuple[ChannelInfo, ...]:
        """Channels with a real name."""
        return tuple(c for c in self.channels if c.populated)


_BAUD_MIN, _BAUD_MAX = 2400, 19200


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Serial line settings; the analyser supports 2400–19200 baud, the bench ran 19200 8-N-1."""

    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    def __post_init__(self) -> None:
        if not _BAUD_MIN <= self.baudrate <= _BAUD_MAX:
            raise ServomexValidationError(
                f"baud rate {self.baudrate} outside the analyser's {_BAUD_MIN}–{_BAUD_MAX}"
            )
        if self.bytesize not in (7, 8):
            raise ServomexValidationError(f"byte size must be 7 or 8, not {self.bytesize}")
        if self.parity not in ("N", "E", "O"):
            raise ServomexValidationError(f"parity must be N, E or O, not {self.parity!r}")
        if self.stopbits not in (1, 2):
            raise ServomexValidationError(f"stop bits must be 1 or 2, not {self.stopbits}")

    @property
    def bits_per_char(self) -> int:
        """Bits on the wire per character (start + data + parity + stop)."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    def wire_time(self, nbytes: int) -> float:
        """Seconds that ``nbytes`` take on the wire at this setting."""
        return nbytes * self.bits_per_char / self.baudrate


@dataclass(frozen=True, slots=True)
class Sample:
    """One acquisition tick of one named source: a frame, or the error that replaced it."""

    name: str
    timestamp: float
    frame: Frame | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the sample carries a frame."""
        return self.frame is not None


class Capability(StrEnum):
    """What a connected analyser can do in its current mode."""

    READ = "read"
    STREAM = "stream"
    IDENTIFY = "identify"
    LOOPBACK = "loopback"
    CALIBRATE = "calibrate"


class SafetyTier(StrEnum):
    """How much an operation affects the process."""

    READ_ONLY = "read_only"
    PROCESS_AFFECTING = "process_affecting"


class Availability(StrEnum):
    """Whether a capability is usable now."""

    AVAILABLE = "available"
    UNSUPPORTED = "unsupported"


CAPABILITY_SAFETY: dict[Capability, SafetyTier] = {
    Capability.READ: SafetyTier.READ_ONLY,
    Capability.STREAM: SafetyTier.READ_ONLY,
    Capability.IDENTIFY: SafetyTier.READ_ONLY,
    Capability.LOOPBACK: SafetyTier.READ_ONLY,
    Capability.CALIBRATE: SafetyTier.PROCESS_AFFECTING,
}


def capabilities(protocol: ProtocolKind) -> dict[Capability, Availability]:
    """Which capabilities a protocol offers (continuous mode is read-only and cannot loop back)."""
    modbus = protocol.is_modbus
    return {
        cap: (
            Availability.AVAILABLE
            if modbus or cap in (Capability.READ, Capability.STREAM, Capability.IDENTIFY)
            else Availability.UNSUPPORTED
        )
        for cap in Capability
    }


@dataclass(frozen=True, slots=True)
class CalibrationProgress:
    """Progress of one group's autocalibration, as reported while it runs."""

    group: int
    phase: CalPhase
    fraction: float = 0.0
    elapsed: float = 0.0
    remaining: float | None = None

    def __post_init__(self) -> None:
        if math.isnan(self.fraction) or not 0.0 <= self.fraction <= 1.0:
            raise ServomexValidationError(f"fraction must be within 0–1, not {self.fraction}")

    @property
    def done(self) -> bool:
        """True when the calibration finished or was stopped."""
        return self.phase in (CalPhase.DONE, CalPhase.STOPPED)
