"""The autocal state machine: phases, queuing, stop, coil edges, time scale, wire views."""

from __future__ import annotations

import pytest
from simhelpers import FakeClock

from ophyd_servomex.codec.continuous import build_frame, parse_frame
from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import CalGroupState, CalPhase, ChannelId
from ophyd_servomex.codec.registers import CAL_START_COIL, CAL_STOP_COIL
from ophyd_servomex.sim import Autocal, CalLogEntry, SimAnalyser, answer, bench_channels

G1, G2, DONE, STOPPED, QUEUED = (
    CalPhase.CAL_GAS_1,
    CalPhase.CAL_GAS_2,
    CalPhase.DONE,
    CalPhase.STOPPED,
    CalPhase.SAMPLING,
)


def test_phases_gas1_gas2_gas1_each_flush_time() -> None:
    cal = Autocal(flush_time=10.0)
    assert cal.start(1, 5.0)
    assert cal.state(1) == CalGroupState(1, G1, cal_gas=1)
    cal.advance(14.999)
    assert cal.state(1).phase is G1
    cal.advance(15.0)
    assert cal.state(1) == CalGroupState(1, G2, cal_gas=2)
    assert cal.remaining() == pytest.approx(20.0)
    cal.advance(1000.0)  # one late look replays every change at its exact time
    assert cal.running is None
    assert cal.state(1) == CalGroupState(1, CalPhase.IDLE, cal_gas=1)
    assert cal.log == [
        CalLogEntry(5.0, 1, G1),
        CalLogEntry(15.0, 1, G2),
        CalLogEntry(25.0, 1, G1),
        CalLogEntry(35.0, 1, DONE),
    ]


def test_one_group_at_a_time_others_queue() -> None:
    cal = Autocal(flush_time=10.0)
    assert cal.start(2, 0.0)
    assert cal.start(4, 1.0)
    assert cal.start(1, 2.0)
    assert not cal.start(4, 3.0)  # already queued
    assert not cal.start(2, 3.0)  # already running
    assert cal.running == 2
    assert cal.queued == (4, 1)
    assert cal.state(4).phase is CalPhase.IDLE  # waiting groups still sample
    cal.advance(60.0)
    assert cal.running == 1
    cal.advance(90.0)
    assert cal.running is None
    assert cal.log == [
        CalLogEntry(0.0, 2, G1),
        CalLogEntry(1.0, 4, QUEUED),
        CalLogEntry(2.0, 1, QUEUED),
        CalLogEntry(10.0, 2, G2),
        CalLogEntry(20.0, 2, G1),
        CalLogEntry(30.0, 2, DONE),
        CalLogEntry(30.0, 4, G1),
        CalLogEntry(40.0, 4, G2),
        CalLogEntry(50.0, 4, G1),
        CalLogEntry(60.0, 4, DONE),
        CalLogEntry(60.0, 1, G1),
        CalLogEntry(70.0, 1, G2),
        CalLogEntry(80.0, 1, G1),
        CalLogEntry(90.0, 1, DONE),
    ]


def test_stop_all_ends_running_and_queued() -> None:
    cal = Autocal(flush_time=10.0)
    cal.start(1, 0.0)
    cal.start(3, 0.0)
    assert cal.stop_all(12.0) == (1, 3)
    assert cal.running is None
    assert cal.queued == ()
    assert cal.log[-2:] == [CalLogEntry(12.0, 1, STOPPED), CalLogEntry(12.0, 3, STOPPED)]
    assert cal.stop_all(13.0) == ()
    cal.advance(100.0)
    assert cal.log[-1] == CalLogEntry(12.0, 3, STOPPED)  # nothing resumed


def test_autocal_validation() -> None:
    with pytest.raises(ServomexValidationError):
        Autocal(flush_time=0)
    with pytest.raises(ServomexValidationError):
        Autocal(sequence=(1, 3))
    with pytest.raises(ServomexValidationError):
        Autocal().start(5, 0.0)


def sim(clock: FakeClock, **kwargs: object) -> SimAnalyser:
    return SimAnalyser(bench_channels(noisy=False), clock=clock, **kwargs)  # type: ignore[arg-type]


