"""The pure state model: channels, values (set-point, noise, drift), alarms and flags."""

from __future__ import annotations

import itertools
import statistics
import struct
from datetime import datetime
from pathlib import Path

import pytest
from simhelpers import FakeClock

from ophyd_servomex.codec.continuous import build_frame, parse_frame
from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import ChannelId, ChannelStatus, Unit
from ophyd_servomex.codec.registers import decode_banks
from ophyd_servomex.sim import SimAlarm, SimAnalyser, SimChannel, bench_channels

FIXTURES = Path(__file__).parents[1] / "fixtures"
FIXED_CLOCK = datetime(2020, 10, 6, 2, 54, 12)


def bench(clock: FakeClock, **kwargs: object) -> SimAnalyser:
    return SimAnalyser(
        bench_channels(noisy=False),
        clock=clock,
        analyser_clock=lambda: FIXED_CLOCK,
        **kwargs,  # type: ignore[arg-type]
    )


def test_bench_truth_is_exact_without_noise(clock: FakeClock) -> None:
    frame = bench(clock).truth()
    assert frame.channels == (ChannelId.I1, ChannelId.I2, ChannelId.I3, ChannelId.E1, ChannelId.E2)
    assert frame.values == {
        ChannelId.I1: 20.378,
        ChannelId.I2: 0.084,
        ChannelId.I3: 0.25,
        ChannelId.E1: 0.0,
        ChannelId.E2: 0.0,
    }
    assert [r.name for r in frame.readings] == ["Oxygen", "CO", "CO₂", None, None]
    assert [r.unit for r in frame.readings] == [Unit.PERCENT] * 3 + [Unit.MILLIAMP] * 2
    assert all(r.status == ChannelStatus() for r in frame.readings)
    assert frame.address == 30
    assert frame.analyser.clock == FIXED_CLOCK
    assert not frame.analyser.fault
    assert not frame.analyser.calibrating


def test_bench_continuous_frame_bytes(clock: FakeClock) -> None:
    line = build_frame(bench(clock).truth())
    assert line == (
        b" 06-10-20;02:54:12;  ;S1S1S1S1;05;"
        b"I1;Oxygen;20.378; % ;    ;  ; ; ;"
        b"I2;CO    ; 0.084; % ;    ;  ; ; ;"
        b"I3;CO2   ; 0.250; % ;    ;  ; ; ;"
        b"E1;||||||;   0.0; mA;    ;  ; ; ;"
        b"E2;||||||;   0.0; mA;    ;  ; ; ;"
        b"2A1F;\r\n"
    )
    assert int(line[199:203], 16) == sum(line[1:199])
    assert parse_frame(line).values == bench(clock).truth().values


def test_reproduces_the_real_idle_capture(clock: FakeClock) -> None:
    """With the bench's idle O₂ reading, the simulator sends capture frame 0 byte for byte."""
    analyser = bench(clock)
    analyser.set_setpoint("I1", 20.376)
    captured = (FIXTURES / "continuous_4100_idle_5ch.bin").read_bytes()[:205]
    assert build_frame(analyser.truth(), line_ending=b"\n") == captured


def test_bench_registers(clock: FakeClock) -> None:
    banks = bench(clock).banks()
    regs = banks.input_registers
    assert regs[0:2] == (0x41A3, 0x0625)
    assert regs[7:9] == (0x3DAC, 0x0831)
    assert regs[14:16] == (0x3E80, 0x0000)
    assert b"".join(r.to_bytes(2, "big") for r in regs[16:19]) == bytes.fromhex("434F82202020")
    assert regs[21:28] == (0, 0, 0x2020, 0x2020, 0x2020, 0, 0)  # I4 unconfigured
    frame = decode_banks(banks, timestamp=0.0)
    assert frame.channels == (ChannelId.I1, ChannelId.I2, ChannelId.I3, ChannelId.E1, ChannelId.E2)
    assert frame.channel("I3").name == "CO₂"
    assert not any(banks.channel_bits)
    assert not any(banks.analyser_bits)


def test_setpoint_moves_value(clock: FakeClock) -> None:
    analyser = bench(clock)
    analyser.set_setpoint("I1", 19.5)
    assert analyser.setpoint(ChannelId.I1) == 19.5
    assert analyser.truth().channel("I1").value == 19.5
    with pytest.raises(ServomexValidationError):
        analyser.set_setpoint("I1", float("nan"))
    with pytest.raises(ServomexValidationError):
        analyser.set_setpoint("I4", 1.0)  # not configured


def test_noise_is_gaussian_and_seeded(clock: FakeClock) -> None:
    channel = SimChannel(ChannelId.I1, "Oxygen", "%", 20.0, noise=0.01)
    values = []
    analyser = SimAnalyser([channel], clock=clock, seed=7)
    for _ in range(2000):
        clock.advance(0.1)
        values.append(analyser.truth().channel("I1").value)
    assert statistics.fmean(v for v in values if v is not None) == pytest.approx(20.0, abs=0.002)
    assert statistics.pstdev(v for v in values if v is not None) == pytest.approx(0.01, rel=0.1)
    # the same seed on the same clock gives the same values
    clock2 = FakeClock()
    again = SimAnalyser([channel], clock=clock2, seed=7)
    replay = []
    for _ in range(2000):
        clock2.advance(0.1)
        replay.append(again.truth().channel("I1").value)
    assert replay == values


