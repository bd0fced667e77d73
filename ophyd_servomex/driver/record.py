"""``record()``: poll a source on an absolute, drift-free schedule into a stream of batches.

::

    async with record(analyzer, rate_hz=2, duration=10) as rec:
        async for batch in rec.stream:          # one Sequence[Sample] per tick
            for sample in batch:                # one long-format row per channel
                print(sample.channel, sample.value)
    print(rec.summary)                          # batches, late ticks, max drift, p50/p99 …

**Schedule.** Tick *k* is due at ``t0 + k / rate_hz``, computed from ``t0`` every time (never
by adding periods, which would accumulate rounding and every poll's overrun), by the
:class:`~ophyd_servomex.driver.schedule.Schedule` that the device's background poll uses
too. A tick that starts after its slot is *late* (counted; its lateness is the drift),
but the following ticks keep their own slots. A tick whose whole period has passed before
it could start is skipped (``missed_ticks``): no tick ever runs more than one period after
its slot. With ``duration`` the recording stops after the ticks whose slots fall inside
it (``ceil(duration × rate_hz)``).

**Source.** Anything with ``async poll_samples(names=None, timeout=None) ->
Sequence[Sample]`` (:class:`PollSource`): an :class:`~ophyd_servomex.driver.Analyzer` or a
:class:`~ophyd_servomex.driver.ServomexManager`. A failed poll is an error sample (the
source decides); ``timeout`` bounds one tick's poll, after which the tick carries
:class:`ServomexTimeoutError` samples. A lost link
(:class:`~ophyd_servomex.codec.errors.ServomexConnectionError`) ends the recording — the
stream delivers what it already holds, then raises it — unless ``auto_reconnect`` is set:
then each following tick carries error samples until ``reconnect_factory()`` gives a new
source. The factory is an async callable (``lambda: open_device(port, ...)``: an Analyzer
that is not open yet is entered, and closed again, by the recording) or returns an async
context manager that gives the source.

**Overflow.** The stream holds ``buffer_size`` batches. When the consumer falls behind:
``BLOCK`` holds the producer (its next ticks become late or missed: nothing is lost but
time), ``DROP_NEWEST`` throws away the batch just polled, ``DROP_OLDEST`` the oldest one
waiting. Dropped batches and their samples are counted.

**Clock.** ``clock`` and ``sleep`` default to anyio's; a test may inject a fake pair to
run thousands of ticks in no real time.
"""

from __future__ import annotations

