"""The device model: channels, units, readings, frames and status, as frozen dataclasses.

Every decoder (continuous ASCII, Modbus register blocks) produces these types and every
higher layer consumes them, so a reading looks the same whichever mode the analyser is in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Flag, IntEnum, StrEnum, auto
from types import MappingProxyType
from typing import Any

from .checks import check_group
from .errors import ServomexError, ServomexValidationError

__all__ = [
    "MAX_BAUD",
    "AnalyserStatus",
    "Availability",
    "ByteSize",
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
    "Parity",
    "ProtocolKind",
    "Reading",
    "SafetyTier",
    "Sample",
    "SerialSettings",
    "StopBits",
    "StreamMode",
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

    @classmethod
    def parse(cls, value: str | ProtocolKind) -> ProtocolKind:
        """Accept a ``ProtocolKind``, its value, or the short names users type.

        ``"rtu"``, ``"ascii"``, ``"continuous"``, ``"auto"`` (any case, ``_`` or ``-``) as
        well as ``"modbus-rtu"``, ``"modbus-ascii"``, ``"continuous-ascii"`` and the member
        names; anything else is a :class:`ServomexValidationError` listing the choices.
        """
        if isinstance(value, ProtocolKind):
            return value
        key = str(value).strip().lower().replace("_", "-") if isinstance(value, str) else None
        kind = _PROTOCOL_ALIASES.get(key) if key is not None else None
        if kind is None:
            raise ServomexValidationError(
                f"unknown protocol {value!r}; expected one of "
                "auto, continuous, rtu (modbus-rtu), ascii (modbus-ascii)"
            )
        return kind


_PROTOCOL_ALIASES: dict[str, ProtocolKind] = {
    "auto": ProtocolKind.AUTO,
    "continuous": ProtocolKind.CONTINUOUS_ASCII,
    "continuous-ascii": ProtocolKind.CONTINUOUS_ASCII,
    "rtu": ProtocolKind.MODBUS_RTU,
    "modbus-rtu": ProtocolKind.MODBUS_RTU,
    "ascii": ProtocolKind.MODBUS_ASCII,
    "modbus-ascii": ProtocolKind.MODBUS_ASCII,
}


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
        return self.cal_groups[check_group(group) - 1]


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

    def __format__(self, spec: str) -> str:
        """A non-empty spec formats :attr:`value` (``f"{r:.2f}"``); ``f"{r}"`` is the repr.

        An over-range reading (``value`` is ``None``) formats as ``"None"`` for any spec.
        """
        if not spec:
            return repr(self)
        if self.value is None:
            return format("None", _text_spec(spec))
        return format(self.value, spec)

    def as_dict(self) -> dict[str, Any]:
        """The reading as one flat row for tables, CSV and JSON lines (content only).

        Keys: ``channel``, ``name``, ``value``, ``unit``, ``fault``, ``maintenance``,
        ``calibrating``, ``warming_up``, ``alarm1`` … ``alarm4``; flags are ``0``/``1``.
        """
        st = self.status
        row: dict[str, Any] = {
            "channel": self.channel.value,
            "name": self.name,
            "value": self.value,
            "unit": self.unit.value or self.unit_text,
            "fault": int(st.fault),
            "maintenance": int(st.maintenance),
            "calibrating": int(st.calibrating),
            "warming_up": int(st.warming_up),
        }
        for index, alarm in enumerate(st.alarms, start=1):
            row[f"alarm{index}"] = int(alarm)
        return row


def _text_spec(spec: str) -> str:
    """The width/alignment part of a numeric format spec, usable on a string."""
    width = ""
    for ch in spec:
        if ch in "<>^" or ch.isdigit():
            width += ch
        elif ch in ".,_":
            break
    return width.lstrip("0") if not width.startswith(("<", ">", "^")) else width


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
    monotonic_ns: int | None = field(default=None, repr=False, compare=False)
    """``time.monotonic_ns()`` when the frame was received (set by the driver)."""

    def as_samples(
        self,
        device: str = "",
        *,
        requested_at: datetime | None = None,
        latency_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Sample]:
        """Fan the frame out into one long-format :class:`Sample` per reading, in wire order.

        ``device`` names the analyser (a port or a manager name); ``requested_at`` and
        ``latency_s`` are for polled frames (``None`` for a broadcast: nobody asked).
        """
        received_at = datetime.fromtimestamp(self.timestamp or time.time(), UTC)
        mono = self.monotonic_ns if self.monotonic_ns is not None else time.monotonic_ns()
        meta: Mapping[str, Any] = MappingProxyType(dict(metadata)) if metadata else _EMPTY_METADATA
        return [
            Sample(
                device=device,
                channel=reading.channel,
                reading=reading,
                protocol=self.protocol,
                monotonic_ns=mono,
                received_at=received_at,
                requested_at=requested_at,
                latency_s=latency_s,
                metadata=meta,
            )
            for reading in self.readings
        ]

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


MIN_BAUD = 2400
"""The slowest rate the analyser offers."""
MAX_BAUD = 19200
"""The fastest rate the analyser offers (and the default: the bench unit runs 19200 8-N-1)."""


class ByteSize(IntEnum):
    """Data bits per character."""

    SEVEN = 7
    EIGHT = 8


class Parity(StrEnum):
    """Parity bit; the value is the usual one-letter code (``8N1``)."""

    NONE = "N"
    EVEN = "E"
    ODD = "O"


class StopBits(IntEnum):
    """Stop bits per character."""

    ONE = 1
    TWO = 2


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Serial framing of one port (frozen). Default 19200 baud, 8-N-1, exclusive.

    The analyser offers 2400–19200 baud. ``exclusive`` takes the OS's hold on the port
    (``flock`` and ``TIOCEXCL``) so no other program can read from it meanwhile.
    """

    port: str
    baudrate: int = MAX_BAUD
    bytesize: ByteSize = ByteSize.EIGHT
    parity: Parity = Parity.NONE
    stopbits: StopBits = StopBits.ONE
    rtscts: bool = False
    xonxoff: bool = False
    exclusive: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.port, str):
            raise ServomexValidationError(f"port must be a string, not {self.port!r}")
        if (
            isinstance(self.baudrate, bool)
            or not isinstance(self.baudrate, int)
            or not MIN_BAUD <= self.baudrate <= MAX_BAUD
        ):
            raise ServomexValidationError(
                f"baud rate {self.baudrate!r} outside the analyser's {MIN_BAUD}–{MAX_BAUD}"
            )
        object.__setattr__(self, "bytesize", _member(ByteSize, self.bytesize, "byte size"))
        object.__setattr__(self, "parity", _member(Parity, self.parity, "parity"))
        object.__setattr__(self, "stopbits", _member(StopBits, self.stopbits, "stop bits"))

    @property
    def bits_per_char(self) -> int:
        """Bits on the wire per character (start + data + parity + stop)."""
        return 1 + int(self.bytesize) + (0 if self.parity is Parity.NONE else 1) + self.stopbits

    def wire_time(self, nbytes: int) -> float:
        """Seconds that ``nbytes`` take on the wire at this setting."""
        return nbytes * self.bits_per_char / self.baudrate


