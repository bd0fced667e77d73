"""The Modbus register map of the SERVOPRO 4000 series, as pure encode/decode functions.

Addresses here are **PDU addresses** (what goes on the wire), not the manual's
0xxxx/1xxxx/3xxxx data-model numbers (PROTOCOL.md §5.2):

* input registers (FC04) 0–69: seven per channel slot — value (float32, 2 registers),
  name (6 display bytes, 3 registers), unit (3 characters + NUL, 2 registers); the I, D and
  E blocks start at 0, 28 and 56 (§5.3);
* discrete inputs (FC02) 0–79: eight status bits per slot (§5.5), and 1000–1015 for the
  analyser (fault, maintenance, the autocal groups, §5.6);
* coils (FC05, read back with FC01) 0–3 start autocal groups 1–4, 8 stops them all (§5.7).

A whole poll is three reads (:data:`FULL_SWEEP`); :func:`gap_free_plan` gives the fallback
that reads only some slots, and :func:`banks_from_responses` assembles either into
:class:`RegisterBanks`, which :func:`decode_banks` turns into a :class:`Frame`.
:func:`encode_banks` is the reverse, for the simulated analyser.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from .charset import decode_display, encode_display
from .errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexFrameError,
    ServomexValidationError,
)
from .models import (
    AnalyserStatus,
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelKind,
    ChannelStatus,
    Frame,
    ProtocolKind,
    Reading,
    Unit,
)

__all__ = [
    "ANALYSER_DISCRETE_COUNT",
    "ANALYSER_DISCRETE_START",
    "ANALYSER_FAULT_DISCRETE",
    "ANALYSER_MAINTENANCE_DISCRETE",
    "BLOCK_BASES",
    "CAL_GROUP_DISCRETES",
    "CAL_START_COIL",
    "CAL_STOP_COIL",
    "CHANNEL_BITS",
    "CHANNEL_DISCRETE_COUNT",
    "CHANNEL_REGISTERS",
    "FULL_SWEEP",
    "INPUT_REGISTER_COUNT",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "NAME_BYTES",
    "NAME_OFFSET",
    "NAME_REGISTERS",
    "REGISTERS_PER_CHANNEL",
    "UNIT_BYTES",
    "UNIT_OFFSET",
    "UNIT_REGISTERS",
    "UNLABELLED_NAME",
    "VALUE_OFFSET",
    "VALUE_REGISTERS",
    "CalGroupBits",
    "ChannelRegisters",
    "ReadRequest",
    "RegisterBanks",
    "analyser_status_from_bits",
    "banks_from_responses",
    "bits_from_analyser_status",
    "bits_from_status",
    "bytes_to_registers",
    "decode_banks",
    "decode_name",
    "decode_unit",
    "encode_banks",
    "encode_name",
    "encode_unit",
    "float_to_registers",
    "gap_free_plan",
    "name_from_text",
    "registers_to_bytes",
    "registers_to_float",
    "status_from_bits",
]

# --- layout constants ----------------------------------------------------------------------

REGISTERS_PER_CHANNEL = 7
"""Input registers per channel slot: value (2) + name (3) + unit (2)."""
VALUE_OFFSET, VALUE_REGISTERS = 0, 2
NAME_OFFSET, NAME_REGISTERS, NAME_BYTES = 2, 3, 6
UNIT_OFFSET, UNIT_REGISTERS, UNIT_BYTES = 5, 2, 4
INPUT_REGISTER_COUNT = 70
"""FC04 registers 0–69 cover all ten slots."""

BLOCK_BASES: Mapping[ChannelKind, int] = MappingProxyType(
    {ChannelKind.TRANSDUCER: 0, ChannelKind.DERIVED: 28, ChannelKind.EXTERNAL: 56}
)
"""First input register (PDU) of the I, D and E blocks."""

CHANNEL_BITS = 8
"""Status discrete inputs per channel slot."""
CHANNEL_DISCRETE_COUNT = 80
"""FC02 discretes 0–79 cover all ten slots."""

ANALYSER_DISCRETE_START = 1000
"""PDU address of data-model 11001 (offset from 10001, not 11001: PROTOCOL.md §5.2)."""
ANALYSER_DISCRETE_COUNT = 16
ANALYSER_FAULT_DISCRETE = 1000
ANALYSER_MAINTENANCE_DISCRETE = 1001

CAL_START_COIL: Mapping[int, int] = MappingProxyType({1: 0, 2: 1, 3: 2, 4: 3})
"""Coil (PDU) whose 0 → 1 transition starts autocal group 1–4."""
CAL_STOP_COIL = 8
"""Coil (PDU) whose 0 → 1 transition stops all autocalibration."""

MAX_READ_REGISTERS = 125
"""Modbus limit on registers per FC03/FC04 request."""
MAX_READ_BITS = 2000
"""Modbus limit on bits per FC01/FC02 request."""

UNLABELLED_NAME = b"||||||"
"""The name bytes of a slot without a label (what continuous mode shows for E1/E2)."""

_BLANK_NAME = b" " * NAME_BYTES
_BLANK_UNIT = b"\x00" * UNIT_BYTES
_NAME_FILLER = frozenset(" \x00|")


@dataclass(frozen=True, slots=True)
class CalGroupBits:
    """PDU addresses of one autocal group's two analyser discretes."""

    calibrating: int
    """1 while the group calibrates, 0 while it samples process gas."""
    gas: int
    """Which calibration gas: 0 = gas 1, 1 = gas 2."""