import inspect
import logging
import math
from array import array
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from ..codec.checks import check_positive
from ..codec.errors import (
    ErrorContext,
    ServomexConfigurationError,
    ServomexConnectionError,
    ServomexError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.models import ProtocolKind, Sample
from .schedule import Schedule

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "AcquisitionSummary",
    "OverflowPolicy",
    "PollSource",
    "Recording",
    "RecordingStream",
    "percentile",
    "record",
    "source_names",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_BUFFER_SIZE = 64
"""Batches the stream holds before the overflow policy applies."""


@runtime_checkable
class PollSource(Protocol):
    """The one thing ``record()`` needs from a source: a poll that returns samples.

    :class:`~ophyd_servomex.driver.ServomexManager` and
    :class:`~ophyd_servomex.driver.Analyzer` both are. A source may also tell its
    ``names`` (or, for one device, its ``name``); see :func:`source_names`.
    """

    async def poll_samples(
        self,
        names: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the page's signature)
    ) -> Sequence[Sample]:
        """Read this tick's samples across every channel (and managed device).

        Args:
            names: the devices to poll (a manager only; ``None``: all of them).
            timeout: a per-poll I/O ceiling in seconds, or ``None`` for the source's own.

        Returns:
            a flat sequence of :class:`Sample`, one per channel read; a failed read is an
            error sample.
        """
        ...


def source_names(source: object) -> tuple[str, ...]:
    """The names a source's samples carry: its ``names``, else its ``name``, else none."""
    names = getattr(source, "names", None)
    if names is not None and not isinstance(names, str):
        return tuple(str(n) for n in names)
    name = getattr(source, "name", None)
    return (str(name),) if isinstance(name, str) and name else ()


class OverflowPolicy(Enum):
    """What ``record()`` does when the stream's buffer is full.

    The producer runs on an absolute schedule and the consumer drains at its own pace; a
    slow consumer creates back-pressure, and this picks the response.
    """

    BLOCK = "block"
    """Wait for the slow consumer (the default): nothing is discarded, later ticks run late."""
    DROP_NEWEST = "drop_newest"
    """Discard the batch about to be queued; counted as late."""
    DROP_OLDEST = "drop_oldest"
    """Evict the oldest queued batch and queue the newest (the latest reading matters
    most); each eviction is counted as late."""


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0–1) of ``values``, or ``None`` if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(slots=True)
class AcquisitionSummary:
    """Per-recording summary, updated in place by the recorder (its only writer).

    Counters are live while the recording runs, so a consumer may watch progress; treat it
    as read-only. ``finished_at`` and the tick-duration percentiles are set when the
    recording ends. The fields after ``disconnects`` are extra detail.
    """

    started_at: datetime
    """Wall-clock time of the first scheduled tick."""
    finished_at: datetime | None = None
    """Wall-clock time the producer stopped, or ``None`` while running."""
    samples_emitted: int = 0
    """Per-tick batches pushed onto the stream (a tick whose reads all failed counts too)."""
    samples_late: int = 0
    """Ticks that missed their slot: overrun, overflow drop, or a reconnect gap."""
    max_drift_ms: float = 0.0
    """Largest positive drift of a tick's start from its slot, in ms."""
    tick_duration_ms_p50: float = 0.0
    """Median time one tick's poll took, in ms (set on exit)."""
    tick_duration_ms_p99: float = 0.0
    """99th-percentile time one tick's poll took, in ms (set on exit)."""
    disconnects: int = 0
    """Lost links (``ServomexConnectionError`` from the source)."""
    rate_hz: float = 0.0
    """The cadence asked for."""
    ticks: int = 0
    """Ticks run (each one poll, one batch)."""
    acquired: int = 0
    """Samples polled."""
    delivered: int = 0
    """Samples handed to the consumer by the stream."""
    error_samples: int = 0
    """Error samples among those polled."""
    late_ticks: int = 0
    """Ticks that started more than half a period after their slot."""
    missed_ticks: int = 0
    """Slots skipped because their whole period had passed."""
    timeouts: int = 0
    """Ticks whose poll hit ``timeout``."""
    reconnects: int = 0
    """Successful reconnections."""
    dropped: int = 0
    """Batches lost to overflow."""
    dropped_samples: int = 0
    """Samples in those batches."""
    t0: float | None = None
    """The recording clock's time of the first slot: tick *k* is due at ``t0 + k / rate_hz``."""
    elapsed: float = 0.0
    """Seconds from the first slot to the end of the last tick."""
    tick_max_ms: float | None = None
    """Longest tick, in ms (set on exit)."""
    finished: bool = False
    """True once the recording ended."""
    error: BaseException | None = None
    """What ended the recording early (also raised by the stream), if anything."""
    _durations: array[float] = field(default_factory=lambda: array("d"), repr=False)

    def __str__(self) -> str:
        return (
            f"{self.samples_emitted} batches at {self.rate_hz:g} Hz ({self.acquired} samples, "
            f"{self.error_samples} errors), {self.samples_late} late ({self.missed_ticks} "
            f"missed, {self.dropped} dropped), max drift {self.max_drift_ms:.1f} ms, "
            f"{self.disconnects} disconnects; tick p50 {self.tick_duration_ms_p50:.1f} ms, "
            f"p99 {self.tick_duration_ms_p99:.1f} ms"
        )

    def _finish(self) -> None:
        if self.finished_at is not None:
            return
        durations = self._durations
        self.tick_duration_ms_p50 = (percentile(durations, 0.5) or 0.0) * 1000.0
        self.tick_duration_ms_p99 = (percentile(durations, 0.99) or 0.0) * 1000.0
        self.tick_max_ms = max(durations) * 1000.0 if durations else None
        self.finished = True
        self.finished_at = datetime.now(UTC)


