"""One long-lived background task owned by an async context manager.

The task group is entered in ``__aenter__`` and left in ``__aexit__`` of the owner, so in
the same task (anyio requires it); the task signals readiness through ``task_status``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

__all__ = ["BackgroundTask"]


class BackgroundTask:
    """Start ``target(task_status=…)`` and wait until it reports ready; cancel it on stop."""

    def __init__(self, target: Callable[..., Coroutine[Any, Any, object]]) -> None:
        self._target = target
        self._task_group: TaskGroup | None = None

    async def start(self) -> None:
        """Enter the task group and start the task; on failure leave the group and raise."""
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        try:
            await self._task_group.start(self._target)
        except BaseException as exc:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    async def stop(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Cancel the task and leave the task group (pass the owner's ``__aexit__`` args)."""
        assert self._task_group is not None, "stop() before start()"
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc, tb)