CAL_GROUP_DISCRETES: Mapping[int, CalGroupBits] = MappingProxyType(
    {
        1: CalGroupBits(calibrating=1008, gas=1009),
        2: CalGroupBits(calibrating=1010, gas=1011),
        3: CalGroupBits(calibrating=1012, gas=1013),
        4: CalGroupBits(calibrating=1014, gas=1015),
    }
)
"""The autocal bit layout: pairs interleaved by group (the reference driver's reading).

The manual's layout is unconfirmed (PROTOCOL.md §5.6, §12 #7): only all-zero idle bits
were ever read. Every decoder and encoder here goes through this one table, so a
different layout is a change to these eight numbers.
"""


# --- the channel registry ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelRegisters:
    """PDU addresses of one channel slot.

    ``value``, ``name`` and ``unit`` are the first FC04 input register of each field,
    ``status`` the first of the slot's eight FC02 discrete inputs.
    """

    channel: ChannelId
    value: int
    name: int
    unit: int
    status: int

    @property
    def input_span(self) -> range:
        """The slot's seven input registers."""
        return range(self.value, self.value + REGISTERS_PER_CHANNEL)

    @property
    def status_span(self) -> range:
        """The slot's eight status discretes."""
        return range(self.status, self.status + CHANNEL_BITS)


def _registers_for(channel: ChannelId) -> ChannelRegisters:
    index = int(channel.value[1]) - 1
    value = BLOCK_BASES[channel.kind] + REGISTERS_PER_CHANNEL * index
    return ChannelRegisters(
        channel=channel,
        value=value + VALUE_OFFSET,
        name=value + NAME_OFFSET,
        unit=value + UNIT_OFFSET,
        status=CHANNEL_BITS * channel.slot,
    )


# The manual's tables (§5.3, §5.5) in data-model numbers: value register (3xxxx) and first
# status discrete (1xxxx). The generated registry must agree with them.
_MANUAL_TABLE: Mapping[ChannelId, tuple[int, int]] = {
    ChannelId.I1: (30001, 10001),
    ChannelId.I2: (30008, 10009),
    ChannelId.I3: (30015, 10017),
    ChannelId.I4: (30022, 10025),
    ChannelId.D1: (30029, 10033),
    ChannelId.D2: (30036, 10041),
    ChannelId.D3: (30043, 10049),
    ChannelId.D4: (30050, 10057),
    ChannelId.E1: (30057, 10065),
    ChannelId.E2: (30064, 10073),
}


