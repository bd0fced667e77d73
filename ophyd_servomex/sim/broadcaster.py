"""Continuous ASCII mode: broadcast the analyser's frame every period, and ignore input.

Frames go out on an absolute schedule (``epoch + k·period``), so the cadence does not
drift however long a send takes; a slot missed entirely (a stalled event loop, a long
``DELAY`` fault) is skipped, not sent late twice. Each frame is
``build_frame(analyser.truth())``: CR LF terminated, names in plain ASCII (``CO2``).
Anything the master sends is logged as discarded and otherwise ignored, as a
continuous-mode unit ignores Modbus traffic (docs/protocol.md §3).

With ``realistic_timing`` the frame trickles out at the baud rate in 16-byte pieces
(206 bytes take about 107 ms at 19200 baud), so a client can see partial lines.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import anyio
import anyio.abc

from ..codec.continuous import build_frame
from ..codec.errors import ServomexValidationError
from ..codec.models import SerialSettings
from .analyser import SimAnalyser
from .faults import FaultInjector, Framing
from .links import DISCONNECT_LINGER, LINK_CLOSED, LINK_LOST, Disconnected
from .wirelog import Direction, WireEvent, WireKind, WireLog

__all__ = ["PACING_CHUNK", "ContinuousBroadcaster"]

_STOP: tuple[type[BaseException], ...] = (Disconnected, *LINK_LOST, *LINK_CLOSED)

PACING_CHUNK = 16
"""Bytes sent per write when a frame is paced at the baud rate."""


class ContinuousBroadcaster:
    """Send ``analyser``'s frame every ``period`` seconds (fractions allowed; 0 = off).

    The schedule's epoch is the first time :meth:`serve` runs and is kept across clients
    (a new TCP client joins the running schedule).
    """

    def __init__(
        self,
        analyser: SimAnalyser,
        *,
        period: float = 2.0,
        line_ending: bytes = b"\r\n",
        realistic_timing: bool = False,
        settings: SerialSettings | None = None,
        log: WireLog | None = None,
        faults: FaultInjector | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not period >= 0 or math.isinf(period):
            raise ServomexValidationError(f"frame period must be ≥ 0 seconds, not {period!r}")
        self.analyser = analyser
        self.period = float(period)
        self.line_ending = line_ending
        self.realistic_timing = realistic_timing
        self.settings = settings or SerialSettings("")
        self.log = log if log is not None else WireLog()
        self.faults = faults if faults is not None else FaultInjector(Framing.CONTINUOUS)
        self._clock = clock
        self._epoch: float | None = None

    async def serve(self, stream: anyio.abc.ByteStream, *, persistent: bool = False) -> None:
        """Broadcast on ``stream`` until the link closes (or, unless ``persistent``, the
        client goes away); a ``DISCONNECT`` fault closes ``stream`` and returns."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._ignore_input, stream, persistent, tg.cancel_scope)
            with contextlib.suppress(*_STOP):
                await self._broadcast(stream, persistent)
            tg.cancel_scope.cancel()

    async def _ignore_input(
        self, stream: anyio.abc.ByteStream, persistent: bool, scope: anyio.CancelScope
    ) -> None:
        while True:
            try:
                data = await stream.receive()
            except LINK_LOST:
                if persistent:
                    continue
                break
            except LINK_CLOSED:
                break
            self.log.record(
                WireEvent(
                    self._clock(),
                    Direction.RX,
                    WireKind.DISCARDED,
                    data,
                    None,
                    "continuous mode: input ignored",
                )
            )
        scope.cancel()

    def _next_slot(self, after: float) -> int:
        assert self._epoch is not None
        return max(0, math.ceil((after - self._epoch) / self.period - 1e-9))

    async def _broadcast(self, stream: anyio.abc.ByteStream, persistent: bool) -> None:
        if self.period == 0:
            await anyio.sleep_forever()
        if self._epoch is None:
            self._epoch = self._clock()
            slot = 0
        else:
            slot = self._next_slot(self._clock())
        while True:
            await anyio.sleep(max(0.0, self._epoch + slot * self.period - self._clock()))
            await self._send_frame(stream, persistent)
            slot = max(slot + 1, self._next_slot(self._clock()))

    async def _send_frame(self, stream: anyio.abc.ByteStream, persistent: bool) -> None:
        frame = build_frame(self.analyser.truth(), line_ending=self.line_ending)
        delivery = self.faults.deliver(frame)
        if delivery.delay > 0:
            await anyio.sleep(delivery.delay)
        if delivery.suppressed:
            self.log.record(
                WireEvent(
                    self._clock(), Direction.TX, WireKind.SUPPRESSED, frame, None, delivery.note
                )
            )
            return
        try:
            await self._write(stream, delivery.data)
        except LINK_LOST:
            if not persistent:
                raise
        self.log.record(
            WireEvent(
                self._clock(), Direction.TX, WireKind.BROADCAST, delivery.data, None, delivery.note
            )
        )
        if delivery.disconnect:
            if delivery.data:
                await anyio.sleep(DISCONNECT_LINGER)
            await stream.aclose()
            self.log.record(
                WireEvent(
                    self._clock(), Direction.TX, WireKind.DISCONNECT, b"", None, delivery.note
                )
            )
            raise Disconnected

    async def _write(self, stream: anyio.abc.ByteStream, data: bytes) -> None:
        if not self.realistic_timing:
            if data:
                await stream.send(data)
            return
        for start in range(0, len(data), PACING_CHUNK):
            chunk = data[start : start + PACING_CHUNK]
            await anyio.sleep(self.settings.wire_time(len(chunk)))
            await stream.send(chunk)
