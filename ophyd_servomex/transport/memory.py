"""Two connected in-memory transports: a cable without hardware, for tests and the simulator."""

from __future__ import annotations

import math

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..codec.models import SerialSettings
from .base import DEFAULT_RECEIVE_SIZE, ByteStreamTransport
from .errors import translating_io_errors, transport_closed

__all__ = ["MemoryTransport", "memory_transport_pair"]


class MemoryTransport(ByteStreamTransport):
    """One end of an in-memory link made by :func:`memory_transport_pair`.

    Bytes sent on one end arrive on the other in order (chunk boundaries are not preserved
    beyond ``max_bytes``). Closing one end makes the other see a lost link.
    """

    def __init__(
        self,
        port: str,
        settings: SerialSettings | None,
        outgoing: MemoryObjectSendStream[bytes],
        incoming: MemoryObjectReceiveStream[bytes],
    ) -> None:
        super().__init__(port, settings)
        self._outgoing = outgoing
        self._incoming = incoming
        self._pending = b""  # the rest of a chunk larger than a receive's max_bytes
        self._closed = False

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Wait for and return between 1 and ``max_bytes`` bytes sent by the other end."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        if self._closed:
            raise transport_closed(self.port)
        if not self._pending:
            with translating_io_errors(self.port):
                self._pending = await self._incoming.receive()
        else:
            await anyio.lowlevel.checkpoint()
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        """Queue ``item`` for the other end (an empty ``item`` sends nothing)."""
        if self._closed:
            raise transport_closed(self.port)
        if not item:
            await anyio.lowlevel.checkpoint()
            return
        with translating_io_errors(self.port):
            await self._outgoing.send(bytes(item))

    async def reset_input_buffer(self) -> None:
        """Discard everything the other end sent that was not received yet."""
        if self._closed:
            raise transport_closed(self.port)
        self._pending = b""
        while True:
            try:
                self._incoming.receive_nowait()
            except anyio.WouldBlock:
                break
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break  # the next receive() reports the lost link
        await anyio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """Close the sending direction: the other end's ``receive`` reports a lost link."""
        await self._outgoing.aclose()

    async def aclose(self) -> None:
        """Close both directions; the other end sees a lost link. Idempotent."""
        self._closed = True
        self._pending = b""
        await self._outgoing.aclose()
        await self._incoming.aclose()

    @property
    def closed(self) -> bool:
        """Whether this end was closed."""
        return self._closed


def memory_transport_pair(
    *,
    port: str = "memory://",
    settings: SerialSettings | None = None,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports (``a.send`` → ``b.receive`` and back).

    Args:
        port: the port string both ends report (and name in their errors).
        settings: serial settings both ends report, e.g. to let anymodbus time frames.
    """
    a_to_b_send, a_to_b_receive = anyio.create_memory_object_stream[bytes](math.inf)
    b_to_a_send, b_to_a_receive = anyio.create_memory_object_stream[bytes](math.inf)
    a = MemoryTransport(port, settings, a_to_b_send, b_to_a_receive)
    b = MemoryTransport(port, settings, b_to_a_send, a_to_b_receive)
    return a, b
