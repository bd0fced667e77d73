"""The calibration tracker: polled phases to steps sampling → gas 1 → gas 2 → gas 1 → done."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import CalPhase
from ophyd_servomex.devices import CalibrationTracker
from ophyd_servomex.devices.calibration import check_group

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
