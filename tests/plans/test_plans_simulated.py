"""The helper plans against the simulated analyser."""

from __future__ import annotations

import time

import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import init_devices
from planhelpers import record

from ophyd_servomex.codec.models import CalPhase, ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.devices.status import status_flags
from ophyd_servomex.plans import count_when_idle, wait_for_stable
from ophyd_servomex.sim import SimConfig, SimulatorThread, WireKind


def test_count_when_idle_waits_out_a_running_calibration(RE: RunEngine) -> None:
    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, noisy=False, time_scale=100.0, flush_time=20.0)
    with SimulatorThread(config) as sim:
        with init_devices():
            gas = ServomexAnalyser(
                sim.port, protocol="modbus-rtu", address=30, inter_frame_idle=0.0
            )
        try:
            sim.analyser.write_coil(0, True)  # someone at the panel starts group 1 (0.6 s)
            assert sim.analyser.calibrating_group == 1
            docs = record(RE)
            started = time.monotonic()
            RE(count_when_idle([gas], num=3, poll_period=0.05))
            waited = time.monotonic() - started
            sweeps = len(sim.log.events(WireKind.REQUEST)) // 3
        finally:
            call_in_bluesky_event_loop(gas.disconnect())
        cal_log = sim.analyser.calibration_log
    assert [e.phase for e in cal_log][-1] is CalPhase.DONE
    assert len(docs["event"]) == 3
    for event in docs["event"]:
        assert event["data"]["gas-cal_group1"] == "idle"
        assert "calibrating" not in status_flags(event["data"]["gas-i1-status"])
    assert sweeps > 3 + 1  # busy looks before the first event (plus connect's sweep)
    assert waited >= 0.3


def test_wait_for_stable_settles_on_the_simulated_value(RE: RunEngine) -> None:
    config = SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, noisy=False, period=0.02)
    with SimulatorThread(config) as sim:
        with init_devices():
            gas = ServomexAnalyser(sim.port, protocol="continuous", expected_period=0.02)
        try:
            value = RE(wait_for_stable(gas, "I1", 0.0005, 0.1, poll_period=0.0)).plan_result
        finally:
            call_in_bluesky_event_loop(gas.disconnect())
    assert value == pytest.approx(20.378, abs=1e-9)
