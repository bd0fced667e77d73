"""The blocking facade starts or stops a calibration only for ``confirm is True``.

:meth:`SyncAnalyzer.start_calibration` passes ``confirm`` through to the driver, which
checks ``confirm is not True``; these tests pin that down for the facade, value by value,
on the simulator's wire log: a refused request sends no byte at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confirm_values import NOT_TRUE, NOT_TRUE_IDS

from ophyd_servomex.codec.errors import ServomexConfirmationRequiredError
from ophyd_servomex.codec.models import CalPhase, ProtocolKind
from ophyd_servomex.sim import Direction, SimConfig, SimulatorThread, WireKind
from ophyd_servomex.sync import Servomex, SyncAnalyzer

START_GROUP_1_ON = bytes.fromhex("1E 05 00 00 FF 00 8E 55")
STOP_ALL_ON = bytes.fromhex("1E 05 00 08 FF 00 0F 97")


@pytest.fixture(scope="module")
def bench() -> Iterator[tuple[SimulatorThread, SyncAnalyzer]]:
    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, noisy=False, seed=1)
    with (
        SimulatorThread(config) as sim,
        Servomex.open(
            sim.port, protocol="modbus-rtu", address=30, inter_frame_idle=0.0, identify=False
        ) as analyser,
    ):
        yield sim, analyser


def received(sim: SimulatorThread) -> int:
    return len(sim.log.events(direction=Direction.RX))


@pytest.mark.parametrize("confirm", NOT_TRUE, ids=NOT_TRUE_IDS)
def test_start_and_stop_refuse_anything_but_true_before_any_byte(
    bench: tuple[SimulatorThread, SyncAnalyzer], confirm: Any
) -> None:
    sim, analyser = bench
    before = received(sim)
    log_before = len(sim.analyser.calibration_log)
    with pytest.raises(ServomexConfirmationRequiredError):
        analyser.start_calibration(1, confirm=confirm)
    with pytest.raises(ServomexConfirmationRequiredError):
        analyser.stop_calibration(confirm=confirm)
    time.sleep(0.05)
    assert received(sim) == before
    assert sim.analyser.calibrating_group is None
    assert len(sim.analyser.calibration_log) == log_before


def test_true_starts_and_stops_on_the_wire(bench: tuple[SimulatorThread, SyncAnalyzer]) -> None:
    """The control: the one accepted value does reach the analyser (coils 0 and 8)."""
    sim, analyser = bench
    sim.log.clear()
    log_before = len(sim.analyser.calibration_log)
    analyser.start_calibration(1, confirm=True)
    assert sim.analyser.calibrating_group == 1
    analyser.stop_calibration(confirm=True)
    sent = [e.data for e in sim.log.events(WireKind.REQUEST)]
    assert sent[0] == START_GROUP_1_ON
    assert STOP_ALL_ON in sent
    assert sim.analyser.calibrating_group is None
    assert [e.phase for e in sim.analyser.calibration_log[log_before:]] == [
        CalPhase.CAL_GAS_1,
        CalPhase.STOPPED,
    ]
