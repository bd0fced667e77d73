"""``StreamingSession``: an async iterator of :class:`Sample` s from one analyser.

Continuous mode is passive: the session subscribes to the analyser's frame hub when it is
created and yields one sample per broadcast frame — and one error sample per bad line —
at the analyser's own frame period (``rate_hz`` is ignored). Modbus mode polls on an
absolute schedule at ``rate_hz``: tick *k* is due at ``start + k / rate_hz``; a poll that
overruns does not shift later ticks, and ticks missed entirely are skipped (counted in
:attr:`StreamingSession.missed`). A failed poll becomes an error sample and the stream goes
on; a lost link (:class:`ServomexConnectionError`) ends the stream by being raised, after
every sample already received.
"""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio

from ..codec.errors import ServomexConnectionError, ServomexError, ServomexValidationError
from ..codec.models import Frame, Sample
from .hub import Subscription

if TYPE_CHECKING:
    from .analyzer import Analyzer

__all__ = ["DEFAULT_STREAM_RATE", "StreamingSession"]

DEFAULT_STREAM_RATE = 1.0
"""Polls per second of a Modbus stream when no ``rate_hz`` is given."""


class StreamingSession:
    """Samples from one analyser: ``async for sample in analyzer.stream(...)``.

    Also an async context manager; leaving it (or :meth:`aclose`) unsubscribes, and so does
    dropping the last reference to it (a loop left by ``break``). Stops by itself after
    ``count`` samples or ``duration`` seconds when either is given.
    """

    def __init__(
        self,
        analyzer: Analyzer,
        *,
        rate_hz: float | None = None,
        count: int | None = None,
        duration: float | None = None,
        buffer_size: int | None = None,
    ) -> None:
        if rate_hz is not None and not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ServomexValidationError(f"rate_hz must be a positive number, not {rate_hz!r}")
        if count is not None and count < 0:
            raise ServomexValidationError(f"count must not be negative, not {count!r}")
        if duration is not None and not duration >= 0:
            raise ServomexValidationError(f"duration must not be negative, not {duration!r}")
        self._analyzer = analyzer
        self.passive = not analyzer.protocol.is_modbus
        self.rate_hz = None if self.passive else (rate_hz or DEFAULT_STREAM_RATE)
        self._count = count
        self._duration = duration
        self._subscription: Subscription | None = (
            analyzer.subscribe(buffer_size=buffer_size) if self.passive else None
        )
        self._started: float | None = None
        self._tick = 0
        self._closed = False
        self.samples = 0
        """Samples yielded so far."""
        self.errors = 0
        """Error samples among them."""
        self.missed = 0
        """Modbus: schedule ticks skipped because a poll overran them."""

    @property
    def dropped(self) -> int:
        """Continuous: frames lost because this stream fell behind its buffer."""
        return self._subscription.dropped if self._subscription is not None else 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Sample:
        if self._closed or (self._count is not None and self.samples >= self._count):
            raise StopAsyncIteration
        now = anyio.current_time()
        if self._started is None:
            self._started = now
        remaining = math.inf
        if self._duration is not None:
            remaining = self._started + self._duration - now
            if remaining <= 0:
                raise StopAsyncIteration
        sample: Sample | None = None
        with anyio.move_on_after(remaining):
            sample = await (self._next_passive() if self.passive else self._next_polled())
        if sample is None:
            raise StopAsyncIteration
        self.samples += 1
        if not sample.ok:
            self.errors += 1
        return sample

    async def _next_passive(self) -> Sample | None:
        assert self._subscription is not None
        try:
            item = await self._subscription.next_item()
        except anyio.EndOfStream:
            return None
        return self._sample(item)

    async def _next_polled(self) -> Sample:
        assert self._started is not None
        assert self.rate_hz is not None
        period = 1.0 / self.rate_hz
        due = self._started + self._tick * period
        now = anyio.current_time()
        if now > due + period:
            skipped = int((now - due) // period)
            self.missed += skipped
            self._tick += skipped
            due = self._started + self._tick * period
        self._tick += 1
        if due > now:
            await anyio.sleep(due - now)
        try:
            frame = await self._analyzer.poll()
        except ServomexConnectionError:
            raise
        except ServomexError as exc:
            return self._sample(exc)
        return self._sample(frame)

    def _sample(self, item: Frame | ServomexError) -> Sample:
        name = self._analyzer.name
        if isinstance(item, Frame):
            return Sample(name=name, timestamp=item.timestamp, frame=item)
        return Sample(name=name, timestamp=time.time(), error=item)

    async def aclose(self) -> None:
        """Stop the stream and unsubscribe."""
        self._closed = True
        if self._subscription is not None:
            self._subscription.close()

    def __del__(self) -> None:
        # ``async for sample in analyzer.stream(): break`` never calls ``aclose``: unsubscribe
        # when the abandoned session goes, or its subscription would buffer frames for nobody
        # until the analyser closes (closing a subscription is synchronous and loop-free).
        subscription = getattr(self, "_subscription", None)
        if subscription is not None:
            subscription.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
