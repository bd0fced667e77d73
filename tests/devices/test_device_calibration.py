"""Autocalibration against the simulator: progress bar, abort → stop pulse, gates before I/O."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import ProgressBarManager, RunEngineInterrupted, TerminalProgressBar
from devicehelpers import connect, disconnect, requests, simulator

from ophyd_servomex.codec.errors import (
    ServomexCapabilityError,
    ServomexConfirmationRequiredError,
    ServomexValidationError,
)
from ophyd_servomex.codec.modbus_frames import crc16
from ophyd_servomex.codec.models import CalPhase, ProtocolKind
from ophyd_servomex.plans import calibrate
from ophyd_servomex.sim import Direction

RTU = ProtocolKind.MODBUS_RTU
CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII


def rtu(*pdu: int) -> bytes:
    """An RTU request to the bench unit's address 30 (CRC low byte first)."""
    body = bytes((30, *pdu))
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


START_GROUP_1_ON = bytes.fromhex("1E 05 00 00 FF 00 8E 55")  # docs/protocol.md §5.11
START_GROUP_1_OFF = bytes.fromhex("1E 05 00 00 00 00 CF A5")
STOP_ALL_ON = bytes.fromhex("1E 05 00 08 FF 00 0F 97")


class RecordingBar(TerminalProgressBar):
    """bluesky's terminal progress bar, drawing at once and keeping every update."""

    updates: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, status_objs: Any) -> None:
        super().__init__(status_objs, delay_draw=0)

    def update(self, pos: int, **kwargs: Any) -> None:
        RecordingBar.updates.append(kwargs)
        super().update(pos, **kwargs)


def phases_of(updates: list[dict[str, Any]]) -> list[str]:
    """The phase of each update (the end of its name), consecutive repeats dropped."""
    names = [u["name"].rsplit(": ", 1)[1] for u in updates]
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


