"""The connector against a scripted session: channel discovery, reconnects, lost links
(release, INVALID, back-off, reconnect by itself), triggers, background polling on demand
at a settable rate, "not connected", and the calibration actions."""

from __future__ import annotations

import asyncio
import errno
import itertools
import math
import re
import termios
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
    ServomexUnsupportedError,
    ServomexValidationError,
)
from ophyd_servomex.codec.models import (
    CalPhase,
    ChannelId,
    ChannelInfo,
    DeviceInfo,
    ProtocolKind,
    Unit,
)
from ophyd_servomex.devices import (
    LinkState,
    ReconnectPolicy,
    ServomexAnalyser,
    select_channels,
)
from ophyd_servomex.devices.link import ALARM_INVALID

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU
CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII
FAST = ReconnectPolicy(initial=0.02, factor=2.0, maximum=0.1)


async def connected(session: FakeSession, **options: Any) -> ServomexAnalyser:
    analyser = ServomexAnalyser(session_factory=session.factory(), name="gas", **options)
    await analyser.connect(timeout=2.0)
    return analyser


async def until(predicate: Any, limit: float = 2.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - polling a plain condition in a test
            await asyncio.sleep(0.001)


class PollClock:
    """A fake clock under an analyser's background poll: the connector's ``sleep`` advances
    it (the schedule is exact, whatever the machine's load) and ``polled_at`` notes when
    each poll of ``session`` began. ``overrun`` maps a poll's number (1 = the first) to the
    seconds that poll takes on this clock."""

    def __init__(
        self,
        analyser: ServomexAnalyser,
        session: FakeSession,
        *,
        now: float = 1000.0,
        overrun: dict[int, float] | None = None,
    ) -> None:
        self.now = now
        self.polled_at: list[float] = []
        slow = overrun or {}
        original = session.poll

        async def poll(*, wait_fresh: bool = True, max_wait: float | None = None) -> Any:
            self.polled_at.append(self.now)
            self.now += slow.get(len(self.polled_at), 0.0)
            return await original(wait_fresh=wait_fresh)

        connector = analyser._connector
        connector._clock = lambda: self.now
        connector._sleep = self.sleep
        session.poll = poll  # type: ignore[method-assign]

    async def sleep(self, delay: float) -> None:
        self.now += delay
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
        assert analyser.hints == {"fields": [f"gas-{c}-value" for c in ("i1", "i2", "i3")]}
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
        await until(lambda: session.listening)
        trigger = asyncio.ensure_future(analyser.trigger())
        await asyncio.sleep(0.02)
        assert not trigger.done()
        frame = session.broadcast()
        await trigger
        reading = await analyser.read()
        assert reading["gas-i2-value"]["value"] == frame.channel("I2").value
        assert reading["gas-i2-value"]["timestamp"] == frame.timestamp
        assert (await analyser.read_configuration())["gas-address"]["value"] == 0
        # the trigger waited with the driver's own wait-for-next, and took the frame the
        # hub published (once) itself
        assert [c for c in session.calls if c[0] == "poll"] == [("poll", False), ("poll", True)]
        triggered = analyser._hub.triggered
        assert triggered is not None
        assert triggered.frame is frame
        assert session.published == 2  # the first frame at connect, the broadcast
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


async def test_a_lost_broadcast_link_releases_the_port_marks_invalid_and_reconnects() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session, reconnect=FAST)
    try:
        await until(lambda: session.listening)
        last = session.broadcast()
        await until(lambda: analyser.hub_sequence == 2)
        values: list[dict[str, Any]] = []
        states: list[dict[str, Any]] = []
        device: list[dict[str, Any]] = []
        analyser.i1.value.subscribe(values.append)
        analyser.link_state.subscribe(states.append)
        analyser.subscribe(device.append)
        session.fail_open = ServomexConnectionError("cannot open fake://port: gone")
        session.lose_link()
        await until(lambda: session.closed == 1)  # the port is released at once
        assert not analyser.connected
        assert analyser.link is LinkState.RECONNECTING
        # subscribers see the last value once more, INVALID, stamped when the link went
        assert [v["gas-i1-value"]["value"] for v in values] == [last.channel("I1").value] * 2
        assert [v["gas-i1-value"]["alarm_severity"] for v in values] == [0, ALARM_INVALID]
        assert values[1]["gas-i1-value"]["timestamp"] > last.timestamp
        assert states[-1]["gas-link_state"] == {
            "value": LinkState.RECONNECTING,
            "timestamp": states[-1]["gas-link_state"]["timestamp"],
            "alarm_severity": ALARM_INVALID,
        }
        assert len(device) == 1  # no event is made up for the device monitor
        # reads and actions fail fast with the typed error naming port, cause and recovery
        for call in (analyser.read, analyser.trigger, analyser.i2.value.get_value):
            with pytest.raises(ServomexConnectionError) as caught:
                await call()
            message = str(caught.value)
            assert message.startswith("gas: the link to fake://port is lost (cable pulled")
            assert "reconnecting by itself" in message
        # the port comes back: the device reopens it by itself
        session.fail_open = None
        await until(lambda: analyser.connected)
        assert analyser.link is LinkState.CONNECTED
        assert (session.opened, session.closed) == (2, 1)
        assert states[-1]["gas-link_state"]["value"] is LinkState.CONNECTED
        assert states[-1]["gas-link_state"]["alarm_severity"] == 0
        assert values[-1]["gas-i1-value"]["alarm_severity"] == 0
        await until(lambda: session.listening)
        trigger = asyncio.ensure_future(analyser.trigger())
        await asyncio.sleep(0.01)
        fresh = session.broadcast()
        await trigger
        assert (await analyser.read())["gas-i1-value"]["value"] == fresh.channel("I1").value
        assert device[-1]["gas-i1-value"]["value"] == fresh.channel("I1").value
    finally:
        await analyser.disconnect()
    assert analyser.link is LinkState.DISCONNECTED
    assert session.opened == session.closed


