"""NonClosing, and anymodbus's Bus driving our transports (drain, reset, baud attribute)."""

from __future__ import annotations

import anyio
import pytest
from anymodbus import Bus, BusConfig, ConnectionLostError, TimingConfig
from anymodbus.testing import MockSlave

from ophyd_servomex.codec.models import SerialSettings
from ophyd_servomex.transport import (
    NonClosing,
    Transport,
    TransportAttribute,
    memory_transport_pair,
    open_pty_pair,
    open_transport,
)

pytestmark = pytest.mark.anyio

FAST = BusConfig(request_timeout=2.0, timing=TimingConfig(inter_frame_idle=0.0))


class Counting(NonClosing):
    """Counts the optional serial calls anymodbus makes."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.resets = 0
        self.drains = 0

    async def reset_input_buffer(self) -> None:
        self.resets += 1
        await super().reset_input_buffer()

    async def drain(self) -> None:
        self.drains += 1
        await super().drain()


async def test_non_closing_leaves_the_inner_transport_open() -> None:
    a, b = memory_transport_pair(settings=SerialSettings("", baudrate=9600))
    lent = NonClosing(a)
    assert lent.inner is a
    assert lent.port == a.port
    assert lent.settings == SerialSettings("", baudrate=9600)
    assert lent.extra(TransportAttribute.settings) == SerialSettings("", baudrate=9600)
    assert repr(lent) == "NonClosing(MemoryTransport('memory://'))"
    await lent.send(b"via wrapper")
    assert await b.receive() == b"via wrapper"
    await lent.aclose()
    assert not a.closed
    await a.send(b"still open")
    assert await b.receive() == b"still open"
    await b.send(b"and back")
    assert await lent.receive() == b"and back"  # the wrapper itself stays usable


async def test_a_bus_closing_a_lent_transport_leaves_it_open() -> None:
    a, b = memory_transport_pair(settings=SerialSettings(""))
    slave = MockSlave(address=30)
    slave.input_registers[0:2] = [0x41A3, 0x0000]
    lent = Counting(a)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(slave.serve, b)
            bus = Bus(lent, config=FAST)
            assert await bus.slave(30).read_input_registers(0, count=2) == (0x41A3, 0x0000)
            assert lent.resets == 1  # the Bus found our async reset_input_buffer
            assert lent.drains == 1  # and our async drain
            await bus.aclose()
            assert not a.closed
            second = Bus(NonClosing(a), config=FAST)  # the port outlives the first bus
            assert await second.slave(30).read_input_registers(1, count=1) == (0x0000,)
            await second.aclose()
            tg.cancel_scope.cancel()
    await a.aclose()


async def test_anymodbus_over_a_pty_pair() -> None:
    with anyio.fail_after(10):
        async with open_pty_pair() as pair:
            slave = MockSlave(address=30)
            slave.input_registers[68:70] = [0x4042, 0x8F5C]
            async with anyio.create_task_group() as tg:
                tg.start_soon(slave.serve, pair.master)
                client = await open_transport(pair.path)
                bus = Bus(client, config=FAST)
                reply = await bus.slave(30).read_input_registers(68, count=2)
                assert reply == (0x4042, 0x8F5C)
                await bus.aclose()  # closes the client: the slave sees the hang-up
                tg.cancel_scope.cancel()


async def test_a_pulled_cable_reaches_anymodbus_as_connection_lost() -> None:
    a, b = memory_transport_pair()
    bus = Bus(NonClosing(a), config=FAST)
    await b.aclose()
    with anyio.fail_after(5), pytest.raises(ConnectionLostError):
        await bus.slave(30).read_input_registers(0, count=1)
