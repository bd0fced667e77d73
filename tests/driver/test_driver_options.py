"""One ``ConnectionOptions`` travels: what an Analyzer, the manager's analysers and the sync
facade carry, and ``Analyzer.from_options`` against the simulator."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from driverhelpers import quiet_config

from ophyd_servomex.codec import ConnectionOptions, ServomexValidationError
from ophyd_servomex.codec.models import ProtocolKind, SerialSettings
from ophyd_servomex.driver import Analyzer, ServomexManager, open_device
from ophyd_servomex.sim import serve_memory

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU


async def test_open_device_keeps_its_arguments_in_one_options_object() -> None:
    settings = SerialSettings("/dev/ttyS9", baudrate=9600)
    analyzer = await open_device(
        "/dev/ttyS9", protocol=RTU, address=30, serial_settings=settings, timeout=2, identify=False
    )
    assert analyzer.options == ConnectionOptions(
        "/dev/ttyS9",
        protocol=RTU,
        address=30,
        serial_settings=settings,
        timeout=2.0,
        identify=False,
    )
    assert (analyzer.timeout, analyzer.expected_period) == (2.0, 2.0)
    assert (analyzer.inter_frame_idle, analyzer.retries) == (0.05, 2)
    assert (analyzer.port, analyzer.name, analyzer.protocol, analyzer.address) == (
        "/dev/ttyS9",
        "/dev/ttyS9",
        RTU,
        30,
    )


async def test_from_options_opens_on_a_given_transport() -> None:
    options = ConnectionOptions("", protocol=RTU, address=30, inter_frame_idle=0.0)
    async with serve_memory(quiet_config(RTU, addresses=(30,))) as sim:
        assert sim.transport is not None
        async with Analyzer.from_options(options, source=sim.transport, name="o2") as analyzer:
            frame = await analyzer.poll()
            assert frame.address == 30
            assert analyzer.options is options
            assert analyzer.name == "o2"
            assert analyzer.info is not None  # identify=True by default
            assert analyzer.info.channels[0].name == "Oxygen"


async def test_from_options_refuses_what_is_not_options_or_a_source() -> None:
    with pytest.raises(ServomexValidationError, match="options must be a ConnectionOptions"):
        Analyzer.from_options({"port": "p"})  # type: ignore[arg-type]
    with pytest.raises(ServomexValidationError, match="port must be a port string"):
        Analyzer.from_options(ConnectionOptions("p"), source=42)  # type: ignore[arg-type]


async def test_the_manager_gives_each_analyser_the_lines_options_and_its_address() -> None:
    async with (
        serve_memory(quiet_config(RTU, addresses=(30, 31))) as sim,
        ServomexManager(inter_frame_idle=0.0, retries=1) as manager,
    ):
        assert sim.transport is not None
        first = await manager.add("a", sim.transport, protocol=RTU, address=30, timeout=0.5)
        second = await manager.add("b", sim.transport, protocol=RTU, address=31, timeout=0.9)
        assert first.options.address == 30
        assert second.options == dataclasses.replace(first.options, address=31)
        assert second.options.timeout == 0.5  # a line has one timeout: its first analyser's
        assert (second.options.retries, second.options.inter_frame_idle) == (1, 0.0)
        assert (await second.poll()).address == 31


async def test_the_manager_checks_its_own_numbers_with_the_codec() -> None:
    with pytest.raises(ServomexValidationError, match=r"^retries must be a whole number ≥ 0"):
        ServomexManager(retries=-1)
    with pytest.raises(ServomexValidationError, match=r"^inter_frame_idle must be a finite"):
        ServomexManager(inter_frame_idle=float("inf"))


def test_the_sync_facade_refuses_a_bad_argument_before_starting_a_thread() -> None:
    from ophyd_servomex.sync import Servomex

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ServomexValidationError, match="1–247"):
        Servomex.open("/dev/ttyS9", protocol="rtu", address=0)
    assert {t.name for t in threading.enumerate()} <= before
