"""An event loop in a daemon thread, behind anyio's blocking portal, that never hangs exit.

Both the blocking facade (``ophyd_servomex.sync``) and the simulator thread
(``ophyd_servomex.sim.thread``) run an anyio event loop in a background thread for callers
that have none (a script, IPython) or another one (the RunEngine's). This module, below
both in the import layers, is that thread.

The thread is :func:`anyio.from_thread.start_blocking_portal`'s, a daemon thread (since
anyio 4.5; this package needs 4.6), so the interpreter does not wait for it. That alone
does not keep a forgotten one from hanging exit: the context manager that
``start_blocking_portal`` returns is a generator, and if it is never left, the interpreter
collects it while finalising, when daemon threads no longer run, and its ``finally``
waits for ever for the loop to answer ``portal.stop``. So each :class:`LoopThread` has a
``weakref.finalize`` that, at exit (while daemon threads still run) or when the object is
collected, leaves what was entered in the loop (:meth:`LoopThread.enter`, newest first),
stops the loop, cancelling what still runs there, and joins the thread. Finalisers made
later run first at exit, so a facade's own finaliser closes its analyser before its
thread stops. ``tests/sync/test_sync_portal.py`` and ``tests/sim/test_sim_thread_exit.py``
check that scripts which forget to close facades and simulators exit at once.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

__all__ = ["LoopThread"]


class LoopThread:
    """An event loop in a daemon thread named ``name``, reached through :attr:`portal`.

    Stopped by :meth:`stop`, or at interpreter exit (or collection) by a
    ``weakref.finalize`` when nobody stopped it (see the module docstring).
    """

    def __init__(self, name: str) -> None:
        context = start_blocking_portal()
        self.portal: BlockingPortal = context.__enter__()
        """The portal into the loop (``portal.call(...)``)."""
        self._held: list[AbstractContextManager[Any]] = []
        self.thread: threading.Thread = self.portal.call(_named_current_thread, name)
        """The thread that runs the event loop."""
        # Holds the portal, its context, what was entered and the thread (never self).
        self._finalizer = weakref.finalize(
            self, _shut, self.portal, context, self._held, self.thread
        )

    @property
    def running(self) -> bool:
        """False once stopped (by :meth:`stop` or at exit)."""
        return self._finalizer.alive

    def enter[T](self, cm: AbstractAsyncContextManager[T]) -> T:
        """Enter ``cm`` in the loop's thread; it is left (newest first) when the thread stops."""
        wrapped = self.portal.wrap_async_context_manager(cm)
        value = wrapped.__enter__()
        self._held.append(wrapped)
        return value

    def stop(self) -> None:
        """Leave what was entered, stop the loop (cancelling what still runs there) and join
        the thread; idempotent.

        Called from the loop's own thread (a finaliser or a callback that ran there), it
        hands the work to a short-lived thread and returns: a thread can neither wait for
        its own loop nor join itself.
        """
        self._finalizer()


def _shut(
    portal: BlockingPortal,
    context: AbstractContextManager[BlockingPortal],
    held: list[AbstractContextManager[Any]],
    loop_thread: threading.Thread,
) -> None:
    """Leave ``held`` (newest first), stop the portal's loop and join its thread; from
    that thread itself, do so in another thread."""
    if threading.current_thread() is loop_thread:
        threading.Thread(
            target=_shut,
            args=(portal, context, held, loop_thread),
            name=f"{loop_thread.name} stop",
            daemon=True,
        ).start()
        return
    try:
        while held:
            held.pop().__exit__(None, None, None)
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped
            portal.call(portal.stop, True)
        context.__exit__(None, None, None)
        # The loop has ended; wait for its thread to end too, so a stop() that returned
        # leaves no thread behind (the context's exit only waits for the loop).
        loop_thread.join()


def _named_current_thread(name: str) -> threading.Thread:
    """Name the thread this runs in and return it."""
    thread = threading.current_thread()
    thread.name = name
    return thread
