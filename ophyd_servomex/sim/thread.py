"""Run a simulator in its own thread and event loop, for code that lives elsewhere.

A Bluesky RunEngine runs its own loop in its own thread, and a plain script has no loop at
all; neither can host ``async with serve_pty(...)``. :class:`SimulatorThread` starts the
simulator in a background thread (an anyio blocking portal) and exposes its port::

    with SimulatorThread(SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=0.1)) as sim:
        RE(count([ServomexAnalyser(sim.port, protocol=ProtocolKind.AUTO)], num=10))
        print(sim.log.frames_sent)

The analysers, wire log and fault injector are thread-safe, so the calling thread may read
the log, change set-points or inject faults while the simulator serves.

A simulator that was started (or entered) and never stopped does not hang interpreter
exit: its thread is a :class:`ophyd_servomex._loop_thread.LoopThread`, which leaves the
server (closing the pty or TCP listener) and stops its loop at exit.
``tests/sim/test_sim_thread_exit.py`` checks that a script that forgets its simulators
exits at once with their ports released and their threads gone.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal, Self

from anyio.from_thread import BlockingPortal

from .._loop_thread import LoopThread
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
        self._loop: LoopThread | None = None
        self._handle: SimHandle | None = None

    def start(self) -> SimHandle:
        """Start the thread and the simulator; returns its handle."""
        if self._handle is not None:
            return self._handle
        loop = LoopThread("servomex-sim")
        try:
            if self.link == "tcp":
                handle = loop.enter(serve_tcp(self.config, port=self.tcp_port))
            else:
                handle = loop.enter(serve_pty(self.config))
        except BaseException:
            loop.stop()
            raise
        loop.thread.name = f"servomex-sim {handle.port}"
        self._loop, self._handle = loop, handle
        return handle

    def stop(self) -> None:
        """Stop the simulator and its thread (idempotent).

        It leaves the server, then waits for what still runs in the loop and joins the
        thread. Called from the simulator's own thread (e.g. ``sim.portal.call(sim.stop)``),
        it hands that work to a short-lived thread and returns: a thread can neither wait
        for its own loop nor join itself.
        """
        loop, self._loop, self._handle = self._loop, None, None
        if loop is not None:
            loop.stop()

    @property
    def handle(self) -> SimHandle:
        """The running simulator's handle."""
        if self._handle is None:
            raise ServomexValidationError("the simulator thread is not running")
        return self._handle

    @property
    def portal(self) -> BlockingPortal:
        """The portal into the simulator's event loop (``portal.call(...)``)."""
        if self._loop is None:
            raise ServomexValidationError("the simulator thread is not running")
        return self._loop.portal

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