class RecordingStream:
    """The batches of a recording: ``async for batch in recording.stream``.

    Each batch is the ``list[Sample]`` of one tick. Iteration ends when the recording has
    finished and every batch was delivered, or raises the error that ended it.

    An anyio memory object stream of ``size`` batches: ``BLOCK`` is its waiting ``send``,
    ``DROP_NEWEST`` a ``send_nowait`` that may not fit, and ``DROP_OLDEST`` evicts the
    oldest batch through a clone of the receiving end (as the frame hub's subscriptions do).
    """

    def __init__(self, size: int, summary: AcquisitionSummary) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[Sequence[Sample]](size)
        self._evict = self._receive.clone()
        self._summary = summary
        self._error: BaseException | None = None

    def __len__(self) -> int:
        """Batches waiting to be read."""
        return self._receive.statistics().current_buffer_used

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Sequence[Sample]:
        try:
            batch = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            batch = None
        if batch is None:  # raised here, not in the except block: the error keeps its cause
            self._close_receiving()
            error, self._error = self._error, None
            if error is not None:
                raise error
            raise StopAsyncIteration
        self._summary.delivered += len(batch)
        return batch

    def __del__(self) -> None:
        # a consumer that stopped reading never saw the end: close the receiving ends here,
        # or anyio warns about them when they go (closing them is synchronous and loop-free)
        if hasattr(self, "_receive"):
            self._close_receiving()

    def _close_receiving(self) -> None:
        self._receive.close()
        self._evict.close()

    # --- the producer's side --------------------------------------------------------------

    async def _put(self, batch: Sequence[Sample], policy: OverflowPolicy) -> None:
        if policy is OverflowPolicy.BLOCK:
            await self._send.send(batch)
            return
        try:
            self._send.send_nowait(batch)
        except anyio.WouldBlock:
            if policy is OverflowPolicy.DROP_NEWEST:
                self._count_drop(batch)
                return
            # the buffer is full and nothing ran since send_nowait said so: evict the oldest
            self._count_drop(self._evict.receive_nowait())
            self._send.send_nowait(batch)

    def _count_drop(self, batch: Sequence[Sample]) -> None:
        self._summary.dropped += 1
        self._summary.samples_late += 1
        self._summary.dropped_samples += len(batch)

    def _close(self, error: BaseException | None = None) -> None:
        self._error = error
        self._send.close()


@dataclass(slots=True)
class Recording[T]:
    """What ``record()`` yields: the batch stream, the live summary and the rate.

    For this driver ``T`` is ``Sequence[Sample]``: one batch per tick.
    """

    stream: AsyncIterator[T]
    """The per-tick batches: ``async for batch in rec.stream``."""
    summary: AcquisitionSummary
    """Live counters (see :class:`AcquisitionSummary`)."""
    rate_hz: float
    """The cadence asked for."""
    _stopping: bool = field(default=False, init=False, repr=False)
    _wake: Callable[[], None] | None = field(default=None, init=False, repr=False)

    def stop(self) -> None:
        """End the recording after the tick in progress; the stream then drains and ends."""
        self._stopping = True
        wake, self._wake = self._wake, None
        if wake is not None:
            wake()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping


type SourceFactory = Callable[[], Awaitable[PollSource] | AbstractAsyncContextManager[PollSource]]
"""Gives a new source: an async callable (``lambda: open_device(port, ...)``) or a callable
returning an async context manager."""


