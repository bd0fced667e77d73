"""The IOC against the simulator: PVs over PVA and CA, NaN/INVALID without a frame,
reconnection, the calibration gate and the settable poll period.

One IOC process serves the whole module (``facility_ioc``, session-scoped): ``SMX1:`` on a
pty simulator and ``SMX2:`` on a TCP port whose simulator the tests start and kill.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from epics_helpers import (
    CaClient,
    FacilityIoc,
    is_nan,
    pv_get,
    pva_context,
    text,
    value,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

# the bench set-points the simulator holds exactly with --no-noise
EXPECTED = {
    "I1": (20.378, "%", 3),
    "I2": (0.084, "%", 3),
    "I3": (0.25, "%", 3),
    "E1": (0.0, "mA", 1),
}


@pytest.fixture(scope="module")
def ca(facility_ioc: FacilityIoc) -> Any:
    # aioca's CA context outlives this module: the loop stays open (unused) for its late
    # callbacks, which fail on a closed loop
    return CaClient()


@pytest.fixture
def ctx(facility_ioc: FacilityIoc) -> Any:
    context = pva_context(facility_ioc.ports)
    try:
        yield context
    finally:
        context.close()


def test_values_units_precision_and_severity_over_pva(ctx: Any) -> None:
    for channel, (expected, units, precision) in EXPECTED.items():
        reading = pv_get(ctx, f"SMX1:{channel}:Value")
        assert float(reading) == expected, channel
        assert reading.severity == 0, channel
        assert reading.raw.display.units == units, channel
        assert reading.raw.display.precision == precision, channel
    assert text(ctx, "SMX1:I1:DisplayName") == "Oxygen"
    assert text(ctx, "SMX1:I1:Status") == "ok"
    assert bool(value(ctx, "SMX1:I1:Ok")) is True
    assert bool(value(ctx, "SMX1:I1:Fault")) is False
    assert text(ctx, "SMX1:Status") == "ok"
    assert text(ctx, "SMX1:CalGroup1") == "idle"
    assert text(ctx, "SMX1:Protocol") == "modbus-rtu"
    assert int(value(ctx, "SMX1:Address")) == 30
    assert bool(value(ctx, "SMX1:Connected")) is True
    # the channels the analyser reports: the populated ones plus E1/E2 (I4, D*, not served)
    pvi = pv_get(ctx, "SMX1:PVI").todict()["value"]
    assert sorted(k for k in pvi if len(k) == 2 and k[1].isdigit()) == [
        "e1",
        "e2",
        "i1",
        "i2",
        "i3",
    ]
    first = int(value(ctx, "SMX1:Frames"))
    wait_for(lambda: int(value(ctx, "SMX1:Frames")) > first, 10, "the frame counter to count")


def test_values_units_precision_and_severity_over_ca(ca: CaClient) -> None:
    oxygen = ca.get("SMX1:I1:Value", ctrl=True)
    current = ca.get("SMX1:E1:Value", ctrl=True)
    connected = ca.get("SMX1:Connected")
    assert float(oxygen) == 20.378
    assert (oxygen.units, oxygen.precision, oxygen.severity) == ("%", 3, 0)
    assert (float(current), current.units, current.precision) == (0.0, "mA", 1)
    assert int(connected) == 1


def test_sim2_invalid_before_first_frame_then_connects_then_lost_then_back(
    facility_ioc: FacilityIoc, ctx: Any, ca: CaClient
) -> None:
    """No analyser yet: NaN + INVALID (PVA and CA). Start one: real values. Kill it:
    NaN + INVALID again. Start it again: the IOC reconnects by itself."""

    def invalid() -> bool:
        reading = pv_get(ctx, "SMX2:I1:Value")
        return is_nan(float(reading)) and reading.severity == 3

    def valid() -> bool:
        reading = pv_get(ctx, "SMX2:I1:Value")
        return float(reading) == 20.378 and reading.severity == 0

    facility_ioc.stop_sim2()
    assert invalid()
    assert bool(value(ctx, "SMX2:Connected")) is False
    over_ca = ca.get("SMX2:I1:Value")
    assert is_nan(float(over_ca))
    assert over_ca.severity == 3
    reconnects = int(value(ctx, "SMX2:Reconnects"))
    assert reconnects >= 1  # it keeps trying

    facility_ioc.start_sim2()
    wait_for(valid, 30, "SMX2 values once its simulator runs")
    assert bool(value(ctx, "SMX2:Connected")) is True

    lost = time.monotonic()
    facility_ioc.stop_sim2()
    wait_for(invalid, 15, "SMX2 to go INVALID after its simulator died")
    print(f"\nsimulator killed → SMX2:I1:Value INVALID: {time.monotonic() - lost:.2f} s")
    assert text(ctx, "SMX2:LinkStatus").startswith(("down:", "no frame:"))
    over_ca = ca.get("SMX2:I1:Value")
    assert is_nan(float(over_ca))
    assert over_ca.severity == 3

    facility_ioc.start_sim2()
    try:
        wait_for(valid, 30, "SMX2 values after the simulator came back")
    finally:
        facility_ioc.stop_sim2()


def test_calibration_refused_without_allow_calibration(facility_ioc: FacilityIoc, ctx: Any) -> None:
    from p4p.client.thread import RemoteError

    with pytest.raises(RemoteError, match="--allow-calibration"):
        ctx.put("SMX1:CalStart", 1, timeout=10)
    with pytest.raises(RemoteError, match="--allow-calibration"):
        ctx.put("SMX1:CalStop", 1, timeout=10)
    time.sleep(1.5)  # a few polls: nothing started
    assert text(ctx, "SMX1:CalGroup1") == "idle"
    log = facility_ioc.ioc.log_text()
    assert "start calibration of group 1 refused" in log
    assert "asked by 127.0.0.1" in log  # PVA tells the client's host


def test_calibration_refused_over_ca_too(facility_ioc: FacilityIoc, ca: CaClient) -> None:
    """CA has no put error to carry the reason: the record goes to MAJOR alarm, the IOC
    logs the refusal (CA does not tell the server who wrote), nothing starts."""
    ca.put("SMX1:CalStart", 2)
    wait_for(lambda: ca.get("SMX1:CalStart").severity == 2, 10, "CalStart in MAJOR alarm")
    log = facility_ioc.ioc.log_text()
    assert "start calibration of group 2 refused" in log
    assert "asked by unknown client (Channel Access does not tell the server)" in log
    assert ca.text("SMX1:CalGroup2") == "idle"


def test_poll_period_is_settable_and_bounded(ctx: Any) -> None:
    from p4p.client.thread import RemoteError

    assert float(value(ctx, "SMX1:PollPeriod_RBV")) == 0.5
    ctx.put("SMX1:PollPeriod", 0.25, timeout=10)
    try:
        wait_for(lambda: float(value(ctx, "SMX1:PollPeriod_RBV")) == 0.25, 5, "the new period")
        start = int(value(ctx, "SMX1:Frames"))
        time.sleep(2.0)
        # 0.25 s polls: about 8 frames in 2 s; 0.5 s polls would give about 4
        assert int(value(ctx, "SMX1:Frames")) - start >= 5
        with pytest.raises(RemoteError):
            ctx.put("SMX1:PollPeriod", 0.001, timeout=10)
        assert float(value(ctx, "SMX1:PollPeriod_RBV")) == 0.25
    finally:
        ctx.put("SMX1:PollPeriod", 0.5, timeout=10)


def test_two_analysers_on_one_rs485_bus(ctx: Any) -> None:
    """One port, addresses 31 and 32, two prefixes: both served from one shared line."""

    def both() -> bool:
        return all(float(pv_get(ctx, f"{p}I1:Value")) == 20.378 for p in ("SMX3:", "SMX4:"))

    wait_for(both, 30, "values from both analysers on the bus")
    assert int(value(ctx, "SMX3:Address")) == 31
    assert int(value(ctx, "SMX4:Address")) == 32
    assert pv_get(ctx, "SMX4:I1:Value").raw.display.units == "%"
