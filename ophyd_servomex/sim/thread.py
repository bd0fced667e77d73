"""Run a simulator in its own thread and event loop, for code that lives elsewhere.

A Bluesky RunEngine runs its own loop in its own thread, and a plain script has no loop at
all; neither can host ``async with serve_pty(...)``. :class:`SimulatorThread` starts the
simulator in a background thread (an anyio blocking portal) and exposes its port::

    with SimulatorThread(SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=0.1)) as sim:
        RE(count([ServomexAnalyser(sim.port, protocol=ProtocolKind.AUTO)], num=10))
        print(sim.log.frames_sent)

The analysers, wire log and fault injector are thread-safe, so the calling thread may read
the log, change set-points or inject faults while the simulator serves.

A simulator that was started (or entered) and never stopped must not hang interpreter
exit. Its thread is :func:`anyio.from_thread.start_blocking_portal`'s, a daemon thread, so
the interpreter does not wait for it; but the context manager that
``start_blocking_portal`` returns is a generator, and if it is never left, the interpreter
collects it while finalising, when daemon threads no longer run, and its ``finally`` waits
for ever for the frozen loop to answer ``portal.stop``. So each start registers a
``weakref.finalize`` that, at exit (while daemon threads still run) or when the
:class:`SimulatorThread` is collected, leaves the server (closing the pty or TCP
listener), stops the loop, cancelling what still runs there, and joins the thread.
``ophyd_servomex.sync`` does the same for its facades' loops, but the simulator sits below
``sync`` in the import layers and cannot reuse that helper.
``tests/sim/test_sim_thread_exit.py`` checks that a script that forgets its simulators
exits at once with their ports released and their threads gone.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Literal, Self

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ..codec.errors import ServomexValidationError
from .analyser import SimAnalyser
from .faults import FaultInjector
from .server import SimConfig, SimHandle, serve_pty, serve_tcp
from .wirelog import WireLog

__all__ = ["SimulatorThread"]


class SimulatorThread:
    """A simulator served from its own thread (see the module notes).

    ``link`` is ``"pty"`` (default; ``.port`` is the slave path) or ``"tcp"``
    (``.port`` is ``socket://127.0.0.1:PORT``; ``tcp_port=0`` picks a free one).
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        link: Literal["pty", "tcp"] = "pty",
        tcp_port: int = 0,
    ) -> None:
        if link not in ("pty", "tcp"):
            raise ServomexValidationError(f"link must be 'pty' or 'tcp', not {link!r}")
        self.config = config or SimConfig()
        self.link = link
        self.tcp_port = tcp_port
        self._portal: BlockingPortal | None = None
        self._handle: SimHandle | None = None
        self._finalizer: weakref.finalize[..., SimulatorThread] | None = None

    def start(self) -> SimHandle:
        """Start the thread and the simulator; returns its handle."""
        if self._handle is not None:
            return self._handle
        portal_cm = start_blocking_portal()
        portal = portal_cm.__enter__()
        try:
            if self.link == "tcp":
                serve_cm = portal.wrap_async_context_manager(
                    serve_tcp(self.config, port=self.tcp_port)
                )
            else:
                serve_cm = portal.wrap_async_context_manager(serve_pty(self.config))
            handle = serve_cm.__enter__()
            loop_thread = portal.call(_named_current_thread, f"servomex-sim {handle.port}")
        except BaseException as exc:
            portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        # Holds the server, portal and thread (never self): run at exit or on collection.
        self._finalizer = weakref.finalize(
            self, _shut, serve_cm, portal, portal_cm, loop_thread, cancel=True
        )
        self._portal, self._handle = portal, handle
        return handle

    def stop(self) -> None:
        """Stop the simulator and its thread (idempotent).

        It leaves the server, then waits for what still runs in the loop and joins the
        thread. Called from the simulator's own thread (e.g. ``sim.portal.call(sim.stop)``),
        it hands that work to a short-lived thread and returns: a thread can neither wait
        for its own loop nor join itself.
        """
        finalizer = self._finalizer
        self._finalizer = self._portal = self._handle = None
        detached = finalizer.detach() if finalizer is not None else None
        if detached is not None:  # None: never started, stopped, or stopped at exit
            _, _, args, _ = detached
            _shut(*args, cancel=False)

    @property
    def handle(self) -> SimHandle:
        """The running simulator's handle."""
        if self._handle is None:
            raise ServomexValidationError("the simulator thread is not running")
        return self._handle

    @property
    def portal(self) -> BlockingPortal:
        """The portal into the simulator's event loop (``portal.call(...)``)."""
        if self._portal is None:
            raise ServomexValidationError("the simulator thread is not running")
        return self._portal

    @property
    def port(self) -> str:
        """The port string a client opens."""
        return self.handle.port

    @property
    def analysers(self) -> tuple[SimAnalyser, ...]:
        """The simulated analysers."""
        return self.handle.analysers

    @property
    def analyser(self) -> SimAnalyser:
        """The first (often the only) analyser."""
        return self.handle.analyser

    @property
    def log(self) -> WireLog:
        """The wire log."""
        return self.handle.log

    @property
    def faults(self) -> FaultInjector:
        """The fault injector."""
        return self.handle.faults

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _shut(
    serve_cm: AbstractContextManager[SimHandle],
    portal: BlockingPortal,
    portal_cm: AbstractContextManager[BlockingPortal],
    loop_thread: threading.Thread,
    *,
    cancel: bool,
) -> None:
    """Leave the server, stop the portal's loop (cancelling what still runs there if
    ``cancel``) and join its thread; from that thread itself, do so in another thread."""
    if threading.current_thread() is loop_thread:
        threading.Thread(
            target=_shut,
            args=(serve_cm, portal, portal_cm, loop_thread),
            kwargs={"cancel": cancel},
            name=f"{loop_thread.name} stop",
            daemon=True,
        ).start()
        return
    try:
        serve_cm.__exit__(None, None, None)
    finally:
        if cancel:
            with contextlib.suppress(RuntimeError):  # already stopped
                portal.call(portal.stop, True)
        portal_cm.__exit__(None, None, None)


def _named_current_thread(name: str) -> threading.Thread:
    """Name the thread this runs in (the simulator's loop) and return it."""
    thread = threading.current_thread()
    thread.name = name
    return thread
