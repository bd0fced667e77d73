"""The plans against analysers in mock mode (no port): what a user's own plan tests do."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from bluesky import RunEngine
from ophyd_async.core import (
    callback_on_mock_execute,
    get_mock_execute,
    init_devices,
    set_mock_value,
)
from ophyd_async.testing import assert_emitted
from planhelpers import record

from ophyd_servomex.codec.errors import (
    ServomexCapabilityError,
    ServomexConfigurationError,
    ServomexConfirmationRequiredError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ophyd_servomex.codec.models import CalPhase
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.plans import (
    CHECKPOINT_PERIOD,
    calibrate,
    calibrating_groups,
    calibration_run,
    count_when_idle,
    monitor_broadcast,
    wait_for_stable,
)


def mock_analysers(count: int = 1, **options: Any) -> list[ServomexAnalyser]:
    with init_devices(mock=True):
        o2 = ServomexAnalyser(**options)
        co = ServomexAnalyser(**options)
    return [o2, co][:count]


def test_calibrate_returns_the_final_progress(RE: RunEngine) -> None:
    (o2,) = mock_analysers(calibration_poll_period=0.001)
    docs = record(RE)
    progress = RE(calibrate(o2, 2, confirm=True)).plan_result
    assert (progress.group, progress.phase, progress.fraction) == (2, CalPhase.DONE, 1.0)
    get_mock_execute(o2.calibration.start_group).assert_called_once_with(2, True)
    assert_emitted(docs)  # a calibration is not a run: no documents


def test_calibrate_listed_without_a_run_engine_ends(RE: RunEngine) -> None:
    (o2,) = mock_analysers()
    messages = list(calibrate(o2, 1, confirm=True))
    assert [m.command for m in messages] == ["read", "set", "checkpoint", "wait"]
    assert messages[1].kwargs["confirm"] is True
    assert messages[3].kwargs["timeout"] == CHECKPOINT_PERIOD
    assert messages[3].kwargs["group"] == messages[1].kwargs["group"]
    get_mock_execute(o2.calibration.start_group).assert_not_called()


def test_calibrate_refuses_before_any_message(RE: RunEngine) -> None:
    (o2,) = mock_analysers()
    with pytest.raises(ServomexConfirmationRequiredError):
        next(calibrate(o2, 1))
    with pytest.raises(ServomexValidationError):
        next(calibrate(o2, 9, confirm=True))
    (cont,) = mock_analysers(protocol="continuous")
    with pytest.raises(ServomexCapabilityError, match="continuous mode"):
        RE(calibrate(cont, 1, confirm=True))
    get_mock_execute(cont.calibration.start_group).assert_not_called()


def test_calibration_run_records_before_during_and_after_in_one_run(RE: RunEngine) -> None:
    (o2,) = mock_analysers(calibration_poll_period=0.001)
    o2.set_name("o2")
    docs = record(RE)
    uid = RE(calibration_run(o2, 3, confirm=True, md={"operator": "me"})).plan_result
    assert [d["uid"] for d in docs["start"]] == [uid]
    start = docs["start"][0]
    assert (start["plan_name"], start["calibration_group"], start["operator"]) == (
        "calibrate",
        3,
        "me",
    )
    assert start["hints"] == {"monitors": ["o2_monitor"]}
    assert docs["stop"][0]["exit_status"] == "success"
    streams = {d["uid"]: d["name"] for d in docs["descriptor"]}
    per_stream = [streams[e["descriptor"]] for e in docs["event"]]
    assert per_stream.count("primary") == 2  # one before, one after
    assert per_stream.count("o2_monitor") >= 1  # the frame current when monitoring starts
    get_mock_execute(o2.calibration.start_group).assert_called_once_with(3, True)
    assert o2.calibration.last_progress is not None
    assert o2.calibration.last_progress.phase is CalPhase.DONE


def test_calibration_run_refuses_before_any_run_opens(RE: RunEngine) -> None:
    (o2,) = mock_analysers()
    with pytest.raises(ServomexConfirmationRequiredError):
        next(calibration_run(o2, 1))
    with pytest.raises(ServomexValidationError):
        next(calibration_run(o2, 0, confirm=True))
    (cont,) = mock_analysers(protocol="continuous")
    docs = record(RE)
    with pytest.raises(ServomexCapabilityError, match="continuous mode"):
        RE(calibration_run(cont, 1, confirm=True))
    assert_emitted(docs)  # no run was opened, so no failed run is left in the catalog
    get_mock_execute(cont.calibration.start_group).assert_not_called()


def test_count_when_idle_counts_like_count_when_nothing_calibrates(RE: RunEngine) -> None:
    o2, co = mock_analysers(2)
    docs = record(RE)
    RE(count_when_idle([o2, co], num=4, md={"sample": "flue"}))
    assert_emitted(docs, start=1, descriptor=1, event=4, stop=1)
    assert docs["start"][0]["plan_name"] == "count_when_idle"
    assert docs["start"][0]["sample"] == "flue"
    assert set(docs["event"][0]["data"]) >= {"o2-i1-value", "co-i1-value"}
    # one trigger per analyser per event: the idle check's frame is the event's frame
    assert get_mock_execute(o2.refresh).call_count == 4
    assert get_mock_execute(co.refresh).call_count == 4


def test_count_when_idle_refuses_while_a_group_calibrates(RE: RunEngine) -> None:
    o2, co = mock_analysers(2)
    set_mock_value(co.cal_group3, CalPhase.CAL_GAS_2.value)
    docs = record(RE)
    with pytest.raises(ServomexConfigurationError, match="co group"):
        RE(count_when_idle([o2, co], num=2, wait=False))
    assert docs["stop"][0]["exit_status"] == "fail"
    assert "event" not in docs


def test_count_when_idle_waits_until_the_calibration_ends(RE: RunEngine) -> None:
    (o2,) = mock_analysers()
    set_mock_value(o2.cal_group1, CalPhase.CAL_GAS_1.value)
    triggers = itertools.count(1)

    def trigger() -> None:
        if next(triggers) == 3:  # the calibration ends before the third look
            set_mock_value(o2.cal_group1, CalPhase.IDLE.value)

    callback_on_mock_execute(o2.refresh, trigger)
    docs = record(RE)
    RE(count_when_idle([o2], num=2, poll_period=0.01))
    assert_emitted(docs, start=1, descriptor=1, event=2, stop=1)
    assert get_mock_execute(o2.refresh).call_count == 4  # two busy looks, then one per event
    assert all(e["data"]["o2-cal_group1"] == "idle" for e in docs["event"])


def test_count_when_idle_gives_up_after_its_timeout(RE: RunEngine) -> None:
    (o2,) = mock_analysers()
    set_mock_value(o2.cal_group4, CalPhase.CAL_GAS_1.value)
    with pytest.raises(ServomexTimeoutError, match=r"still calibrating after 0\.05 s"):
        RE(count_when_idle([o2], num=1, poll_period=0.01, timeout=0.05))


def test_calibrating_groups_reads_the_four_groups(RE: RunEngine) -> None:
    (o2,) = mock_analysers()
    set_mock_value(o2.cal_group2, CalPhase.CAL_GAS_2.value)
    set_mock_value(o2.cal_group4, CalPhase.CAL_GAS_1.value)
    assert RE(calibrating_groups(o2)).plan_result == (2, 4)


def test_wait_for_stable_returns_the_settled_mean(RE: RunEngine) -> None:
    (o2,) = mock_analysers()
    values = itertools.chain([10.0, 5.0, 2.5], itertools.cycle([2.001, 1.999, 2.0]))
    callback_on_mock_execute(o2.refresh, lambda: set_mock_value(o2.i1.value, next(values)))
    settled = RE(wait_for_stable(o2, "I1", tolerance=0.01, window=0.05, poll_period=0.01))
    assert settled.plan_result == pytest.approx(2.0, abs=0.001)
    # the three unsettled values, then at least two settled ones spanning the window (how
    # many more depends on how fast a loaded machine polls)
    assert get_mock_execute(o2.refresh).call_count >= 5


def test_wait_for_stable_times_out_on_a_drifting_value(RE: RunEngine) -> None:
    (o2,) = mock_analysers()
    ramp = itertools.count(0.0, 0.5)
    callback_on_mock_execute(o2.refresh, lambda: set_mock_value(o2.i2.value, next(ramp)))
    with pytest.raises(ServomexTimeoutError, match="not stable"):
        RE(wait_for_stable(o2, "i2", tolerance=0.1, window=0.02, poll_period=0.005, timeout=0.1))


def test_monitor_broadcast_records_a_monitor_stream_per_analyser(RE: RunEngine) -> None:
    o2, co = mock_analysers(2)
    docs = record(RE)
    uid = RE(monitor_broadcast([o2, co], 0.05, md={"operator": "me"})).plan_result
    assert docs["start"][0]["uid"] == uid
    assert docs["start"][0]["operator"] == "me"
    assert docs["start"][0]["detectors"] == ["o2", "co"]
    assert sorted(d["name"] for d in docs["descriptor"]) == ["co_monitor", "o2_monitor"]
    assert len(docs["event"]) == 2  # the current values of each, at subscription
    assert docs["stop"][0]["exit_status"] == "success"


@pytest.mark.parametrize(
    ("analysers", "duration", "message"),
    [([], 1.0, "at least one"), (None, 0.0, "duration"), (None, -1.0, "duration")],
)
def test_monitor_broadcast_checks_its_arguments(
    RE: RunEngine, analysers: list[ServomexAnalyser] | None, duration: float, message: str
) -> None:
    chosen = mock_analysers() if analysers is None else analysers
    with pytest.raises(ServomexValidationError, match=message):
        next(monitor_broadcast(chosen, duration))
