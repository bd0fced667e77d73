"""The continuous-mode client: a receive loop, a latest-frame cache and fan-out.

In continuous mode the analyser talks and never listens, so the receive loop is the one
and only reader of the port (nothing is ever written). Every chunk goes through the
codec's :class:`ContinuousDecoder`; each good frame becomes the hub's latest frame and
reaches every subscriber, each bad line is counted in :attr:`dropped_frames` and published
as an error (so sample streams can show it), and decoding resumes at the next line. A
frame cut short runs into the next one on the same line; the whole frame at the end of
such a line is recovered (:func:`rescue_frame`), so a truncated or garbage-prefixed
broadcast costs only itself.

When the link is lost the hub is closed with the :class:`ServomexConnectionError`:
subscribers receive every frame already decoded, then the error; :meth:`poll` raises it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from ..codec.continuous import ContinuousDecoder, frame_length, parse_frame
from ..codec.errors import (
    ErrorContext,
    ServomexConnectionError,
    ServomexError,
    ServomexProtocolError,
    ServomexTimeoutError,
)
from ..codec.models import Frame, ProtocolKind
from ._background import BackgroundTask
from .hub import FrameHub

__all__ = ["ContinuousClient"]

_LOGGER = logging.getLogger(__name__)

_PROTOCOL = ProtocolKind.CONTINUOUS_ASCII.value
_MAX_CHANNELS = 10


def rescue_frame(line: bytes, timestamp: float) -> Frame | None:
    """The whole frame at the end of a bad line, if there is one.

    A frame cut short (a truncated broadcast, a glitch that ate the line end) runs into
    the next frame on the same line; the decoder then rejects both. Frames have a fixed
    length for their channel count (39 + 33·N), so the tail of the line is tried for each
    N: a tail that starts with the frame's space and passes every check is the good frame.
    """
    body = line[:-1] if line.endswith(b"\r") else line
    for n in range(1, _MAX_CHANNELS + 1):
        size = frame_length(n)
        if len(body) <= size:
            break
        tail = body[-size:]
        if tail[:1] != b" " or tail[31:33] != b"%02d" % n:
            continue
        try:
            return parse_frame(tail, timestamp=timestamp)
        except ServomexError:
            continue
    return None


class ContinuousClient:
    """Receives broadcast frames from one analyser and publishes them to a :class:`FrameHub`.

    Use as an async context manager, entered and left in the same task: entering starts
    the receive loop in the client's own task group. ``decoder`` and ``initial`` let AUTO
    detection hand over the decoder it listened with (with any partial line still
    buffered) and the frames it already decoded, so nothing received is lost.
    """

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        hub: FrameHub,
        *,
        port: str | None = None,
        timeout: float = 3.0,
        decoder: ContinuousDecoder | None = None,
        initial: Iterable[Frame] = (),
    ) -> None:
        self._transport = transport
        self._hub = hub
        self.port = port if port is not None else str(getattr(transport, "port", "") or "")
        self.timeout = timeout
        self._decoder = decoder if decoder is not None else ContinuousDecoder()
        self._error_base = self._decoder.errors
        self._initial = tuple(initial)
        self._background = BackgroundTask(self._receive_loop)
        self._closing = False
        self._lost: ServomexConnectionError | None = None
        self.bytes_received = 0
        """Bytes read from the port by the receive loop."""
        self.rescued_frames = 0
        """Good frames recovered from the end of a bad line (see :func:`rescue_frame`)."""

    # --- state ----------------------------------------------------------------------------

    @property
    def hub(self) -> FrameHub:
        """Where frames go."""
        return self._hub

    @property
    def dropped_frames(self) -> int:
        """Bad lines (checksum, length, field errors) skipped since the client started."""
        return self._decoder.errors - self._error_base

    @property
    def frames_received(self) -> int:
        """Good frames decoded by the decoder (including any AUTO handed over)."""
        return self._decoder.frames

    @property
    def lost(self) -> ServomexConnectionError | None:
        """The error that ended the link, if it ended."""
        return self._lost

    def snapshot(self) -> Frame | None:
        """The latest frame, without waiting."""
        return self._hub.latest

    # --- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        for frame in self._initial:
            self._hub.publish(frame)
        await self._background.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._closing = True
        return await self._background.stop(exc_type, exc, tb)

    async def _receive_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            while True:
                chunk = await self._transport.receive()
                self.bytes_received += len(chunk)
                for item in self._decoder.feed(chunk):
                    self._publish(item)
        except ServomexConnectionError as exc:
            self._link_lost(exc)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self._link_lost(self._wrap(exc))
        except OSError as exc:
            self._link_lost(self._wrap(exc))

    def _publish(self, item: Frame | ServomexProtocolError) -> None:
        if isinstance(item, Frame):
            self._hub.publish(item)
            return
        item = item.with_context(port=self.port or None, protocol=_PROTOCOL)
        self._hub.publish(item)
        line = item.context.response
        if line:
            frame = rescue_frame(line, time.time())
            if frame is not None:
                self.rescued_frames += 1
                self._hub.publish(frame)

    def _wrap(self, exc: BaseException) -> ServomexConnectionError:
        error = ServomexConnectionError(
            f"link lost on {self.port or 'the port'}: {exc or type(exc).__name__}",
            context=ErrorContext(port=self.port or None, protocol=_PROTOCOL),
        )
        error.__cause__ = exc
        return error

    def _link_lost(self, error: ServomexConnectionError) -> None:
        if self._closing:
            return
        error = error.with_context(port=self.port or None, protocol=_PROTOCOL)
        _LOGGER.warning("%s: continuous link lost: %s", self.port, error)
        self._lost = error
        self._hub.close(error)

    # --- reading --------------------------------------------------------------------------

    async def poll(self, *, wait_fresh: bool = True, max_wait: float | None = None) -> Frame:
        """The next broadcast frame (``wait_fresh``) or the latest one if there is any.

        Raises:
            ServomexTimeoutError: no frame within ``max_wait`` s (default: :attr:`timeout`).
            ServomexConnectionError: the link is lost.
        """
        hub = self._hub
        if self._lost is not None:
            raise self._lost
        if not wait_fresh and hub.latest is not None:
            return hub.latest
        limit = self.timeout if max_wait is None else max_wait
        version = hub.version
        with anyio.move_on_after(limit):
            while hub.version == version:
                if self._lost is not None:
                    raise self._lost
                if hub.closed:
                    raise ServomexConnectionError(
                        "the continuous client is closed",
                        context=ErrorContext(port=self.port or None, protocol=_PROTOCOL),
                    )
                await hub.wait_change()
            latest = hub.latest
            assert latest is not None
            return latest
        raise ServomexTimeoutError(
            f"no continuous frame within {limit:g} s on {self.port or 'the port'}: the "
            "analyser may be in a Modbus mode (it then sends nothing unless asked), its frame "
            "frequency may be 0 (output off) or its frame period longer than the timeout",
            context=ErrorContext(port=self.port or None, protocol=_PROTOCOL),
        )