def test_same_instant_same_frame(clock: FakeClock) -> None:
    analyser = SimAnalyser(bench_channels(), clock=clock, seed=1)
    assert analyser.truth() is analyser.truth()
    first = analyser.truth()
    clock.advance(1.0)
    assert analyser.truth().values != first.values


def test_drift_stays_bounded(clock: FakeClock) -> None:
    channel = SimChannel(ChannelId.I1, "O2", "%", 10.0, drift=0.05, drift_time=10.0)
    analyser = SimAnalyser([channel], clock=clock, seed=3)
    values = []
    for _ in range(3000):
        clock.advance(1.0)
        value = analyser.truth().channel("I1").value
        assert value is not None
        values.append(value)
    assert all(9.95 <= v <= 10.05 for v in values)
    assert max(values) - min(values) > 0.02  # it does wander
    # slow: neighbouring samples (1 s apart, 10 s correlation time) are close
    steps = [abs(b - a) for a, b in itertools.pairwise(values)]
    assert statistics.fmean(steps) < 0.01


def test_decimals_round_the_truth(clock: FakeClock) -> None:
    channel = SimChannel(ChannelId.I1, "O2", "%", 20.0, noise=0.01, decimals=2)
    analyser = SimAnalyser([channel], clock=clock, seed=5)
    for _ in range(50):
        clock.advance(0.5)
        value = analyser.truth().channel("I1").value
        assert value is not None
        assert round(value, 2) == value


def test_alarms_trip_on_thresholds(clock: FakeClock) -> None:
    alarms = (SimAlarm(21.0), SimAlarm(19.0, high=False), None, SimAlarm(25.0))
    channel = SimChannel(ChannelId.I1, "Oxygen", "%", 20.0, alarms=alarms)
    analyser = SimAnalyser([channel], clock=clock)
    assert analyser.truth().channel("I1").status.alarms == (False, False, False, False)
    analyser.set_setpoint("I1", 22.0)
    status = analyser.truth().channel("I1").status
    assert status.alarms == (True, False, False, False)
    assert not status.ok
    analyser.set_setpoint("I1", 18.0)
    assert analyser.truth().channel("I1").status.alarms == (False, True, False, False)
    analyser.set_setpoint("I1", 30.0)
    assert analyser.truth().channel("I1").status.alarms == (True, False, False, True)
    banks = analyser.banks()
    assert banks.channel_bits[0:8] == (False,) * 4 + (True, False, False, True)
    assert b"1  4" in build_frame(analyser.truth())


def test_fault_maintenance_warm_up(clock: FakeClock) -> None:
    analyser = bench(clock)
    analyser.set_fault()
    analyser.set_maintenance()
    analyser.set_fault(channel="I2")
    analyser.set_maintenance(channel=ChannelId.I3)
    analyser.set_warming_up()
    analyser.set_fault(channel="E2")
    frame = analyser.truth()
    assert (frame.analyser.fault, frame.analyser.maintenance) == (True, True)
    assert frame.channel("I1").status == ChannelStatus(warming_up=True)
    assert frame.channel("I2").status == ChannelStatus(fault=True, warming_up=True)
    assert frame.channel("I3").status == ChannelStatus(maintenance=True, warming_up=True)
    assert frame.channel("E1").status == ChannelStatus()
    assert frame.channel("E2").status == ChannelStatus(fault=True)
    line = build_frame(frame)
    assert line[19:21] == b"FM"
    banks = analyser.banks()
    assert banks.analyser_bits[:2] == (True, True)
    assert banks.channel_bits[72] is True  # E2 Invalid
    analyser.set_warming_up(False)
    analyser.set_fault(False)
    assert analyser.truth().channel("I1").status == ChannelStatus()
    assert not analyser.truth().analyser.fault


def test_derived_channel_copies_parent_flags(clock: FakeClock) -> None:
    channels = [
        *bench_channels(noisy=False),
        SimChannel(ChannelId.D1, "O2dry", "%", 21.0, parent=ChannelId.I1),
    ]
    analyser = SimAnalyser(channels, clock=clock)
    assert analyser.channels[-3:] == (ChannelId.D1, ChannelId.E1, ChannelId.E2)
    analyser.set_fault(channel="I1")
    status = analyser.truth().channel("D1").status
    assert status.fault
    assert analyser.banks().channel_bits[32] is True


def test_configuration_errors(clock: FakeClock) -> None:
    with pytest.raises(ServomexValidationError):
        SimAnalyser([], clock=clock)
    with pytest.raises(ServomexValidationError):
        SimAnalyser(bench_channels(), address=0)
    with pytest.raises(ServomexValidationError):
        SimAnalyser(bench_channels(), time_scale=0)
    with pytest.raises(ServomexValidationError):
        SimAnalyser([*bench_channels(), SimChannel(ChannelId.I1, "x", "%")])
    with pytest.raises(ServomexValidationError):
        SimChannel(ChannelId.I1, "x", "%", noise=-1)
    with pytest.raises(ServomexValidationError):
        SimChannel(ChannelId.I2, "x", "%", parent=ChannelId.I1)  # only D channels have one
    with pytest.raises(ServomexValidationError):
        SimAnalyser([SimChannel(ChannelId.D1, "x", "%", parent=ChannelId.I1)])
    with pytest.raises(ServomexValidationError):
        SimAnalyser(bench_channels(), cal_groups={1: ["I4"]})
    with pytest.raises(ServomexValidationError):
        SimAnalyser(bench_channels(), cal_groups={5: ["I1"]})


def test_float32_of_bench_values() -> None:
    packed = struct.pack(">f", 20.378)
    assert packed.hex() == "41a30625"
