"""Serving over a pseudo-terminal, TCP and memory, and from a thread of its own."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from simhelpers import assert_silent, receive_exactly, receive_line

from ophyd_servomex.codec.continuous import parse_frame
from ophyd_servomex.codec.errors import ServomexConnectionError, ServomexValidationError
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.sim import (
    Fault,
    SimConfig,
    SimulatorThread,
    WireKind,
    serve_memory,
    serve_pty,
    serve_tcp,
)
from ophyd_servomex.transport import open_transport

pytestmark = pytest.mark.anyio

LOOP_30 = bytes.fromhex("1E 08 00 00 AB CD 5C C1")


async def test_pty_serves_successive_clients() -> None:
    async with serve_pty(SimConfig(noisy=False)) as sim:
        assert sim.port.startswith("/dev/")
        for _ in range(2):  # a client may close the port and open it again
            async with await open_transport(sim.port) as client:
                await client.send(LOOP_30)
                assert await receive_exactly(client, 8) == LOOP_30
        assert repr(sim) == f"SimHandle({sim.port!r}, modbus-rtu, addresses=30)"
    assert sim.log.frames_sent == 2


async def test_pty_continuous_join_mid_stream() -> None:
    config = SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=0.03, noisy=False)
    async with serve_pty(config) as sim:
        await anyio.sleep(0.1)  # frames sent before anyone listens are lost, as on a line
        async with await open_transport(sim.port) as client:
            await receive_line(client)  # possibly a fragment
            frame = parse_frame(await receive_line(client))
        assert frame.channel("I1").value == 20.378


async def test_pty_disconnect_fault_is_the_pulled_cable() -> None:
    async with serve_pty(SimConfig(noisy=False)) as sim:
        sim.faults.inject(Fault.DISCONNECT, keep=3)
        async with await open_transport(sim.port) as client:
            await client.send(LOOP_30)
            assert await receive_exactly(client, 3) == LOOP_30[:3]
            with pytest.raises(ServomexConnectionError), anyio.fail_after(2):
                await client.receive()
    assert sim.log.events()[-1].kind is WireKind.DISCONNECT


async def test_tcp_one_client_at_a_time_and_reconnect() -> None:
    async with serve_tcp(SimConfig(noisy=False)) as sim:
        assert sim.port.startswith("socket://127.0.0.1:")
        async with await open_transport(sim.port) as first:
            await first.send(LOOP_30)
            assert await receive_exactly(first, 8) == LOOP_30
            # a second client while the first is served is turned away
            async with await open_transport(sim.port) as second:
                with pytest.raises(ServomexConnectionError), anyio.fail_after(2):
                    await second.receive()
            sim.faults.inject(Fault.DISCONNECT, keep=0)
            await first.send(LOOP_30)
            with pytest.raises(ServomexConnectionError), anyio.fail_after(2):
                await first.receive()
        # after the pulled cable, the device server takes the next client
        async with await open_transport(sim.port) as third:
            await third.send(LOOP_30)
            assert await receive_exactly(third, 8) == LOOP_30
    assert sim.log.frames_sent == 3


async def test_tcp_continuous() -> None:
    config = SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=0.02, noisy=False)
    async with serve_tcp(config) as sim, await open_transport(sim.port) as client:
        await receive_line(client)
        assert parse_frame(await receive_line(client)).channel("I3").name == "CO2"


async def test_memory_handle() -> None:
    async with serve_memory() as sim:
        assert sim.transport.port == sim.port == "memory://sim"
        assert sim.analyser is sim.analysers[0]
        assert sim.analyser.address == 30
        await sim.transport.send(LOOP_30[:4])
        await assert_silent(sim.transport, 0.05)


def test_simulator_thread_pty_and_tcp() -> None:
    for link in ("pty", "tcp"):
        with SimulatorThread(SimConfig(noisy=False), link=link) as sim:  # type: ignore[arg-type]
            assert sim.analyser.address == 30
            owner = threading.get_ident()

            async def client(port: str) -> bytes:
                async with await open_transport(port) as t:
                    await t.send(LOOP_30)
                    return await receive_exactly(t, 8)

            assert anyio.run(client, sim.port) == LOOP_30
            assert threading.get_ident() == owner
            assert sim.log.frames_sent == 1
            sim.analyser.set_setpoint("I1", 1.0)  # safe from this thread
            assert sim.portal.call(sim.analyser.setpoint, "I1") == 1.0
        with pytest.raises(ServomexValidationError):
            _ = sim.port
    sim.stop()  # idempotent


def test_simulator_thread_start_stop_and_errors() -> None:
    thread = SimulatorThread(SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=0.02))
    handle = thread.start()
    assert thread.start() is handle
    assert thread.handle is handle
    time.sleep(0.1)  # it broadcasts whether or not anyone listens
    thread.stop()
    frames = handle.log.frames_sent
    assert frames >= 1
    with pytest.raises(ServomexValidationError):
        SimulatorThread(link="usb")  # type: ignore[arg-type]
    bad = SimulatorThread(SimConfig(mode=ProtocolKind.AUTO))
    with pytest.raises(ServomexValidationError):
        bad.start()
    with pytest.raises(ServomexValidationError):
        _ = bad.portal


@pytest.mark.parametrize("serve", [serve_pty, serve_memory, serve_tcp])
async def test_an_error_in_the_block_comes_out_as_itself(serve: Any) -> None:
    """A failing assertion inside ``async with serve_…`` must fail the test, unwrapped."""
    with pytest.raises(KeyError, match="boom"):
        async with serve(SimConfig()):
            raise KeyError("boom")