def _member[E: (ByteSize, Parity, StopBits)](kind: type[E], value: object, what: str) -> E:
    try:
        text = value.upper() if isinstance(value, str) else value
        return kind(text)  # type: ignore[arg-type]
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise ServomexValidationError(f"{what} must be one of {choices}, not {value!r}") from None


def _empty_metadata() -> Mapping[str, Any]:
    """The shared, read-only empty metadata mapping of a :class:`Sample`."""
    return _EMPTY_METADATA


_EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Sample:
    """One long-format row: one channel's reading with where and when it came from.

    ``requested_at`` and ``latency_s`` are ``None`` for a broadcast (nobody asked).
    ``error`` is set when a frame was lost (dropped, corrupt, timed out): ``reading`` and
    ``channel`` are then ``None``, since a lost frame belongs to no one channel.
    ``metadata`` is frozen read-only.
    """

    device: str
    channel: ChannelId | None
    reading: Reading | None
    protocol: ProtocolKind
    monotonic_ns: int
    received_at: datetime
    requested_at: datetime | None = None
    latency_s: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=_empty_metadata)
    error: ServomexError | None = None

    def __post_init__(self) -> None:
        if (self.reading is None) == (self.error is None):
            raise ServomexValidationError(
                "a Sample carries either a reading or an error, not "
                + ("both" if self.reading is not None else "neither")
            )
        metadata = self.metadata
        if metadata is not _EMPTY_METADATA:
            frozen = MappingProxyType(dict(metadata)) if metadata else _EMPTY_METADATA
            object.__setattr__(self, "metadata", frozen)

    @classmethod
    def failed(
        cls,
        device: str,
        error: ServomexError,
        protocol: ProtocolKind,
        *,
        requested_at: datetime | None = None,
        latency_s: float | None = None,
    ) -> Sample:
        """The sample standing for a frame that was lost to ``error``."""
        return cls(
            device=device,
            channel=None,
            reading=None,
            protocol=protocol,
            monotonic_ns=time.monotonic_ns(),
            received_at=datetime.now(UTC),
            requested_at=requested_at,
            latency_s=latency_s,
            error=error,
        )

    @property
    def ok(self) -> bool:
        """True when the sample carries a reading."""
        return self.error is None

    @property
    def value(self) -> float | None:
        """The reading's value (``None`` for an error sample or an over-range reading)."""
        return None if self.reading is None else self.reading.value

    @property
    def unit(self) -> Unit | None:
        """The reading's unit (``None`` for an error sample)."""
        return None if self.reading is None else self.reading.unit

    @property
    def name(self) -> str | None:
        """The channel's display name (``None`` for an error sample or unlabelled slot)."""
        return None if self.reading is None else self.reading.name

    @property
    def timestamp(self) -> float:
        """``received_at`` as seconds since the epoch."""
        return self.received_at.timestamp()


