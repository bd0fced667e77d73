"""The blocking facade's plumbing: an event loop in a thread behind anyio's blocking portal
(:class:`_PortalThread`), the refusal of blocking calls from a thread that runs an event
loop (:func:`_refuse_in_loop`), and the closer that leaves an async context manager and
stops its thread (:func:`_closer`).

The thread is :func:`anyio.from_thread.start_blocking_portal`'s, a daemon thread (since
anyio 4.5; this package needs 4.6), so the interpreter does not wait for it. That alone
does not keep a forgotten facade from hanging exit: the context manager that
``start_blocking_portal`` returns is a generator, and if it is never left, the interpreter
collects it while finalising, when daemon threads no longer run, and its ``finally``
waits for ever for the loop to answer ``portal.stop``. So each :class:`_PortalThread` has
a ``weakref.finalize`` that stops the loop and leaves that context at exit, while daemon
threads still run; the facades' own finalisers (``SyncAnalyzer``, ``SyncManager``), made
later and so run first, close the analyser through the portal before that.
``tests/sync/test_sync_portal.py`` checks that a script that forgets to close them exits
at once with its analysers closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

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
    """An event loop in a daemon thread named ``name``, reached through :attr:`portal`.

    Stopped by :meth:`stop`, or at interpreter exit by a ``weakref.finalize`` when nobody
    stopped it (see the module docstring for why that matters).
    """

    def __init__(self, name: str) -> None:
        context = start_blocking_portal()
        self.portal: BlockingPortal = context.__enter__()
        self._finalizer = weakref.finalize(self, _shut, self.portal, context)
        self.thread: threading.Thread = self.portal.call(_named_current_thread, name)
        """The thread that runs the event loop."""

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs there) and join the thread.

        Called from the loop's own thread (a finaliser that ran there), it hands the work to
        a short-lived thread and returns: a thread can neither wait for its own loop nor
        join itself.
        """
        if not self._finalizer.alive:
            return
        if threading.current_thread() is self.thread:
            name = f"{self.thread.name} stop"
            threading.Thread(target=self._finalizer, name=name, daemon=True).start()
            return
        self._finalizer()


def _shut(portal: BlockingPortal, context: AbstractContextManager[BlockingPortal]) -> None:
    """Stop the portal's loop, cancelling what still runs there, and join its thread."""
    with contextlib.suppress(RuntimeError):  # already stopped
        portal.call(portal.stop, True)
    context.__exit__(None, None, None)


def _named_current_thread(name: str) -> threading.Thread:
    """Name the thread this runs in (the portal's: ``servomex-sync …``) and return it."""
    thread = threading.current_thread()
    thread.name = name
    return thread


def _closer(cm: AbstractContextManager[Any], thread: _PortalThread) -> Callable[[], None]:
    def close() -> None:
        try:
            cm.__exit__(None, None, None)
        finally:
            thread.stop()

    return close
