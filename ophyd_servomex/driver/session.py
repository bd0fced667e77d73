"""``StreamingSession``: one subscriber's stream of long-format :class:`Sample` rows.

Two backing shapes share one interface (:class:`~ophyd_servomex.codec.models.StreamMode`):

* ``AUTOPRINT`` (continuous mode) is passive: the session subscribes to the analyser's
  frame hub when it is created and fans every broadcast frame out into one sample per
  channel — a bad line becomes one error sample — at the analyser's own frame period.
  It needs no task, so plain ``async for`` works as well as ``async with``.
* ``POLL`` (Modbus modes) is active: on ``__aenter__`` the session enters
  :func:`~ophyd_servomex.driver.record` (the drift-free absolute
  :class:`~ophyd_servomex.driver.schedule.Schedule`) and reads its stream; leaving the
  session leaves the recording, so the poll loop lives exactly as long as the session. The
  session does no timing of its own. A failed poll is an error sample and the stream goes
  on; a lost link (:class:`ServomexConnectionError`) ends the stream by being raised, after
  every sample already received.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio

from ..codec.errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexValidationError,
)
from ..codec.models import Frame, ProtocolKind, Sample, StreamMode
from .hub import Subscription
from .record import Recording, _record, _RecordContext

if TYPE_CHECKING:
    from .analyzer import Analyzer

__all__ = ["DEFAULT_STREAM_RATE", "StreamingSession"]

DEFAULT_STREAM_RATE = 1.0
"""Polls per second of a Modbus stream when no ``rate_hz`` is given."""

_POLL_BUFFER = 64
"""Per-tick batches a POLL session's recording holds before it waits for the consumer."""