def _check_registry(registry: Mapping[ChannelId, ChannelRegisters]) -> None:
    """Refuse a registry that overlaps, leaves gaps or disagrees with the manual's tables."""

    def fail(message: str, channel: ChannelId | None = None) -> None:
        raise ServomexConfigurationError(
            f"Modbus register map is inconsistent: {message}",
            context=ErrorContext(channel=None if channel is None else channel.value),
        )

    if tuple(registry) != tuple(ChannelId):
        fail("the registry must list all ten slots in slot order")
    registers = sorted(r for regs in registry.values() for r in regs.input_span)
    if registers != list(range(INPUT_REGISTER_COUNT)):
        fail(f"input registers must cover 0–{INPUT_REGISTER_COUNT - 1} exactly once")
    bits = sorted(b for regs in registry.values() for b in regs.status_span)
    if bits != list(range(CHANNEL_DISCRETE_COUNT)):
        fail(f"status discretes must cover 0–{CHANNEL_DISCRETE_COUNT - 1} exactly once")
    for channel, regs in registry.items():
        value_number, status_number = _MANUAL_TABLE[channel]
        if regs.value != value_number - 30001 or regs.status != status_number - 10001:
            fail(f"{channel.value} disagrees with the manual's table", channel)
        if (regs.name, regs.unit) != (regs.value + NAME_OFFSET, regs.value + UNIT_OFFSET):
            fail(f"{channel.value} name/unit are not at +2/+5", channel)
    group_bits = sorted(b for g in CAL_GROUP_DISCRETES.values() for b in (g.calibrating, g.gas))
    if sorted(CAL_GROUP_DISCRETES) != [1, 2, 3, 4] or group_bits != list(range(1008, 1016)):
        fail("the autocal groups must use discretes 1008–1015 once each")


CHANNEL_REGISTERS: Mapping[ChannelId, ChannelRegisters] = MappingProxyType(
    {channel: _registers_for(channel) for channel in ChannelId}
)
"""PDU addresses of every channel slot, generated from the block strides and checked."""
_check_registry(CHANNEL_REGISTERS)


# --- floats --------------------------------------------------------------------------------


def _check_register(value: int, what: str = "register") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ServomexValidationError(f"{what} must be an integer 0–0xFFFF, not {value!r}")
    return value


def float_to_registers(x: float) -> tuple[int, int]:
    """Encode a float as IEEE-754 binary32 in two registers, high word first.

    The value is rounded to float32 precision; NaN and ±inf are encoded as such. A finite
    value too large for float32 raises :class:`ServomexValidationError`.

    >>> [hex(r) for r in float_to_registers(20.378)]
    ['0x41a3', '0x625']
    """
    try:
        hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    except (OverflowError, struct.error) as exc:
        raise ServomexValidationError(f"{x!r} cannot be encoded as float32: {exc}") from None
    return hi, lo


def registers_to_float(hi: int, lo: int) -> float | None:
    """Decode two registers (high word first) as IEEE-754 binary32.

    Returns ``None`` for NaN **and for ±infinity**: the analyser is not known to send
    either (PROTOCOL.md §5.4, §12 #10), and neither is a measurement, so both read as "no
    value" like an over-range continuous field.
    """
    raw = struct.pack(">HH", _check_register(hi), _check_register(lo))
    (value,) = struct.unpack(">f", raw)
    result = float(value)
    return None if math.isnan(result) or math.isinf(result) else result


# --- strings -------------------------------------------------------------------------------


def registers_to_bytes(regs: Iterable[int]) -> bytes:
    """Two bytes per register, the high byte first (the first character is in the high byte)."""
    return b"".join(_check_register(r).to_bytes(2, "big") for r in regs)


def bytes_to_registers(data: bytes, count: int, *, pad: bytes = b"\x00") -> tuple[int, ...]:
    """Pack ``data`` into ``count`` registers, high byte first, padding the end with ``pad``.

    Callers choose the analyser's padding: names pad with spaces (see :func:`encode_name`),
    units carry their own NUL (:func:`encode_unit`). Data longer than ``2 * count`` bytes
    raises :class:`ServomexValidationError`.
    """
    size = 2 * count
    if count < 0 or len(data) > size:
        raise ServomexValidationError(f"{bytes(data)!r} does not fit in {count} registers")
    if len(pad) != 1:
        raise ServomexValidationError(f"padding must be one byte, not {pad!r}")
    padded = bytes(data).ljust(size, pad)
    return tuple(int.from_bytes(padded[i : i + 2], "big") for i in range(0, size, 2))