def test_coil_edges_start_and_stop(clock: FakeClock) -> None:
    analyser = sim(clock, flush_time=60.0)
    analyser.write_coil(CAL_START_COIL[1], True)
    assert analyser.calibrating_group == 1
    assert analyser.coils == (True,) + (False,) * 8
    clock.advance(10.0)
    analyser.write_coil(0, True)  # still 1: no edge, nothing starts
    assert [e.phase for e in analyser.calibration_log] == [G1]
    analyser.write_coil(0, False)  # the master releases the coil
    analyser.write_coil(1, True)  # group 2 queues behind group 1
    assert analyser.queued_groups == (2,)
    analyser.write_coil(CAL_STOP_COIL, True)
    assert analyser.calibrating_group is None
    assert analyser.queued_groups == ()
    analyser.write_coil(CAL_STOP_COIL, True)  # no edge: nothing logged
    assert [(e.group, e.phase) for e in analyser.calibration_log] == [
        (1, G1),
        (2, QUEUED),
        (1, STOPPED),
        (2, STOPPED),
    ]
    # after 0, a new 0 → 1 edge starts group 1 again; coils 4–7 are inert
    analyser.write_coil(0, True)
    analyser.write_coils(4, [True, True, True, True])
    assert analyser.calibrating_group == 1
    assert analyser.coils == (True, True, False, False, True, True, True, True, True)
    with pytest.raises(ServomexValidationError):
        analyser.write_coil(9, True)


def test_fc15_applies_each_edge_in_order(clock: FakeClock) -> None:
    analyser = sim(clock)
    analyser.write_coils(0, [True, True, True, True])
    assert analyser.calibrating_group == 1
    assert analyser.queued_groups == (2, 3, 4)


def test_time_scale_makes_a_long_cal_short(clock: FakeClock) -> None:
    """Four groups × 3 × 100 s = 20 minutes of simulated time in 2 real seconds."""
    analyser = sim(clock, flush_time=100.0, time_scale=600.0)
    analyser.write_coils(0, [True, True, True, True])
    clock.advance(1.999)
    assert analyser.calibrating_group == 4
    clock.advance(0.001)
    assert analyser.calibrating_group is None
    log = analyser.calibration_log
    assert log[-1] == CalLogEntry(pytest.approx(1200.0), 4, DONE)  # type: ignore[arg-type]
    assert len([e for e in log if e.phase is DONE]) == 4


def test_calibrating_channels_and_wire_views(clock: FakeClock) -> None:
    analyser = sim(clock, flush_time=60.0, cal_groups={1: ["I1"], 2: ["I2", "I3"]})
    assert analyser.group_members(2) == frozenset({ChannelId.I2, ChannelId.I3})
    analyser.write_coil(1, True)  # group 2
    frame = analyser.truth()
    assert [r.channel for r in frame.readings if r.status.calibrating] == [
        ChannelId.I2,
        ChannelId.I3,
    ]
    line = build_frame(frame)
    assert line[22:30] == b"S1C1S1S1"
    assert parse_frame(line).analyser.group(2).phase is G1
    assert answer(analyser, bytes.fromhex("0203F00008")) == bytes.fromhex("020104")
    clock.advance(60.0)
    line = build_frame(analyser.truth())
    assert line[22:30] == b"S1C2S1S1"
    assert answer(analyser, bytes.fromhex("0203F00008")) == bytes.fromhex("02010C")
    # I2's status byte: bit 2 (calibrating); I1 is not in group 2
    assert answer(analyser, bytes.fromhex("0200000018")) == bytes.fromhex("0203000404")
    clock.advance(60.0)
    assert build_frame(analyser.truth())[22:30] == b"S1C1S1S1"
    clock.advance(60.0)
    frame = analyser.truth()
    assert build_frame(frame)[22:30] == b"S1S1S1S1"
    assert not any(r.status.calibrating for r in frame.readings)
    assert answer(analyser, bytes.fromhex("0203F00008")) == bytes.fromhex("020100")


def test_default_group_membership(clock: FakeClock) -> None:
    analyser = sim(clock)
    assert analyser.group_members(1) == frozenset({ChannelId.I1, ChannelId.I2, ChannelId.I3})
    assert analyser.group_members(2) == frozenset()
    analyser.write_coil(3, True)  # group 4 has no channels but still runs its gases
    frame = analyser.truth()
    assert frame.analyser.group(4).phase is G1
    assert not any(r.status.calibrating for r in frame.readings)
