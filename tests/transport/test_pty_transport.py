"""Pseudo-terminal pairs: a client opens the slave with anyserial via open_transport."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from anyio.streams.file import FileStreamAttribute
from anyserial import SerialStreamAttribute

from ophyd_servomex.codec.errors import ServomexConnectionError
from ophyd_servomex.codec.models import SerialSettings
from ophyd_servomex.transport import (
    PEER_POLL_INTERVAL,
    LinkLostError,
    SerialTransport,
    TransportAttribute,
    TransportClosedError,
    open_pty_pair,
    open_transport,
)

pytestmark = pytest.mark.anyio

REQUEST = bytes.fromhex("1e 04 00 00 00 46 f2 5a")  # an RTU read of 70 input registers


async def test_bytes_round_trip_between_client_and_master() -> None:
    with anyio.fail_after(5):
        async with open_pty_pair() as pair:
            client = await open_transport(pair.path)
            assert isinstance(client, SerialTransport)
            assert client.port == pair.path
            assert client.settings == SerialSettings(pair.path)
            await client.send(REQUEST)
            received = b""
            while len(received) < len(REQUEST):
                received += await pair.master.receive()
            assert received == REQUEST
            await pair.master.send(b"\x00\x01\x02\xff\r\n")  # raw: no echo, no translation
            answer = b""
            while len(answer) < 6:
                answer += await client.receive()
            assert answer == b"\x00\x01\x02\xff\r\n"
            await client.aclose()


async def test_the_client_publishes_anyserial_attributes_for_anymodbus() -> None:
    async with open_pty_pair() as pair:
        client = await open_transport(
            pair.path, SerialSettings(pair.path, baudrate=9600, parity="E")
        )
        try:
            config = client.extra(SerialStreamAttribute.config)
            assert config.baudrate == 9600
            assert config.parity == "even"
            assert config.exclusive is True
            assert client.extra(TransportAttribute.port) == pair.path
            assert client.extra(FileStreamAttribute.path) == Path(pair.path)
        finally:
            await client.aclose()


async def test_a_second_exclusive_open_is_refused_naming_the_port() -> None:
    async with open_pty_pair() as pair:
        first = await open_transport(pair.path)
        try:
            with pytest.raises(ServomexConnectionError) as info:
                await open_transport(pair.path)
            assert info.value.context.port == pair.path
            assert pair.path in info.value.message
            assert "busy" in info.value.message
        finally:
            await first.aclose()
        second = await open_transport(pair.path)  # free again once closed
        await second.aclose()


async def test_a_non_exclusive_open_may_share_the_port() -> None:
    async with open_pty_pair() as pair:
        first = await open_transport(pair.path, exclusive=False)
        second = await open_transport(pair.path, exclusive=False)
        await first.aclose()
        await second.aclose()


async def test_a_missing_device_is_a_connection_error() -> None:
    path = "/dev/servomex-does-not-exist"
    with pytest.raises(ServomexConnectionError) as info:
        await open_transport(path)
    assert info.value.context.port == path
    assert str(info.value) == f"cannot open {path}: no such serial port (port={path})"


async def test_a_file_that_is_no_tty_is_a_connection_error(tmp_path: Path) -> None:
    path = tmp_path / "plain-file"
    path.write_bytes(b"")
    with pytest.raises(ServomexConnectionError) as info:
        await open_transport(str(path))
    assert info.value.context.port == str(path)
    assert "not usable as a serial port" in info.value.message


async def test_closing_the_master_is_a_pulled_cable_for_a_reading_client() -> None:
    errors: list[BaseException] = []
    async with open_pty_pair() as pair:
        client = await open_transport(pair.path)

        async def read() -> None:
            try:
                await client.receive()
            except ServomexConnectionError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await anyio.wait_all_tasks_blocked()
                await pair.aclose()
        await client.aclose()
    assert len(errors) == 1
    assert isinstance(errors[0], LinkLostError)
    assert errors[0].context.port == pair.path
    assert pair.path in str(errors[0])


async def test_the_master_sees_a_client_hang_up_once_then_serves_the_next_client() -> None:
    with anyio.fail_after(5):
        async with open_pty_pair() as pair:
            client = await open_transport(pair.path)
            await client.send(b"bye")
            await client.aclose()
            assert await pair.master.receive() == b"bye"  # what the client left comes first
            with pytest.raises(LinkLostError) as info:
                await pair.master.receive()
            assert info.value.context.port == pair.path
            assert not pair.master.client_connected

            polls = 0
            real_poll = pair.master._poll

            def counting_poll() -> int:
                nonlocal polls
                polls += 1
                return real_poll()

            pair.master._poll = counting_poll  # type: ignore[method-assign]
            received: list[bytes] = []

            async def serve() -> None:
                received.append(await pair.master.receive())

            async with anyio.create_task_group() as tg:
                started = anyio.current_time()
                tg.start_soon(serve)
                await anyio.sleep(20 * PEER_POLL_INTERVAL)  # nobody there: it must idle
                idle_polls = polls
                idle_time = anyio.current_time() - started
                client = await open_transport(pair.path)
                await client.send(b"again")
            await client.aclose()
    assert received == [b"again"]
    # one check per PEER_POLL_INTERVAL slept, not a busy loop
    assert 1 <= idle_polls <= idle_time / PEER_POLL_INTERVAL + 2


async def test_the_master_waits_for_a_first_client() -> None:
    with anyio.fail_after(5):
        async with open_pty_pair() as pair:
            assert not pair.master.client_connected
            got: list[bytes] = []

            async def serve() -> None:
                got.append(await pair.master.receive())

            async with anyio.create_task_group() as tg:
                tg.start_soon(serve)
                await anyio.sleep(3 * PEER_POLL_INTERVAL)
                client = await open_transport(pair.path)
                await pair.master.wait_for_client()
                assert pair.master.client_connected
                await client.send(b"hello")
            await client.aclose()
    assert got == [b"hello"]


async def test_the_master_drops_what_it_sends_while_nobody_listens() -> None:
    with anyio.fail_after(5):
        async with open_pty_pair() as pair:
            await pair.master.send(b"frame nobody hears\r\n")
            client = await open_transport(pair.path)
            await pair.master.send(b"heard\r\n")
            received = b""
            while not received.endswith(b"\r\n"):
                received += await client.receive()
            assert received == b"heard\r\n"
            await client.aclose()


async def test_client_reset_input_buffer_discards_pending_bytes() -> None:
    with anyio.fail_after(5):
        async with open_pty_pair() as pair:
            client = await open_transport(pair.path)
            await pair.master.send(b"stale bytes")
            await anyio.wait_readable(client.extra(FileStreamAttribute.fileno))
            await client.reset_input_buffer()
            await pair.master.send(b"fresh")
            assert await client.receive() == b"fresh"
            await client.aclose()


async def test_master_reset_input_buffer_discards_pending_bytes() -> None:
    with anyio.fail_after(5):
        async with open_pty_pair() as pair:
            client = await open_transport(pair.path)
            await pair.master.wait_for_client()
            await client.send(b"stale request")
            await client.drain()
            await anyio.wait_readable(pair.master.fd)
            await pair.master.reset_input_buffer()
            await client.send(b"fresh")
            assert await pair.master.receive() == b"fresh"
            await client.aclose()


async def test_a_closed_client_and_a_closed_master_raise_transport_closed() -> None:
    async with open_pty_pair() as pair:
        client = await open_transport(pair.path)
        await client.aclose()
        await client.aclose()  # idempotent
        with pytest.raises(TransportClosedError) as info:
            await client.receive()
        assert info.value.context.port == pair.path
        with pytest.raises(TransportClosedError):
            await client.send(b"x")
    with pytest.raises(TransportClosedError):
        await pair.master.receive()
    with pytest.raises(TransportClosedError):
        await pair.master.send(b"x")
    with pytest.raises(TransportClosedError):
        await pair.master.wait_for_client()
    assert not pair.master.client_connected


async def test_the_slave_path_is_a_tty() -> None:
    async with open_pty_pair() as pair:
        assert pair.path.startswith("/dev/")
        fd = os.open(pair.path, os.O_RDWR | os.O_NOCTTY)
        try:
            assert os.isatty(fd)
        finally:
            os.close(fd)
        assert repr(pair) == f"PtyPair({pair.path!r})"
