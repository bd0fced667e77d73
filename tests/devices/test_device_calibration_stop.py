"""A calibration that ends any way but its own sends the stop pulse: the gas never keeps
flowing behind a status nobody waits for any more.

Cancelling the status, its ``timeout`` passing and a state poll failing used to leave the
analyser calibrating (only ``stop()`` pulsed the stop coil).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import NoReplayAllowed
from devicehelpers import connect, disconnect, requests, simulator
from ophyd_async.core import (
    WatchableAsyncStatus,
    callback_on_mock_execute,
    get_mock_execute,
    init_devices,
)

from ophyd_servomex.codec.errors import ServomexTimeoutError, ServomexValidationError
from ophyd_servomex.codec.models import CalPhase, ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.plans import calibrate

RTU = ProtocolKind.MODBUS_RTU
START_GROUP_1_ON = bytes.fromhex("1E 05 00 00 FF 00 8E 55")
STOP_ALL_ON = bytes.fromhex("1E 05 00 08 FF 00 0F 97")
STOP_ALL_OFF = bytes.fromhex("1E 05 00 08 00 00 4E 67")


def wait_until(condition: Any, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_cancelling_the_status_sends_the_stop_pulse(RE: RunEngine) -> None:
    with simulator(RTU, time_scale=10.0, flush_time=100.0) as sim:  # 10 s per gas
        analyser = connect(sim, RTU, calibration_poll_period=0.05)
        try:

            async def start() -> WatchableAsyncStatus[Any]:
                return analyser.calibrate(1, confirm=True)

            status = call_in_bluesky_event_loop(start())
            wait_until(lambda: sim.analyser.calibrating_group == 1)
            RE.loop.call_soon_threadsafe(status.task.cancel)
            wait_until(lambda: status.done)
            wait_until(lambda: sim.analyser.calibrating_group is None, limit=5.0)
            sent = requests(sim)
            last = analyser.calibration.last_progress
        finally:
            disconnect(analyser)
        cal_log = sim.analyser.calibration_log
    assert not status.success
    assert sent.count(START_GROUP_1_ON) == 1
    assert sent.count(STOP_ALL_ON) == 1
    assert STOP_ALL_OFF in sent[sent.index(STOP_ALL_ON) :]
    assert [e.phase for e in cal_log] == [CalPhase.CAL_GAS_1, CalPhase.STOPPED]
    assert last is not None
    assert last.phase is CalPhase.STOPPED
    assert not analyser.calibration.running


def test_a_calibration_past_its_timeout_is_stopped(RE: RunEngine) -> None:
    with simulator(RTU, time_scale=10.0, flush_time=100.0) as sim:
        analyser = connect(sim, RTU, calibration_poll_period=0.05)
        try:
            with pytest.raises(Exception) as failure:  # noqa: PT011 - bluesky's FailedStatus
                RE(calibrate(analyser, 1, confirm=True, timeout=0.3))
            sent = requests(sim)
            running = sim.analyser.calibrating_group
        finally:
            disconnect(analyser)
        cal_log = sim.analyser.calibration_log
    chain = []
    error: BaseException | None = failure.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    timeouts = [e for e in chain if isinstance(e, ServomexTimeoutError)]
    assert timeouts, chain
    assert "did not finish within 0.3 s" in str(timeouts[0])
    assert sent.count(STOP_ALL_ON) == 1
    assert running is None
    assert [e.phase for e in cal_log] == [CalPhase.CAL_GAS_1, CalPhase.STOPPED]


@pytest.mark.anyio
async def test_a_failing_state_poll_stops_the_mock_calibration() -> None:
    analyser = ServomexAnalyser(name="o2", calibration_poll_period=0.001)
    await analyser.connect(mock=True)

    def lost(group: int) -> str:
        raise ServomexTimeoutError("no reply")

    callback_on_mock_execute(analyser.calibration.group_phase, lost)
    status = analyser.calibrate(3, confirm=True)
    with pytest.raises(ServomexTimeoutError):
        await status
    get_mock_execute(analyser.calibration.start_group).assert_called_once_with(3, True)
    get_mock_execute(analyser.calibration.stop_all).assert_called_once_with(True)
    await analyser.calibration.stop()  # already stopped: nothing more is sent
    get_mock_execute(analyser.calibration.stop_all).assert_called_once_with(True)


@pytest.mark.anyio
async def test_a_cancelled_mock_calibration_sends_one_stop_pulse() -> None:
    analyser = ServomexAnalyser(name="o2", calibration_poll_period=10.0)
    await analyser.connect(mock=True)
    status = analyser.calibrate(2, confirm=True)
    start = get_mock_execute(analyser.calibration.start_group)
    while not start.called:  # noqa: ASYNC110 - waiting for a mock to be called
        await asyncio.sleep(0)
    status.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await status
    get_mock_execute(analyser.calibration.stop_all).assert_called_once_with(True)
    autocal = analyser._mock.autocal  # type: ignore[union-attr]
    assert autocal is not None
    assert (autocal.starts, autocal.stops, autocal.group) == ([2], 1, None)
    progress = analyser.calibration.last_progress
    assert progress is not None
    assert progress.phase is CalPhase.STOPPED


@pytest.mark.anyio
async def test_a_calibration_not_started_is_never_stopped() -> None:
    analyser = ServomexAnalyser(protocol="continuous")
    await analyser.connect(mock=True)
    status = analyser.calibrate(1, confirm=True)
    with pytest.raises(Exception, match="continuous"):
        await status
    get_mock_execute(analyser.calibration.start_group).assert_not_called()
    get_mock_execute(analyser.calibration.stop_all).assert_not_called()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "60", True])
def test_a_bad_gas_time_is_refused_before_anything_is_sent(RE: RunEngine, bad: Any) -> None:
    with init_devices(mock=True):
        analyser = ServomexAnalyser()
    with pytest.raises(ServomexValidationError, match="gas time"):
        analyser.calibration.set(1, confirm=True, gas_time=bad)
    with pytest.raises(ServomexValidationError, match="gas time"):
        next(calibrate(analyser, 1, confirm=True, gas_time=bad))
    get_mock_execute(analyser.calibration.start_group).assert_not_called()


@pytest.mark.anyio
async def test_pause_refuses_a_replay_only_after_stopping_a_running_calibration() -> None:
    analyser = ServomexAnalyser(name="o2", calibration_poll_period=10.0)
    await analyser.connect(mock=True)
    calibration = analyser.calibration
    calibration.pause()  # nothing was stopped: no objection
    status = analyser.calibrate(1, confirm=True)
    start = get_mock_execute(calibration.start_group)
    while not start.called:  # noqa: ASYNC110 - waiting for a mock to be called
        await asyncio.sleep(0)
    await calibration.stop()
    assert status.done
    with pytest.raises(NoReplayAllowed):
        calibration.pause()
    calibration.pause()  # once per stop
    calibration.resume()
    await calibration.stop()  # nothing running: no stop, and no objection to a replay
    calibration.pause()


def test_disconnecting_during_a_calibration_stops_the_gas_first(RE: RunEngine) -> None:
    with simulator(RTU, time_scale=10.0, flush_time=100.0) as sim:  # 10 s per gas
        analyser = connect(sim, RTU, calibration_poll_period=0.05)

        async def start() -> WatchableAsyncStatus[Any]:
            return analyser.calibrate(1, confirm=True)

        status = call_in_bluesky_event_loop(start())
        wait_until(lambda: sim.analyser.calibrating_group == 1)
        disconnect(analyser)  # the session goes: the stop pulse must go out before it
        wait_until(lambda: status.done, limit=5.0)
        sent = requests(sim)
        still = sim.analyser.calibrating_group
        cal_log = sim.analyser.calibration_log
    assert still is None
    assert sent.count(START_GROUP_1_ON) == 1
    assert sent.count(STOP_ALL_ON) == 1
    assert STOP_ALL_OFF in sent[sent.index(STOP_ALL_ON) :]
    assert [e.phase for e in cal_log] == [CalPhase.CAL_GAS_1, CalPhase.STOPPED]
    last = analyser.calibration.last_progress
    assert last is not None
    assert last.phase is CalPhase.STOPPED
    assert not analyser.calibration.running
