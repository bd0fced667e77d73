"""Buffered reads over a transport: a delimited line, an exact count, whatever has arrived.

The buffer lives in the :class:`ByteReader`, not in the caller's frame, so a read cancelled
by a timeout (``anyio.fail_after``) loses nothing: the bytes received so far stay buffered
for the next call.
"""

from __future__ import annotations

import anyio.lowlevel

from ..codec.errors import ErrorContext, ServomexFrameError
from .base import DEFAULT_RECEIVE_SIZE, Transport

__all__ = ["ByteReader"]


class ByteReader:
    """Line and exact-size reads over ``transport``; timeouts are the caller's.

    Errors from the transport (``LinkLostError``…) pass through unchanged.
    """

    def __init__(self, transport: Transport, *, chunk_size: int = DEFAULT_RECEIVE_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        self._transport = transport
        self._chunk_size = chunk_size
        self._buffer = bytearray()

    @property
    def transport(self) -> Transport:
        """The transport read from."""
        return self._transport

    @property
    def buffered(self) -> bytes:
        """The bytes received but not yet returned (a copy)."""
        return bytes(self._buffer)

    async def receive_some(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Up to ``max_bytes`` bytes: from the buffer if it holds any, else one receive."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        if self._buffer:
            await anyio.lowlevel.checkpoint()
            return self._take(min(max_bytes, len(self._buffer)))
        return await self._transport.receive(max_bytes)

    async def receive_exactly(self, nbytes: int) -> bytes:
        """Exactly ``nbytes`` bytes, waiting for as many receives as that takes."""
        if nbytes < 0:
            raise ValueError(f"nbytes must not be negative, not {nbytes}")
        while len(self._buffer) < nbytes:
            await self._fill()
        await anyio.lowlevel.checkpoint()
        return self._take(nbytes)

    async def receive_until(
        self, delimiter: bytes, max_bytes: int, *, include_delimiter: bool = False
    ) -> bytes:
        """The bytes up to the next ``delimiter`` (which is consumed).

        Args:
            delimiter: the byte string that ends a record, e.g. ``b"\\n"``.
            max_bytes: the most bytes to accept before the delimiter.
            include_delimiter: return the delimiter at the end of the result.

        Raises:
            ServomexFrameError: ``max_bytes`` bytes arrived without a delimiter. They stay
                buffered (see :meth:`clear`).
        """
        if not delimiter:
            raise ValueError("the delimiter must not be empty")
        start = 0
        while True:
            index = self._buffer.find(delimiter, start)
            if index != -1:
                if index > max_bytes:
                    break
                await anyio.lowlevel.checkpoint()
                record = self._take(index + len(delimiter))
                return record if include_delimiter else record[: -len(delimiter)]
            if len(self._buffer) >= max_bytes + len(delimiter):
                break
            start = max(0, len(self._buffer) - len(delimiter) + 1)
            await self._fill()
        raise ServomexFrameError(
            f"no {delimiter!r} within {max_bytes} bytes",
            context=ErrorContext(port=self._transport.port, response=bytes(self._buffer)),
        )

    def unreceive(self, data: bytes) -> None:
        """Put ``data`` back in front of the buffer, to be read again."""
        self._buffer[:0] = data

    def clear(self) -> bytes:
        """Empty the buffer and return what it held."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def reset_input_buffer(self) -> None:
        """Discard the buffer and whatever the transport holds unread."""
        self._buffer.clear()
        await self._transport.reset_input_buffer()

    async def _fill(self) -> None:
        self._buffer += await self._transport.receive(self._chunk_size)

    def _take(self, nbytes: int) -> bytes:
        data = bytes(self._buffer[:nbytes])
        del self._buffer[:nbytes]
        return data
