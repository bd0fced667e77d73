"""``rfc2217://host:port``: a Telnet COM-port-control server, through pyserial in threads.

pyserial's RFC 2217 client is blocking and runs its own socket reader thread, which
negotiates the serial settings with the server. This transport calls it from anyio worker
threads; reads are made in short slices (:data:`READ_SLICE`) so that a cancelled
``receive()`` returns within one slice and no byte is ever read by an abandoned thread.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from ..codec.models import SerialSettings
from .base import DEFAULT_RECEIVE_SIZE, ByteStreamTransport
from .errors import connection_failed, link_lost, transport_closed
from .urls import parse_host_port

__all__ = ["READ_SLICE", "Rfc2217Transport", "open_rfc2217"]

#: seconds one blocking read may wait in its worker thread (the cancellation latency)
READ_SLICE = 0.05


class Rfc2217Transport(ByteStreamTransport):
    """A pyserial RFC 2217 client driven from worker threads; see :func:`open_rfc2217`."""

    def __init__(self, port: str, settings: SerialSettings, client: Any) -> None:
        super().__init__(port, settings)
        self._client = client
        self._closed = False

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Wait for and return between 1 and ``max_bytes`` bytes."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        while True:
            data: bytes = await self._call(self._read_some, max_bytes)
            if data:
                return data

    async def send(self, item: bytes) -> None:
        """Send every byte of ``item`` (Telnet IAC bytes are escaped by pyserial)."""
        await self._call(self._client.write, bytes(item))

    async def reset_input_buffer(self) -> None:
        """Ask the server to purge its receive buffer and drop what is queued locally."""
        await self._call(self._client.reset_input_buffer)

    async def aclose(self) -> None:
        """Close the connection (pyserial waits for its reader thread); idempotent."""
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close_quietly)

    def _read_some(self, max_bytes: int) -> bytes:
        """Blocking: up to ``max_bytes`` bytes, waiting at most one slice for the first."""
        first: bytes = self._client.read(1)
        if not first:
            return b""
        more = min(int(self._client.in_waiting), max_bytes - 1)
        return first + (bytes(self._client.read(more)) if more > 0 else b"")

    def _close_quietly(self) -> None:
        # a broken connection may fail to close cleanly: it is closed anyway
        with contextlib.suppress(Exception):
            self._client.close()

    async def _call(self, function: Any, *args: Any) -> Any:
        """Run a blocking client call in a worker thread, translating its errors."""
        if self._closed:
            raise transport_closed(self.port)
        try:
            return await anyio.to_thread.run_sync(function, *args)
        except OSError as exc:  # pyserial's SerialException is an OSError
            if self._closed:
                raise transport_closed(self.port) from exc
            raise link_lost(self.port, "the RFC 2217 connection broke", exc) from exc


async def open_rfc2217(port: str, settings: SerialSettings | None = None) -> Rfc2217Transport:
    """Connect to ``rfc2217://host:port`` and apply ``settings`` (default 19200 8-N-1).

    pyserial's URL options may follow the port (``?ign_set_control``, ``?timeout=3``).
    Opening is not cancellable while pyserial negotiates (a few seconds at most).

    Raises:
        ServomexValidationError: the URL has no valid host and port.
        ServomexConnectionError: the connection is refused, fails, or the server does not
            speak RFC 2217 or rejects the settings.
    """
    parse_host_port(port)
    settings = settings if settings is not None else SerialSettings(port)
    import serial  # lazily: pyserial is only needed here

    def connect() -> Any:
        client = serial.serial_for_url(
            port,
            do_not_open=True,
            baudrate=settings.baudrate,
            bytesize=int(settings.bytesize),
            parity=str(settings.parity.value),
            stopbits=int(settings.stopbits),
            rtscts=settings.rtscts,
            xonxoff=settings.xonxoff,
            timeout=READ_SLICE,
        )
        client.open()
        return client

    try:
        client = await anyio.to_thread.run_sync(connect)
    except (OSError, ValueError) as exc:
        cause = exc.__context__ if exc.__context__ is not None else exc
        if isinstance(cause, ConnectionRefusedError):
            raise connection_failed(port, "connection refused") from exc
        raise connection_failed(port, "RFC 2217 connection failed", exc) from exc
    return Rfc2217Transport(port, settings, client)
