"""Register banks: decode/encode whole polls and the read plans (docs/protocol.md §5.3–§5.9)."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.errors import ServomexFrameError, ServomexValidationError
from ophyd_servomex.codec.models import (
    AnalyserStatus,
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelStatus,
    Frame,
    ProtocolKind,
    Reading,
    Unit,
)
from ophyd_servomex.codec.registers import (
    FULL_SWEEP,
    ReadRequest,
    RegisterBanks,
    banks_from_responses,
    decode_banks,
    encode_banks,
    gap_free_plan,
)

I1, I2, I3, I4 = ChannelId.I1, ChannelId.I2, ChannelId.I3, ChannelId.I4
E1, E2 = ChannelId.E1, ChannelId.E2
BENCH = (I1, I2, I3, E1, E2)


def f32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def words(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


BLANK_SLOT = [0, 0, *words(b"      "), 0, 0]


def bench_registers() -> list[int]:
    """The bench unit's 70 input registers, written out by hand from §5.3/§5.4."""
    slots = [
        [0x41A3, 0x0625, *words(b"Oxygen"), *words(b" % \x00")],  # I1 20.378 %
        [0x3DAC, 0x0831, *words(b"CO    "), *words(b" % \x00")],  # I2 0.084 %
        [0x3E80, 0x0000, *words(bytes.fromhex("434f82202020")), *words(b" % \x00")],  # I3
        BLANK_SLOT,  # I4 unconfigured
        BLANK_SLOT,
        BLANK_SLOT,
        BLANK_SLOT,
        BLANK_SLOT,  # D1-D4
        [0, 0, *words(b"||||||"), *words(b" mA\x00")],  # E1
        [0, 0, *words(b"||||||"), *words(b" mA\x00")],  # E2
    ]
    return [r for slot in slots for r in slot]


def bench_banks() -> RegisterBanks:
    return RegisterBanks(tuple(bench_registers()), (False,) * 80, (False,) * 16)


def pct(channel: ChannelId, value: float, name: str) -> Reading:
    return Reading(channel, f32(value), name, Unit.PERCENT, ChannelStatus(), "%")


def ma(channel: ChannelId) -> Reading:
    return Reading(channel, 0.0, None, Unit.MILLIAMP, ChannelStatus(), "mA")


BENCH_FRAME = Frame(
    readings=(
        pct(I1, 20.378, "Oxygen"),
        pct(I2, 0.084, "CO"),
        pct(I3, 0.250, "CO₂"),
        ma(E1),
        ma(E2),
    ),
    analyser=AnalyserStatus(),
    timestamp=1234.5,
    protocol=ProtocolKind.MODBUS_RTU,
    address=30,
)


# --- RegisterBanks -------------------------------------------------------------------------


def test_bench_registers_are_seventy() -> None:
    assert len(bench_registers()) == 70


def test_banks_coerce_sequences_to_tuples() -> None:
    banks = RegisterBanks([0] * 70, [0, 1] * 40, [1] + [0] * 15)  # type: ignore[arg-type]
    assert banks.input_registers == (0,) * 70
    assert banks.channel_bits == (False, True) * 40
    assert banks.analyser_bits == (True, *(False,) * 15)


@pytest.mark.parametrize(
    ("regs", "channel_bits", "analyser_bits"),
    [
        ((0,) * 69, (False,) * 80, (False,) * 16),
        ((0,) * 71, (False,) * 80, (False,) * 16),
        ((0,) * 69 + (0x10000,), (False,) * 80, (False,) * 16),
        ((-1,) + (0,) * 69, (False,) * 80, (False,) * 16),
        ((0,) * 70, (False,) * 79, (False,) * 16),
        ((0,) * 70, (False,) * 80, (False,) * 17),
        ((0,) * 70, (2,) + (False,) * 79, (False,) * 16),
    ],
)
def test_banks_validate(
    regs: tuple[int, ...], channel_bits: tuple[bool, ...], analyser_bits: tuple[bool, ...]
) -> None:
    with pytest.raises(ServomexValidationError):
        RegisterBanks(regs, channel_bits, analyser_bits)


def test_blank_banks() -> None:
    blank = RegisterBanks.blank()
    assert list(blank.input_registers) == BLANK_SLOT * 10
    assert blank.channel_bits == (False,) * 80
    assert blank.analyser_bits == (False,) * 16


def test_slot_accessors() -> None:
    banks = bench_banks()
    assert banks.slot_registers(I3) == (0x3E80, 0, 0x434F, 0x8220, 0x2020, 0x2025, 0x2000)
    bits = [False] * 80
    bits[66] = True
    banks = RegisterBanks(banks.input_registers, tuple(bits), banks.analyser_bits)
    assert banks.slot_bits(E1) == (False, False, True, False, False, False, False, False)


