"""Serve simulated analysers over a pseudo-terminal, a TCP port or an in-memory link.

::

    async with serve_pty(SimConfig(mode=ProtocolKind.MODBUS_RTU)) as sim:
        analyser = await open_device(sim.port, address=30)   # sim.port is "/dev/pts/N"

Each ``serve_*`` is an async context manager yielding a :class:`SimHandle`: ``.port`` (what
a client passes to ``open_transport``), ``.analysers``, ``.log`` (the wire log) and
``.faults`` (fault injection). :func:`serve_memory` also gives ``.transport``, the client's
end of the in-memory link.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from ..codec.errors import ServomexValidationError
from ..codec.models import ProtocolKind, SerialSettings
from ..transport import Transport, memory_transport_pair, open_pty_pair
from .analyser import SimAnalyser
from .broadcaster import ContinuousBroadcaster
from .channels import SimChannel, bench_channels
from .faults import FaultInjector, Framing
from .modbus import ModbusSlave
from .wirelog import DEFAULT_LOG_SIZE, WireLog

__all__ = ["MemorySimHandle", "SimConfig", "SimHandle", "serve_memory", "serve_pty", "serve_tcp"]

_FRAMING = {
    ProtocolKind.CONTINUOUS_ASCII: Framing.CONTINUOUS,
    ProtocolKind.MODBUS_RTU: Framing.RTU,
    ProtocolKind.MODBUS_ASCII: Framing.ASCII,
}


@dataclass(slots=True)
class SimConfig:
    """What to simulate and how.

    ``mode`` is the analyser's front-panel mode. ``analysers`` are ready-made
    :class:`SimAnalyser` objects; when empty, one is built per entry of ``addresses`` from
    ``channels`` (default :func:`bench_channels`, noisy unless ``noisy=False``) with
    ``seed``, ``time_scale`` and ``flush_time``. Continuous mode takes exactly one analyser
    (it is the only talker on its line). ``period`` is the continuous frame period in
    seconds (fractions allowed, 0 = off). ``realistic_timing`` turns on the bench unit's
    timing (see :class:`ModbusSlave` and :class:`ContinuousBroadcaster`) at ``settings``'
    baud rate. ``log_size`` bounds the wire log.
    """

    mode: ProtocolKind = ProtocolKind.MODBUS_RTU
    analysers: Sequence[SimAnalyser] = ()
    addresses: Sequence[int] = (30,)
    channels: Sequence[SimChannel] | None = None
    noisy: bool = True
    seed: int | None = None
    time_scale: float = 1.0
    flush_time: float = 60.0
    period: float = 2.0
    realistic_timing: bool = False
    settings: SerialSettings = field(default_factory=lambda: SerialSettings(""))
    line_ending: bytes = b"\r\n"
    log_size: int = DEFAULT_LOG_SIZE

    def build_analysers(self) -> tuple[SimAnalyser, ...]:
        """The analysers to serve (``analysers``, or new ones at ``addresses``)."""
        if self.mode not in _FRAMING:
            raise ServomexValidationError(
                f"the simulator runs in one concrete mode, not {self.mode.value!r}"
            )
        if self.analysers:
            analysers = tuple(self.analysers)
        else:
            analysers = tuple(
                SimAnalyser(
                    self.channels
                    if self.channels is not None
                    else bench_channels(noisy=self.noisy),
                    address=address,
                    seed=None if self.seed is None else self.seed + index,
                    time_scale=self.time_scale,
                    flush_time=self.flush_time,
                )
                for index, address in enumerate(self.addresses)
            )
        if not analysers:
            raise ServomexValidationError("the simulator needs at least one analyser")
        if self.mode is ProtocolKind.CONTINUOUS_ASCII and len(analysers) != 1:
            raise ServomexValidationError(
                f"continuous mode has one talker per line, not {len(analysers)} analysers"
            )
        return analysers


class SimHandle:
    """A running simulator: where to connect, and its analysers, wire log and faults."""

    def __init__(
        self,
        port: str,
        config: SimConfig,
        analysers: tuple[SimAnalyser, ...],
        log: WireLog,
        faults: FaultInjector,
        transport: Transport | None = None,
    ) -> None:
        self.port = port
        """The port string a client passes to ``open_transport`` (pty path, ``socket://…``)."""
        self.config = config
        self.analysers = analysers
        self.log = log
        self.faults = faults
        self.transport = transport
        """The client's end of the link (:func:`serve_memory` only)."""

    @property
    def analyser(self) -> SimAnalyser:
        """The first (often the only) analyser."""
        return self.analysers[0]

    def analyser_at(self, address: int) -> SimAnalyser:
        """The analyser at a Modbus address."""
        for analyser in self.analysers:
            if analyser.address == address:
                return analyser
        raise ServomexValidationError(f"no simulated analyser at address {address}")

    def __repr__(self) -> str:
        addresses = ",".join(str(a.address) for a in self.analysers)
        return f"SimHandle({self.port!r}, {self.config.mode.value}, addresses={addresses})"


class MemorySimHandle(SimHandle):
    """The handle :func:`serve_memory` yields: ``transport`` is the client's end."""

    def __init__(
        self,
        port: str,
        config: SimConfig,
        analysers: tuple[SimAnalyser, ...],
        log: WireLog,
        faults: FaultInjector,
        transport: Transport,
    ) -> None:
        super().__init__(port, config, analysers, log, faults, transport)
        self.transport: Transport = transport
        """The client's end of the in-memory link."""


class _Engine:
    """The mode's server (Modbus slave or broadcaster) with its log and faults."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.analysers = config.build_analysers()
        framing = _FRAMING[config.mode]
        self.log = WireLog(config.log_size)
        self.faults = FaultInjector(framing)
        self.server: ModbusSlave | ContinuousBroadcaster
        if framing is Framing.CONTINUOUS:
            self.server = ContinuousBroadcaster(
                self.analysers[0],
                period=config.period,
                line_ending=config.line_ending,
                realistic_timing=config.realistic_timing,
                settings=config.settings,
                log=self.log,
                faults=self.faults,
            )
        else:
            self.server = ModbusSlave(
                self.analysers,
                framing,
                realistic_timing=config.realistic_timing,
                settings=config.settings,
                log=self.log,
                faults=self.faults,
                seed=config.seed,
            )

    def handle(self, port: str, transport: Transport | None = None) -> SimHandle:
        return SimHandle(port, self.config, self.analysers, self.log, self.faults, transport)


@asynccontextmanager
async def _serving[H](
    serve: Callable[[], Coroutine[Any, Any, object]],
    handle: H,
    *closers: Callable[[], Awaitable[object]],
) -> AsyncIterator[H]:
    """Run ``serve`` in the background while the caller's block runs, then stop it.

    The block's own exception comes out as itself: the task group would otherwise wrap it
    in an ExceptionGroup, and a close awaited inside the cancelled scope would replace it
    with a cancellation that the group then swallows. Closers run shielded, after the
    server task has ended.
    """
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            try:
                yield handle
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        with anyio.CancelScope(shield=True):
            for close in closers:
                await close()


@asynccontextmanager
async def serve_memory(config: SimConfig | None = None) -> AsyncIterator[MemorySimHandle]:
    """Serve over an in-memory link; ``handle.transport`` is the client's end.

    The link carries ``config.settings`` so a client such as anymodbus times frames at the
    configured baud rate. A ``DISCONNECT`` fault closes the simulator's end for good.
    """
    engine = _Engine(config or SimConfig())
    client, server_end = memory_transport_pair(port="memory://sim", settings=engine.config.settings)
    handle = MemorySimHandle(
        client.port, engine.config, engine.analysers, engine.log, engine.faults, client
    )
    async with _serving(
        partial(engine.server.serve, server_end), handle, server_end.aclose, client.aclose
    ) as served:
        yield served


@asynccontextmanager
async def serve_pty(config: SimConfig | None = None) -> AsyncIterator[SimHandle]:
    """Serve on a pseudo-terminal; ``handle.port`` is the slave path (``/dev/pts/N``).

    Clients may come and go (the simulator keeps the master). A ``DISCONNECT`` fault
    closes the master: the client sees a lost link and the pty is gone.
    """
    engine = _Engine(config or SimConfig())
    pair = open_pty_pair()
    serve = partial(engine.server.serve, pair.master, persistent=True)
    async with _serving(serve, engine.handle(pair.path), pair.aclose) as served:
        yield served


@asynccontextmanager
async def serve_tcp(
    config: SimConfig | None = None, *, port: int = 0, host: str = "127.0.0.1"
) -> AsyncIterator[SimHandle]:
    """Serve on a TCP port like a serial device server; ``handle.port`` is
    ``socket://HOST:PORT`` (``port=0`` picks a free port).

    One client at a time: a connection made while another is served is closed at once.
    A ``DISCONNECT`` fault closes the client's connection; the next client is served.
    """
    engine = _Engine(config or SimConfig())
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    busy = False

    async def handle_client(stream: anyio.abc.SocketStream) -> None:
        nonlocal busy
        async with stream:
            if busy:
                return
            busy = True
            try:
                await engine.server.serve(stream)
            finally:
                busy = False

    bound = listener.extra(SocketAttribute.local_port)
    handle = engine.handle(f"socket://{host}:{bound}")
    async with _serving(partial(listener.serve, handle_client), handle, listener.aclose) as served:
        yield served
