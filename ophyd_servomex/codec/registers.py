"""The Modbus register map of the SERVOPRO 4000 series, as pure encode/decode functions.

Addresses here are **PDU addresses** (what goes on the wire), not the manual's
0xxxx/1xxxx/3xxxx data-model numbers (docs/protocol.md §5.2):

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

This module is the public face of the map; the content lives in private modules:
``_register_map`` (layout constants, the channel registry and its check, floats, strings,
names and units), ``_status_bits`` (channel and analyser status discretes),
``_banks`` (:class:`RegisterBanks`, :func:`decode_banks`, :func:`encode_banks`) and
``_read_plan`` (:class:`ReadRequest`, :data:`FULL_SWEEP`, :func:`gap_free_plan`,
:func:`banks_from_responses`).
"""

from __future__ import annotations

from ._banks import (
    RegisterBanks,
    decode_banks,
    encode_banks,
)
from ._read_plan import (
    FULL_SWEEP,
    ReadRequest,
    banks_from_responses,
    gap_free_plan,
)
from ._register_map import (
    ANALYSER_DISCRETE_COUNT,
    ANALYSER_DISCRETE_START,
    ANALYSER_FAULT_DISCRETE,
    ANALYSER_MAINTENANCE_DISCRETE,
    BLOCK_BASES,
    CAL_GROUP_DISCRETES,
    CAL_START_COIL,
    CAL_STOP_COIL,
    CHANNEL_BITS,
    CHANNEL_DISCRETE_COUNT,
    CHANNEL_REGISTERS,
    INPUT_REGISTER_COUNT,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    NAME_BYTES,
    NAME_OFFSET,
    NAME_REGISTERS,
    REGISTERS_PER_CHANNEL,
    UNIT_BYTES,
    UNIT_OFFSET,
    UNIT_REGISTERS,
    UNLABELLED_NAME,
    VALUE_OFFSET,
    VALUE_REGISTERS,
    CalGroupBits,
    ChannelRegisters,
    bytes_to_registers,
    decode_name,
    decode_unit,
    encode_name,
    encode_unit,
    float_to_registers,
    name_from_text,
    registers_to_bytes,
    registers_to_float,
)
from ._register_map import (
    _check_registry as _check_registry,
)
from ._status_bits import (
    analyser_status_from_bits,
    bits_from_analyser_status,
    bits_from_status,
    status_from_bits,
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