def name_from_text(text: str) -> str | None:
    """A decoded name, trimmed of spaces and NULs; ``None`` for an unconfigured slot.

    A name that is empty after trimming, or made only of spaces, NULs or ``|``, means the
    slot carries no label (PROTOCOL.md §5.4).
    """
    trimmed = text.strip(" \x00")
    if not trimmed or set(trimmed) <= _NAME_FILLER:
        return None
    return trimmed


def decode_name(regs: Sequence[int]) -> str | None:
    """Decode a slot's three name registers (display charset, ``CO₂`` keeps its ``₂``)."""
    return name_from_text(decode_display(registers_to_bytes(regs)))


def encode_name(name: str | None) -> tuple[int, ...]:
    """Encode a name into three registers, space-padded to six bytes.

    ``None`` (an unlabelled slot) is written as ``||||||``, what continuous mode shows for
    the bench's unlabelled E1/E2: :func:`decode_name` reads it back as ``None``, and so does
    a continuous decoder. A name longer than six display bytes raises
    :class:`ServomexValidationError`.
    """
    data = UNLABELLED_NAME if name is None else encode_display(name)
    if len(data) > NAME_BYTES:
        raise ServomexValidationError(f"name {name!r} is longer than {NAME_BYTES} characters")
    return bytes_to_registers(data, NAME_REGISTERS, pad=b" ")


def decode_unit(regs: Sequence[int]) -> tuple[Unit, str]:
    """Decode a slot's two unit registers to ``(unit, trimmed text)``.

    Both NUL and space padding are removed, since the analyser's exact padding is unknown
    (PROTOCOL.md §5.4, §12 #12); an unknown unit keeps its text with ``Unit.UNKNOWN``.
    """
    text = decode_display(registers_to_bytes(regs)).strip(" \x00")
    return Unit.from_text(text), text


def encode_unit(text: str) -> tuple[int, ...]:
    """Encode unit text into two registers: the continuous 3-character form, then a NUL.

    The padding is the one continuous mode shows (``" % "``, ``" mA"``, ``"vpm"``): the
    test-day notes suggest the registers keep it, and any decoder that trims both spaces
    and NULs reads it correctly whichever way the real unit pads. Empty text gives four
    NULs, an unconfigured slot. Text longer than three display bytes raises
    :class:`ServomexValidationError`.
    """
    data = encode_display(text.strip(" \x00"))
    if not data:
        return bytes_to_registers(_BLANK_UNIT, UNIT_REGISTERS)
    if len(data) > UNIT_BYTES - 1:
        raise ServomexValidationError(f"unit {text!r} is longer than {UNIT_BYTES - 1} characters")
    padded = data if len(data) == 3 else b" " + data.ljust(2, b" ")
    return bytes_to_registers(padded + b"\x00", UNIT_REGISTERS)


# --- status bits ---------------------------------------------------------------------------


def _bits(bits: Sequence[bool], size: int, what: str) -> tuple[bool, ...]:
    if len(bits) > size:
        raise ServomexValidationError(f"{what} has {size} bits, not {len(bits)}")
    return tuple(bool(b) for b in bits) + (False,) * (size - len(bits))


def status_from_bits(channel: ChannelId, bits: Sequence[bool]) -> ChannelStatus:
    """Decode a slot's eight status discretes (PROTOCOL.md §5.5, §8).

    Missing bits of a short array read as 0. I channels: bit 0 fault, 1 maintenance,
    2 calibrating, 3 warming up, 4–7 alarms 1–4. D channels decode the same way; their bits
    0–3 are copies of the parent transducer's (the analyser-level fault comes only from
    discrete 1000, never from a D channel). E channels: bit 0 means *Invalid* and is
    reported as ``fault`` (so the reading is not ok); bits 1–3 are reserved and read as
    False even when set; bits 4–7 are alarms 1–4.
    """
    b = _bits(bits, CHANNEL_BITS, f"channel {channel.value} status")
    alarms = (b[4], b[5], b[6], b[7])
    if channel.kind is ChannelKind.EXTERNAL:
        return ChannelStatus(fault=b[0], alarms=alarms)
    return ChannelStatus(
        fault=b[0], maintenance=b[1], calibrating=b[2], warming_up=b[3], alarms=alarms
    )


