"""Several analysers on one RS485 line share one ModbusLine: one owner, one idle gap."""

from __future__ import annotations

import anyio
import pytest
from driverhelpers import bench_values, quiet_config

from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import ChannelId, Frame, ProtocolKind
from ophyd_servomex.driver import Analyzer, ModbusLine
from ophyd_servomex.sim import WireKind, serve_pty
from ophyd_servomex.transport import open_transport

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU


async def test_two_analysers_on_one_line_never_overlap() -> None:
    config = quiet_config(RTU, addresses=(30, 31))
    async with serve_pty(config) as sim:
        sim.analyser_at(31).set_setpoint("I1", 18.0)
        transport = await open_transport(sim.port)
        try:
            async with (
                ModbusLine(transport, protocol=RTU, inter_frame_idle=0.005) as line,
                Analyzer(line, address=30) as first,
                Analyzer(line, address=31) as second,
            ):
                assert (first.protocol, second.protocol) == (RTU, RTU)
                frames: dict[int, list[Frame]] = {30: [], 31: []}

                async def poll(analyser_address: int) -> None:
                    analyser = first if analyser_address == 30 else second
                    for _ in range(5):
                        frames[analyser_address].append(await analyser.poll())

                async with anyio.create_task_group() as tg:
                    tg.start_soon(poll, 30)
                    tg.start_soon(poll, 31)
                assert all(f.values == bench_values(RTU) for f in frames[30])
                assert all(f.channel(ChannelId.I1).value == 18.0 for f in frames[31])
                assert all(f.address == 31 for f in frames[31])
            assert not getattr(transport, "closed", False)  # the line never closes it
        finally:
            await transport.aclose()
    kinds = [e.kind for e in sim.log.events()]
    assert kinds == [WireKind.REQUEST, WireKind.REPLY] * (len(kinds) // 2)
    # sweeps stay whole even when two callers poll at once
    addresses = [e.address for e in sim.log.events(WireKind.REQUEST)]
    assert addresses[:2] == [30, 31]  # identify() on opening: one FC04 read each
    runs = [addresses[i : i + 3] for i in range(2, len(addresses), 3)]
    assert len(runs) == 10
    assert all(len(run) == 3 and len(set(run)) == 1 for run in runs)


async def test_a_shared_line_refuses_another_protocol() -> None:
    async with serve_pty(quiet_config(RTU)) as sim:
        transport = await open_transport(sim.port)
        try:
            async with ModbusLine(transport, protocol=RTU) as line:
                with pytest.raises(ServomexValidationError, match="modbus-rtu"):
                    Analyzer(line, protocol=ProtocolKind.MODBUS_ASCII)
        finally:
            await transport.aclose()