class StreamMode(StrEnum):
    """How :meth:`Analyzer.stream` gets its samples."""

    AUTOPRINT = "autoprint"
    """Continuous mode: listen to the analyser's own broadcast (passive; no rate)."""
    POLL = "poll"
    """Modbus modes: poll on a drift-free schedule at ``rate_hz``."""


class Capability(Flag):
    """What an analyser can do in its current mode, as a set of flags.

    Continuous mode offers ``READ | STREAM | IDENTIFY``; the Modbus modes offer everything
    (:data:`Capability.ALL`). Each operation is checked against the active set.
    """

    READ = auto()
    STREAM = auto()
    IDENTIFY = auto()
    LOOPBACK = auto()
    CALIBRATE = auto()
    ALL = READ | STREAM | IDENTIFY | LOOPBACK | CALIBRATE


class SafetyTier(StrEnum):
    """How much an operation affects the process.

    ``STATEFUL`` operations (autocalibration) change the analyser's gas flow: they need
    ``confirm=True`` (exactly ``True``) and are refused before any byte is sent otherwise.
    """

    READ_ONLY = "read_only"
    STATEFUL = "stateful"
    PROCESS_AFFECTING = "stateful"  # the older name of STATEFUL (an alias)


class Availability(StrEnum):
    """Whether a capability is known present, known absent, or not probed yet."""

    AVAILABLE = "available"
    UNSUPPORTED = "unsupported"
    UNPROBED = "unprobed"


CAPABILITY_SAFETY: dict[Capability, SafetyTier] = {
    Capability.READ: SafetyTier.READ_ONLY,
    Capability.STREAM: SafetyTier.READ_ONLY,
    Capability.IDENTIFY: SafetyTier.READ_ONLY,
    Capability.LOOPBACK: SafetyTier.READ_ONLY,
    Capability.CALIBRATE: SafetyTier.STATEFUL,
}

_CONTINUOUS_CAPABILITIES = Capability.READ | Capability.STREAM | Capability.IDENTIFY


def capability_set(protocol: ProtocolKind) -> Capability:
    """The capabilities a protocol offers (``AUTO``: none known yet)."""
    if protocol.is_modbus:
        return Capability.ALL
    if protocol is ProtocolKind.CONTINUOUS_ASCII:
        return _CONTINUOUS_CAPABILITIES
    return Capability(0)


def capabilities(protocol: ProtocolKind) -> dict[Capability, Availability]:
    """Each single capability's availability for a protocol (``AUTO``: unprobed)."""
    offered = capability_set(protocol)
    return {
        cap: (
            Availability.UNPROBED
            if protocol is ProtocolKind.AUTO
            else Availability.AVAILABLE
            if cap in offered
            else Availability.UNSUPPORTED
        )
        for cap in _SINGLE_CAPABILITIES
    }


_SINGLE_CAPABILITIES = (
    Capability.READ,
    Capability.STREAM,
    Capability.IDENTIFY,
    Capability.LOOPBACK,
    Capability.CALIBRATE,
)


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