def test_the_calibration_plan_draws_its_phases_with_progress_bar_manager(
    RE: RunEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    RecordingBar.updates = []
    RE.waiting_hook = ProgressBarManager(RecordingBar)
    with simulator(RTU, time_scale=100.0, flush_time=30.0) as sim:  # 0.3 s per gas
        analyser = connect(sim, RTU, calibration_poll_period=0.02)
        try:
            before = len(requests(sim))
            result = RE(calibrate(analyser, 1, confirm=True, gas_time=0.3))
            sent = requests(sim)[before:]
        finally:
            disconnect(analyser)
        cal_log = sim.analyser.calibration_log

    progress = result.plan_result
    assert progress.group == 1
    assert progress.phase is CalPhase.DONE
    assert progress.fraction == 1.0
    assert progress.done
    updates = RecordingBar.updates
    # the phase is the description; the unit is seconds, never a phase name
    assert phases_of(updates) == ["sampling", "cal_gas_1", "cal_gas_2", "cal_gas_1", "done"]
    assert {u["unit"] for u in updates} == {"s"}
    fraction_of = {"sampling": 0.0, "cal_gas_1": None, "cal_gas_2": 0.5, "done": 1.0}
    for update in updates:
        phase = update["name"].rsplit(": ", 1)[1]
        assert update["name"] == f"analyser-calibration group 1: {phase}"
        assert update["initial"] == 0.0
        assert 0.0 <= update["current"] < 5.0  # seconds in this phase
        if phase.startswith("cal_gas"):
            assert update["target"] == 0.3  # the expected seconds of a gas phase
            assert update["time_remaining"] >= 0.0
        else:
            assert "target" not in update  # unknown: no bar, no made-up total
        if fraction_of[phase] is not None:
            assert update["fraction"] == fraction_of[phase]
        assert update["fraction"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    # the time in a phase grows between polls and starts again at the next phase
    gas2 = [u["current"] for u in updates if u["name"].endswith("cal_gas_2")]
    assert gas2 == sorted(gas2)
    assert len(gas2) >= 2
    assert gas2[-1] > gas2[0]
    elapsed = [u["time_elapsed"] for u in updates]
    assert elapsed == sorted(elapsed)
    drawn = capsys.readouterr().out
    assert "analyser-calibration group 1: cal_gas_2" in drawn
    assert "cal_gas_1/s" not in drawn
    assert "s/cal_gas" not in drawn
    # the start pulse (on, read back, off), then only state reads: never the stop coil
    assert sent[0] == START_GROUP_1_ON
    assert sent[1] == rtu(0x01, 0x00, 0x00, 0x00, 0x01)
    assert sent[2] == START_GROUP_1_OFF
    assert STOP_ALL_ON not in sent
    assert set(sent[3:]) == {rtu(0x02, 0x03, 0xF0, 0x00, 0x08)}  # cal-group discretes
    assert [e.phase for e in cal_log if e.group == 1] == [
        CalPhase.CAL_GAS_1,
        CalPhase.CAL_GAS_2,
        CalPhase.CAL_GAS_1,
        CalPhase.DONE,
    ]


def test_abort_mid_calibration_ends_with_the_stop_pulse(RE: RunEngine) -> None:
    with simulator(RTU, time_scale=10.0, flush_time=30.0) as sim:  # 3 s per gas
        analyser = connect(sim, RTU, calibration_poll_period=0.02)

        def abort_when_gas_flows() -> None:
            deadline = time.monotonic() + 10
            while sim.analyser.calibrating_group != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            RE.abort("operator abort")

        try:
            before = len(requests(sim))
            aborter = threading.Thread(target=abort_when_gas_flows)
            aborter.start()
            with pytest.raises(RunEngineInterrupted):
                RE(calibrate(analyser, 1, confirm=True))
            aborter.join()
            sent = requests(sim)[before:]
            running_after = sim.analyser.calibrating_group
            last = analyser.calibration.last_progress
            status_running = analyser.calibration.running
        finally:
            disconnect(analyser)
        cal_log = sim.analyser.calibration_log

    assert sent[0] == START_GROUP_1_ON
    assert STOP_ALL_ON in sent  # the RunEngine's stop() pulsed the stop-all coil
    stop_at = sent.index(STOP_ALL_ON)
    assert sent[stop_at + 2] == rtu(0x05, 0x00, 0x08, 0x00, 0x00)  # ... and released it
    assert running_after is None
    assert [e.phase for e in cal_log][-1] is CalPhase.STOPPED
    assert last is not None
    assert last.phase is CalPhase.STOPPED
    assert not status_running


def test_missing_confirm_fails_before_any_byte(RE: RunEngine) -> None:
    with simulator(RTU) as sim:
        analyser = connect(sim, RTU)
        try:
            before = len(sim.log.events(direction=Direction.RX))
            with pytest.raises(ServomexConfirmationRequiredError):
                RE(calibrate(analyser, 1))
            with pytest.raises(ServomexConfirmationRequiredError):
                analyser.calibrate(1)
            with pytest.raises(ServomexValidationError):
                analyser.calibrate(5, confirm=True)
            with pytest.raises(ServomexValidationError):
                RE(calibrate(analyser, 0, confirm=True))
            time.sleep(0.1)
            after = len(sim.log.events(direction=Direction.RX))
        finally:
            disconnect(analyser)
    assert after == before


def test_continuous_mode_cannot_calibrate_and_sends_nothing(RE: RunEngine) -> None:
    with simulator(CONTINUOUS, period=0.05) as sim:
        analyser = connect(sim, CONTINUOUS)
        try:
            with pytest.raises(ServomexCapabilityError):
                RE(calibrate(analyser, 1, confirm=True))

            async def direct() -> None:
                await analyser.calibrate(1, confirm=True)

            with pytest.raises(ServomexCapabilityError):
                call_in_bluesky_event_loop(direct())
            time.sleep(0.1)
            received = sim.log.events(direction=Direction.RX)
        finally:
            disconnect(analyser)
    assert received == []
