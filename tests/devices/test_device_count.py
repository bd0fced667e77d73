"""RE(count([analyser], num=100)) against the simulated analyser in each of the three modes."""

from __future__ import annotations

import itertools
import math

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import FailedStatus
from devicehelpers import (
    CHANNELS,
    MODES,
    bench_read_keys,
    connect,
    disconnect,
    documents,
    f32,
    requests,
    simulator,
)
from fakesession import FakeSession
from ophyd_async.core import StandardReadable, StandardReadableFormat, soft_signal_rw

from ophyd_servomex.codec.errors import ServomexConnectionError
from ophyd_servomex.codec.models import CalPhase, ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser

UNITS = {"i1": "%", "i2": "%", "i3": "%", "e1": "mA", "e2": "mA"}
PRECISION = {"%": 3, "mA": 1}


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_count_gives_100_coherent_events_matching_the_truth(
    RE: RunEngine, mode: ProtocolKind
) -> None:
    with simulator(mode, period=0.02) as sim:
        analyser = connect(sim, mode)
        try:
            before = len(requests(sim))
            docs = documents(RE)
            RE(count([analyser], num=100))
            sent = len(requests(sim)) - before
        finally:
            disconnect(analyser)
        truth = sim.analyser.truth()

    starts = [d for n, d in docs if n == "start"]
    descriptors = [d for n, d in docs if n == "descriptor"]
    events = [d for n, d in docs if n == "event"]
    stops = [d for n, d in docs if n == "stop"]
    assert len(starts) == 1
    assert len(stops) == 1
    assert stops[0]["exit_status"] == "success"
    assert len(descriptors) == 1
    assert len(events) == 100

    keys = descriptors[0]["data_keys"]
    assert not [k for k in keys if "." in k or "/" in k]
    for cid, unit in UNITS.items():
        key = keys[f"analyser-{cid}-value"]
        assert key["dtype"] == "number"
        assert key["units"] == unit
        assert key["precision"] == PRECISION[unit]
        assert keys[f"analyser-{cid}-status"]["dtype"] == "string"
    for field in ("cal_group1", "cal_group2", "cal_group3", "cal_group4", "clock"):
        assert keys[f"analyser-{field}"]["dtype"] == "string"
    for group in ("cal_group1", "cal_group2", "cal_group3", "cal_group4"):
        assert keys[f"analyser-{group}"]["choices"] == [p.value for p in CalPhase]
    assert keys["analyser-dropped_frames"]["dtype"] == "integer"
    assert keys["analyser-fault"]["dtype"] == keys["analyser-maintenance"]["dtype"] == "boolean"
    assert sorted(keys) == bench_read_keys("analyser")  # 18 fields, a status per channel
    config = descriptors[0]["configuration"]["analyser"]["data"]
    assert config["analyser-protocol"] == mode.value
    assert config["analyser-address"] == (0 if mode is ProtocolKind.CONTINUOUS_ASCII else 30)
    co2 = "CO2" if mode is ProtocolKind.CONTINUOUS_ASCII else "CO₂"
    assert [config[f"analyser-{c}-display_name"] for c in UNITS] == ["Oxygen", "CO", co2, "", ""]
    assert [config[f"analyser-{c}-unit"] for c in UNITS] == list(UNITS.values())
    # the unlabelled E1/E2 (unused mA inputs) are read, not hinted
    hinted = [f"analyser-{c}-value" for c in ("i1", "i2", "i3")]
    assert descriptors[0]["hints"]["analyser"]["fields"] == hinted

    expected = {cid.value.lower(): truth.channel(cid).value or 0.0 for cid in CHANNELS}
    if mode.is_modbus:
        expected = {k: f32(v) for k, v in expected.items()}
    stamps = []
    for event in events:
        assert len(set(event["timestamps"].values())) == 1, "fields from more than one frame"
        assert set(event["data"]) == set(keys)
        stamps.append(next(iter(event["timestamps"].values())))
        for cid, value in expected.items():
            assert event["data"][f"analyser-{cid}-value"] == value
            assert event["data"][f"analyser-{cid}-status"] == "ok"
        assert event["data"]["analyser-cal_group1"] == "idle"
        assert event["data"]["analyser-dropped_frames"] == 0
        assert not math.isnan(event["data"]["analyser-i1-value"])
    # every event is a new frame: a fresh sweep (Modbus) or the next broadcast (continuous)
    assert all(b > a for a, b in itertools.pairwise(stamps))
    if mode.is_modbus:
        assert sent == 100 * 3  # one three-transaction sweep per trigger, nothing else
    else:
        assert sent == 0  # a continuous analyser is never written to


def test_count_on_an_analyser_that_never_connected_says_not_connected(RE: RunEngine) -> None:
    gas = ServomexAnalyser("/dev/ttyUSB9", protocol=ProtocolKind.MODBUS_RTU, name="gas")
    with pytest.raises(FailedStatus) as caught:
        RE(count([gas], num=1))
    error = caught.value.__cause__
    assert isinstance(error, ServomexConnectionError)
    assert str(error).startswith("gas on /dev/ttyUSB9 is not connected; connect it first")
    # not the old "no frame has arrived yet for servomex://…#cal_group1"
    with pytest.raises(ServomexConnectionError, match=r"^gas on /dev/ttyUSB9 is not connected"):
        call_in_bluesky_event_loop(gas.read())


@pytest.mark.anyio
async def test_read_renders_exactly_what_reading_each_signal_gives() -> None:
    # connected for real, read() renders the pinned frame in one step: the same dict as
    # StandardReadable's read of every signal (whose key order is a set's: not compared)
    session = FakeSession(ProtocolKind.MODBUS_RTU)
    analyser = ServomexAnalyser(session_factory=session.factory(), name="gas")
    await analyser.connect()
    try:
        await analyser.trigger()
        fast = await analyser.read()
        with analyser._hub.pinned():
            slow = await StandardReadable.read(analyser)
        assert fast == slow
        assert set(fast) == set(await analyser.describe())
        assert len(fast) == 18
        assert fast["gas-i1-value"]["value"] == session.value  # the triggered sweep
        assert len({r["timestamp"] for r in fast.values()}) == 1
    finally:
        await analyser.disconnect()
    with pytest.raises(ServomexConnectionError, match=r"^gas on fake://port is not connected"):
        await analyser.read()


@pytest.mark.anyio
async def test_a_readable_added_after_the_channels_is_read_too() -> None:
    session = FakeSession(ProtocolKind.MODBUS_RTU)
    analyser = ServomexAnalyser(session_factory=session.factory(), name="gas")
    await analyser.connect()
    try:
        extra = soft_signal_rw(float, 1.5, name="gas-extra")
        await extra.connect()
        analyser.add_readables([extra], StandardReadableFormat.UNCACHED_SIGNAL)
        reading = await analyser.read()
        assert reading["gas-extra"]["value"] == 1.5
        assert len(reading) == 19
        assert reading["gas-i1-value"]["value"] == session.value
    finally:
        await analyser.disconnect()
