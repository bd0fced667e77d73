"""Mock mode: connect(mock=True) with no port, driven by ophyd-async's own test helpers."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from devicehelpers import bench_read_keys
from ophyd_async.core import (
    callback_on_mock_execute,
    get_mock_execute,
    init_devices,
    set_mock_value,
)
from ophyd_async.testing import (
    assert_configuration,
    assert_describe_signal,
    assert_emitted,
    assert_reading,
    assert_value,
)

from ophyd_servomex.codec import bench
from ophyd_servomex.codec.errors import (
    ServomexCapabilityError,
    ServomexConfigurationError,
    ServomexConfirmationRequiredError,
    ServomexValidationError,
)
from ophyd_servomex.codec.models import CalPhase, ChannelId, ChannelInfo, Unit
from ophyd_servomex.devices import BENCH_CHANNELS, BENCH_IDLE_VALUES, ServomexAnalyser
from ophyd_servomex.sim import bench_channels

pytestmark = pytest.mark.anyio

FLAGS = (
    "fault",
    "maintenance",
    "calibrating",
    "warming_up",
    "alarm1",
    "alarm2",
    "alarm3",
    "alarm4",
)


async def mock_analyser(**options: Any) -> ServomexAnalyser:
    analyser = ServomexAnalyser(name="o2", **options)
    await analyser.connect(mock=True)
    return analyser


async def test_mock_mode_and_the_simulator_show_the_one_bench_unit() -> None:
    # one description of the bench unit (codec.bench), the mock's and the simulator's
    assert BENCH_CHANNELS is bench.BENCH_CHANNELS
    assert BENCH_IDLE_VALUES is bench.BENCH_IDLE_VALUES
    sim = {c.channel: (c.name, c.unit, c.setpoint) for c in bench_channels(noisy=False)}
    assert sim == {
        ChannelId.I1: ("Oxygen", "%", 20.378),
        ChannelId.I2: ("CO", "%", 0.084),
        ChannelId.I3: ("CO₂", "%", 0.250),
        ChannelId.E1: (None, "mA", 0.0),
        ChannelId.E2: (None, "mA", 0.0),
    }
    analyser = await mock_analyser()
    mock = {}
    for cid in analyser.channel_ids:
        channel = analyser.channel(cid)
        mock[cid] = (
            await channel.display_name.get_value() or None,
            await channel.unit.get_value(),
            await channel.value.get_value(),
        )
    assert mock == sim


async def test_mock_mode_needs_no_port_and_builds_the_bench_channels() -> None:
    analyser = await mock_analyser()
    assert analyser.channel_ids == tuple(c.channel for c in BENCH_CHANNELS)
    await assert_reading(
        analyser.i1,
        {
            "o2-i1-value": {"value": 20.378, "alarm_severity": 0},
            "o2-i1-status": {"value": "ok"},
        },
    )
    for flag in FLAGS:  # each flag is still a signal of its own, just not a field
        await assert_value(getattr(analyser.i1, flag), False)
    await assert_value(analyser.i1.ok, True)
    await assert_describe_signal(
        analyser.i3.value,
        dtype="number",
        shape=[],
        dtype_numpy="<f8",
        units="%",
        precision=3,
    )
    await assert_describe_signal(
        analyser.e2.value, dtype="number", shape=[], dtype_numpy="<f8", units="mA", precision=1
    )
    await assert_configuration(
        analyser,
        {
            "o2-protocol": {"value": "modbus-rtu"},
            "o2-address": {"value": 1},
            "o2-i1-display_name": {"value": "Oxygen"},
            "o2-i1-unit": {"value": "%"},
            "o2-i2-display_name": {"value": "CO"},
            "o2-i2-unit": {"value": "%"},
            "o2-i3-display_name": {"value": "CO₂"},
            "o2-i3-unit": {"value": "%"},
            "o2-e1-display_name": {"value": ""},
            "o2-e1-unit": {"value": "mA"},
            "o2-e2-display_name": {"value": ""},
            "o2-e2-unit": {"value": "mA"},
        },
    )
    reading = await analyser.read()
    assert sorted(reading) == bench_read_keys("o2")
    assert sorted(await analyser.describe()) == bench_read_keys("o2")
    # the unlabelled E1/E2 (unused mA inputs) are read but not hinted
    assert analyser.hints == {"fields": [f"o2-{c}-value" for c in ("i1", "i2", "i3")]}


async def test_a_declared_channel_set_is_built_as_declared() -> None:
    h2 = ChannelInfo(ChannelId.I4, "H2", Unit.VPM, "vpm")
    analyser = await mock_analyser(channels=["i2", h2], address=30, protocol="modbus-ascii")
    assert analyser.channel_ids == (ChannelId.I2, ChannelId.I4)
    assert analyser.channel("I4") is analyser.i4
    await assert_value(analyser.i4.display_name, "H2")
    await assert_value(analyser.address, 30)
    await assert_value(analyser.protocol, "modbus-ascii")
    await assert_describe_signal(
        analyser.i4.value, dtype="number", shape=[], dtype_numpy="<f8", units="vpm", precision=1
    )
    with pytest.raises(ServomexConfigurationError, match="no channel I1"):
        analyser.channel("I1")


async def test_declaring_a_channel_twice_is_refused() -> None:
    with pytest.raises(ServomexConfigurationError, match="declared twice"):
        ServomexAnalyser(channels=["I1", "i1"])
    with pytest.raises(ServomexValidationError, match="unknown channel"):
        ServomexAnalyser(channels=["X9"])
    with pytest.raises(ServomexValidationError, match="unknown protocol 'modbus-tcp'"):
        ServomexAnalyser("/dev/ttyS0", protocol="modbus-tcp")


async def test_a_real_connect_without_a_port_says_what_to_do() -> None:
    analyser = ServomexAnalyser(name="nowhere")
    with pytest.raises(ServomexConfigurationError, match="mock=True"):
        await analyser.connect()


async def test_mock_values_reach_reads_and_device_monitors() -> None:
    analyser = await mock_analyser()
    got: list[dict[str, Any]] = []
    analyser.subscribe(got.append)
    assert len(got) == 1  # the current values at once
    set_mock_value(analyser.i1.value, 20.9)
    set_mock_value(analyser.i1.alarm2, True)  # the status field follows the flag
    set_mock_value(analyser.fault, True)
    assert len(got) == 4
    assert got[-1]["o2-i1-value"]["value"] == 20.9
    assert got[-1]["o2-i1-status"]["value"] == "A2"
    assert got[-1]["o2-fault"]["value"] is True
    assert set(got[-1]) == set(await analyser.describe())
    analyser.clear_sub(got.append)
    set_mock_value(analyser.i1.value, 21.0)
    assert len(got) == 4
    await assert_reading(analyser.i1, {"o2-i1-value": {"value": 21.0}}, full_match=False)


async def test_mock_trigger_runs_the_poll_command() -> None:
    analyser = await mock_analyser()
    await analyser.trigger()
    await analyser.trigger()
    assert get_mock_execute(analyser.refresh).call_count == 2


def test_count_in_mock_mode_with_the_run_engine(RE: RunEngine) -> None:
    with init_devices(mock=True):
        o2 = ServomexAnalyser()
    docs: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    RE.subscribe(lambda name, doc: docs[name].append(doc))
    RE(count([o2], num=3))
    assert_emitted(docs, start=1, descriptor=1, event=3, stop=1)
    assert docs["event"][0]["data"]["o2-i1-value"] == 20.378
    assert docs["descriptor"][0]["data_keys"]["o2-i1-value"]["units"] == "%"
    assert get_mock_execute(o2.refresh).call_count == 3


async def test_mock_calibration_runs_gas_1_gas_2_gas_1_and_shows_it() -> None:
    analyser = await mock_analyser(calibration_poll_period=0.001)
    seen: list[tuple[str, str, bool]] = []

    async def phase_then_snapshot(group: int) -> str:
        phase = analyser._mock.autocal.phase(group)  # type: ignore[union-attr]
        seen.append(
            (
                phase,
                await analyser.cal_group1.get_value(),
                await analyser.i1.calibrating.get_value(),
            )
        )
        return phase

    callback_on_mock_execute(analyser.calibration.group_phase, phase_then_snapshot)
    updates: list[dict[str, Any]] = []
    status = analyser.calibrate(1, confirm=True)
    status.watch(lambda **kw: updates.append(kw))
    await status
    # one update per state poll, the phase in the name, seconds as the unit
    assert [u["name"] for u in updates] == [
        "o2-calibration group 1: sampling",
        "o2-calibration group 1: cal_gas_1",
        "o2-calibration group 1: cal_gas_2",
        "o2-calibration group 1: cal_gas_1",
        "o2-calibration group 1: done",
    ]
    assert [u["fraction"] for u in updates] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert {u["unit"] for u in updates} == {"s"}
    assert all("target" not in u for u in updates)  # no gas time given: no expected time
    assert seen == [
        ("cal_gas_1", "cal_gas_1", True),
        ("cal_gas_2", "cal_gas_2", True),
        ("cal_gas_1", "cal_gas_1", True),
        ("idle", "idle", False),
    ]
    get_mock_execute(analyser.calibration.start_group).assert_called_once_with(1, True)
    get_mock_execute(analyser.calibration.stop_all).assert_not_called()
    progress = analyser.calibration.last_progress
    assert progress is not None
    assert (progress.group, progress.phase, progress.fraction) == (1, CalPhase.DONE, 1.0)
    await analyser.calibration.stop()  # after the end: nothing to stop, nothing sent
    get_mock_execute(analyser.calibration.stop_all).assert_not_called()


async def test_stopping_a_mock_calibration_pulses_stop_and_ends_the_status() -> None:
    analyser = await mock_analyser(calibration_poll_period=10.0)
    start = get_mock_execute(analyser.calibration.start_group)
    stop = get_mock_execute(analyser.calibration.stop_all)
    # stopped before its start pulse went out: nothing is sent at all
    early = analyser.calibrate(2, confirm=True)
    await analyser.calibration.stop()
    assert early.done
    start.assert_not_called()
    stop.assert_not_called()
    # stopped while running: the stop pulse, and the status ends at once
    status = analyser.calibrate(2, confirm=True)
    with pytest.raises(ServomexConfigurationError, match="already running"):
        analyser.calibrate(3, confirm=True)
    while not start.called:  # noqa: ASYNC110 - waiting for a mock to be called
        await asyncio.sleep(0)
    await analyser.calibration.stop(success=False)
    assert status.done
    assert status.success
    get_mock_execute(analyser.calibration.stop_all).assert_called_once_with(True)
    progress = analyser.calibration.last_progress
    assert progress is not None
    assert progress.phase is CalPhase.STOPPED


async def test_calibration_gates_fail_before_any_action() -> None:
    analyser = await mock_analyser()
    with pytest.raises(ServomexConfirmationRequiredError):
        analyser.calibrate(1)
    with pytest.raises(ServomexValidationError):
        analyser.calibrate(0, confirm=True)
    with pytest.raises(ServomexValidationError):
        analyser.calibrate(True, confirm=True)  # type: ignore[arg-type]
    continuous = await mock_analyser(protocol="continuous")
    with pytest.raises(ServomexCapabilityError):
        await continuous.calibrate(1, confirm=True)
    for device in (analyser, continuous):
        get_mock_execute(device.calibration.start_group).assert_not_called()
