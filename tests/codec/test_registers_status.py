"""Channel and analyser status discretes (docs/protocol.md §5.5, §5.6, §8, §9)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import (
    AnalyserStatus,
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelStatus,
)
from ophyd_servomex.codec.registers import (
    analyser_status_from_bits,
    bits_from_analyser_status,
    bits_from_status,
    status_from_bits,
)

NO_ALARM = (False, False, False, False)


def one_bit(index: int, size: int = 8) -> tuple[bool, ...]:
    return tuple(i == index for i in range(size))


I_AND_D = [ChannelId.I1, ChannelId.I4, ChannelId.D1, ChannelId.D4]
E = [ChannelId.E1, ChannelId.E2]

SINGLE_BIT_I = {
    0: ChannelStatus(fault=True),
    1: ChannelStatus(maintenance=True),
    2: ChannelStatus(calibrating=True),
    3: ChannelStatus(warming_up=True),
    4: ChannelStatus(alarms=(True, False, False, False)),
    5: ChannelStatus(alarms=(False, True, False, False)),
    6: ChannelStatus(alarms=(False, False, True, False)),
    7: ChannelStatus(alarms=(False, False, False, True)),
}


@pytest.mark.parametrize("channel", I_AND_D)
@pytest.mark.parametrize(("bit", "status"), SINGLE_BIT_I.items())
def test_i_and_d_bits(channel: ChannelId, bit: int, status: ChannelStatus) -> None:
    assert status_from_bits(channel, one_bit(bit)) == status
    assert bits_from_status(channel, status) == one_bit(bit)


def test_ok_rule_for_i_channels() -> None:
    assert status_from_bits(ChannelId.I1, one_bit(0)).ok is False
    assert status_from_bits(ChannelId.I1, one_bit(5)).ok is False
    for bit in (1, 2, 3):  # maintenance, calibration, warm-up do not clear ok
        assert status_from_bits(ChannelId.I1, one_bit(bit)).ok is True


@pytest.mark.parametrize("channel", E)
def test_e_bit0_is_invalid_reported_as_fault(channel: ChannelId) -> None:
    status = status_from_bits(channel, one_bit(0))
    assert status == ChannelStatus(fault=True)
    assert status.ok is False


@pytest.mark.parametrize("channel", E)
def test_e_reserved_bits_are_ignored_even_when_set(channel: ChannelId) -> None:
    assert status_from_bits(channel, (False, True, True, True)) == ChannelStatus()
    everything = status_from_bits(channel, (True,) * 8)
    assert everything == ChannelStatus(fault=True, alarms=(True, True, True, True))
    assert status_from_bits(channel, (False, True, True, True, False, True)) == ChannelStatus(
        alarms=(False, True, False, False)
    )


@pytest.mark.parametrize("channel", E)
def test_e_alarm_bits(channel: ChannelId) -> None:
    for k in range(4):
        expected = tuple(i == k for i in range(4))
        assert status_from_bits(channel, one_bit(4 + k)).alarms == expected


@pytest.mark.parametrize("channel", E)
def test_e_channels_drop_flags_they_cannot_carry(channel: ChannelId) -> None:
    status = ChannelStatus(
        fault=True, maintenance=True, calibrating=True, warming_up=True, alarms=(True,) * 4
    )
    assert bits_from_status(channel, status) == (True, False, False, False, True, True, True, True)


def test_short_arrays_read_missing_bits_as_zero() -> None:
    assert status_from_bits(ChannelId.I1, ()) == ChannelStatus()
    assert status_from_bits(ChannelId.I2, (True, True)) == ChannelStatus(
        fault=True, maintenance=True
    )
    assert status_from_bits(ChannelId.E1, [True, False, False, False, True]) == ChannelStatus(
        fault=True, alarms=(True, False, False, False)
    )


def test_too_many_bits_is_a_validation_error() -> None:
    with pytest.raises(ServomexValidationError):
        status_from_bits(ChannelId.I1, (False,) * 9)
    with pytest.raises(ServomexValidationError):
        analyser_status_from_bits((False,) * 17)


@given(st.sampled_from(list(ChannelId)), st.lists(st.booleans(), min_size=8, max_size=8))
def test_channel_bits_round_trip(channel: ChannelId, bits: list[bool]) -> None:
    expected = tuple(bits)
    if channel.value.startswith("E"):
        expected = (bits[0], False, False, False, *bits[4:])
    assert bits_from_status(channel, status_from_bits(channel, bits)) == expected


# --- analyser discretes --------------------------------------------------------------------


def idle(cal_gas: tuple[int, int, int, int] = (1, 1, 1, 1)) -> tuple[CalGroupState, ...]:
    return tuple(CalGroupState(g, CalPhase.IDLE, cal_gas[g - 1]) for g in (1, 2, 3, 4))


def test_all_zero_is_idle() -> None:
    status = analyser_status_from_bits((False,) * 16)
    assert status == AnalyserStatus()
    assert status.cal_groups == idle()
    assert status.clock is None
    assert status.calibrating is False


def test_fault_and_maintenance() -> None:
    assert analyser_status_from_bits(one_bit(0, 16)) == AnalyserStatus(fault=True)
    assert analyser_status_from_bits(one_bit(1, 16)) == AnalyserStatus(maintenance=True)
    assert bits_from_analyser_status(AnalyserStatus(fault=True)) == one_bit(0, 16)
    assert bits_from_analyser_status(AnalyserStatus(maintenance=True)) == one_bit(1, 16)


@pytest.mark.parametrize("bit", range(2, 8))
def test_undocumented_bits_are_ignored(bit: int) -> None:
    assert analyser_status_from_bits(one_bit(bit, 16)) == AnalyserStatus()


@pytest.mark.parametrize("group", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("calibrating", "gas", "phase", "cal_gas"),
    [
        (False, False, CalPhase.IDLE, 1),
        (False, True, CalPhase.IDLE, 2),
        (True, False, CalPhase.CAL_GAS_1, 1),
        (True, True, CalPhase.CAL_GAS_2, 2),
    ],
)
def test_each_cal_phase(
    group: int, calibrating: bool, gas: bool, phase: CalPhase, cal_gas: int
) -> None:
    bits = [False] * 16
    bits[8 + 2 * (group - 1)] = calibrating  # 11009 + 2(g-1) → PDU 1008 + 2(g-1)
    bits[9 + 2 * (group - 1)] = gas
    status = analyser_status_from_bits(bits)
    expected = list(idle())
    expected[group - 1] = CalGroupState(group, phase, cal_gas)
    assert status.cal_groups == tuple(expected)
    assert status.group(group).calibrating is calibrating
    assert status.calibrating is calibrating
    assert bits_from_analyser_status(status) == tuple(bits)


def test_short_analyser_array() -> None:
    assert analyser_status_from_bits([True]) == AnalyserStatus(fault=True)
    assert analyser_status_from_bits([]) == AnalyserStatus()


@pytest.mark.parametrize(
    ("state", "pair"),
    [
        (CalGroupState(1, CalPhase.SAMPLING, 1), (False, False)),
        (CalGroupState(1, CalPhase.DONE, 2), (False, True)),
        (CalGroupState(1, CalPhase.STOPPED, None), (False, False)),
        (CalGroupState(1, CalPhase.CAL_GAS_2, None), (True, True)),
    ],
)
def test_driver_phases_encode_as_the_wire_can(
    state: CalGroupState, pair: tuple[bool, bool]
) -> None:
    groups = (state, *idle()[1:])
    bits = bits_from_analyser_status(AnalyserStatus(cal_groups=groups))  # type: ignore[arg-type]
    assert bits[8:10] == pair
    assert bits[10:] == (False,) * 6


@given(st.lists(st.booleans(), min_size=16, max_size=16))
def test_analyser_bits_round_trip(bits: list[bool]) -> None:
    expected = (*bits[:2], *(False,) * 6, *bits[8:])
    assert bits_from_analyser_status(analyser_status_from_bits(bits)) == expected
