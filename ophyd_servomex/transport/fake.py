"""``FakeTransport``: a scripted, in-process transport for tests and examples.

::

    fake = FakeTransport()
    async with anyio.create_task_group() as tg, await open_continuous(fake) as anz:
        tg.start_soon(lambda: fake.emit(captured_lines, interval=0.05))
        frame = await anz.poll()

Three ways to put bytes on its receive side:

* :meth:`FakeTransport.feed` queues unsolicited bytes at once (a burst, garbage, half a frame);
* :meth:`FakeTransport.emit` feeds whole frames one at a time, ``interval`` seconds apart, as
  a continuous-mode analyser broadcasts them (run it as a background task);
* :meth:`FakeTransport.add_script` answers a written request with a canned reply: bytes, a
  sequence of replies used in turn, or a callable of the request — so a whole Modbus
  exchange can be scripted without a simulator.

Everything written is kept in :attr:`FakeTransport.writes`. :meth:`FakeTransport.disconnect`
makes the next ``receive`` report a lost link (a pulled cable).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import anyio
import anyio.lowlevel

from ..codec.continuous import build_frame
from ..codec.errors import ServomexValidationError
from ..codec.models import Frame, SerialSettings
from .base import DEFAULT_RECEIVE_SIZE, ByteStreamTransport
from .errors import link_lost, transport_closed

__all__ = ["FakeTransport", "Reply"]

type Reply = bytes | Sequence[bytes] | Callable[[bytes], bytes | None]
"""A scripted answer: fixed bytes, replies used one per request, or ``f(request)``."""


class FakeTransport(ByteStreamTransport):
    """A scripted in-process :class:`ByteStreamTransport` (see the module notes)."""

    def __init__(self, port: str = "fake://", settings: SerialSettings | None = None) -> None:
        super().__init__(port, settings)
        self.writes: list[bytes] = []
        """Every ``send()``, in order."""
        self._buffer = bytearray()
        self._scripts: list[tuple[bytes, Reply, list[int]]] = []
        self._readable = anyio.Event()
        self._closed = False
        self._lost: str | None = None

    # --- scripting ------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue unsolicited bytes for the next ``receive()`` calls."""
        if data:
            self._buffer += data
            self._readable.set()

    async def emit(self, frames: Iterable[bytes | Frame], *, interval: float = 0.0) -> None:
        """Feed ``frames`` one at a time, ``interval`` s apart, as a broadcaster would.

        A :class:`Frame` is encoded with :func:`~ophyd_servomex.codec.build_frame`; bytes
        are fed as they are (add the line ending yourself). Run it as a background task:
        ``task_group.start_soon(lambda: fake.emit(frames, interval=0.05))``.
        """
        if not (interval >= 0 and math.isfinite(interval)):
            raise ServomexValidationError(f"interval must be ≥ 0 s, not {interval!r}")
        for index, frame in enumerate(frames):
            if index and interval:
                await anyio.sleep(interval)
            self.feed(build_frame(frame) if isinstance(frame, Frame) else bytes(frame))
            await anyio.lowlevel.checkpoint()

    def add_script(self, request: bytes, reply: Reply) -> None:
        """Answer a ``send()`` of exactly ``request`` with ``reply``.

        ``reply`` is the bytes to feed back, a sequence of replies used one per matching
        request (the last one repeats), or a callable taking the request and returning the
        reply (``None``: stay silent, as a unit that ignores the request). A request with no
        script gets no answer. Later scripts for the same request take precedence.
        """
        if not isinstance(request, (bytes, bytearray)) or not request:
            raise ServomexValidationError(f"a scripted request must be bytes, not {request!r}")
        if isinstance(reply, (str, bytearray)) or not (
            isinstance(reply, bytes) or callable(reply) or isinstance(reply, Sequence)
        ):
            raise ServomexValidationError(
                f"a scripted reply is bytes, a sequence of bytes or a callable, not {reply!r}"
            )
        self._scripts.insert(0, (bytes(request), reply, [0]))

    def disconnect(self) -> None:
        """Make the next ``receive()``/``send()`` report a lost link (a pulled cable)."""
        self._lost = "the fake link was disconnected"
        self._readable.set()

    # --- the byte stream ------------------------------------------------------------------

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Wait for and return between 1 and ``max_bytes`` queued bytes."""
        if max_bytes < 1:
            raise ServomexValidationError(f"max_bytes must be positive, not {max_bytes}")
        while not self._buffer:
            self._check()
            self._readable = anyio.Event()
            await self._readable.wait()
        self._check()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        await anyio.lowlevel.checkpoint()
        return data

    async def send(self, item: bytes) -> None:
        """Record ``item`` in :attr:`writes` and answer it if a script matches."""
        self._check()
        data = bytes(item)
        self.writes.append(data)
        for request, reply, used in self._scripts:
            if request == data:
                answer = self._answer(reply, used, data)
                if answer:
                    self.feed(answer)
                break
        await anyio.lowlevel.checkpoint()

    @staticmethod
    def _answer(reply: Reply, used: list[int], request: bytes) -> bytes | None:
        if isinstance(reply, bytes):
            return reply
        if callable(reply):
            return reply(request)
        if not reply:
            return None
        index = min(used[0], len(reply) - 1)
        used[0] += 1
        return bytes(reply[index])

    async def reset_input_buffer(self) -> None:
        """Discard queued bytes not yet received."""
        self._check()
        self._buffer.clear()
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close; a waiting ``receive`` is woken with :class:`TransportClosedError`."""
        self._closed = True
        self._readable.set()
        await anyio.lowlevel.checkpoint()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise transport_closed(self.port)
        if self._lost is not None:
            raise link_lost(self.port, self._lost)