class _Producer:
    """The task that runs the ticks (entered and left in one task: it owns the sources
    that ``reconnect_factory`` opens)."""

    def __init__(
        self,
        source: PollSource | None,
        recording: Recording[Sequence[Sample]],
        *,
        total: int | None,
        names: tuple[str, ...] | None,
        timeout: float | None,
        overflow: OverflowPolicy,
        auto_reconnect: bool,
        reconnect_factory: SourceFactory | None,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.source = source
        self.recording = recording
        self.summary = recording.summary
        assert isinstance(recording.stream, RecordingStream)
        self.stream = recording.stream
        self.period = 1.0 / recording.rate_hz
        self.total = total
        self.names = names
        self.known_names = names or source_names(source)
        self.timeout = timeout
        self.overflow = overflow
        self.auto_reconnect = auto_reconnect
        self.factory = reconnect_factory
        self.clock = clock
        self.sleep = sleep
        self._task_group: anyio.abc.TaskGroup | None = None
        self._held: anyio.Event | None = None
        self._closed: anyio.Event | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the ticks; sources the factory opens live in holder tasks of this task."""
        error: Exception | None = None
        started = False
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                try:
                    if self.source is None:
                        await self._open()
                    started = True
                    task_status.started()
                    await self._ticks()
                except Exception as exc:
                    error = exc
                finally:
                    self._release()
        finally:
            self.summary.finished = True
            self.summary.error = error
            self.stream._close(error)
        if error is not None and not started:
            raise error  # opening failed: record() raises it to its caller

    async def _open(self) -> None:
        """Open a source with the factory, in a holder task that also closes it."""
        assert self.factory is not None
        assert self._task_group is not None
        closed, self._closed = self._closed, None
        if closed is not None:
            # the source released before must have let go of the port (its exclusive hold)
            # before the port is opened again, or the reopening finds it busy
            await closed.wait()
        source, release, done = await self._task_group.start(_hold_source, self.factory)
        self.source, self._held, self._closed = source, release, done
        if not self.names:
            self.known_names = source_names(source) or self.known_names

    def _release(self) -> None:
        """Let the holder task close the source the factory opened (if any)."""
        held, self._held = self._held, None
        if held is not None:
            held.set()

    async def _ticks(self) -> None:
        summary, clock = self.summary, self.clock
        schedule = Schedule(self.period, limit=self.total, clock=clock, sleep=self.sleep)
        schedule.restart()  # slot 0 is due now
        t0 = schedule.origin
        assert t0 is not None
        summary.t0 = t0
        summary.started_at = datetime.now(UTC)
        self.recording._wake = schedule.stop
        if self.recording.stopping:
            schedule.stop()
        try:
            while (tick := await schedule.wait()) is not None:
                self._count_missed(schedule)
                summary.max_drift_ms = max(summary.max_drift_ms, tick.drift * 1000.0)
                if tick.late:
                    summary.late_ticks += 1
                batch, gap = await self._tick()
                if tick.late or gap:
                    summary.samples_late += 1
                ended = clock()
                summary._durations.append(ended - tick.started)
                summary.ticks += 1
                summary.elapsed = ended - t0
                summary.acquired += len(batch)
                summary.error_samples += sum(1 for s in batch if s.error is not None)
                summary.samples_emitted += 1
                await self.stream._put(batch, self.overflow)
        finally:
            self.recording._wake = None
            self._count_missed(schedule)  # slots skipped at the end, past the last tick

    def _count_missed(self, schedule: Schedule) -> None:
        """Bring the summary's missed slots (each also late) up to the schedule's."""
        new = schedule.missed - self.summary.missed_ticks
        self.summary.missed_ticks += new
        self.summary.samples_late += new

    async def _tick(self) -> tuple[Sequence[Sample], bool]:
        """One poll: its batch, and whether the tick fell in a reconnect gap."""
        if self.source is None:
            try:
                await self._open()
            except ServomexError as exc:
                return self._error_batch(exc), True
            self.summary.reconnects += 1
        source = self.source
        assert source is not None
        try:
            samples: Sequence[Sample] | None = None
            with anyio.move_on_after(math.inf if self.timeout is None else self.timeout):
                samples = await source.poll_samples(self.names, self.timeout)
        except ServomexConnectionError as exc:
            self.summary.disconnects += 1
            if not self.auto_reconnect:
                raise
            self.source = None
            self._release()
            return self._error_batch(exc), True
        if samples is None:
            self.summary.timeouts += 1
            return self._error_batch(
                ServomexTimeoutError(
                    f"the poll took longer than the recording's timeout of {self.timeout} s",
                    context=ErrorContext(
                        port=getattr(source, "port", None) or None, elapsed_s=self.timeout
                    ),
                )
            ), False
        if self.names is not None:
            wanted = set(self.names)
            samples = [s for s in samples if s.device in wanted]
        if samples and not self.known_names:
            self.known_names = tuple(dict.fromkeys(s.device for s in samples))
        return samples, False

    def _error_batch(self, error: ServomexError) -> list[Sample]:
        protocol = getattr(self.source, "protocol", None)
        kind = protocol if isinstance(protocol, ProtocolKind) else ProtocolKind.AUTO
        names = self.known_names or ("",)
        return [Sample.failed(name, error, kind) for name in names]


async def _hold_source(
    factory: SourceFactory,
    *,
    task_status: TaskStatus[tuple[PollSource, anyio.Event, anyio.Event]] = (
        anyio.TASK_STATUS_IGNORED
    ),
) -> None:
    """Open a source with ``factory`` and keep it open until released (one task).

    The factory's result may be awaitable (an async factory); what it gives — or what
    it returned — is entered as an async context manager when it is one and not open yet
    (an :class:`Analyzer` fresh from ``open_device``) and left again on release.
    """
    release = anyio.Event()
    closed = anyio.Event()  # set once the source is left (its port closed)
    started = False
    try:
        made: Any = factory()
        if inspect.isawaitable(made):
            made = await made
        if _needs_entering(made):
            async with made as source:
                started = True
                task_status.started((source, release, closed))
                await release.wait()
        else:
            started = True
            task_status.started((made, release, closed))
            await release.wait()
    except Exception:
        if not started:
            raise  # opening failed: the caller of start() sees it
        _LOGGER.debug("closing a released source failed", exc_info=True)
    finally:
        closed.set()


def _needs_entering(made: object) -> bool:
    """Whether the factory's result must be entered: a context manager giving the source,
    or a source (Analyzer, manager) that is not open yet. An open source is used as is."""
    if not hasattr(made, "__aenter__"):
        return False
    if not hasattr(made, "poll_samples"):
        return True
    return getattr(made, "is_open", True) is False


class _RecordContext:
    """The async context manager ``record()`` returns.

    A class rather than a generator so that an exception raised in the ``async with``
    body leaves it as it is, not wrapped in the producer's task group's exception group.
    """

    def __init__(self, recording: Recording[Sequence[Sample]], producer: _Producer) -> None:
        self._recording = recording
        self._producer = producer
        self._task_group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Recording[Sequence[Sample]]:
        if self._task_group is not None:
            raise ServomexConfigurationError("a recording can be entered only once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await task_group.start(self._producer.run)
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            self._recording.summary._finish()
            raise
        return self._recording

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group = self._task_group
        assert task_group is not None
        task_group.cancel_scope.cancel()
        try:
            await task_group.__aexit__(None, None, None)
        finally:
            self._recording.summary._finish()


@asynccontextmanager
async def record(
    source: PollSource | None,
    *,
    rate_hz: float,
    duration: float | None = None,
    names: Sequence[str] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 (per poll, the page's signature)
    overflow: OverflowPolicy = OverflowPolicy.BLOCK,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    auto_reconnect: bool = False,
    reconnect_factory: SourceFactory | None = None,
) -> AsyncGenerator[Recording[Sequence[Sample]]]:
    """Record polled samples into a stream of per-tick batches at an absolute cadence.

    ::

        async with record(analyzer, rate_hz=2, duration=10) as rec:
            async for batch in rec.stream:
                for sample in batch:
                    print(sample.channel, sample.value)

    Args:
        source: any :class:`PollSource` (an Analyzer or a ServomexManager; used, never
            closed), or ``None`` to open one with ``reconnect_factory`` (then owned).
        rate_hz: the target cadence in ticks per second (> 0).
        duration: total seconds, or ``None`` to run until the block is left.
        names: the devices to poll (a manager only); ``None`` for all.
        timeout: per-poll I/O ceiling passed to ``poll_samples``; a tick that hits it
            carries :class:`ServomexTimeoutError` samples.
        overflow: the back-pressure policy when ``buffer_size`` batches wait unread.
        buffer_size: the stream's capacity, in per-tick batches.
        auto_reconnect: treat :class:`ServomexConnectionError` as recoverable: rebuild the
            source with ``reconnect_factory`` instead of ending the recording.
        reconnect_factory: rebuilds the source after a disconnect.

    Yields:
        a :class:`Recording` whose stream gives ``Sequence[Sample]`` batches; leaving the
        block stops the recording and fills in the summary.

    Raises:
        ServomexValidationError (a ``ValueError``): a bad rate, duration, buffer size or
            policy; ServomexConfigurationError: a source without ``poll_samples``,
            ``auto_reconnect`` without a factory (both on entering).
    """
    async with _record(
        source,
        rate_hz=rate_hz,
        duration=duration,
        names=names,
        timeout=timeout,
        overflow=overflow,
        buffer_size=buffer_size,
        auto_reconnect=auto_reconnect,
        reconnect_factory=reconnect_factory,
    ) as recording:
        yield recording


def _record(
    source: PollSource | None,
    *,
    rate_hz: float,
    duration: float | None = None,
    names: Sequence[str] | None = None,
    timeout: float | None = None,
    overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    auto_reconnect: bool = False,
    reconnect_factory: SourceFactory | None = None,
    ticks: int | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> _RecordContext:
    """:func:`record` with the extras tests and the streaming session use (not entered yet).

    Args:
        source: a :class:`PollSource` (used, never closed); ``None`` to open one with
            ``reconnect_factory`` (then owned and closed by the recording).
        rate_hz: ticks per second.
        duration: stop after the ticks whose slots fall in this many seconds.
        names: keep only these devices' samples (a manager polls only these).
        timeout: seconds one tick's poll may take before it gives up with error samples.
        overflow: what to do when ``buffer_size`` batches wait unread.
        buffer_size: batches the stream holds.
        auto_reconnect: after a lost link, reopen with ``reconnect_factory`` instead of
            ending the recording.
        reconnect_factory: opens a new source (an async context manager).
        ticks: stop after this many slots (an alternative to ``duration``).
        clock, sleep: the time source and the sleep (default anyio's); for tests.

    Returns:
        an async context manager giving a :class:`Recording`; leaving the block stops the
        recording.

    Raises:
        ServomexValidationError, ServomexConfigurationError: bad arguments (at once).
        ServomexError: on entering, when ``source`` is ``None`` and the factory fails.
    """
    check_positive("rate_hz", rate_hz, allow_none=True)
    check_positive("timeout", timeout, allow_none=True)
    if duration is not None and not (duration >= 0 and math.isfinite(duration)):
        raise ServomexValidationError(f"duration must be a finite number ≥ 0, not {duration!r}")
    if ticks is not None and (isinstance(ticks, bool) or ticks < 0):
        raise ServomexValidationError(f"ticks must not be negative, not {ticks!r}")
    if isinstance(buffer_size, bool) or buffer_size < 1:
        raise ServomexValidationError(f"buffer_size must be at least 1, not {buffer_size!r}")
    try:
        policy = OverflowPolicy(overflow)
    except ValueError:
        raise ServomexValidationError(
            f"unknown overflow policy {overflow!r}; expected one of "
            f"{', '.join(p.value for p in OverflowPolicy)}"
        ) from None
    if auto_reconnect and reconnect_factory is None:
        raise ServomexConfigurationError(
            "auto_reconnect needs reconnect_factory, e.g. lambda: open_device(port, ...)"
        )
    if source is None and reconnect_factory is None:
        raise ServomexConfigurationError("record() needs a source or a reconnect_factory")
    if source is not None and not callable(getattr(source, "poll_samples", None)):
        raise ServomexConfigurationError(
            f"{type(source).__name__} has no poll_samples(): pass an Analyzer or a ServomexManager"
        )
    wanted = None if names is None else tuple([names] if isinstance(names, str) else names)
    known = source_names(source) if source is not None else ()
    if wanted is not None and known:
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ServomexValidationError(
                f"unknown device name(s) {', '.join(map(repr, unknown))}; the source has "
                f"{', '.join(known)}"
            )
    total = ticks
    if duration is not None:
        by_duration = math.ceil(duration * rate_hz - 1e-9)
        total = by_duration if total is None else min(total, by_duration)
    summary = AcquisitionSummary(started_at=datetime.now(UTC), rate_hz=float(rate_hz))
    recording = Recording(RecordingStream(buffer_size, summary), summary, float(rate_hz))
    producer = _Producer(
        source,
        recording,
        total=total,
        names=wanted,
        timeout=timeout,
        overflow=policy,
        auto_reconnect=auto_reconnect,
        reconnect_factory=reconnect_factory,
        clock=clock or anyio.current_time,
        sleep=sleep or anyio.sleep,
    )
    return _RecordContext(recording, producer)
