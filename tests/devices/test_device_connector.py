"""The connector against a scripted session: channel discovery, reconnects, lost links,
triggers, background polling on demand and the calibration actions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fakesession import BENCH, FakeSession, make_frame

from ophyd_servomex.codec.errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexConnectionError,
    ServomexTimeoutError,
)
from ophyd_servomex.codec.models import (
    CalPhase,
    ChannelId,
    ChannelInfo,
    DeviceInfo,
    ProtocolKind,
    Unit,
)
from ophyd_servomex.devices import ServomexAnalyser, select_channels

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU
CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII


async def connected(session: FakeSession, **options: Any) -> ServomexAnalyser:
    analyser = ServomexAnalyser(session_factory=session.factory(), name="gas", **options)
    await analyser.connect(timeout=2.0)
    return analyser


async def until(predicate: Any, limit: float = 2.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - polling a plain condition in a test
            await asyncio.sleep(0.001)


def test_channel_selection_keeps_labelled_slots_and_external_inputs() -> None:
    info = DeviceInfo("p", RTU, 30, BENCH)
    picked = select_channels(info, None)
    assert [c.channel for c in picked] == [
        ChannelId.I1,
        ChannelId.I2,
        ChannelId.I3,
        ChannelId.E1,
        ChannelId.E2,
    ]  # the unlabelled, unconfigured I4 is left out; unlabelled E1/E2 stay
    assert select_channels(info, (ChannelId.I4, ChannelId.I1)) == (BENCH[3], BENCH[0])
    with pytest.raises(ServomexConfigurationError, match="D1 not reported"):
        select_channels(info, (ChannelId.D1,))


async def test_connect_identifies_reads_a_first_frame_and_builds_children() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session)
    try:
        assert session.calls[:2] == [("identify", None), ("poll", False)]
        assert analyser.connected
        assert analyser.channel_ids == (
            ChannelId.I1,
            ChannelId.I2,
            ChannelId.I3,
            ChannelId.E1,
            ChannelId.E2,
        )
        assert analyser.i1.name == "gas-i1"
        assert analyser.i1.value.name == "gas-i1-value"
        reading = await analyser.read()
        assert reading["gas-i1-value"]["value"] == 2.0
        assert reading["gas-dropped_frames"]["value"] == 7
        assert (await analyser.read_configuration())["gas-address"]["value"] == 30
    finally:
        await analyser.disconnect()
    assert not analyser.connected
    assert (session.opened, session.closed) == (1, 1)
    await analyser.connect()  # a plain connect() after disconnect() opens a new session
    assert analyser.connected
    await analyser.disconnect()
    assert (session.opened, session.closed) == (2, 2)


async def test_reconnect_keeps_a_same_channel_set_and_refuses_a_changed_one() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session)
    try:
        await analyser.connect(force_reconnect=True)
        assert (session.opened, session.closed) == (2, 1)
        assert analyser.hints == {
            "fields": [f"gas-{c}-value" for c in ("i1", "i2", "i3", "e1", "e2")]
        }
        session.channels = (*BENCH, ChannelInfo(ChannelId.D1, "O2 dry", Unit.PERCENT, "%"))
        with pytest.raises(ServomexConfigurationError, match="create a new device"):
            await analyser.connect(force_reconnect=True)
        assert not analyser.connected
        assert session.opened == session.closed == 3
    finally:
        await analyser.disconnect()


async def test_a_failed_open_raises_the_drivers_error_and_reads_then_say_so() -> None:
    session = FakeSession(RTU)
    session.fail_open = ServomexConnectionError("port /dev/ttyX busy")
    analyser = ServomexAnalyser(session_factory=session.factory(), name="gas")
    with pytest.raises(ServomexConnectionError, match="busy"):
        await analyser.connect()
    with pytest.raises(ServomexConnectionError, match="not connected: port /dev/ttyX busy"):
        await analyser.trigger()


async def test_a_driver_timeout_at_connect_keeps_its_own_message_and_context() -> None:
    # the driver's ServomexTimeoutError (a TimeoutError) must not be mistaken for the
    # connect deadline: the user needs "no reply from address 31", not "took longer than 30 s"
    session = FakeSession(RTU)
    session.fail_open = ServomexTimeoutError(
        "no reply from address 31", context=ErrorContext(port="fake://port", address=31)
    )
    analyser = ServomexAnalyser(session_factory=session.factory(), name="gas")
    with pytest.raises(ServomexTimeoutError) as caught:
        await analyser.connect(timeout=30.0)
    assert str(caught.value) == "no reply from address 31 (port=fake://port, address=31)"


async def test_the_connect_deadline_itself_names_the_timeout() -> None:
    @asynccontextmanager
    async def never_opens() -> AsyncIterator[FakeSession]:
        await asyncio.Event().wait()
        yield FakeSession(RTU)

    analyser = ServomexAnalyser(session_factory=never_opens, name="gas")
    with pytest.raises(ServomexTimeoutError, match=r"took longer than 0.2 s"):
        await analyser.connect(timeout=0.2)


async def test_a_declared_channel_missing_from_the_analyser_fails_the_connect() -> None:
    session = FakeSession(RTU)
    analyser = ServomexAnalyser(session_factory=session.factory(), channels=["D2"], name="g")
    with pytest.raises(ServomexConfigurationError, match="D2 not reported"):
        await analyser.connect()
    assert session.opened == session.closed == 1


async def test_modbus_trigger_is_one_fresh_sweep_and_read_reports_it() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session)
    try:
        await analyser.trigger()
        assert session.calls[-1] == ("poll", True)
        reading = await analyser.read()
        assert {r["value"] for k, r in reading.items() if k.endswith("-value")} == {3.0}
        # a newer frame (e.g. a background poll) does not change what the trigger took
        analyser._hub.publish(make_frame(99.0))
        assert (await analyser.read())["gas-i1-value"]["value"] == 3.0
        assert await analyser.i1.value.get_value() == 99.0  # the signal itself is live
        await analyser.unstage()
        assert (await analyser.read())["gas-i1-value"]["value"] == 99.0
    finally:
        await analyser.disconnect()


async def test_continuous_trigger_waits_for_the_next_broadcast() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session, expected_period=0.05)
    try:
        await until(lambda: session.subscriptions)
        trigger = asyncio.ensure_future(analyser.trigger())
        await asyncio.sleep(0.02)
        assert not trigger.done()
        frame = session.broadcast()
        await trigger
        reading = await analyser.read()
        assert reading["gas-i2-value"]["value"] == frame.channel("I2").value
        assert reading["gas-i2-value"]["timestamp"] == frame.timestamp
        assert (await analyser.read_configuration())["gas-address"]["value"] == 0
        assert not [c for c in session.calls if c[0] == "poll" and c[1] is True]
    finally:
        await analyser.disconnect()


async def test_continuous_trigger_times_out_clearly_when_the_broadcast_stops() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session, expected_period=0.01)
    try:
        with pytest.raises(ServomexTimeoutError, match=r"no broadcast frame within 0\.5 s"):
            await analyser.trigger()
    finally:
        await analyser.disconnect()


async def test_a_lost_broadcast_link_ends_the_session_and_names_the_cause() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session)
    try:
        await until(lambda: session.subscriptions)
        session.lose_link()
        await until(lambda: not analyser.connected)
        assert session.closed == 1
        with pytest.raises(ServomexConnectionError, match="cable pulled"):
            await analyser.trigger()
        await analyser.connect(force_reconnect=True)  # a reconnect recovers
        assert analyser.connected
    finally:
        await analyser.disconnect()


async def test_every_broadcast_reaches_device_and_signal_monitors() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session)
    try:
        await until(lambda: session.subscriptions)
        device: list[dict[str, Any]] = []
        signal: list[dict[str, Any]] = []
        analyser.subscribe(device.append)
        analyser.e1.value.subscribe(signal.append)
        sent = [session.broadcast() for _ in range(5)]
        await until(lambda: len(device) == 6)
        assert [d["gas-i3-value"]["value"] for d in device[1:]] == [
            f.channel("I3").value for f in sent
        ]
        assert [s["gas-e1-value"]["timestamp"] for s in signal[1:]] == [f.timestamp for f in sent]
        assert all(len({r["timestamp"] for r in d.values()}) == 1 for d in device)
        assert set(device[0]) == set(await analyser.describe())
        analyser.clear_sub(device.append)
        analyser.e1.value.clear_sub(signal.append)
        session.broadcast()
        await asyncio.sleep(0.01)
        assert (len(device), len(signal)) == (6, 6)
    finally:
        await analyser.disconnect()


async def test_modbus_polls_in_the_background_only_while_subscribed() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session, poll_rate_hz=200.0)
    try:

        def polls() -> int:
            return sum(1 for c in session.calls if c[0] == "poll")

        await asyncio.sleep(0.05)
        assert polls() == 1  # the first frame at connect, nothing since
        got: list[dict[str, Any]] = []
        analyser.i1.value.subscribe(got.append)
        await until(lambda: len(got) >= 6)
        analyser.i1.value.clear_sub(got.append)
        await asyncio.sleep(0.02)
        stopped_at = polls()
        await asyncio.sleep(0.05)
        assert polls() == stopped_at
        values = [g["gas-i1-value"]["value"] for g in got]
        assert values == sorted(values)
        assert len(set(values)) == len(values)
    finally:
        await analyser.disconnect()


async def test_calibration_actions_reach_the_session() -> None:
    session = FakeSession(RTU)
    session.phases = [CalPhase.IDLE, CalPhase.CAL_GAS_2, CalPhase.CAL_GAS_1, CalPhase.IDLE]
    analyser = await connected(session, calibration_poll_period=0.001)
    try:
        updates: list[dict[str, Any]] = []
        status = analyser.calibrate(3, confirm=True)
        status.watch(lambda **kw: updates.append(kw))
        await status
        assert [u["unit"] for u in updates] == ["sampling", "cal_gas_2", "cal_gas_1", "done"]
        actions = [c for c in session.calls if c[0] != "poll"]
        assert actions[1:] == [
            ("start_calibration", (3, True)),
            ("calibration_status", 3),
            ("calibration_status", 3),
            ("calibration_status", 3),
            ("calibration_status", 3),
        ]
    finally:
        await analyser.disconnect()


async def test_a_lost_modbus_link_during_background_polling_ends_the_session() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session, poll_rate_hz=100.0)
    original = session.poll

    async def pulled(*, wait_fresh: bool = True) -> Any:
        if len(session.calls) > 3:
            raise ServomexConnectionError("cable pulled")
        return await original(wait_fresh=wait_fresh)

    session.poll = pulled  # type: ignore[method-assign]
    try:
        got: list[dict[str, Any]] = []
        analyser.i1.value.subscribe(got.append)
        await until(lambda: not analyser.connected)
        assert session.closed == 1
        with pytest.raises(ServomexConnectionError, match="cable pulled"):
            await analyser.trigger()
        analyser.i1.value.clear_sub(got.append)
    finally:
        await analyser.disconnect()
