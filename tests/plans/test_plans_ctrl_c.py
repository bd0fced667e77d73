"""One Ctrl-C stops the calibration gas: the plan waits at checkpoints, pausing stops it.

bluesky's first Ctrl-C is a *deferred* pause (``RE.request_pause(defer=True)``), which
takes effect at the next checkpoint. The calibration plans used to wait in one
``bps.wait``, so the gas flowed to the end and the run said ``success``. Against the
simulated analyser, in phase cal_gas_1: the stop coil pulse must be on the wire soon after
the request, the group idle, and the run must never end ``success``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import RunEngineInterrupted
from ophyd_async.core import init_devices
from planhelpers import record

from ophyd_servomex.codec.models import CalPhase, ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.plans import CalibrationStoppedError, calibrate, calibration_run
from ophyd_servomex.sim import SimConfig, SimulatorThread, WireEvent, WireKind

START_GROUP_1_ON = bytes.fromhex("1E 05 00 00 FF 00 8E 55")  # docs: coil 0 on, address 30
STOP_ALL_ON = bytes.fromhex("1E 05 00 08 FF 00 0F 97")  # coil 8 (stop all) on
STOP_ALL_OFF = bytes.fromhex("1E 05 00 08 00 00 4E 67")

STOP_WITHIN = 3.0
"""Seconds from the pause request to the stop pulse on the wire: about 0.7 s is typical
(a 0.1 s checkpoint period plus bluesky's own 0.5 s at the checkpoint); the margin is for
a loaded machine. The gas would flow for 20 s more, so a late stop still shows."""


@contextmanager
def bench() -> Iterator[tuple[SimulatorThread, ServomexAnalyser]]:
    """The bench unit in Modbus RTU with 10 s of real time per calibration gas."""
    config = SimConfig(
        mode=ProtocolKind.MODBUS_RTU, noisy=False, seed=1, time_scale=10.0, flush_time=100.0
    )
    with SimulatorThread(config) as sim:
        with init_devices(set_name=False):
            gas = ServomexAnalyser(
                sim.port,
                protocol="modbus-rtu",
                address=30,
                inter_frame_idle=0.0,
                calibration_poll_period=0.05,
                name="gas",
            )
        try:
            yield sim, gas
        finally:
            call_in_bluesky_event_loop(gas.disconnect())


def requests(sim: SimulatorThread) -> list[WireEvent]:
    return list(sim.log.events(WireKind.REQUEST))


def when_gas_flows(sim: SimulatorThread, action: Callable[[], None]) -> Callable[[], float]:
    """Run ``action`` from a thread once group 1 flows gas 1; returns when it ran."""
    at: list[float] = []

    def run() -> None:
        deadline = time.monotonic() + 20
        while sim.analyser.calibrating_group != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # well inside cal_gas_1
        at.append(time.monotonic())
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def joined() -> float:
        thread.join(30)
        return at[0]

    return joined


def check_stopped_in_time(sim: SimulatorThread, requested_at: float) -> float:
    """The stop pulse follows the request promptly, the group is idle; returns the delay."""
    sent = requests(sim)
    data = [e.data for e in sent]
    assert data.count(START_GROUP_1_ON) == 1
    assert data.count(STOP_ALL_ON) == 1
    stop = sent[data.index(STOP_ALL_ON)]
    delay = stop.time - requested_at
    assert 0 < delay < STOP_WITHIN
    assert STOP_ALL_OFF in data[data.index(STOP_ALL_ON) :]  # the pulse was released
    assert sim.analyser.calibrating_group is None
    phases = [(e.group, e.phase) for e in sim.analyser.calibration_log]
    assert phases == [(1, CalPhase.CAL_GAS_1), (1, CalPhase.STOPPED)]
    return delay


@pytest.mark.parametrize("then", ["abort", "resume", "stop"])
def test_one_deferred_pause_stops_the_gas_and_the_run_never_says_success(
    RE: RunEngine, then: str
) -> None:
    with bench() as (sim, gas):
        docs = record(RE)
        requested = when_gas_flows(sim, lambda: RE.request_pause(defer=True))
        with pytest.raises(RunEngineInterrupted):
            RE(calibration_run(gas, 1, confirm=True))
        requested_at = requested()
        assert RE.state == "paused"
        delay = check_stopped_in_time(sim, requested_at)
        progress = gas.calibration.last_progress
        assert progress is not None
        assert progress.phase is CalPhase.STOPPED
        assert not gas.calibration.running
        if then == "abort":
            RE.abort("operator")
        elif then == "resume":  # the resumed plan must not carry on as if calibrated
            with pytest.raises(CalibrationStoppedError, match="stopped after"):
                RE.resume()
        else:
            RE.stop()  # bluesky would call this a success
        time.sleep(0.2)
        data = [e.data for e in requests(sim)]
    print(f"stop pulse {delay:.2f} s after the deferred pause request")
    (stop,) = docs["stop"]
    expected = {"abort": "abort", "resume": "fail", "stop": "abort"}[then]
    assert stop["exit_status"] == expected
    if then != "abort":
        assert "stopped" in stop["reason"]
    assert data.count(START_GROUP_1_ON) == 1  # nothing started the calibration again
    assert RE.state == "idle"
    # the run kept its readings: one before the calibration, the monitor while it ran
    streams = {d["name"] for d in docs["descriptor"]}
    assert "primary" in streams


def test_a_real_sigint_stops_the_gas(RE: RunEngine) -> None:
    """SIGINT through bluesky's own SigintHandler (RE called from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    with bench() as (sim, gas):
        docs = record(RE)
        requested = when_gas_flows(sim, lambda: os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(RunEngineInterrupted):
            RE(calibration_run(gas, 1, confirm=True))
        requested_at = requested()
        delay = check_stopped_in_time(sim, requested_at)
        RE.abort("Ctrl-C")
    print(f"stop pulse {delay:.2f} s after SIGINT")
    assert docs["stop"][0]["exit_status"] == "abort"


def test_the_bare_stub_stops_too_and_a_resume_raises(RE: RunEngine) -> None:
    with bench() as (sim, gas):
        requested = when_gas_flows(sim, lambda: RE.request_pause(defer=True))
        with pytest.raises(RunEngineInterrupted):
            RE(calibrate(gas, 1, confirm=True))
        check_stopped_in_time(sim, requested())
        with pytest.raises(CalibrationStoppedError):
            RE.resume()


def test_aborting_mid_wait_sends_the_stop_pulse_before_the_run_closes(RE: RunEngine) -> None:
    with bench() as (sim, gas):
        events: list[tuple[str, Any]] = []
        RE.subscribe(lambda name, doc: events.append((name, time.monotonic())))
        requested = when_gas_flows(sim, lambda: RE.abort("operator"))
        with pytest.raises(RunEngineInterrupted):
            RE(calibration_run(gas, 1, confirm=True))
        requested_at = requested()
        check_stopped_in_time(sim, requested_at)
        sent = requests(sim)
    stop_pulse = next(e.time for e in sent if e.data == STOP_ALL_ON)
    closed = next(t for name, t in events if name == "stop")
    assert stop_pulse < closed  # the plan stopped the gas, then closed the run


def test_a_resume_never_replays_the_set_that_started_the_gas(RE: RunEngine) -> None:
    """A hard pause (a second Ctrl-C) landing between the ``set`` and the next checkpoint
    would make a resume replay the ``set`` and start the gas again; the calibration, told
    of the pause after its stop, refuses that replay. ``bps.pause()`` puts the hard pause
    exactly there."""
    with bench() as (sim, gas):

        def plan() -> Any:
            yield from bps.checkpoint()
            yield from bps.abs_set(gas.calibration, 1, confirm=True, group="cal")
            yield from bps.pause()  # the replay would be: the set
            yield from bps.wait("cal")
            return gas.calibration.last_progress

        with pytest.raises(RunEngineInterrupted):
            RE(plan())
        stopped_group = sim.analyser.calibrating_group
        progress = RE.resume().plan_result
        data = [e.data for e in requests(sim)]
    assert stopped_group is None
    assert data.count(START_GROUP_1_ON) == 1  # not started again by a replayed set
    assert data.count(STOP_ALL_ON) == 1
    assert progress.phase is CalPhase.STOPPED