async def test_a_trigger_waiting_for_a_broadcast_fails_at_once_when_the_link_goes() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session, expected_period=2.0, reconnect=None)
    try:
        await until(lambda: session.listening)
        trigger = asyncio.ensure_future(analyser.trigger())
        await asyncio.sleep(0.01)
        session.lose_link()
        # not the ServomexTimeoutError after three periods (6 s): the lost link itself
        async with asyncio.timeout(2.0):
            with pytest.raises(ServomexConnectionError, match="cable pulled"):
                await trigger
        await until(lambda: session.closed == 1)
        assert analyser.link is LinkState.DISCONNECTED  # reconnect=None: stays down
        with pytest.raises(ServomexConnectionError, match="is not connected: cable pulled"):
            await analyser.trigger()
        await analyser.connect(force_reconnect=True)  # the manual way still works
        assert analyser.connected
    finally:
        await analyser.disconnect()


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.EIO, "Input/output error"),
        termios.error(errno.EIO, "Input/output error"),
        ServomexConnectionError("link lost on fake://port: the peer closed the connection"),
    ],
    ids=["OSError", "termios.error", "ServomexConnectionError"],
)
async def test_a_port_error_in_a_trigger_releases_the_port_and_reconnects(
    error: Exception,
) -> None:
    session = FakeSession(RTU)
    analyser = await connected(session, reconnect=FAST)
    original = session.poll
    broken = True

    async def poll(*, wait_fresh: bool = True) -> Any:
        if broken:
            raise error
        return await original(wait_fresh=wait_fresh)

    session.poll = poll  # type: ignore[method-assign]
    try:
        with pytest.raises(ServomexConnectionError) as caught:
            await analyser.trigger()
        assert str(caught.value).startswith("gas: the link to fake://port is lost")
        assert "reconnecting by itself" in str(caught.value)
        await until(lambda: session.closed == 1)
        assert analyser.link is LinkState.RECONNECTING
        with pytest.raises(ServomexConnectionError, match="reconnecting"):
            await analyser.trigger()
        broken = False
        await until(lambda: analyser.connected)
        await analyser.trigger()
        assert (await analyser.read())["gas-i1-value"]["value"] == session.value
    finally:
        await analyser.disconnect()


async def test_reconnect_attempts_follow_the_back_off_schedule() -> None:
    assert ReconnectPolicy().schedule(7) == (0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0)
    assert ReconnectPolicy(0.1, 3.0, 1.0).schedule(4) == pytest.approx((0.1, 0.3, 0.9, 1.0))
    with pytest.raises(ServomexConfigurationError):
        ReconnectPolicy(initial=2.0, maximum=1.0)
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session)
    waits: list[float] = []
    messages: list[str] = []

    async def pause(delay: float, wake: asyncio.Event) -> None:
        waits.append(delay)
        with pytest.raises(ServomexConnectionError) as caught:
            await analyser.read()
        messages.append(str(caught.value))
        if len(waits) == 6:
            session.fail_open = None  # the adapter is back
        await asyncio.sleep(0)

    analyser._connector._pause = pause
    try:
        await until(lambda: session.listening)
        session.fail_open = ServomexConnectionError("cannot open fake://port: no such device")
        session.lose_link()
        await until(lambda: not analyser.connected)
        await until(lambda: analyser.connected)
        assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
        assert re.fullmatch(
            r"gas: the link to fake://port is lost \(cable pulled\); reconnecting by itself: "
            r"attempt 1 in 0\.\d s\. The next plan works once it is back \(link_state shows "
            r"'connected'\) \(port=fake://port, protocol=continuous\)",
            messages[0],
        )
        pattern = (
            r"gas: the link to fake://port is lost \(cable pulled\); reconnecting by itself: "
            r"attempt (\d) in [\d.]+ s \(the last attempt: cannot open fake://port: no such "
            r"device\)\. The next plan"
        )
        attempts = [re.match(pattern, m) for m in messages[1:]]
        assert [m.group(1) if m else m for m in attempts] == ["2", "3", "4", "5", "6"]
        assert (session.opened, session.closed) == (2, 1)
        assert analyser._connector.reconnect_attempts == 0
    finally:
        await analyser.disconnect()


