"""``socket://host:port``: a raw TCP connection, as serial device servers offer.

The socket is driven directly with anyio's readiness waits (``wait_readable`` /
``wait_writable``) rather than through an anyio ``SocketStream``, so that
:meth:`TcpTransport.reset_input_buffer` can drain exactly what the kernel holds, without
blocking and without a buffer of anyio's in between.
"""

from __future__ import annotations

import os
import socket

import anyio
import anyio.lowlevel

from ..codec.models import SerialSettings
from .base import DEFAULT_RECEIVE_SIZE, ByteStreamTransport
from .errors import connection_failed, link_lost, translating_io_errors, transport_closed
from .urls import parse_host_port

__all__ = ["TcpTransport", "open_tcp"]

_DRAIN_CHUNK = 65536


class TcpTransport(ByteStreamTransport):
    """A connected TCP socket; see :func:`open_tcp`."""

    def __init__(self, port: str, settings: SerialSettings | None, sock: socket.socket) -> None:
        super().__init__(port, settings)
        self._sock = sock
        self._closed = False

    @property
    def socket(self) -> socket.socket:
        """The underlying non-blocking socket."""
        return self._sock

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Wait for and return between 1 and ``max_bytes`` bytes."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        while True:
            if self._closed:
                raise transport_closed(self.port)
            with translating_io_errors(self.port):
                await anyio.wait_readable(self._sock)
            if self._closed:
                raise transport_closed(self.port)
            try:
                data = self._sock.recv(max_bytes)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise link_lost(self.port, "the connection broke", exc) from exc
            if not data:
                raise link_lost(self.port, "the peer closed the connection")
            return data

    async def send(self, item: bytes) -> None:
        """Send every byte of ``item``."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(item)
        while view:
            if self._closed:
                raise transport_closed(self.port)
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError):
                with translating_io_errors(self.port):
                    await anyio.wait_writable(self._sock)
                continue
            except OSError as exc:
                raise link_lost(self.port, "the connection broke", exc) from exc
            view = view[sent:]
        if self._closed:
            raise transport_closed(self.port)

    async def reset_input_buffer(self) -> None:
        """Read and discard what the kernel holds now, without waiting for more.

        An end of stream or a reset met here is left for the next ``receive`` to report.
        """
        if self._closed:
            raise transport_closed(self.port)
        while True:
            try:
                data = self._sock.recv(_DRAIN_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not data:
                break
        await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """Shut down the sending direction (the peer reads an end of stream)."""
        if self._closed:
            raise transport_closed(self.port)
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise link_lost(self.port, "the connection broke", exc) from exc
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close the socket, waking any task waiting on it; idempotent."""
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._sock)
            self._sock.close()
        await anyio.lowlevel.checkpoint()


async def open_tcp(port: str, settings: SerialSettings | None = None) -> TcpTransport:
    """Connect to ``socket://host:port``.

    ``settings`` are recorded (and published for frame timing) but not applied: a raw TCP
    device server's serial side is configured on the server.

    Raises:
        ServomexValidationError: the URL has no valid host and port.
        ServomexConnectionError: the host is unknown or the connection is refused or fails.
    """
    host, number = parse_host_port(port)
    try:
        addresses = await anyio.getaddrinfo(host, number, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise connection_failed(port, f"cannot resolve host {host!r}", exc) from exc
    failure: OSError | None = None
    for family, kind, proto, _, address in addresses:
        try:
            sock = await _connect(family, kind, proto, address)
        except OSError as exc:
            failure = exc
            continue
        return TcpTransport(port, settings, sock)
    if isinstance(failure, ConnectionRefusedError):
        raise connection_failed(port, "connection refused") from failure
    raise connection_failed(port, "cannot connect", failure) from failure


async def _connect(
    family: socket.AddressFamily,
    kind: socket.SocketKind,
    proto: int,
    address: tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
) -> socket.socket:
    """A non-blocking socket connected to ``address``; closed again if anything fails."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, os.strerror(error)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except BaseException:
        sock.close()
        raise
    return sock