# --- decode_banks --------------------------------------------------------------------------


def test_decode_bench_bank() -> None:
    frame = decode_banks(
        bench_banks(), timestamp=1234.5, protocol=ProtocolKind.MODBUS_RTU, address=30
    )
    assert frame == BENCH_FRAME
    assert frame.channels == BENCH
    assert frame.channel("I1").value == 20.378000259399414
    assert frame.channel("I3").name == "CO₂"
    assert frame.channel("E2").unit is Unit.MILLIAMP
    assert I4 not in frame


def test_decode_with_explicit_channels_in_slot_order() -> None:
    frame = decode_banks(bench_banks(), timestamp=0.0, channels=[E2, I4, I1, I4])
    assert frame.channels == (I1, I4, E2)
    assert frame.channel(I4) == Reading(I4, 0.0, None, Unit.UNKNOWN, ChannelStatus(), "")
    assert frame.protocol is ProtocolKind.MODBUS_RTU
    assert frame.address is None


def test_decode_includes_e1_e2_even_on_a_blank_analyser() -> None:
    frame = decode_banks(RegisterBanks.blank(), timestamp=0.0, protocol=ProtocolKind.MODBUS_ASCII)
    assert frame.channels == (E1, E2)
    assert frame.protocol is ProtocolKind.MODBUS_ASCII


def test_decode_status_and_analyser_bits() -> None:
    bits = [False] * 80
    bits[8] = True  # I2 fault
    bits[64 + 1] = True  # E1 reserved: ignored
    bits[72] = True  # E2 invalid
    analyser = [False] * 16
    analyser[0] = True
    analyser[10] = analyser[11] = True  # group 2 on gas 2
    banks = RegisterBanks(tuple(bench_registers()), tuple(bits), tuple(analyser))
    frame = decode_banks(banks, timestamp=0.0)
    assert frame.channel(I2).status == ChannelStatus(fault=True)
    assert frame.channel(E1).status == ChannelStatus()
    assert frame.channel(E2).status == ChannelStatus(fault=True)
    assert frame.analyser.fault is True
    assert frame.analyser.group(2) == CalGroupState(2, CalPhase.CAL_GAS_2, 2)


def test_nan_value_reads_as_none() -> None:
    regs = bench_registers()
    regs[0:2] = [0x7FC0, 0x0000]
    frame = decode_banks(RegisterBanks(tuple(regs), (False,) * 80, (False,) * 16), timestamp=0.0)
    assert frame.channel(I1).value is None
    assert frame.channel(I1).name == "Oxygen"


# --- encode_banks --------------------------------------------------------------------------


def test_encode_bench_frame_gives_the_bench_bank() -> None:
    assert encode_banks(BENCH_FRAME) == bench_banks()


def test_encode_keeps_base_for_untouched_slots() -> None:
    base = bench_banks()
    frame = Frame(readings=(Reading(I2, 1.5, "H2", Unit.VPM, ChannelStatus(fault=True), "vpm"),))
    banks = encode_banks(frame, base=base)
    assert banks.slot_registers(I2) == (0x3FC0, 0, *words(b"H2    "), *words(b"vpm\x00"))
    assert banks.slot_bits(I2) == (True, *(False,) * 7)
    assert banks.input_registers[:7] == base.input_registers[:7]
    assert banks.input_registers[14:] == base.input_registers[14:]


def test_encode_none_value_and_name() -> None:
    frame = Frame(readings=(Reading(I1, None, None, Unit.PERCENT, unit_text="%"),))
    banks = encode_banks(frame)
    assert banks.slot_registers(I1) == (0x7FC0, 0, *words(b"||||||"), *words(b" % \x00"))
    decoded = decode_banks(banks, timestamp=0.0, channels=[I1])
    assert decoded.readings == frame.readings


def test_encode_falls_back_to_the_unit_value() -> None:
    frame = Frame(readings=(Reading(I1, 1.0, "O2", Unit.PERCENT),))
    assert encode_banks(frame).slot_registers(I1)[5:] == tuple(words(b" % \x00"))


@pytest.mark.parametrize(
    "reading",
    [
        Reading(I1, 1e39, "O2"),
        Reading(I1, 1.0, "Oxygen2"),
        Reading(I1, 1.0, "O2", unit_text="mbar"),
        Reading(I1, 1.0, "O€"),
    ],
)
def test_encode_refuses_what_the_registers_cannot_hold(reading: Reading) -> None:
    with pytest.raises(ServomexValidationError) as info:
        encode_banks(Frame(readings=(reading,)))
    assert info.value.context.channel == "I1"


