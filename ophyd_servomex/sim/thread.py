"""Run a simulator in its own thread and event loop, for code that lives elsewhere.

A Bluesky RunEngine runs its own loop in its own thread, and a plain script has no loop at
all; neither can host ``async with serve_pty(...)``. :class:`SimulatorThread` starts the
simulator in a background thread (an anyio blocking portal) and exposes its port::

    with SimulatorThread(SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=0.1)) as sim:
        RE(count([ServomexAnalyser(sim.port, protocol=ProtocolKind.AUTO)], num=10))
        print(sim.log.frames_sent)

The analysers, wire log and fault injector are thread-safe, so the calling thread may read
the log, change set-points or inject faults while the simulator serves.
"""

from __future__ import annotations

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
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._serve_cm: AbstractContextManager[SimHandle] | None = None
        self._handle: SimHandle | None = None

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
        except BaseException as exc:
            portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._portal_cm, self._portal, self._serve_cm = portal_cm, portal, serve_cm
        self._handle = handle
        return handle

    def stop(self) -> None:
        """Stop the simulator and its thread (idempotent)."""
        serve_cm, portal_cm = self._serve_cm, self._portal_cm
        self._serve_cm = self._portal_cm = self._portal = None
        self._handle = None
        try:
            if serve_cm is not None:
                serve_cm.__exit__(None, None, None)
        finally:
            if portal_cm is not None:
                portal_cm.__exit__(None, None, None)

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
