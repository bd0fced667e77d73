"""rfc2217://host:port against pyserial's own RFC 2217 PortManager bridging a pty."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest

from ophyd_servomex.codec.errors import ServomexConnectionError, ServomexValidationError
from ophyd_servomex.codec.models import SerialSettings
from ophyd_servomex.transport import (
    LinkLostError,
    Rfc2217Transport,
    TransportClosedError,
    open_pty_pair,
    open_transport,
)

pytestmark = [
    pytest.mark.anyio,
    # pyserial 3.5's RFC 2217 client still calls Thread.setDaemon / setName
    pytest.mark.filterwarnings("ignore:set(Daemon|Name)\\(\\) is deprecated:DeprecationWarning"),
]


async def _receive_at_least(transport: Any, nbytes: int) -> bytes:
    data = b""
    while len(data) < nbytes:
        data += await transport.receive()
    return data


async def test_bytes_round_trip_through_the_bridge(rfc2217_bridge_factory: Any) -> None:
    with anyio.fail_after(20):
        async with open_pty_pair() as pair:
            bridge = rfc2217_bridge_factory(pair.path)
            client = await open_transport(bridge.url)
            assert isinstance(client, Rfc2217Transport)
            assert client.port == bridge.url
            assert client.settings == SerialSettings(bridge.url)
            # 0xFF is Telnet's IAC: it must cross the link escaped and arrive intact
            request = bytes.fromhex("1e 04 00 00 00 46 ff 5a")
            await client.send(request)
            assert await _receive_at_least(pair.master, len(request)) == request
            reply = b"\xff\x00\r\n" + bytes(range(16))
            await pair.master.send(reply)
            assert await _receive_at_least(client, len(reply)) == reply
            await client.aclose()


async def test_settings_are_applied_through_rfc2217(rfc2217_bridge_factory: Any) -> None:
    with anyio.fail_after(20):
        async with open_pty_pair() as pair:
            bridge = rfc2217_bridge_factory(pair.path)
            settings = SerialSettings("", baudrate=9600, bytesize=7, parity="E", stopbits=2)
            client = await open_transport(bridge.url, settings)
            assert client.settings == settings
            assert bridge.serial.baudrate == 9600
            assert bridge.serial.bytesize == 7
            assert bridge.serial.parity == "E"
            assert bridge.serial.stopbits == 2
            await client.aclose()


async def test_reset_input_buffer_discards_pending_bytes(rfc2217_bridge_factory: Any) -> None:
    with anyio.fail_after(20):
        async with open_pty_pair() as pair:
            bridge = rfc2217_bridge_factory(pair.path)
            client = await open_transport(bridge.url)
            assert isinstance(client, Rfc2217Transport)
            await pair.master.send(b"stale")
            while client._client.in_waiting < 5:  # noqa: ASYNC110 - pyserial's queue has no event
                await anyio.sleep(0.01)
            await client.reset_input_buffer()
            await pair.master.send(b"fresh")
            assert await _receive_at_least(client, 5) == b"fresh"
            await client.aclose()


async def test_the_server_dropping_the_link_mid_receive_is_a_lost_link(
    rfc2217_bridge_factory: Any,
) -> None:
    errors: list[BaseException] = []
    with anyio.fail_after(20):
        async with open_pty_pair() as pair:
            bridge = rfc2217_bridge_factory(pair.path)
            client = await open_transport(bridge.url)

            async def read() -> None:
                try:
                    await client.receive()
                except ServomexConnectionError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await anyio.sleep(0.1)
                bridge.drop_client()
            await client.aclose()
            with pytest.raises(TransportClosedError):
                await client.receive()
    assert len(errors) == 1
    assert isinstance(errors[0], LinkLostError)
    assert errors[0].context.port == bridge.url


async def test_a_receive_is_cancellable_and_closing_wakes_it(rfc2217_bridge_factory: Any) -> None:
    with anyio.fail_after(20):
        async with open_pty_pair() as pair:
            bridge = rfc2217_bridge_factory(pair.path)
            client = await open_transport(bridge.url)
            with anyio.move_on_after(0.1) as scope:
                await client.receive()
            assert scope.cancelled_caught
            await pair.master.send(b"after")  # nothing was lost to the cancelled read
            assert await _receive_at_least(client, 5) == b"after"

            errors: list[BaseException] = []

            async def read() -> None:
                try:
                    await client.receive()
                except ServomexConnectionError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await anyio.sleep(0.1)
                await client.aclose()  # wakes the reader within one read slice
    assert len(errors) == 1
    assert isinstance(errors[0], TransportClosedError)


async def test_a_refused_connection_names_the_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    url = f"rfc2217://127.0.0.1:{free_port}"
    with anyio.fail_after(20):
        with pytest.raises(ServomexConnectionError) as info:
            await open_transport(url)
    assert info.value.context.port == url
    assert str(info.value) == f"cannot open {url}: connection refused (port={url})"


async def test_a_server_that_does_not_speak_rfc2217_is_a_connection_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    url = f"rfc2217://127.0.0.1:{port}?timeout=0.3"

    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    with anyio.fail_after(20):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, silent)
            with pytest.raises(ServomexConnectionError) as info:
                await open_transport(url)
            tg.cancel_scope.cancel()
    assert info.value.context.port == url
    assert "RFC 2217 connection failed" in info.value.message


async def test_a_malformed_url_is_a_validation_error() -> None:
    with pytest.raises(ServomexValidationError) as info:
        await open_transport("rfc2217://only-a-host")
    assert info.value.context.port == "rfc2217://only-a-host"