def bits_from_status(channel: ChannelId, status: ChannelStatus) -> tuple[bool, ...]:
    """The eight status discretes of a slot, the inverse of :func:`status_from_bits`.

    E channels cannot represent maintenance, calibrating or warming up: those flags are
    dropped and bits 1–3 are written as 0.
    """
    if channel.kind is ChannelKind.EXTERNAL:
        head = (status.fault, False, False, False)
    else:
        head = (status.fault, status.maintenance, status.calibrating, status.warming_up)
    return tuple(bool(b) for b in (*head, *status.alarms))


def _group_state(group: int, calibrating: bool, gas_two: bool) -> CalGroupState:
    if calibrating:
        phase = CalPhase.CAL_GAS_2 if gas_two else CalPhase.CAL_GAS_1
        return CalGroupState(group, phase, cal_gas=2 if gas_two else 1)
    return CalGroupState(group, CalPhase.IDLE, cal_gas=2 if gas_two else 1)


def analyser_status_from_bits(bits16: Sequence[bool]) -> AnalyserStatus:
    """Decode the analyser discretes 1000–1015 (data-model 11001–11016).

    Bit 0 is the analyser fault, bit 1 maintenance; the autocal groups follow
    :data:`CAL_GROUP_DISCRETES`. A group whose calibrating bit is 0 is ``IDLE`` (Modbus
    cannot tell sampling from idle) with ``cal_gas`` from its gas bit; a calibrating group
    is ``CAL_GAS_1`` or ``CAL_GAS_2``. Missing bits of a short array read as 0; the clock
    is ``None`` (only continuous mode sends it).
    """
    b = _bits(bits16, ANALYSER_DISCRETE_COUNT, "analyser status")

    def bit(pdu: int) -> bool:
        return b[pdu - ANALYSER_DISCRETE_START]

    g1, g2, g3, g4 = (
        _group_state(g, bit(CAL_GROUP_DISCRETES[g].calibrating), bit(CAL_GROUP_DISCRETES[g].gas))
        for g in (1, 2, 3, 4)
    )
    return AnalyserStatus(
        fault=bit(ANALYSER_FAULT_DISCRETE),
        maintenance=bit(ANALYSER_MAINTENANCE_DISCRETE),
        cal_groups=(g1, g2, g3, g4),
    )


def bits_from_analyser_status(status: AnalyserStatus) -> tuple[bool, ...]:
    """The sixteen analyser discretes, the inverse of :func:`analyser_status_from_bits`.

    A group is written as calibrating only in ``CAL_GAS_1``/``CAL_GAS_2``; its gas bit is 1
    for ``CAL_GAS_2``, or when not calibrating for ``cal_gas == 2``. The undocumented
    discretes 1002–1007 are written as 0.
    """
    bits = [False] * ANALYSER_DISCRETE_COUNT

    def put(pdu: int, value: bool) -> None:
        bits[pdu - ANALYSER_DISCRETE_START] = value

    put(ANALYSER_FAULT_DISCRETE, bool(status.fault))
    put(ANALYSER_MAINTENANCE_DISCRETE, bool(status.maintenance))
    for state in status.cal_groups:
        layout = CAL_GROUP_DISCRETES[state.group]
        if state.phase is CalPhase.CAL_GAS_1:
            calibrating, gas_two = True, False
        elif state.phase is CalPhase.CAL_GAS_2:
            calibrating, gas_two = True, True
        else:
            calibrating, gas_two = False, state.cal_gas == 2
        put(layout.calibrating, calibrating)
        put(layout.gas, gas_two)
    return tuple(bits)


