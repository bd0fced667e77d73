"""The owner-task pattern shared by the analyser's and the bus's connectors.

``Device.connect`` runs ``connect_real`` in a short-lived task, but the driver's task
groups must be entered and left in one task. So each connector starts a long-lived *owner
task* that opens the session (or manager), resolves a ``ready`` future, and holds the
resource until its ``stop`` event is set. :func:`start_owner` starts one and waits for it
to be ready; :class:`OwnerHandle` stops it; :func:`fail_ready` reports an owner's failure
to the waiting ``connect_real``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..codec.errors import ErrorContext, ServomexTimeoutError

__all__ = ["OwnerHandle", "fail_ready", "start_owner"]

STOP_GRACE = 5.0
"""Seconds an owner task gets to close its resource before it is cancelled."""


@dataclass(eq=False)
class OwnerHandle:
    """A running owner task and the event that asks it to end."""

    task: asyncio.Task[None]
    stop: asyncio.Event

    async def close(self) -> None:
        """Ask the owner to end, give it :data:`STOP_GRACE` s, then cancel it; never raises
        the owner's own error (the owner records it)."""
        self.stop.set()
        if not self.task.done():
            await asyncio.wait({self.task}, timeout=STOP_GRACE)
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


async def start_owner[T](
    body: Callable[[asyncio.Future[T], asyncio.Event], Coroutine[Any, Any, None]],
    *,
    name: str,
    timeout: float,  # noqa: ASYNC109 (ophyd-async passes the connect timeout)
    what: str,
    context: ErrorContext,
) -> tuple[OwnerHandle, T]:
    """Start ``body(ready, stop)`` as an owner task and wait until it resolves ``ready``.

    The owner's own failure (``ready`` set to an exception) is raised as it is, including a
    driver's :class:`ServomexTimeoutError`; only when ``timeout`` itself runs out is a new
    :class:`ServomexTimeoutError` ("``what`` took longer than …") raised. On any failure the
    owner is stopped before this returns.
    """
    ready: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    handle = OwnerHandle(asyncio.create_task(body(ready, stop), name=name), stop)
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            value = await asyncio.shield(ready)
    except TimeoutError:
        await handle.close()
        if not deadline.expired():  # the driver's own timeout: keep its message
            raise
        raise ServomexTimeoutError(
            f"{what} took longer than {timeout} s", context=context
        ) from None
    except BaseException:
        await handle.close()
        raise
    return handle, value


def fail_ready(ready: asyncio.Future[Any], exc: BaseException) -> bool:
    """Report ``exc`` to whoever waits on ``ready`` (cancel it on cancellation).

    Returns False when ``ready`` was already resolved (the failure came later)."""
    if ready.done():
        return False
    if isinstance(exc, asyncio.CancelledError):
        ready.cancel()
    else:
        ready.set_exception(exc)
    return True
