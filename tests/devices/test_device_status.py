"""Lean readings: one ``status`` string per channel that keeps every flag (the single flags
stay child signals outside ``read()``), calibration phases as a ``StrictEnum`` with
``choices``, float32 values at float32's precision, unused E1/E2 not hinted, and the helper
that filters a run's rows by a status flag."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pandas as pd
import pytest
from devicehelpers import bench_read_keys
from fakesession import FakeSession, make_frame
from ophyd_async.core import set_mock_value

from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import (
    CalPhase,
    ChannelId,
    ChannelInfo,
    ChannelStatus,
    Frame,
    ProtocolKind,
    Unit,
)
from ophyd_servomex.codec.status_text import flag_values, status_from_flags
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.devices.channel import ServomexChannel
from ophyd_servomex.devices.signals import CalibrationPhase, float32_value
from ophyd_servomex.devices.status import (
    STATUS_FLAGS,
    has_flag,
    rows_with_flag,
    status_flags,
    status_mask,
    status_text,
)
from ophyd_servomex.ioc.controller import flags_text

pytestmark = pytest.mark.anyio

F32_20_378 = 20.378000259399414  # float32's nearest to 20.378, widened to a double


def _with_status(frame: Frame, channel: ChannelId, status: ChannelStatus, value: float) -> Frame:
    readings = tuple(
        dataclasses.replace(r, status=status, value=value) if r.channel is channel else r
        for r in frame.readings
    )
    return dataclasses.replace(frame, readings=readings)


async def _connected(protocol: ProtocolKind = ProtocolKind.MODBUS_RTU) -> ServomexAnalyser:
    analyser = ServomexAnalyser(session_factory=FakeSession(protocol).factory(), name="gas")
    await analyser.connect(timeout=2.0)
    return analyser


# --- the status string -------------------------------------------------------------------


def test_status_text_lists_the_flags_in_the_documented_order() -> None:
    assert status_text(ChannelStatus()) == "ok"
    everything = ChannelStatus(True, True, True, True, (True, True, True, True))
    assert status_text(everything) == "fault maint cal warm-up A1 A2 A3 A4"
    assert status_text(ChannelStatus(fault=True, alarms=(True, False, False, True))) == (
        "fault A1 A4"
    )
    assert status_text(ChannelStatus(warming_up=True)) == "warm-up"
    assert list(STATUS_FLAGS) == [
        "fault",
        "maintenance",
        "calibrating",
        "warming_up",
        "alarm1",
        "alarm2",
        "alarm3",
        "alarm4",
    ]


def test_status_text_is_what_the_ioc_serves_for_every_flag_combination() -> None:
    # the remote device reads the IOC's P:C:Status into the same field
    for bits in itertools.product((False, True), repeat=8):
        status = ChannelStatus(*bits[:4], alarms=(bits[4], bits[5], bits[6], bits[7]))
        assert status_text(status) == flags_text(status)
        names = {name for name, on in zip(STATUS_FLAGS, bits, strict=True) if on}
        assert status_flags(status_text(status)) == names


def test_status_flags_refuses_an_unknown_token_and_ignores_a_missing_value() -> None:
    with pytest.raises(ServomexValidationError, match="unknown status token 'A5'"):
        status_flags("fault A5")
    assert status_flags(float("nan")) == frozenset()  # type: ignore[arg-type]
    assert status_flags("") == frozenset()
    assert has_flag("cal warm-up", "warming_up")
    assert has_flag("cal warm-up", "warm-up")
    assert not has_flag("ok", "fault")
    with pytest.raises(ServomexValidationError, match="unknown status flag 'smoke'"):
        has_flag("ok", "smoke")


# --- filtering a run's rows ------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"gas-i1-value": 20.9, "gas-i1-status": "ok", "gas-i2-status": "ok"},
    {"gas-i1-value": 20.8, "gas-i1-status": "fault A1", "gas-i2-status": "ok"},
    {"gas-i1-value": 20.7, "gas-i1-status": "cal", "gas-i2-status": "A1"},
    {"gas-i1-value": 20.6, "gas-i1-status": "ok", "gas-i2-status": "warm-up"},
]


def test_status_mask_and_rows_with_flag_on_a_dataframe() -> None:
    table = pd.DataFrame(ROWS)
    assert status_mask(table, "alarm1") == [False, True, True, False]
    assert status_mask(table, "alarm1", column="gas-i1-status") == [False, True, False, False]
    faulty = rows_with_flag(table, "fault")
    assert list(faulty["gas-i1-value"]) == [20.8]
    assert list(rows_with_flag(table, "warming_up")["gas-i1-value"]) == [20.6]
    assert rows_with_flag(table, "maintenance").empty


def test_rows_with_flag_on_event_data_dicts() -> None:
    assert rows_with_flag(ROWS, "calibrating") == [ROWS[2]]
    assert rows_with_flag(ROWS, "A1", column="gas-i2-status") == [ROWS[2]]
    assert rows_with_flag(tuple(ROWS), "fault") == (ROWS[1],)
    with pytest.raises(ServomexValidationError, match="no '<channel>-status' column"):
        status_mask([{"gas-i1-value": 1.0}], "fault")


# --- the device -------------------------------------------------------------------------------


async def test_one_status_field_per_channel_and_the_flags_as_children() -> None:
    analyser = await _connected()
    try:
        status = ChannelStatus(fault=True, warming_up=True, alarms=(False, True, False, False))
        analyser._hub.publish(_with_status(make_frame(5.0), ChannelId.I2, status, 5.0))
        reading = await analyser.read()
        assert sorted(reading) == bench_read_keys("gas")  # the empty I4 slot is not built
        assert sorted(await analyser.describe()) == sorted(reading)
        assert reading["gas-i2-status"]["value"] == "fault warm-up A2"
        assert reading["gas-i1-status"]["value"] == "ok"
        assert reading["gas-i2-value"]["alarm_severity"] == 2
        assert len({r["timestamp"] for r in reading.values()}) == 1  # one frame
        i2 = analyser.i2
        assert [await s.get_value() for s in i2.flag_signals] == [
            True, False, False, True, False, True, False, False, False,
        ]  # fmt: skip
        assert (await i2.fault.read())["gas-i2-fault"]["value"] is True
    finally:
        await analyser.disconnect()


async def test_the_flag_children_are_the_codecs_flags_in_its_order() -> None:
    analyser = await _connected()
    try:
        i1 = analyser.i1
        assert [s.name for s in i1.flag_signals] == [
            f"gas-i1-{flag}" for flag in (*STATUS_FLAGS, "ok")
        ]
        children = [name for name, _ in i1.children()]
        assert [c for c in children if c in STATUS_FLAGS] == list(STATUS_FLAGS)
        # the declarations type checkers see name the same flags
        assert list(ServomexChannel.__annotations__) == list(STATUS_FLAGS)
        # each child reads its own flag of the frame
        for index, flag in enumerate(STATUS_FLAGS):
            on = status_from_flags([k == index for k in range(len(STATUS_FLAGS))])
            analyser._hub.publish(_with_status(make_frame(1.0), ChannelId.I1, on, 1.0))
            values = [await s.get_value() for s in i1.flag_signals[:-1]]
            assert values == [k == index for k in range(len(STATUS_FLAGS))], flag
            assert await i1.status.get_value() == STATUS_FLAGS[flag]
    finally:
        await analyser.disconnect()


def test_flag_values_and_status_from_flags_are_inverses_in_the_flags_order() -> None:
    for bits in itertools.product((False, True), repeat=8):
        status = ChannelStatus(*bits[:4], alarms=(bits[4], bits[5], bits[6], bits[7]))
        assert flag_values(status) == bits
        assert status_from_flags(bits) == status
    assert flag_values(ChannelStatus(warming_up=True)).index(True) == list(STATUS_FLAGS).index(
        "warming_up"
    )
    with pytest.raises(ServomexValidationError, match=r"8 status flags .* not 9"):
        status_from_flags([False] * 9)
    with pytest.raises(ServomexValidationError, match="not 4"):
        status_from_flags([True] * 4)


async def test_modbus_values_at_float32_precision_continuous_values_untouched() -> None:
    analyser = await _connected()
    try:
        analyser._hub.publish(make_frame(F32_20_378))
        assert await analyser.i1.value.get_value() == 20.378
        assert (await analyser.read())["gas-i3-value"]["value"] == 20.378
    finally:
        await analyser.disconnect()
    analyser = await _connected(ProtocolKind.CONTINUOUS_ASCII)
    try:
        frame = make_frame(12345.6789, protocol=ProtocolKind.CONTINUOUS_ASCII)
        analyser._hub.publish(frame)
        assert await analyser.i1.value.get_value() == 12345.6789  # decimal text: as sent
    finally:
        await analyser.disconnect()
    assert float32_value(F32_20_378) == 20.378
    assert float32_value(0.08399999886751175) == 0.084
    assert float32_value(float("inf")) == float("inf")


async def test_cal_groups_are_a_strict_enum_with_choices() -> None:
    analyser = await _connected()
    try:
        phases = (CalPhase.IDLE, CalPhase.CAL_GAS_2, CalPhase.IDLE, CalPhase.IDLE)
        analyser._hub.publish(make_frame(1.0, phases=phases))
        key = (await analyser.describe())["gas-cal_group2"]
        assert key["dtype"] == "string"
        assert key["choices"] == ["idle", "sampling", "cal_gas_1", "cal_gas_2", "done", "stopped"]
        value = await analyser.cal_group2.get_value()
        assert value is CalibrationPhase.CAL_GAS_2
        assert value == "cal_gas_2"
    finally:
        await analyser.disconnect()


async def test_only_unlabelled_external_channels_are_left_unhinted() -> None:
    e1 = ChannelInfo(ChannelId.E1, "Flow", Unit.MILLIAMP, "mA")
    analyser = ServomexAnalyser(name="o2", channels=["I1", "I4", e1, "E2"])
    await analyser.connect(mock=True)
    # I4 has no name but is an internal transducer slot; E2 is an unused mA input
    assert analyser.hints == {"fields": ["o2-i1-value", "o2-i4-value", "o2-e1-value"]}
    assert "o2-e2-value" in await analyser.describe()


async def test_mock_status_follows_the_single_flags() -> None:
    analyser = ServomexAnalyser(name="o2")
    await analyser.connect(mock=True)
    assert sorted(await analyser.read()) == bench_read_keys("o2")
    assert await analyser.i1.status.get_value() == "ok"
    set_mock_value(analyser.i1.alarm1, True)
    set_mock_value(analyser.i1.maintenance, True)
    assert await analyser.i1.status.get_value() == "maint A1"
    assert await analyser.i1.ok.get_value() is False
    set_mock_value(analyser.i1.alarm1, False)
    assert await analyser.i1.status.get_value() == "maint"
    assert await analyser.i1.ok.get_value() is True
    await analyser.calibrate(1, confirm=True, poll_period=0.001)
    assert await analyser.i1.status.get_value() == "maint"  # idle again: cal flag cleared
    assert (await analyser.describe())["o2-cal_group1"]["choices"][0] == "idle"


def test_the_devices_calibration_phase_choices_are_the_codecs_phases() -> None:
    # ophyd-async needs its own StrictEnum; a phase added to the codec must be added here too
    assert [(p.name, p.value) for p in CalibrationPhase] == [(p.name, p.value) for p in CalPhase]
