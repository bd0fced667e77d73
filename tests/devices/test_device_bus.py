"""Several analysers on one simulated RS485 line through ServomexBus and the driver's manager."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import FailedStatus
from devicehelpers import cable, documents, f32, fds_open_to, simulator, wait_for
from ophyd_async.core import Device, DeviceConnector, init_devices

from ophyd_servomex.codec.errors import ServomexConfigurationError, ServomexConnectionError
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.devices import LinkState, ReconnectPolicy, ServomexAnalyser, ServomexBus
from ophyd_servomex.devices.connect_cache import forget_connect
from ophyd_servomex.sim import WireKind

RTU = ProtocolKind.MODBUS_RTU
FAST = ReconnectPolicy(initial=0.05, factor=2.0, maximum=0.2)


def test_two_analysers_share_one_bus_and_init_devices_connects_all(RE: RunEngine) -> None:
    with simulator(RTU, addresses=(30, 31)) as sim:
        sim.handle.analyser_at(31).set_setpoint("I1", 5.5)
        with init_devices():
            line = ServomexBus(sim.port, protocol=RTU, inter_frame_idle=0.0)
            o2 = ServomexAnalyser(bus=line, address=30)
            co = ServomexAnalyser(bus=line, address=31)
        try:
            assert o2.connected
            assert co.connected
            assert o2.bus is line
            assert line.port == sim.port
            assert line._connector.manager.ports == (sim.port,)  # one shared transport
            assert set(line._connector.manager.names) == {"o2", "co"}
            docs = documents(RE)
            before = len(sim.log.events(WireKind.REQUEST))
            RE(count([o2, co], num=5))
            polled = sim.log.events(WireKind.REQUEST)[before:]
        finally:
            call_in_bluesky_event_loop(line.disconnect())
        assert not o2.connected
        assert not co.connected

    events = [d for n, d in docs if n == "event"]
    assert len(events) == 5
    for event in events:
        assert event["data"]["o2-i1-value"] == f32(20.378)
        assert event["data"]["co-i1-value"] == f32(5.5)
        assert len({v for k, v in event["timestamps"].items() if k.startswith("o2-")}) == 1
        assert len({v for k, v in event["timestamps"].items() if k.startswith("co-")}) == 1
    # each trigger is one whole sweep of each slave on the one line, never interleaved
    blocks = [polled[i : i + 3] for i in range(0, len(polled), 3)]
    assert len(blocks) == 10
    assert all(len({e.address for e in block}) == 1 for block in blocks)
    assert sorted(block[0].address or 0 for block in blocks) == [30] * 5 + [31] * 5


def test_a_bus_needs_a_modbus_mode_and_its_analysers_its_framing() -> None:
    with pytest.raises(ServomexConfigurationError, match="continuous"):
        ServomexBus("/dev/null", protocol="continuous")
    bus = ServomexBus("/dev/null", protocol="modbus-ascii")
    with pytest.raises(ServomexConfigurationError, match="cannot use modbus-rtu"):
        ServomexAnalyser(bus=bus, protocol="modbus-rtu", address=3)
    with pytest.raises(ServomexConfigurationError, match="differs from the bus"):
        ServomexAnalyser("/dev/ttyS9", bus=bus, address=3)


def test_the_manager_refuses_a_second_analyser_at_the_same_address(RE: RunEngine) -> None:
    with simulator(RTU, addresses=(30,)) as sim:
        line = ServomexBus(sim.port, inter_frame_idle=0.0, name="line")
        first = ServomexAnalyser(bus=line, address=30, name="first")
        second = ServomexAnalyser(bus=line, address=30, name="second")

        async def connect_both() -> Any:
            await first.connect()
            try:
                await second.connect()
            except ServomexConfigurationError as exc:
                return exc
            return None

        try:
            error = call_in_bluesky_event_loop(connect_both())
        finally:
            call_in_bluesky_event_loop(line.disconnect())
    assert isinstance(error, ServomexConfigurationError)
    assert "address 30 is already used" in str(error)


def test_a_lost_line_lets_every_analyser_go_and_both_come_back(
    RE: RunEngine, tmp_path: Path
) -> None:
    with cable(RTU, "pty", tmp_path, addresses=(30, 31)) as wire:
        with init_devices():
            line = ServomexBus(wire.port, protocol=RTU, inter_frame_idle=0.0)
            o2 = ServomexAnalyser(bus=line, address=30, reconnect=FAST)
            co = ServomexAnalyser(bus=line, address=31, reconnect=FAST)
        try:
            RE(count([o2, co], num=2))
            real = wire.pull()
            with pytest.raises(FailedStatus) as caught:
                RE(count([o2], num=2))  # only o2 finds out ...
            assert isinstance(caught.value.__cause__, ServomexConnectionError)
            assert "reconnecting by itself" in str(caught.value.__cause__)
            # ... but co lets go of the shared port too, so the line really closes
            wait_for(lambda: co.link is LinkState.RECONNECTING)
            wait_for(lambda: fds_open_to(real) == 0)
            assert line._connector.manager.names == ()
            wire.plug()
            wait_for(lambda: o2.link is LinkState.CONNECTED and co.link is LinkState.CONNECTED)
            docs = documents(RE)
            RE(count([o2, co], num=2))
            assert line._connector.manager.ports == (wire.port,)
        finally:
            call_in_bluesky_event_loop(line.disconnect())
    events = [d for n, d in docs if n == "event"]
    assert [e["data"]["o2-i1-value"] for e in events] == [f32(20.378)] * 2


def test_a_disconnected_bus_and_its_analysers_reconnect_with_a_plain_connect(
    RE: RunEngine,
) -> None:
    with simulator(RTU, addresses=(30,)) as sim:
        with init_devices():
            line = ServomexBus(sim.port, protocol=RTU, inter_frame_idle=0.0)
            o2 = ServomexAnalyser(bus=line, address=30)
        try:
            call_in_bluesky_event_loop(line.disconnect())
            assert line._connector.manager is None
            assert not o2.connected
            call_in_bluesky_event_loop(o2.connect())  # opens the line again, then o2
            assert line._connector.manager is not None
            assert line._connector.manager.names == ("o2",)
            docs = documents(RE)
            RE(count([o2], num=1))
        finally:
            call_in_bluesky_event_loop(line.disconnect())
    events = [d for n, d in docs if n == "event"]
    assert [e["data"]["o2-i1-value"] for e in events] == [f32(20.378)]


class _CountingConnector(DeviceConnector):
    def __init__(self) -> None:
        self.real_connects = 0

    async def connect_real(self, device: Device, timeout: float, force_reconnect: bool) -> None:  # noqa: ASYNC109
        self.real_connects += 1


@pytest.mark.anyio
async def test_forget_connect_is_what_makes_a_second_connect_real() -> None:
    # ophyd-async caches a successful connect; the helper drops that cache (if an upgrade
    # changes either, this says so)
    connector = _CountingConnector()
    device = Device(connector=connector)
    await device.connect()
    await device.connect()
    assert connector.real_connects == 1  # served from ophyd-async's cache
    forget_connect(device)
    await device.connect()
    assert connector.real_connects == 2
    await device.connect()
    assert connector.real_connects == 2
