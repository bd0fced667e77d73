"""The three banks one poll reads: :class:`RegisterBanks` (70 input registers, 80 channel
and 16 analyser discretes), :func:`decode_banks` (banks → :class:`Frame`) and
:func:`encode_banks` (frame → banks, for the simulated analyser).

Public names are re-exported by :mod:`ophyd_servomex.codec.registers`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ._register_map import (
    _BLANK_NAME,
    ANALYSER_DISCRETE_COUNT,
    ANALYSER_DISCRETE_START,
    CHANNEL_BITS,
    CHANNEL_DISCRETE_COUNT,
    CHANNEL_REGISTERS,
    INPUT_REGISTER_COUNT,
    NAME_REGISTERS,
    UNIT_REGISTERS,
    VALUE_REGISTERS,
    _check_register,
    bytes_to_registers,
    decode_name,
    decode_unit,
    encode_name,
    encode_unit,
    float_to_registers,
    registers_to_float,
)
from ._status_bits import (
    analyser_status_from_bits,
    bits_from_analyser_status,
    bits_from_status,
    status_from_bits,
)
from .errors import (
    ErrorContext,
    ServomexValidationError,
)
from .models import (
    ChannelId,
    ChannelKind,
    Frame,
    ProtocolKind,
    Reading,
)


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
                context=ErrorContext(function_code=4, register=0),
            )
        for address, value in enumerate(regs):
            try:
                _check_register(value)
            except ServomexValidationError as exc:
                raise exc.with_context(function_code=4, register=address) from None
        object.__setattr__(self, "input_registers", regs)
        for name, size, start in (
            ("channel_bits", CHANNEL_DISCRETE_COUNT, 0),
            ("analyser_bits", ANALYSER_DISCRETE_COUNT, ANALYSER_DISCRETE_START),
        ):
            bits = tuple(getattr(self, name))
            if len(bits) != size:
                raise ServomexValidationError(
                    f"expected {size} {name.replace('_', ' ')}, got {len(bits)}",
                    context=ErrorContext(function_code=2, register=start),
                )
            for offset, bit in enumerate(bits):
                if bit not in (0, 1):  # True/False and 0/1
                    raise ServomexValidationError(
                        f"a discrete input must be 0 or 1, not {bit!r}",
                        context=ErrorContext(function_code=2, register=start + offset),
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
