"""Only ``confirm is True`` starts a calibration, in every layer, before any byte is sent.

A truthy ``"false"`` or ``0.5`` used to start one (``if not confirm``); every value below
must now raise :class:`ServomexConfirmationRequiredError` with nothing on the wire: no
request received by the simulated analyser, no calibration in its log, no mock action.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from bluesky import RunEngine
from confirm_values import NOT_TRUE, NOT_TRUE_IDS
from devicehelpers import connect, disconnect, make_run_engine, simulator, stop_run_engine
from ophyd_async.core import get_mock_execute, init_devices

from ophyd_servomex.codec.errors import ServomexConfirmationRequiredError
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.devices.calibration import check_confirm
from ophyd_servomex.devices.mock import MockAutocal
from ophyd_servomex.plans import calibrate, calibration_run
from ophyd_servomex.sim import Direction, SimulatorThread


@pytest.fixture(scope="module")
def RE() -> Iterator[RunEngine]:  # one RunEngine (and loop) for the module's simulator
    engine = make_run_engine()
    yield engine
    stop_run_engine(engine)


@pytest.fixture(scope="module")
def bench(RE: RunEngine) -> Iterator[tuple[SimulatorThread, ServomexAnalyser]]:
    """The simulated bench unit in Modbus RTU and an analyser connected to it."""
    with simulator(ProtocolKind.MODBUS_RTU) as sim:
        analyser = connect(sim, ProtocolKind.MODBUS_RTU, name="gas")
        try:
            yield sim, analyser
        finally:
            disconnect(analyser)


def received(sim: SimulatorThread) -> int:
    return len(sim.log.events(direction=Direction.RX))


def assert_nothing_sent(sim: SimulatorThread, before: int) -> None:
    time.sleep(0.05)  # anything sent would have arrived by now
    assert received(sim) == before
    assert sim.analyser.calibrating_group is None
    assert tuple(sim.analyser.calibration_log) == ()


@pytest.mark.parametrize("confirm", NOT_TRUE, ids=NOT_TRUE_IDS)
def test_the_device_refuses_anything_but_true(
    bench: tuple[SimulatorThread, ServomexAnalyser], confirm: Any
) -> None:
    sim, analyser = bench
    before = received(sim)
    with pytest.raises(ServomexConfirmationRequiredError, match="exactly True"):
        analyser.calibration.set(2, confirm=confirm)
    with pytest.raises(ServomexConfirmationRequiredError):
        analyser.calibrate(2, confirm=confirm)
    assert not analyser.calibration.running
    assert_nothing_sent(sim, before)


@pytest.mark.parametrize("confirm", NOT_TRUE, ids=NOT_TRUE_IDS)
def test_the_plans_refuse_anything_but_true(
    RE: RunEngine, bench: tuple[SimulatorThread, ServomexAnalyser], confirm: Any
) -> None:
    sim, analyser = bench
    before = received(sim)
    with pytest.raises(ServomexConfirmationRequiredError):
        next(calibrate(analyser, 1, confirm=confirm))  # before any message
    with pytest.raises(ServomexConfirmationRequiredError):
        next(calibration_run(analyser, 1, confirm=confirm))
    documents: list[str] = []
    token = RE.subscribe(lambda name, doc: documents.append(name))
    try:
        with pytest.raises(ServomexConfirmationRequiredError):
            RE(calibrate(analyser, 1, confirm=confirm))
        with pytest.raises(ServomexConfirmationRequiredError):
            RE(calibration_run(analyser, 1, confirm=confirm))
    finally:
        RE.unsubscribe(token)
    assert documents == []  # no run was opened
    assert_nothing_sent(sim, before)


@pytest.mark.parametrize("confirm", NOT_TRUE, ids=NOT_TRUE_IDS)
def test_the_mock_refuses_anything_but_true(confirm: Any) -> None:
    with init_devices(mock=True):
        o2 = ServomexAnalyser()
    autocal = o2._mock.autocal  # type: ignore[union-attr]
    assert isinstance(autocal, MockAutocal)
    with pytest.raises(ServomexConfirmationRequiredError):
        autocal.start(1, confirm)
    with pytest.raises(ServomexConfirmationRequiredError):
        autocal.stop(confirm)
    assert (autocal.starts, autocal.stops, autocal.group) == ([], 0, None)
    with pytest.raises(ServomexConfirmationRequiredError):
        o2.calibration.set(1, confirm=confirm)
    get_mock_execute(o2.calibration.start_group).assert_not_called()


@pytest.mark.parametrize("confirm", NOT_TRUE, ids=NOT_TRUE_IDS)
def test_check_confirm_accepts_only_the_true_singleton(confirm: Any) -> None:
    with pytest.raises(ServomexConfirmationRequiredError, match=r"not .*"):
        check_confirm(confirm, "calibrating")
    check_confirm(True, "calibrating")  # the one value that passes
