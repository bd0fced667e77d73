"""In-memory transport pairs: order, max_bytes, reset, closing and the typed errors."""

from __future__ import annotations

import anyio
import pytest
from anyserial import SerialStreamAttribute

from ophyd_servomex.codec.errors import ServomexConnectionError
from ophyd_servomex.codec.models import SerialSettings
from ophyd_servomex.transport import (
    LinkLostError,
    TransportAttribute,
    TransportClosedError,
    memory_transport_pair,
)

pytestmark = pytest.mark.anyio


async def test_bytes_arrive_in_order_both_ways() -> None:
    a, b = memory_transport_pair()
    await a.send(b"\x01\x04\x00")
    await a.send(b"\x00\x00\x46")
    assert await b.receive() == b"\x01\x04\x00"
    assert await b.receive() == b"\x00\x00\x46"
    await b.send(b"reply")
    assert await a.receive() == b"reply"


async def test_receive_honours_max_bytes_and_keeps_the_rest() -> None:
    a, b = memory_transport_pair()
    await a.send(b"abcdefg")
    assert await b.receive(3) == b"abc"
    assert await b.receive(3) == b"def"
    assert await b.receive(3) == b"g"


async def test_empty_send_sends_nothing() -> None:
    a, b = memory_transport_pair()
    await a.send(b"")
    await a.send(b"x")
    assert await b.receive() == b"x"


async def test_reset_input_buffer_discards_pending_bytes() -> None:
    a, b = memory_transport_pair()
    await a.send(b"stale-1")
    await a.send(b"stale-2")
    assert await b.receive(2) == b"st"  # leaves "ale-1" pending locally
    await b.reset_input_buffer()
    await a.send(b"fresh")
    assert await b.receive() == b"fresh"


async def test_closing_one_end_is_a_lost_link_on_the_other() -> None:
    a, b = memory_transport_pair(port="memory://sim")
    await a.aclose()
    with pytest.raises(LinkLostError) as info:
        await b.receive()
    assert isinstance(info.value, ServomexConnectionError)
    assert isinstance(info.value, anyio.BrokenResourceError)
    assert info.value.context.port == "memory://sim"
    assert "memory://sim" in str(info.value)
    with pytest.raises(LinkLostError):
        await b.send(b"x")


async def test_close_wakes_a_waiting_peer() -> None:
    a, b = memory_transport_pair()
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await b.receive()
        except ServomexConnectionError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            await a.aclose()
    assert len(errors) == 1
    assert isinstance(errors[0], LinkLostError)


async def test_send_eof_ends_one_direction_only() -> None:
    a, b = memory_transport_pair()
    await a.send(b"last")
    await a.send_eof()
    assert await b.receive() == b"last"
    with pytest.raises(LinkLostError):
        await b.receive()
    await b.send(b"still")
    assert await a.receive() == b"still"


async def test_using_a_closed_end_raises_transport_closed() -> None:
    a, _ = memory_transport_pair()
    await a.aclose()
    await a.aclose()  # idempotent
    for call in (a.receive(), a.send(b"x"), a.reset_input_buffer()):
        with pytest.raises(TransportClosedError) as info:
            await call
        assert isinstance(info.value, anyio.ClosedResourceError)
        assert info.value.context.port == "memory://"
    assert a.closed


async def test_typed_attributes_publish_port_settings_and_baud() -> None:
    a, _ = memory_transport_pair(port="memory://x", settings=SerialSettings("", baudrate=9600))
    assert a.port == "memory://x"
    assert a.extra(TransportAttribute.port) == "memory://x"
    assert a.extra(TransportAttribute.settings) == SerialSettings("", baudrate=9600)
    assert a.extra(SerialStreamAttribute.config).baudrate == 9600
    bare, _ = memory_transport_pair()
    assert bare.settings is None
    assert bare.extra(SerialStreamAttribute.config, None) is None


async def test_receive_rejects_a_non_positive_size() -> None:
    a, _ = memory_transport_pair()
    with pytest.raises(ValueError, match="positive"):
        await a.receive(0)
