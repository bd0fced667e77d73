"""The register map's layout: PDU address constants (input registers, discretes, coils,
read limits), the autocal group discretes, the channel registry with its import-time
check against the manual's tables, and the float, string, name and unit encodings of the
input registers (docs/protocol.md §5.2–§5.4, §5.7).

Public names are re-exported by :mod:`ophyd_servomex.codec.registers`.
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
    ServomexValidationError,
)
from .models import (
    ChannelId,
    ChannelKind,
    Unit,
)

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
"""PDU address of data-model 11001 (offset from 10001, not 11001: docs/protocol.md §5.2)."""
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

The manual's layout is unconfirmed (docs/protocol.md §5.6, §12 #7): only all-zero idle bits
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
    either (docs/protocol.md §5.4, §12 #10), and neither is a measurement, so both read as "no
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
    slot carries no label (docs/protocol.md §5.4).
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
    (docs/protocol.md §5.4, §12 #12); an unknown unit keeps its text with ``Unit.UNKNOWN``.
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