# --- the three banks -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterBanks:
    """Everything one poll reads: 70 input registers, 80 channel and 16 analyser discretes.

    Sequences are stored as tuples; a wrong length, a register outside 0–0xFFFF or a bit
    that is not 0/1 raises :class:`ServomexValidationError`.
    """

    input_registers: tuple[int, ...]
    channel_bits: tuple[bool, ...]
    analyser_bits: tuple[bool, ...]

    def __post_init__(self) -> None:
        regs = tuple(self.input_registers)
        if len(regs) != INPUT_REGISTER_COUNT:
            raise ServomexValidationError(
                f"expected {INPUT_REGISTER_COUNT} input registers, got {len(regs)}",
                context=ErrorContext(function=4, register=0),
            )
        for address, value in enumerate(regs):
            try:
                _check_register(value)
            except ServomexValidationError as exc:
                raise exc.with_context(function=4, register=address) from None
        object.__setattr__(self, "input_registers", regs)
        for name, size, start in (
            ("channel_bits", CHANNEL_DISCRETE_COUNT, 0),
            ("analyser_bits", ANALYSER_DISCRETE_COUNT, ANALYSER_DISCRETE_START),
        ):
            bits = tuple(getattr(self, name))
            if len(bits) != size:
                raise ServomexValidationError(
                    f"expected {size} {name.replace('_', ' ')}, got {len(bits)}",
                    context=ErrorContext(function=2, register=start),
                )
            for offset, bit in enumerate(bits):
                if bit not in (0, 1):  # True/False and 0/1
                    raise ServomexValidationError(
                        f"a discrete input must be 0 or 1, not {bit!r}",
                        context=ErrorContext(function=2, register=start + offset),
                    )
            object.__setattr__(self, name, tuple(bool(b) for b in bits))

    @classmethod
    def blank(cls) -> RegisterBanks:
        """An analyser with nothing configured: every value 0.0, names of six spaces,
        units of four NULs, every discrete 0."""
        regs = [0] * INPUT_REGISTER_COUNT
        name = bytes_to_registers(_BLANK_NAME, NAME_REGISTERS)
        for slot in CHANNEL_REGISTERS.values():
            regs[slot.name : slot.name + NAME_REGISTERS] = name
        return cls(
            tuple(regs),
            (False,) * CHANNEL_DISCRETE_COUNT,
            (False,) * ANALYSER_DISCRETE_COUNT,
        )

    def slot_registers(self, channel: ChannelId) -> tuple[int, ...]:
        """The seven input registers of one slot."""
        span = CHANNEL_REGISTERS[channel].input_span
        return self.input_registers[span.start : span.stop]

    def slot_bits(self, channel: ChannelId) -> tuple[bool, ...]:
        """The eight status discretes of one slot."""
        span = CHANNEL_REGISTERS[channel].status_span
        return self.channel_bits[span.start : span.stop]


def _decode_reading(banks: RegisterBanks, channel: ChannelId) -> Reading:
    regs = CHANNEL_REGISTERS[channel]
    ir = banks.input_registers
    unit, unit_text = decode_unit(ir[regs.unit : regs.unit + UNIT_REGISTERS])
    return Reading(
        channel=channel,
        value=registers_to_float(ir[regs.value], ir[regs.value + 1]),
        name=decode_name(ir[regs.name : regs.name + NAME_REGISTERS]),
        unit=unit,
        status=status_from_bits(channel, banks.slot_bits(channel)),
        unit_text=unit_text,
    )


def decode_banks(
    banks: RegisterBanks,
    *,
    timestamp: float,
    protocol: ProtocolKind = ProtocolKind.MODBUS_RTU,
    address: int | None = None,
    channels: Iterable[ChannelId] | None = None,
) -> Frame:
    """Decode one poll's banks into a :class:`Frame`, readings in slot order.

    With ``channels`` the frame holds exactly those slots. Without it, it holds every
    slot whose name is populated **plus E1 and E2 always**: the bench unit's continuous
    frames carry the unlabelled external inputs (``||||||``, 0.0 mA) in every frame, so a
    Modbus frame of the same unit has the same channel set whichever mode it is read in.
    Unconfigured transducer and derived slots (I4 on the bench) are left out, as continuous
    mode leaves them out.

    Names decode through the display charset (``CO₂`` keeps its ``₂``), units through
    :meth:`Unit.from_text`, values through :func:`registers_to_float` (NaN/inf → ``None``),
    status through :func:`status_from_bits`, and the analyser status through
    :func:`analyser_status_from_bits` (no clock over Modbus).
    """
    if channels is None:
        every = (_decode_reading(banks, c) for c in ChannelId)
        readings = tuple(r for r in every if r.populated or r.channel.kind is ChannelKind.EXTERNAL)
    else:
        chosen = {ChannelId.parse(c) for c in channels}
        readings = tuple(_decode_reading(banks, c) for c in ChannelId if c in chosen)
    return Frame(
        readings=readings,
        analyser=analyser_status_from_bits(banks.analyser_bits),
        timestamp=timestamp,
        protocol=protocol,
        address=address,
    )


