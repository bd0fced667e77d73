"""The status discretes decoded and encoded: a channel slot's eight status bits
(docs/protocol.md §5.5, §8), and the analyser discretes 1000–1015 with the autocal groups'
calibrating and gas bits (§5.6; their addresses, ``CAL_GROUP_DISCRETES``, are part of the
register map, whose import-time check covers them).

Public names are re-exported by :mod:`ophyd_servomex.codec.registers`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._register_map import (
    ANALYSER_DISCRETE_COUNT,
    ANALYSER_DISCRETE_START,
    ANALYSER_FAULT_DISCRETE,
    ANALYSER_MAINTENANCE_DISCRETE,
    CAL_GROUP_DISCRETES,
    CHANNEL_BITS,
)
from .errors import (
    ServomexValidationError,
)
from .models import (
    AnalyserStatus,
    CalGroupState,
    CalPhase,
    ChannelId,
    ChannelKind,
    ChannelStatus,
)

# --- status bits ---------------------------------------------------------------------------


def _bits(bits: Sequence[bool], size: int, what: str) -> tuple[bool, ...]:
    if len(bits) > size:
        raise ServomexValidationError(f"{what} has {size} bits, not {len(bits)}")
    return tuple(bool(b) for b in bits) + (False,) * (size - len(bits))


def status_from_bits(channel: ChannelId, bits: Sequence[bool]) -> ChannelStatus:
    """Decode a slot's eight status discretes (docs/protocol.md §5.5, §8).

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