async def test_a_reconnect_that_finds_other_channels_gives_up_and_says_so() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session, reconnect=FAST)
    try:
        await until(lambda: session.listening)
        session.channels = BENCH[:2]
        session.lose_link()
        await until(lambda: session.opened == 2 and session.closed == 2)
        await until(lambda: analyser.link is LinkState.DISCONNECTED)
        await asyncio.sleep(0.3)
        assert session.opened == 2  # no more attempts
        with pytest.raises(ServomexConnectionError, match="create a new device"):
            await analyser.trigger()
    finally:
        await analyser.disconnect()


async def test_reading_a_device_that_never_connected_says_not_connected() -> None:
    analyser = ServomexAnalyser("/dev/ttyUSB9", protocol=RTU, address=30, name="gas")
    with pytest.raises(ServomexConnectionError) as caught:
        await analyser.read()
    assert str(caught.value) == (
        "gas on /dev/ttyUSB9 is not connected; connect it first (init_devices(), or "
        "await device.connect()) (port=/dev/ttyUSB9, protocol=modbus-rtu, address=30)"
    )
    with pytest.raises(ServomexConnectionError, match=r"^gas on /dev/ttyUSB9 is not connected"):
        await analyser.cal_group1.get_value()
    with pytest.raises(ServomexConnectionError, match=r"^gas on /dev/ttyUSB9 is not connected"):
        await analyser.trigger()
    state = await analyser.link_state.read()
    assert state["gas-link_state"]["value"] is LinkState.DISCONNECTED
    assert state["gas-link_state"]["alarm_severity"] == ALARM_INVALID
    assert "gas-fault" in await analyser.describe()  # describing needs no connection


async def test_reading_after_disconnect_says_so() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session)
    await analyser.disconnect()
    with pytest.raises(
        ServomexConnectionError, match=r"^gas on fake://port is not connected \(it was disc"
    ):
        await analyser.read()


async def test_every_broadcast_reaches_device_and_signal_monitors() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session)
    try:
        await until(lambda: session.listening)
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
        status = analyser.calibrate(3, confirm=True)
        await status
        assert status.success  # its progress reports: tests/devices/test_device_calibration.py
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
    analyser = await connected(session, poll_rate_hz=100.0, reconnect=FAST)
    original = session.poll
    pulled = True

    async def poll(*, wait_fresh: bool = True) -> Any:
        if pulled and len(session.calls) > 3:
            raise ServomexConnectionError("cable pulled")
        return await original(wait_fresh=wait_fresh)

    session.poll = poll  # type: ignore[method-assign]
    try:
        got: list[dict[str, Any]] = []
        analyser.i1.value.subscribe(got.append)
        await until(lambda: session.closed == 1)
        assert got[-1]["gas-i1-value"]["alarm_severity"] == ALARM_INVALID
        with pytest.raises(ServomexConnectionError, match="cable pulled"):
            await analyser.trigger()
        pulled = False
        # back: the background poll resumes for the subscriber that is still there
        count = len(got)
        await until(lambda: len(got) >= count + 3)
        assert all(g["gas-i1-value"]["alarm_severity"] == 0 for g in got[count:])
        analyser.i1.value.clear_sub(got.append)
    finally:
        await analyser.disconnect()


async def test_the_poll_rate_is_a_setting_the_running_background_poll_follows() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session, poll_rate_hz=2.0)
    connector = analyser._connector
    polled_at = PollClock(analyser, session).polled_at
    try:
        assert await analyser.poll_rate_hz.get_value() == 2.0
        got: list[dict[str, Any]] = []
        analyser.i1.value.subscribe(got.append)
        await until(lambda: len(polled_at) >= 4)
        await analyser.poll_rate_hz.set(5.0)
        switched = len(polled_at)
        await until(lambda: len(polled_at) >= switched + 5)
        analyser.i1.value.clear_sub(got.append)
        gaps = [round(b - a, 9) for a, b in itertools.pairwise(polled_at)]
        assert gaps[: switched - 1] == [0.5] * (switched - 1)
        assert gaps[switched:] == [0.2] * len(gaps[switched:])  # one gap may still be 0.5
        assert gaps[switched - 1] in (0.5, 0.2)
        assert connector.poll_period == 0.2
        reading = await analyser.poll_rate_hz.read()
        assert reading["gas-poll_rate_hz"]["value"] == 5.0
        assert (await analyser.poll_rate_hz.describe())["gas-poll_rate_hz"]["units"] == "Hz"
        for bad in (0.0, -1.0, math.nan, math.inf):
            with pytest.raises(ServomexValidationError, match="poll_rate_hz must be"):
                await analyser.poll_rate_hz.set(bad)
        assert await analyser.poll_rate_hz.get_value() == 5.0
        assert connector.poll_rate_hz == 5.0
    finally:
        await analyser.disconnect()


