"""The blocking facade's plumbing: an event loop in a daemon thread behind an anyio
blocking portal (:class:`_PortalThread`), the refusal of blocking calls from a thread that
runs an event loop (:func:`_refuse_in_loop`), and the closer that leaves an async context
manager and stops its thread (:func:`_closer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal

from ..codec.errors import ServomexConfigurationError


def _refuse_in_loop(what: str) -> None:
    """Refuse a blocking call from a thread whose event loop it would freeze."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ServomexConfigurationError(
        f"{what} blocks, and this thread runs an event loop that it would freeze: use the "
        "async API here ('async with open_device(...)' or 'async with ServomexManager()')"
    )


class _PortalThread:
    """An event loop in a daemon thread, reached through a blocking portal."""

    def __init__(self, name: str) -> None:
        ready: Future[BlockingPortal] = Future()
        self._thread = threading.Thread(target=self._main, args=(ready,), name=name, daemon=True)
        self._thread.start()
        self.portal = ready.result()
        self._stopped = False

    @staticmethod
    def _main(ready: Future[BlockingPortal]) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve)
        except BaseException as exc:  # pragma: no cover - the loop failed to start
            if not ready.done():
                ready.set_exception(exc)

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs there) and join the thread."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(RuntimeError):  # already stopped
            self.portal.call(self.portal.stop, True)
        if threading.current_thread() is not self._thread:
            self._thread.join()


def _closer(cm: AbstractContextManager[Any], thread: _PortalThread) -> Callable[[], None]:
    def close() -> None:
        try:
            cm.__exit__(None, None, None)
        finally:
            thread.stop()

    return close