_NAME_CHARS = st.sampled_from([*"ABCOXYZabcxyz0129-+./|", " ", "₂", "°"])
_NAMES = st.text(_NAME_CHARS, min_size=1, max_size=6).filter(
    lambda n: n == n.strip() and not set(n) <= {" ", "|"}
)
_UNIT_TEXT = st.sampled_from(["%", "vpm", "ppm", "mA", "MA", "PPM", "°C", "", "x", "a b"])
_STATUS = st.builds(
    ChannelStatus,
    fault=st.booleans(),
    maintenance=st.booleans(),
    calibrating=st.booleans(),
    warming_up=st.booleans(),
    alarms=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
_E_STATUS = st.builds(
    ChannelStatus,
    fault=st.booleans(),
    alarms=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
_VALUES = st.none() | st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def readings(draw: st.DrawFn, channel: ChannelId, labelled: bool = True) -> Reading:
    unit_text = draw(_UNIT_TEXT)
    external = channel.value.startswith("E")
    return Reading(
        channel=channel,
        value=draw(_VALUES),
        name=draw(_NAMES) if labelled else draw(st.none() | _NAMES),
        unit=Unit.from_text(unit_text),
        status=draw(_E_STATUS if external else _STATUS),
        unit_text=unit_text,
    )


@st.composite
def group_states(draw: st.DrawFn, group: int) -> CalGroupState:
    phase = draw(st.sampled_from([CalPhase.IDLE, CalPhase.CAL_GAS_1, CalPhase.CAL_GAS_2]))
    if phase is CalPhase.IDLE:
        return CalGroupState(group, phase, draw(st.sampled_from([1, 2])))
    return CalGroupState(group, phase, 1 if phase is CalPhase.CAL_GAS_1 else 2)


_ANALYSER = st.builds(
    AnalyserStatus,
    fault=st.booleans(),
    maintenance=st.booleans(),
    cal_groups=st.tuples(group_states(1), group_states(2), group_states(3), group_states(4)),
)


@st.composite
def frames(draw: st.DrawFn, *, always_external: bool) -> Frame:
    chosen = set(draw(st.lists(st.sampled_from(list(ChannelId)), unique=True)))
    if always_external:
        chosen |= {E1, E2}
    return Frame(
        readings=tuple(
            draw(readings(c, labelled=not (always_external and c in (E1, E2))))
            for c in ChannelId
            if c in chosen
        ),
        analyser=draw(_ANALYSER),
        timestamp=draw(st.floats(0, 2e9)),
        protocol=draw(st.sampled_from([ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII])),
        address=draw(st.none() | st.integers(1, 247)),
    )


def _decode_like(frame: Frame, banks: RegisterBanks, channels: Sequence[ChannelId] | None) -> Frame:
    return decode_banks(
        banks,
        timestamp=frame.timestamp,
        protocol=frame.protocol,
        address=frame.address,
        channels=channels,
    )


@settings(max_examples=150)
@given(frames(always_external=False))
def test_round_trip_with_explicit_channels(frame: Frame) -> None:
    assert _decode_like(frame, encode_banks(frame), frame.channels) == frame


@settings(max_examples=150)
@given(frames(always_external=True))
def test_round_trip_discovers_the_same_channels(frame: Frame) -> None:
    assert _decode_like(frame, encode_banks(frame), None) == frame


@given(st.floats(min_value=-3.4e38, max_value=3.4e38), st.sampled_from(list(ChannelId)))
def test_round_trip_rounds_doubles_to_float32(value: float, channel: ChannelId) -> None:
    frame = Frame(readings=(Reading(channel, value, "X", Unit.PERCENT, unit_text="%"),))
    back = decode_banks(encode_banks(frame), timestamp=0.0, channels=[channel])
    assert back.channel(channel).value == f32(value)


# --- read plans ----------------------------------------------------------------------------


def test_full_sweep() -> None:
    expected = (ReadRequest(4, 0, 70), ReadRequest(2, 0, 80), ReadRequest(2, 1000, 16))
    assert expected == FULL_SWEEP


def test_gap_free_plan_for_the_bench_is_exactly_the_reference() -> None:
    assert gap_free_plan(BENCH) == (
        ReadRequest(4, 0, 21),
        ReadRequest(4, 56, 14),
        ReadRequest(2, 0, 24),
        ReadRequest(2, 64, 16),
        ReadRequest(2, 1000, 16),
    )


def test_gap_free_plan_ignores_order_and_duplicates() -> None:
    assert gap_free_plan([E2, I3, I1, E1, I2, I1]) == gap_free_plan(BENCH)


def test_gap_free_plan_for_all_slots_is_the_full_sweep() -> None:
    assert gap_free_plan(list(ChannelId)) == FULL_SWEEP
    assert gap_free_plan(reversed(list(ChannelId))) == FULL_SWEEP


def test_gap_free_plan_separate_and_empty() -> None:
    assert gap_free_plan([I1, I3]) == (
        ReadRequest(4, 0, 7),
        ReadRequest(4, 14, 7),
        ReadRequest(2, 0, 8),
        ReadRequest(2, 16, 8),
        ReadRequest(2, 1000, 16),
    )
    assert gap_free_plan([I4, ChannelId.D1]) == (
        ReadRequest(4, 21, 14),
        ReadRequest(2, 24, 16),
        ReadRequest(2, 1000, 16),
    )
    assert gap_free_plan([]) == (ReadRequest(2, 1000, 16),)


@given(st.sets(st.sampled_from(list(ChannelId))))
def test_gap_free_plan_covers_exactly_the_chosen_slots(chosen: set[ChannelId]) -> None:
    plan = gap_free_plan(chosen)
    registers = [a for r in plan if r.function == 4 for a in range(r.start, r.stop)]
    discretes = [a for r in plan[:-1] if r.function == 2 for a in range(r.start, r.stop)]
    assert registers == sorted(a for c in chosen for a in range(7 * c.slot, 7 * c.slot + 7))
    assert discretes == sorted(a for c in chosen for a in range(8 * c.slot, 8 * c.slot + 8))
    for a, b in itertools.pairwise(plan[:-1]):
        if a.function == b.function:
            assert a.stop < b.start  # merged: no touching spans left


@pytest.mark.parametrize(
    ("function", "start", "count"),
    [(5, 0, 1), (0, 0, 1), (4, 0, 0), (4, 0, 126), (2, 0, 2001), (4, -1, 1), (4, 65535, 2)],
)
def test_read_request_validation(function: int, start: int, count: int) -> None:
    with pytest.raises(ServomexValidationError):
        ReadRequest(function, start, count)


# --- banks_from_responses ------------------------------------------------------------------


def answers(banks: RegisterBanks, plan: Sequence[ReadRequest]) -> dict[ReadRequest, list[int]]:
    out: dict[ReadRequest, list[int]] = {}
    for r in plan:
        if r.function == 4:
            out[r] = list(banks.input_registers[r.start : r.stop])
        elif r.start >= 1000:
            out[r] = [int(b) for b in banks.analyser_bits[r.start - 1000 : r.stop - 1000]]
        else:
            out[r] = [int(b) for b in banks.channel_bits[r.start : r.stop]]
    return out


def test_full_sweep_responses_rebuild_the_banks() -> None:
    bits = tuple(i % 3 == 0 for i in range(80))
    banks = RegisterBanks(tuple(bench_registers()), bits, (True, *(False,) * 15))
    assert banks_from_responses(answers(banks, FULL_SWEEP)) == banks


def test_gap_free_responses_leave_gaps_zero() -> None:
    banks = bench_banks()
    rebuilt = banks_from_responses(answers(banks, gap_free_plan(BENCH)))
    regs = list(rebuilt.input_registers)
    assert regs[:21] == bench_registers()[:21]
    assert regs[21:56] == [0] * 35
    assert regs[56:] == bench_registers()[56:]
    assert decode_banks(rebuilt, timestamp=1234.5, address=30) == BENCH_FRAME


def test_bit_answers_may_carry_byte_padding() -> None:
    request = ReadRequest(2, 0, 20)
    rebuilt = banks_from_responses({request: [True] * 20 + [False] * 4})
    assert rebuilt.channel_bits == (True,) * 20 + (False,) * 60


@pytest.mark.parametrize(
    ("request_", "answer"),
    [
        (ReadRequest(4, 0, 70), [0] * 69),
        (ReadRequest(4, 0, 70), [0] * 71),
        (ReadRequest(2, 0, 80), [False] * 79),
        (ReadRequest(2, 0, 20), [False] * 25),
        (ReadRequest(2, 1000, 16), [False] * 8),
        (ReadRequest(4, 0, 2), [0, 0x10000]),
        (ReadRequest(4, 0, 2), [0, True]),
        (ReadRequest(2, 0, 2), [0, 2]),
    ],
)
def test_bad_answers_are_frame_errors(request_: ReadRequest, answer: list[int]) -> None:
    with pytest.raises(ServomexFrameError) as info:
        banks_from_responses({request_: answer})
    assert info.value.context.function_code == request_.function


@pytest.mark.parametrize(
    "request_",
    [ReadRequest(4, 60, 11), ReadRequest(2, 72, 9), ReadRequest(2, 1008, 9), ReadRequest(1, 0, 1)],
)
def test_requests_outside_the_map_are_refused(request_: ReadRequest) -> None:
    with pytest.raises(ServomexValidationError):
        banks_from_responses({request_: [0] * request_.count})