async def test_mock_mode_shows_connected_and_keeps_the_poll_rate_setting() -> None:
    analyser = ServomexAnalyser(name="gas", poll_rate_hz=3.0)
    await analyser.connect(mock=True)
    state = (await analyser.link_state.read())["gas-link_state"]
    assert (state["value"], state["alarm_severity"]) == (LinkState.CONNECTED, 0)
    assert await analyser.poll_rate_hz.get_value() == 3.0
    await analyser.poll_rate_hz.set(7.5)
    assert await analyser.poll_rate_hz.get_value() == 7.5
    with pytest.raises(ServomexUnsupportedError, match="read-only"):
        await analyser.link_state._connector.backend.put(LinkState.DISCONNECTED)


async def test_continuous_frames_reach_the_device_inside_the_drivers_publish() -> None:
    session = FakeSession(CONTINUOUS)
    analyser = await connected(session)
    try:
        await until(lambda: session.listening)
        # one synchronous listener on the driver's hub: no subscription queue, no pump task
        assert (session.hub.listener_count, session.hub.subscriber_count) == (1, 0)
        ours = sorted(t.get_name() for t in asyncio.all_tasks() if "servomex" in t.get_name())
        assert [n.rsplit(".", 1)[-1].split(" ")[0] for n in ours] == [
            "_cancel_when",  # the stop and the lost link
            "_cancel_when",
            "servomex-owner",
        ]
        got: list[dict[str, Any]] = []
        analyser.i1.value.subscribe(got.append)
        seen = analyser.hub_sequence
        frame = session.broadcast()
        # no await in between: the signal has it when the driver's publish returns
        assert analyser.hub_sequence == seen + 1
        assert got[-1]["gas-i1-value"]["value"] == frame.channel("I1").value
        analyser.i1.value.clear_sub(got.append)
    finally:
        await analyser.disconnect()
    assert session.hub.closed
    assert session.hub.listener_count == 0  # unfollowed before the session closed


async def test_each_modbus_poll_publishes_its_frame_once() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session, poll_rate_hz=200.0)
    frames = analyser._connector.frames
    taken = frames.publish
    publishes: list[float] = []

    def counted(frame: Any, *, dropped_frames: int = 0) -> Any:
        publishes.append(frame.timestamp)
        return taken(frame, dropped_frames=dropped_frames)

    frames.publish = counted  # type: ignore[method-assign]
    try:
        assert session.hub.subscriber_count == 0
        first = session.published
        for _ in range(3):
            await analyser.trigger()
        got: list[dict[str, Any]] = []
        analyser.i1.value.subscribe(got.append)  # the background poll runs
        await until(lambda: len(got) >= 5)
        analyser.i1.value.clear_sub(got.append)
        await asyncio.sleep(0.02)  # a poll under way when the last listener left ends
        polls = sum(1 for c in session.calls if c[0] == "poll" and c[1] is True)
        # every poll published once to the driver's hub, and that one publish (nothing
        # from the connector) made the device's snapshot
        assert session.published - first == polls == len(publishes)
        assert session.hub.version == session.published
        assert analyser.hub_sequence == session.published
        values = [g["gas-i1-value"]["value"] for g in got]
        assert values == sorted(set(values))
    finally:
        await analyser.disconnect()


async def test_an_overrunning_background_poll_keeps_the_grid_and_skips_passed_slots() -> None:
    session = FakeSession(RTU)
    analyser = await connected(session, poll_rate_hz=2.0)
    connector = analyser._connector
    # the third sweep overruns two and a half periods
    polled_at = PollClock(analyser, session, overrun={3: 1.3}).polled_at
    try:
        got: list[dict[str, Any]] = []
        analyser.i1.value.subscribe(got.append)
        await until(lambda: len(polled_at) >= 6)
        analyser.i1.value.clear_sub(got.append)
        # record()'s schedule: the slot at 1001.5 had wholly passed and is skipped (counted,
        # not made up in a burst); the slot at 1002.0 runs late, and the grid goes on
        assert polled_at[:6] == [1000.0, 1000.5, 1001.0, 1002.3, 1002.5, 1003.0]
        assert connector._schedule is not None
        assert connector._schedule.missed == 1
    finally:
        await analyser.disconnect()
    assert connector._schedule is None