def encode_banks(frame: Frame, *, base: RegisterBanks | None = None) -> RegisterBanks:
    """The banks an analyser showing ``frame`` would serve (used by the simulator).

    Each reading fills its slot: value (``None`` → NaN), name (:func:`encode_name`:
    space-padded, ``None`` → ``||||||``), unit (:func:`encode_unit`, from ``unit_text`` or
    else the unit's own text) and status bits. The analyser discretes come from
    ``frame.analyser``. Slots the frame does not mention keep ``base``'s registers, or
    :meth:`RegisterBanks.blank`'s. ``decode_banks(encode_banks(f))`` gives ``f`` back, up to
    float32 rounding, when every reading in ``f`` is populated.
    """
    start = base if base is not None else RegisterBanks.blank()
    regs = list(start.input_registers)
    bits = list(start.channel_bits)
    for reading in frame.readings:
        slot = CHANNEL_REGISTERS[reading.channel]
        try:
            value = float_to_registers(math.nan if reading.value is None else reading.value)
            name = encode_name(reading.name)
            unit = encode_unit(reading.unit_text or reading.unit.value)
        except ServomexValidationError as exc:
            raise exc.with_context(channel=reading.channel.value) from None
        regs[slot.value : slot.value + VALUE_REGISTERS] = value
        regs[slot.name : slot.name + NAME_REGISTERS] = name
        regs[slot.unit : slot.unit + UNIT_REGISTERS] = unit
        bits[slot.status : slot.status + CHANNEL_BITS] = bits_from_status(
            reading.channel, reading.status
        )
    return RegisterBanks(tuple(regs), tuple(bits), bits_from_analyser_status(frame.analyser))


# --- read plans ----------------------------------------------------------------------------

