"""Transport wrappers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio.abc
import anyio.lowlevel

from .base import DEFAULT_RECEIVE_SIZE, ByteStreamTransport

__all__ = ["NonClosing"]


class NonClosing(ByteStreamTransport):
    """Lends ``inner`` to a client that closes what it is given (anymodbus's ``Bus``).

    Every call goes to ``inner`` except :meth:`aclose`, which does nothing: the lender
    still owns ``inner`` and closes it itself. The wrapper stays usable after ``aclose``.
    ``inner`` may be any anyio byte stream: ``port``, ``settings``, :meth:`drain` and
    :meth:`reset_input_buffer` are forwarded when it has them (else ``""``, ``None`` and
    no-ops).
    """

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        super().__init__(str(getattr(inner, "port", "") or ""), getattr(inner, "settings", None))
        self._inner = inner

    @property
    def inner(self) -> anyio.abc.ByteStream:
        """The wrapped stream."""
        return self._inner

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """``inner.receive``."""
        return await self._inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        """``inner.send``."""
        await self._inner.send(item)

    async def send_eof(self) -> None:
        """``inner.send_eof``."""
        await self._inner.send_eof()

    async def reset_input_buffer(self) -> None:
        """``inner.reset_input_buffer`` (sync or async), when it has one."""
        await _forward(self._inner, "reset_input_buffer")

    async def drain(self) -> None:
        """``inner.drain`` (sync or async), when it has one."""
        await _forward(self._inner, "drain")

    async def aclose(self) -> None:
        """Does nothing to ``inner`` (a checkpoint only)."""
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The inner transport's typed attributes."""
        return self._inner.extra_attributes

    def __repr__(self) -> str:
        return f"NonClosing({self._inner!r})"


async def _forward(inner: object, name: str) -> None:
    fn = getattr(inner, name, None)
    if fn is None:
        await anyio.lowlevel.checkpoint()
        return
    result = fn()
    if isinstance(result, Awaitable):
        await result