class StreamingSession:
    """Samples from one analyser: ``async with analyzer.stream(...) as samples``.

    Iterate it for :class:`Sample` rows. Leaving the block (or :meth:`aclose`) stops the
    poll loop and unsubscribes; so does dropping the last reference to a passive session
    (a loop left by ``break``). Stops by itself after ``count`` samples or ``duration``
    seconds when either is given.
    """

    def __init__(
        self,
        analyzer: Analyzer,
        *,
        mode: StreamMode = StreamMode.AUTOPRINT,
        rate_hz: float | None = None,
        count: int | None = None,
        duration: float | None = None,
        buffer_size: int | None = None,
    ) -> None:
        if rate_hz is not None and (
            isinstance(rate_hz, bool) or not (rate_hz > 0 and math.isfinite(rate_hz))
        ):
            raise ServomexValidationError(f"rate_hz must be a positive number, not {rate_hz!r}")
        if count is not None and (isinstance(count, bool) or count < 0):
            raise ServomexValidationError(f"count must not be negative, not {count!r}")
        if duration is not None and not (duration >= 0 and math.isfinite(duration)):
            raise ServomexValidationError(f"duration must be a finite number ≥ 0: {duration!r}")
        self._analyzer = analyzer
        self.mode = mode
        self.passive = mode is StreamMode.AUTOPRINT
        self.rate_hz = None if self.passive else (rate_hz or DEFAULT_STREAM_RATE)
        self._count = count
        self._duration = duration
        self._buffer_size = buffer_size
        self._subscription: Subscription | None = (
            analyzer.subscribe(buffer_size=buffer_size) if self.passive else None
        )
        self._pending: deque[Sample] = deque()
        self._record_context: _RecordContext | None = None
        self._recording: Recording[Sequence[Sample]] | None = None
        self._deadline: float | None = None
        self._entered = False
        self._closed = False
        self.samples = 0
        """Samples yielded so far."""
        self.errors = 0
        """Error samples among them."""
        self.missed = 0
        """POLL: ticks that missed their slot (see :class:`AcquisitionSummary`)."""

    @staticmethod
    def mode_for(
        protocol: ProtocolKind, mode: StreamMode | str | None, *, context: ErrorContext
    ) -> StreamMode:
        """The stream mode for a protocol: the given one (checked) or the protocol's own."""
        natural = StreamMode.POLL if protocol.is_modbus else StreamMode.AUTOPRINT
        if mode is None:
            return natural
        try:
            chosen = StreamMode(str(mode).lower())
        except ValueError:
            raise ServomexValidationError(
                f"unknown stream mode {mode!r}; expected autoprint or poll", context=context
            ) from None
        if chosen is not natural:
            raise ServomexConfigurationError(
                f"{protocol.value} mode streams by {natural.value}, not {chosen.value}: "
                + (
                    "a continuous analyser broadcasts on its own and cannot be polled"
                    if natural is StreamMode.AUTOPRINT
                    else "a Modbus analyser only answers polls; it does not broadcast"
                ),
                context=context,
            )
        return chosen

    @property
    def dropped(self) -> int:
        """AUTOPRINT: frames lost because this stream fell behind its buffer."""
        return self._subscription.dropped if self._subscription is not None else 0

    # --- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise ServomexConfigurationError("a streaming session can be entered only once")
        self._entered = True
        if self._duration is not None:
            self._deadline = anyio.current_time() + self._duration
        if not self.passive:
            await self._start_producer()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the owned producer (if any), unsubscribe, and close the stream."""
        self._closed = True
        if self._subscription is not None:
            self._subscription.close()
        context, self._record_context = self._record_context, None
        if context is not None:
            # the body's exception is not handed to the recording: it leaves as raised
            await context.__aexit__(None, None, None)

    def __del__(self) -> None:
        # ``async for sample in analyzer.stream(): break`` never calls ``aclose``: unsubscribe
        # when the abandoned session goes, or its subscription would buffer frames for nobody
        # until the analyser closes (closing a subscription is synchronous and loop-free).
        subscription = getattr(self, "_subscription", None)
        if subscription is not None:
            subscription.close()

    async def _start_producer(self) -> None:
        assert self.rate_hz is not None
        context = _record(
            self._analyzer,
            rate_hz=self.rate_hz,
            duration=self._duration,
            buffer_size=self._buffer_size or _POLL_BUFFER,
        )
        self._recording = await context.__aenter__()
        self._record_context = context

    # --- iteration ------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Sample:
        if self._closed or (self._count is not None and self.samples >= self._count):
            raise StopAsyncIteration
        if self._deadline is None and self._duration is not None:
            self._deadline = anyio.current_time() + self._duration
        while not self._pending:
            remaining = math.inf
            if self._deadline is not None:
                remaining = self._deadline - anyio.current_time()
                if remaining <= 0 and self.passive:
                    raise StopAsyncIteration
            batch: Sequence[Sample] | None = None
            with anyio.move_on_after(remaining if self.passive else math.inf):
                batch = await (self._next_passive() if self.passive else self._next_polled())
            if batch is None:
                raise StopAsyncIteration
            self._pending.extend(batch)
        sample = self._pending.popleft()
        self.samples += 1
        if sample.error is not None:
            self.errors += 1
        return sample

    async def _next_passive(self) -> Sequence[Sample] | None:
        assert self._subscription is not None
        try:
            item = await self._subscription.next_item()
        except anyio.EndOfStream:
            return None
        analyzer = self._analyzer
        if isinstance(item, Frame):
            return item.as_samples(analyzer.name)
        return [Sample.failed(analyzer.name, item, analyzer.protocol)]

    async def _next_polled(self) -> Sequence[Sample] | None:
        recording = self._recording
        if recording is None:
            raise ServomexConfigurationError(
                "a polled (Modbus) stream runs its poll loop in a task group: use "
                "'async with analyzer.stream(rate_hz=...) as samples:'",
                context=ErrorContext(
                    port=self._analyzer.port or None,
                    protocol=self._analyzer.protocol.value,
                    address=self._analyzer.address,
                ),
            )
        try:
            batch = await anext(recording.stream)
        except StopAsyncIteration:
            return None
        finally:
            self.missed = recording.summary.samples_late
        return batch
