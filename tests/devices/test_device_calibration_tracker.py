"""The calibration tracker: polled phases to steps sampling → gas 1 → gas 2 → gas 1 → done."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import CalPhase
from ophyd_servomex.devices import CalibrationTracker
from ophyd_servomex.devices import calibration as calibration_module
from ophyd_servomex.devices.calibration import check_gas_time, check_group

IDLE, GAS1, GAS2 = CalPhase.IDLE, CalPhase.CAL_GAS_1, CalPhase.CAL_GAS_2


def steps(phases: list[CalPhase]) -> list[int]:
    tracker = CalibrationTracker(1)
    return [tracker.step for p in phases if tracker.observe(p) or True]


def test_the_full_sequence_walks_every_step() -> None:
    tracker = CalibrationTracker(2)
    assert (tracker.phase, tracker.fraction, tracker.done) == (CalPhase.SAMPLING, 0.0, False)
    seen = []
    for phase in (IDLE, IDLE, GAS1, GAS1, GAS2, GAS2, GAS1, GAS1, IDLE, GAS1):
        if tracker.observe(phase):
            seen.append((tracker.phase, tracker.fraction))
    assert seen == [(GAS1, 0.25), (GAS2, 0.5), (GAS1, 0.75), (CalPhase.DONE, 1.0)]
    progress = tracker.progress()
    assert (progress.group, progress.phase, progress.fraction, progress.done) == (
        2,
        CalPhase.DONE,
        1.0,
        True,
    )
    assert progress.remaining == 0.0


@pytest.mark.parametrize(
    ("polled", "final"),
    [
        ([GAS2, IDLE], 4),  # gas 1 missed between polls
        ([GAS1, IDLE], 4),  # gas 2 and the second gas 1 missed
        ([IDLE, IDLE, IDLE], 0),  # queued behind another group: still sampling
        ([GAS1, GAS2, GAS2], 2),
    ],
)
def test_missed_phases_still_move_forward(polled: list[CalPhase], final: int) -> None:
    assert steps(polled)[-1] == final


def test_stop_ends_with_the_stopped_phase_and_the_fraction_reached() -> None:
    tracker = CalibrationTracker(1)
    tracker.observe(GAS1)
    tracker.stop()
    progress = tracker.progress()
    assert (progress.phase, progress.fraction, progress.done) == (CalPhase.STOPPED, 0.25, True)
    assert not tracker.observe(GAS2)


@given(st.lists(st.sampled_from(list(CalPhase)), max_size=30))
def test_steps_never_go_back_and_fractions_stay_in_range(polled: list[CalPhase]) -> None:
    tracker = CalibrationTracker(4)
    last = 0
    for phase in polled:
        tracker.observe(phase)
        assert tracker.step >= last
        assert 0.0 <= tracker.progress().fraction <= 1.0
        assert tracker.done == (tracker.step == 4)
        last = tracker.step


@pytest.mark.parametrize("bad", [0, 5, -1, True, 1.0, "1", None])
def test_groups_outside_1_to_4_are_refused(bad: object) -> None:
    with pytest.raises(ServomexValidationError, match="group must be 1–4"):
        check_group(bad)


class FakeClock:
    """Stands in for the module's ``time``: ``monotonic()`` returns ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_phase_time_and_remaining_follow_the_gas_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(calibration_module, "time", clock)
    tracker = CalibrationTracker(1, gas_time=60)
    assert tracker.gas_time == 60.0
    assert tracker.expected_phase_time is None  # sampling: no expected duration
    assert tracker.remaining() == 180.0
    clock.now += 2.0
    tracker.observe(GAS1)
    assert (tracker.phase_elapsed, tracker.elapsed) == (0.0, 2.0)  # the phase clock restarts
    assert tracker.expected_phase_time == 60.0
    clock.now += 15.0
    assert tracker.phase_elapsed == 15.0
    assert tracker.remaining() == 165.0
    assert not tracker.observe(GAS1)  # same phase: its clock keeps running
    assert tracker.phase_elapsed == 15.0
    tracker.observe(GAS2)
    clock.now += 100.0  # gas 2 flows longer than expected: only the last gas 1 is left
    assert tracker.remaining() == 60.0
    tracker.observe(GAS1)
    clock.now += 30.0
    progress = tracker.progress()
    assert (progress.phase, progress.remaining, progress.elapsed) == (GAS1, 30.0, 147.0)
    tracker.observe(IDLE)
    assert tracker.expected_phase_time is None
    assert tracker.remaining() == 0.0


def test_without_a_gas_time_nothing_is_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration_module, "time", FakeClock())
    tracker = CalibrationTracker(2)
    tracker.observe(GAS2)
    assert (tracker.expected_phase_time, tracker.remaining()) == (None, None)
    tracker.stop()
    assert (tracker.phase, tracker.expected_phase_time, tracker.remaining()) == (
        CalPhase.STOPPED,
        None,
        0.0,
    )


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), "60", True, [60]])
def test_bad_gas_times_are_refused(bad: object) -> None:
    with pytest.raises(ServomexValidationError, match="gas time"):
        check_gas_time(bad)
    with pytest.raises(ServomexValidationError, match="gas time"):
        CalibrationTracker(1, gas_time=bad)  # type: ignore[arg-type]


def test_good_gas_times_become_floats() -> None:
    assert check_gas_time(None) is None
    assert check_gas_time(45) == 45.0
    assert isinstance(check_gas_time(45), float)
    assert check_gas_time(0.25) == 0.25