_READ_LIMITS = {1: MAX_READ_BITS, 2: MAX_READ_BITS, 3: MAX_READ_REGISTERS, 4: MAX_READ_REGISTERS}


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: function code (1–4), first PDU address and count."""

    function: int
    start: int
    count: int

    def __post_init__(self) -> None:
        limit = _READ_LIMITS.get(self.function)
        if limit is None:
            raise ServomexValidationError(
                f"function code {self.function!r} is not a read (expected 1–4)",
                context=ErrorContext(function=self.function),
            )
        if not 0 <= self.start <= 0xFFFF or not 1 <= self.count <= limit:
            raise ServomexValidationError(
                f"read of {self.count!r} at {self.start!r}: start must be 0–65535 and "
                f"count 1–{limit}",
                context=ErrorContext(function=self.function, register=self.start),
            )
        if self.start + self.count > 0x10000:
            raise ServomexValidationError(
                f"read of {self.count} at {self.start} runs past address 65535",
                context=ErrorContext(function=self.function, register=self.start),
            )

    @property
    def stop(self) -> int:
        """One past the last address read."""
        return self.start + self.count


FULL_SWEEP: tuple[ReadRequest, ...] = (
    ReadRequest(4, 0, INPUT_REGISTER_COUNT),
    ReadRequest(2, 0, CHANNEL_DISCRETE_COUNT),
    ReadRequest(2, ANALYSER_DISCRETE_START, ANALYSER_DISCRETE_COUNT),
)
"""One whole poll: the three block reads the bench unit accepted (PROTOCOL.md §5.9)."""


def _merged_spans(spans: Iterable[range]) -> list[range]:
    merged: list[range] = []
    for span in sorted(spans, key=lambda r: r.start):
        if merged and span.start <= merged[-1].stop:
            last = merged.pop()
            merged.append(range(last.start, max(last.stop, span.stop)))
        else:
            merged.append(span)
    return merged


def gap_free_plan(channels: Iterable[ChannelId]) -> tuple[ReadRequest, ...]:
    """Reads covering only the given slots: the fallback when long spans are refused.

    Adjacent slots merge into one span: FC04 spans first, then FC02 status spans, then
    the analyser block. For the bench (I1, I2, I3, E1, E2) that is FC04 (0, 21) + (56, 14),
    FC02 (0, 24) + (64, 16) and FC02 (1000, 16) (PROTOCOL.md §5.9); for all ten slots it is
    :data:`FULL_SWEEP`. No channels reads only the analyser block.
    """
    slots = [CHANNEL_REGISTERS[ChannelId.parse(c)] for c in set(channels)]
    plan = [
        ReadRequest(4, span.start, len(span)) for span in _merged_spans(s.input_span for s in slots)
    ]
    plan += [
        ReadRequest(2, span.start, len(span))
        for span in _merged_spans(s.status_span for s in slots)
    ]
    plan.append(ReadRequest(2, ANALYSER_DISCRETE_START, ANALYSER_DISCRETE_COUNT))
    return tuple(plan)


def _bank_for(request: ReadRequest) -> tuple[str, int] | None:
    """Which bank a read fills and the PDU address of that bank's first entry."""
    if request.function == 4 and request.stop <= INPUT_REGISTER_COUNT:
        return "input_registers", 0
    if request.function == 2 and request.stop <= CHANNEL_DISCRETE_COUNT:
        return "channel_bits", 0
    analyser_stop = ANALYSER_DISCRETE_START + ANALYSER_DISCRETE_COUNT
    if request.function == 2 and ANALYSER_DISCRETE_START <= request.start < analyser_stop:
        return ("analyser_bits", ANALYSER_DISCRETE_START) if request.stop <= analyser_stop else None
    return None


def _valid_answer_value(function: int, value: object) -> bool:
    if function == 4:
        return type(value) is int and 0 <= value <= 0xFFFF
    return isinstance(value, int) and value in (0, 1)


def banks_from_responses(
    responses: Mapping[ReadRequest, Sequence[int] | Sequence[bool]],
) -> RegisterBanks:
    """Assemble the answers to a read plan into :class:`RegisterBanks`.

    Addresses no request covered read as 0 / False. FC04 answers must hold exactly
    ``count`` registers of 0–0xFFFF; FC02 answers ``count`` bits of 0/1, or up to the next
    multiple of eight (a Modbus reply pads bits to whole bytes; the padding is dropped).
    Any other answer raises :class:`ServomexFrameError`; a request outside the map, or for
    a function other than FC04/FC02, raises :class:`ServomexValidationError`.
    """
    banks: dict[str, list[int]] = {
        "input_registers": [0] * INPUT_REGISTER_COUNT,
        "channel_bits": [0] * CHANNEL_DISCRETE_COUNT,
        "analyser_bits": [0] * ANALYSER_DISCRETE_COUNT,
    }
    for request, answer in responses.items():
        context = ErrorContext(function=request.function, register=request.start)
        where = _bank_for(request)
        if where is None:
            raise ServomexValidationError(
                f"no bank holds a function {request.function} read of {request.count} at "
                f"{request.start}",
                context=context,
            )
        bank, offset = where
        longest = request.count if request.function == 4 else -(-request.count // 8) * 8
        if not request.count <= len(answer) <= longest:
            raise ServomexFrameError(
                f"function {request.function} read of {request.count} at {request.start} "
                f"answered {len(answer)} values",
                context=context,
            )
        values = list(answer[: request.count])
        for address, value in enumerate(values, request.start):
            if not _valid_answer_value(request.function, value):
                raise ServomexFrameError(
                    f"function {request.function} answered {value!r} at address {address}",
                    context=context.merged(register=address),
                )
        banks[bank][request.start - offset : request.stop - offset] = [int(v) for v in values]
    return RegisterBanks(
        tuple(banks["input_registers"]),
        tuple(bool(b) for b in banks["channel_bits"]),
        tuple(bool(b) for b in banks["analyser_bits"]),
    )
