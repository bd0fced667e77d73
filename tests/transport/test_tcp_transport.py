"""socket://host:port against a local anyio TCP listener on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyserial import SerialStreamAttribute

from ophyd_servomex.codec.errors import ServomexConnectionError, ServomexValidationError
from ophyd_servomex.codec.models import SerialSettings
from ophyd_servomex.transport import (
    LinkLostError,
    TcpTransport,
    TransportClosedError,
    open_transport,
)

pytestmark = pytest.mark.anyio

Handler = Callable[[SocketStream], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` for each connection on 127.0.0.1; yields the socket:// URL."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield f"socket://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()


async def test_bytes_round_trip() -> None:
    async def echo_upper(stream: SocketStream) -> None:
        async with stream:
            async for chunk in stream:
                await stream.send(chunk.upper())

    with anyio.fail_after(5):
        async with tcp_server(echo_upper) as url:
            client = await open_transport(url)
            assert isinstance(client, TcpTransport)
            assert client.port == url
            assert client.settings is None
            await client.send(b":1e0400000046\r\n")
            received = b""
            while len(received) < 15:
                received += await client.receive()
            assert received == b":1E0400000046\r\n"
            await client.aclose()


async def test_settings_are_recorded_and_published() -> None:
    async def idle(stream: SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with tcp_server(idle) as url:
            client = await open_transport(url, SerialSettings("", baudrate=9600))
            assert isinstance(client, TcpTransport)
            assert client.settings == SerialSettings("", baudrate=9600)
            assert client.extra(SerialStreamAttribute.config).baudrate == 9600
            assert client.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            await client.aclose()


async def test_a_refused_connection_names_the_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    url = f"socket://127.0.0.1:{free_port}"
    with pytest.raises(ServomexConnectionError) as info:
        await open_transport(url)
    assert info.value.context.port == url
    assert str(info.value) == f"cannot open {url}: connection refused (port={url})"


async def test_an_unknown_host_is_a_connection_error() -> None:
    url = "socket://servomex.invalid:4001"
    with pytest.raises(ServomexConnectionError) as info:
        await open_transport(url)
    assert info.value.context.port == url
    assert "cannot resolve host 'servomex.invalid'" in info.value.message


@pytest.mark.parametrize("url", ["socket://127.0.0.1", "socket://:4001", "socket://h:99999"])
async def test_a_malformed_url_is_a_validation_error(url: str) -> None:
    with pytest.raises(ServomexValidationError) as info:
        await open_transport(url)
    assert info.value.context.port == url


async def test_the_server_closing_mid_receive_is_a_lost_link() -> None:
    async def hang_up_later(stream: SocketStream) -> None:
        await anyio.sleep(0.05)
        await stream.aclose()

    with anyio.fail_after(5):
        async with tcp_server(hang_up_later) as url:
            client = await open_transport(url)
            with pytest.raises(LinkLostError) as info:
                await client.receive()
            assert info.value.context.port == url
            assert info.value.message == f"link lost on {url}: the peer closed the connection"
            await client.aclose()


async def test_a_tcp_reset_is_a_lost_link() -> None:
    async def reset(stream: SocketStream) -> None:
        raw = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await anyio.sleep(0.05)
        await stream.aclose()

    with anyio.fail_after(5):
        async with tcp_server(reset) as url:
            client = await open_transport(url)
            with pytest.raises(LinkLostError) as info:
                await client.receive()
            assert info.value.context.port == url
            assert isinstance(info.value.__cause__, ConnectionResetError)
            await client.aclose()


async def test_reset_input_buffer_discards_what_is_readable() -> None:
    release = anyio.Event()

    async def stale_then_fresh(stream: SocketStream) -> None:
        async with stream:
            await stream.send(b"stale stale stale")
            await release.wait()
            await stream.send(b"fresh")
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with tcp_server(stale_then_fresh) as url:
            client = await open_transport(url)
            assert isinstance(client, TcpTransport)
            await anyio.wait_readable(client.socket)
            await client.reset_input_buffer()
            release.set()
            assert await client.receive() == b"fresh"
            await client.aclose()


async def test_reset_input_buffer_does_not_block_on_an_empty_link() -> None:
    async def idle(stream: SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with tcp_server(idle) as url:
            client = await open_transport(url)
            await client.reset_input_buffer()
            await client.aclose()


async def test_send_eof_half_closes() -> None:
    got: list[bytes] = []

    async def collect(stream: SocketStream) -> None:
        async with stream:
            async for chunk in stream:  # ends at the client's EOF
                got.append(chunk)
            await stream.send(b"done")

    with anyio.fail_after(5):
        async with tcp_server(collect) as url:
            client = await open_transport(url)
            await client.send(b"all of it")
            await client.send_eof()
            assert await client.receive() == b"done"
            await client.aclose()
    assert b"".join(got) == b"all of it"


async def test_closing_wakes_a_local_reader_with_transport_closed() -> None:
    async def idle(stream: SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    errors: list[BaseException] = []
    with anyio.fail_after(5):
        async with tcp_server(idle) as url:
            client = await open_transport(url)

            async def read() -> None:
                try:
                    await client.receive()
                except ServomexConnectionError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await anyio.wait_all_tasks_blocked()
                await client.aclose()
            await client.aclose()  # idempotent
            with pytest.raises(TransportClosedError):
                await client.send(b"x")
            with pytest.raises(TransportClosedError):
                await client.reset_input_buffer()
    assert len(errors) == 1
    assert isinstance(errors[0], TransportClosedError)
