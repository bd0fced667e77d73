"""The Modbus register map: constants, the channel registry, floats and strings (§5.2–§5.7)."""

from __future__ import annotations

import math
import struct
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ophyd_servomex.codec import registers as reg
from ophyd_servomex.codec.errors import ServomexConfigurationError, ServomexValidationError
from ophyd_servomex.codec.models import ChannelId, Unit
from ophyd_servomex.codec.registers import (
    CHANNEL_REGISTERS,
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


def f32(x: float) -> float:
    """The value after a trip through IEEE-754 binary32."""
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


# --- constants -----------------------------------------------------------------------------


def test_block_constants() -> None:
    assert reg.REGISTERS_PER_CHANNEL == 7
    assert reg.INPUT_REGISTER_COUNT == 70
    assert reg.CHANNEL_BITS == 8
    assert reg.CHANNEL_DISCRETE_COUNT == 80
    assert reg.ANALYSER_DISCRETE_START == 1000
    assert reg.ANALYSER_DISCRETE_COUNT == 16
    assert reg.ANALYSER_FAULT_DISCRETE == 1000
    assert reg.ANALYSER_MAINTENANCE_DISCRETE == 1001


def test_coils() -> None:
    assert dict(reg.CAL_START_COIL) == {1: 0, 2: 1, 3: 2, 4: 3}
    assert reg.CAL_STOP_COIL == 8


def test_cal_group_layout_is_interleaved_pairs() -> None:
    layout = {g: (b.calibrating, b.gas) for g, b in reg.CAL_GROUP_DISCRETES.items()}
    assert layout == {1: (1008, 1009), 2: (1010, 1011), 3: (1012, 1013), 4: (1014, 1015)}


# --- the registry --------------------------------------------------------------------------

# docs/protocol.md §5.3 / §5.5 in data-model numbers: value, name, unit (3xxxx),
# first status (1xxxx).
MANUAL = {
    "I1": (30001, 30003, 30006, 10001),
    "I2": (30008, 30010, 30013, 10009),
    "I3": (30015, 30017, 30020, 10017),
    "I4": (30022, 30024, 30027, 10025),
    "D1": (30029, 30031, 30034, 10033),
    "D2": (30036, 30038, 30041, 10041),
    "D3": (30043, 30045, 30048, 10049),
    "D4": (30050, 30052, 30055, 10057),
    "E1": (30057, 30059, 30062, 10065),
    "E2": (30064, 30066, 30069, 10073),
}


@pytest.mark.parametrize(("channel", "numbers"), MANUAL.items())
def test_registry_matches_the_manual_table(channel: str, numbers: tuple[int, ...]) -> None:
    value, name, unit, status = numbers
    cid = ChannelId(channel)
    assert CHANNEL_REGISTERS[cid] == ChannelRegisters(
        cid, value - 30001, name - 30001, unit - 30001, status - 10001
    )


def test_registry_spot_values() -> None:
    assert CHANNEL_REGISTERS[ChannelId.I3].value == 14
    assert CHANNEL_REGISTERS[ChannelId.E1].value == 56
    assert CHANNEL_REGISTERS[ChannelId.E2].unit == 68
    assert CHANNEL_REGISTERS[ChannelId.D1].status == 32
    assert CHANNEL_REGISTERS[ChannelId.E1].status == 64


def test_registry_is_complete_ordered_and_read_only() -> None:
    assert tuple(CHANNEL_REGISTERS) == tuple(ChannelId)
    assert isinstance(CHANNEL_REGISTERS, MappingProxyType)
    spans = [CHANNEL_REGISTERS[c].input_span for c in ChannelId]
    assert spans == [range(7 * i, 7 * i + 7) for i in range(10)]
    assert [CHANNEL_REGISTERS[c].status_span for c in ChannelId] == [
        range(8 * i, 8 * i + 8) for i in range(10)
    ]


def _broken(channel: ChannelId, **changes: int) -> dict[ChannelId, ChannelRegisters]:
    registry = dict(CHANNEL_REGISTERS)
    old = registry[channel]
    fields = {"value": old.value, "name": old.name, "unit": old.unit, "status": old.status}
    registry[channel] = ChannelRegisters(channel, **(fields | changes))
    return registry


@pytest.mark.parametrize(
    "registry",
    [
        _broken(ChannelId.I2, value=6, name=8, unit=11),  # overlaps I1
        _broken(ChannelId.E2, value=64, name=66, unit=69),  # leaves 63 uncovered
        _broken(ChannelId.D1, status=33),  # status overlap
        _broken(ChannelId.I1, name=3),  # name not at +2
        {c: r for c, r in CHANNEL_REGISTERS.items() if c is not ChannelId.D4},
    ],
)
def test_registry_check_refuses_inconsistent_maps(
    registry: dict[ChannelId, ChannelRegisters],
) -> None:
    with pytest.raises(ServomexConfigurationError, match="register map is inconsistent"):
        reg._check_registry(registry)


# --- floats --------------------------------------------------------------------------------

VECTORS = [(20.378, 0x41A3, 0x0625), (0.084, 0x3DAC, 0x0831), (0.250, 0x3E80, 0x0000)]
VECTORS.append((0.0, 0x0000, 0x0000))


@pytest.mark.parametrize(("value", "hi", "lo"), VECTORS)
def test_float_vectors(value: float, hi: int, lo: int) -> None:
    assert float_to_registers(value) == (hi, lo)
    assert registers_to_float(hi, lo) == f32(value)


def test_decoded_values_are_the_float32_values() -> None:
    assert registers_to_float(0x41A3, 0x0625) == 20.378000259399414
    assert registers_to_float(0x3E80, 0x0000) == 0.25
    assert registers_to_float(0xC1A3, 0x0625) == -20.378000259399414


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_every_finite_float32_round_trips(x: float) -> None:
    hi, lo = float_to_registers(x)
    assert struct.pack(">HH", hi, lo) == struct.pack(">f", x)
    back = registers_to_float(hi, lo)
    assert back == x
    assert back is not None
    assert math.copysign(1.0, back) == math.copysign(1.0, x)


@given(st.floats(min_value=-3.4e38, max_value=3.4e38))
def test_doubles_round_to_float32(x: float) -> None:
    assert registers_to_float(*float_to_registers(x)) == f32(x)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_any_register_pair_decodes(hi: int, lo: int) -> None:
    (expected,) = struct.unpack(">f", struct.pack(">HH", hi, lo))
    value = registers_to_float(hi, lo)
    if math.isfinite(expected):
        assert value == expected
    else:
        assert value is None


@pytest.mark.parametrize(
    ("hi", "lo"),
    [(0x7FC0, 0x0000), (0xFFC0, 0x0001), (0x7F80, 0x0001), (0x7F80, 0x0000), (0xFF80, 0x0000)],
)
def test_nan_and_infinity_read_as_no_value(hi: int, lo: int) -> None:
    assert registers_to_float(hi, lo) is None


def test_nan_and_infinity_encode() -> None:
    assert float_to_registers(math.nan) == (0x7FC0, 0x0000)
    assert float_to_registers(math.inf) == (0x7F80, 0x0000)
    assert float_to_registers(-math.inf) == (0xFF80, 0x0000)


def test_too_large_for_float32_is_a_validation_error() -> None:
    with pytest.raises(ServomexValidationError):
        float_to_registers(1e39)


@pytest.mark.parametrize(("hi", "lo"), [(-1, 0), (0, 0x10000), (True, 0)])
def test_register_out_of_range_is_a_validation_error(hi: int, lo: int) -> None:
    with pytest.raises(ServomexValidationError):
        registers_to_float(hi, lo)


# --- strings -------------------------------------------------------------------------------


def test_registers_to_bytes_high_byte_first() -> None:
    assert registers_to_bytes((0x434F, 0x8220, 0x2020)) == bytes.fromhex("434f82202020")
    assert registers_to_bytes(()) == b""
    with pytest.raises(ServomexValidationError):
        registers_to_bytes((0x10000,))


def test_bytes_to_registers_pads() -> None:
    assert bytes_to_registers(b"CO\x82", 3, pad=b" ") == (0x434F, 0x8220, 0x2020)
    assert bytes_to_registers(b"%", 2) == (0x2500, 0x0000)
    assert bytes_to_registers(b"", 1) == (0x0000,)
    with pytest.raises(ServomexValidationError):
        bytes_to_registers(b"Oxygen!", 3)
    with pytest.raises(ServomexValidationError):
        bytes_to_registers(b"ab", 1, pad=b"  ")


@given(st.binary(max_size=20))
def test_bytes_registers_round_trip(data: bytes) -> None:
    count = (len(data) + 1) // 2
    assert registers_to_bytes(bytes_to_registers(data, count)) == data.ljust(2 * count, b"\x00")


@pytest.mark.parametrize(
    ("name", "regs"),
    [
        ("Oxygen", (0x4F78, 0x7967, 0x656E)),
        ("CO", (0x434F, 0x2020, 0x2020)),
        ("CO₂", (0x434F, 0x8220, 0x2020)),
        (None, (0x7C7C, 0x7C7C, 0x7C7C)),
    ],
)
def test_names(name: str | None, regs: tuple[int, ...]) -> None:
    assert encode_name(name) == regs
    assert decode_name(regs) == name


@pytest.mark.parametrize(
    "raw", [b"      ", b"\x00" * 6, b"||||||", b" | |\x00 ", b"|", b"", b"  \x00\x00\x00\x00"]
)
def test_unpopulated_names(raw: bytes) -> None:
    assert decode_name(bytes_to_registers(raw, 3)) is None


def test_name_rules() -> None:
    assert name_from_text("  CO  \x00") == "CO"
    assert name_from_text("A|") == "A|"
    assert name_from_text("|| ||") is None


def test_name_too_long_or_unencodable() -> None:
    with pytest.raises(ServomexValidationError):
        encode_name("Oxygen2")
    with pytest.raises(ServomexValidationError):
        encode_name("CO€")


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("%", b" % \x00"),
        ("mA", b" mA\x00"),
        ("vpm", b"vpm\x00"),
        ("ppm", b"ppm\x00"),
        ("", b"\x00\x00\x00\x00"),
        (" % ", b" % \x00"),
    ],
)
def test_encode_unit_uses_continuous_padding_and_nul(text: str, raw: bytes) -> None:
    assert registers_to_bytes(encode_unit(text)) == raw


@pytest.mark.parametrize(
    ("raw", "unit", "text"),
    [
        (b" % \x00", Unit.PERCENT, "%"),
        (b"%\x00\x00\x00", Unit.PERCENT, "%"),  # the reference simulator's padding
        (b"%   ", Unit.PERCENT, "%"),
        (b" mA\x00", Unit.MILLIAMP, "mA"),
        (b"vpm\x00", Unit.VPM, "vpm"),
        (b"\x00\x00\x00\x00", Unit.UNKNOWN, ""),
        (b"\xb0C \x00", Unit.UNKNOWN, "°C"),
    ],
)
def test_decode_unit_strips_nul_and_spaces(raw: bytes, unit: Unit, text: str) -> None:
    assert decode_unit(bytes_to_registers(raw, 2)) == (unit, text)


def test_unit_too_long() -> None:
    with pytest.raises(ServomexValidationError):
        encode_unit("mbar")
