"""One I/O owner per port: a long-lived task that runs every transaction on a transport.

ophyd-async applies timeouts with ``asyncio.wait_for``; its cancellation passes through
anyio shields. If the caller's own task did the port I/O, a caller cut off mid-transaction
would leave half a request on the wire while the next transaction starts, and the two would
interleave. Here the caller only *submits* a job; the job runs to completion inside the
owner task, and a caller that is cancelled merely abandons its reply. The next job starts
on a clean line.

The owner's task group is entered and left in the task that runs ``async with`` (see
docs/architecture.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..codec.errors import ErrorContext, ServomexConnectionError
from ._background import BackgroundTask

__all__ = ["PortOwner"]

_LOGGER = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Job:
    """One submitted job and what became of it."""

    fn: Callable[[], Awaitable[Any]]
    done: anyio.Event = field(default_factory=anyio.Event)
    abandoned: bool = False
    started: bool = False
    result: Any = None
    error: BaseException | None = None


class PortOwner:
    """The one task allowed to do I/O on a port; jobs run inside it, one at a time.

    Use it as an async context manager, entered and left in the same task::

        async with PortOwner(port="/dev/ttyUSB0") as owner:
            reply = await owner.run(lambda: bus_read(...))

    ``run(job)`` queues ``job`` (an async callable taking no arguments) and waits for its
    result. Jobs run strictly in submission order, each to completion, inside the owner's
    task: a caller that is cancelled (``asyncio.wait_for``, ``anyio.move_on_after``) while
    its job runs does not cut the job short; it only stops waiting for the reply. A job
    whose caller gave up before it started is skipped.

    An exception raised by a job is re-raised in its caller; the owner carries on. After
    the owner has closed, ``run`` raises :class:`ServomexConnectionError`.
    """

    def __init__(self, *, port: str = "", protocol: str | None = None) -> None:
        self._port = port
        self._protocol = protocol
        self._send: MemoryObjectSendStream[_Job] | None = None
        self._receive: MemoryObjectReceiveStream[_Job] | None = None
        self._background = BackgroundTask(self._serve)
        self._pending: set[_Job] = set()
        self._closed = False
        self._entered = False
        self.jobs_run = 0
        """Jobs that ran (to completion or to an error)."""
        self.jobs_abandoned = 0
        """Jobs whose caller stopped waiting (before or while they ran)."""
        self.jobs_skipped = 0
        """Abandoned jobs that never started, because their caller left first."""

    @property
    def port(self) -> str:
        """The port this owner serves (for error messages)."""
        return self._port

    @property
    def closed(self) -> bool:
        """True once the owner has stopped; ``run`` then refuses new jobs."""
        return self._closed

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a PortOwner can be entered only once")
        self._entered = True
        self._send, self._receive = anyio.create_memory_object_stream[_Job](math.inf)
        await self._background.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._closed = True
        assert self._send is not None
        self._send.close()
        try:
            return await self._background.stop(exc_type, exc, tb)
        finally:
            self._fail_pending()

    def _fail_pending(self) -> None:
        """Wake every caller still waiting: the owner is gone, their jobs never finish."""
        for job in tuple(self._pending):
            if not job.done.is_set():
                job.error = self._closed_error()
                job.done.set()

    def _closed_error(self) -> ServomexConnectionError:
        return ServomexConnectionError(
            "the port's I/O owner has closed",
            context=ErrorContext(port=self._port or None, protocol=self._protocol),
        )

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._receive is not None
        task_status.started()
        async with self._receive:
            async for job in self._receive:
                if job.abandoned:
                    self.jobs_skipped += 1
                    job.done.set()
                    continue
                job.started = True
                try:
                    job.result = await job.fn()
                except Exception as exc:  # re-raised in the caller's task
                    job.error = exc
                except BaseException:  # the owner itself is being cancelled (closing)
                    job.error = self._closed_error()
                    raise
                finally:
                    self.jobs_run += 1
                    job.done.set()

    async def run[T](self, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job`` inside the owner task and return its result (or raise its error).

        Cancelling the caller abandons the reply only: a job already running completes.
        """
        if self._closed or self._send is None:
            raise self._closed_error()
        entry = _Job(job)
        self._pending.add(entry)
        try:
            self._send.send_nowait(entry)
            await entry.done.wait()
        except BaseException:
            if not entry.done.is_set():
                entry.abandoned = True
                self.jobs_abandoned += 1
            raise
        finally:
            self._pending.discard(entry)
        if entry.error is not None:
            raise entry.error
        result: T = entry.result
        return result
