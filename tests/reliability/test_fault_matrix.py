"""The fault matrix: every fault the link, the analyser or the catalog can throw at a client,
each with its named outcome, and proof that no good frame was lost.

One table, one test. Each row names the fault, the mode, how it is injected and the outcome
expected (the error raised or reported, the counters, the facts). Every row also checks the
frames: each good frame the simulator's wire log says it sent in the window the client
listened to, before and after the fault, reached the client exactly (same line and values
for continuous mode; same readings and status for a Modbus sweep, decoded from the logged
reply bytes by the codec, not by the driver).

The simulator serves a real pseudo-terminal (a memory link for the mid-frame join); the
continuous analyser broadcasts 20 frames a second with a very noisy I1 so that no two
frames are alike; the Modbus analyser is the noisy bench unit, so every sweep differs too.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from reliabilityhelpers import (
    ADDRESS,
    Comparable,
    Observed,
    Outcome,
    comparable,
    good_broadcasts,
    good_sweeps,
    window,
)

from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexConnectionError,
    ServomexError,
    ServomexFrameError,
    ServomexIllegalDataAddressError,
    ServomexIllegalFunctionError,
    ServomexTimeoutError,
)
from ophyd_servomex.codec.modbus_frames import (
    build_exception,
    decode_ascii,
    decode_rtu,
    encode_ascii,
    encode_rtu,
)
from ophyd_servomex.codec.models import ChannelId, Frame, ProtocolKind
from ophyd_servomex.driver import Analyzer, Subscription
from ophyd_servomex.sim import (
    Delivery,
    Fault,
    FaultInjector,
    Framing,
    ModbusSlave,
    SimChannel,
    SimConfig,
    SimHandle,
    WireKind,
    WireLog,
    bench_channels,
    serve_memory,
    serve_pty,
)
from ophyd_servomex.transport import LinkLostError, NonClosing, Transport, open_pty_pair

# the catalog tests' tiled-server runner (a real ``tiled serve`` process on loopback)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "catalog"))
from catalog_server_helpers import API_KEY, TiledServer

CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII
RTU = ProtocolKind.MODBUS_RTU
ASCII = ProtocolKind.MODBUS_ASCII
PERIOD = 0.05
"""Continuous frame period: 20 frames a second."""
FRAMES_BEFORE = 3
FRAMES_AFTER = 4
POLLS_BEFORE = 2
POLLS_AFTER = 2
FAST_MODBUS: dict[str, Any] = {"timeout": 0.2, "inter_frame_idle": 0.005, "identify": False}
SCENARIO_LIMIT = 30.0
"""No scenario may hang: each is cut off after this many seconds."""

# --- the analysers ------------------------------------------------------------------------


def continuous_config(**changes: Any) -> SimConfig:
    """The bench unit broadcasting 20 frames/s, I1 so noisy that no two frames match."""
    channels = (
        SimChannel(ChannelId.I1, "Oxygen", "%", 20.378, noise=2.0),
        *bench_channels(noisy=False)[1:],
    )
    options: dict[str, Any] = {
        "mode": CONTINUOUS,
        "channels": channels,
        "seed": 7,
        "period": PERIOD,
    }
    return SimConfig(**(options | changes))


def modbus_config(mode: ProtocolKind, **changes: Any) -> SimConfig:
    """The noisy bench unit at address 30, zero latency unless told otherwise."""
    channels = (
        SimChannel(ChannelId.I1, "Oxygen", "%", 20.378, noise=2.0),
        *bench_channels(noisy=True)[1:],
    )
    options: dict[str, Any] = {"mode": mode, "channels": channels, "seed": 11}
    return SimConfig(**(options | changes))


class RefusingFaults(FaultInjector):
    """The simulator's faults plus the one it lacks: answer the next reply's request with a
    Modbus exception (``refuse_next(code)``), like a unit that lacks a function or a range."""

    def __init__(self, framing: Framing) -> None:
        super().__init__(framing)
        self._refusals: list[int] = []

    def refuse_next(self, code: int) -> None:
        """Replace the next reply with exception ``code`` for its function."""
        self._refusals.append(code)

    def deliver(self, frame: bytes, address: int | None = None) -> Delivery:
        if not self._refusals:
            return super().deliver(frame, address)
        code = self._refusals.pop(0)
        if self.framing is Framing.RTU:
            slave, pdu = decode_rtu(frame)
            refusal = encode_rtu(slave, build_exception(pdu[0], code))
        else:
            slave, pdu = decode_ascii(frame)
            refusal = encode_ascii(slave, build_exception(pdu[0], code))
        return Delivery(refusal, note=f"refused: exception {code:02d}")


@asynccontextmanager
async def serve_refusing(config: SimConfig) -> AsyncIterator[SimHandle]:
    """The simulator's Modbus slave on a pty, with :class:`RefusingFaults` as its faults."""
    analysers = config.build_analysers()
    framing = Framing.RTU if config.mode is RTU else Framing.ASCII
    log, faults = WireLog(), RefusingFaults(framing)
    slave = ModbusSlave(analysers, framing, log=log, faults=faults, seed=config.seed)
    async with open_pty_pair() as pair, anyio.create_task_group() as tg:
        tg.start_soon(partial(slave.serve, pair.master, persistent=True))
        yield SimHandle(pair.path, config, analysers, log, faults)
        tg.cancel_scope.cancel()


class JoinedLate(NonClosing):
    """A link the client joined ``skip`` bytes into the broadcast: it never saw them."""

    def __init__(self, inner: Transport, skip: int) -> None:
        super().__init__(inner)
        self._skip = skip

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            data = await super().receive(max_bytes)
            if self._skip >= len(data):
                self._skip -= len(data)
                continue
            data, self._skip = data[self._skip :], 0
            return data


# --- collecting what the client received -----------------------------------------------------


async def drain(subscription: Subscription) -> tuple[list[Frame], list[ServomexError], bool]:
    """Everything left in a subscription whose hub has closed: frames, errors, and whether
    it ended with the link lost."""
    frames: list[Frame] = []
    errors: list[ServomexError] = []
    with anyio.fail_after(5):
        while True:
            try:
                item = await subscription.next_item()
            except anyio.EndOfStream:
                return frames, errors, False
            except ServomexConnectionError:
                return frames, errors, True
            if isinstance(item, Frame):
                frames.append(item)
            else:
                errors.append(item)


async def next_frames(subscription: Subscription, count: int) -> None:
    """Wait until ``count`` more frames reached a (second) subscription."""
    with anyio.fail_after(5):
        for _ in range(count):
            await subscription.next_frame()


# --- continuous-mode scenarios -----------------------------------------------------------------

type Inject = Callable[[SimHandle], None]
type Act = Callable[[SimHandle, Analyzer], Awaitable[object]]


def inject(fault: Fault, count: int = 1, **params: Any) -> Inject:
    """Queue ``fault`` on the simulator's next ``count`` frames."""

    def apply(sim: SimHandle) -> None:
        sim.faults.inject(fault, count=count, **params)

    return apply


def nothing(sim: SimHandle) -> None:
    """No fault on the wire (the fault is the client's own act)."""


async def continuous_case(fault: Inject, act: Act | None = None) -> Observed:
    """Listen to the broadcast, inject the fault, keep listening; compare with the log."""
    async with serve_pty(continuous_config()) as sim:
        analyser = Analyzer(sim.port, protocol=CONTINUOUS, timeout=0.5, expected_period=PERIOD)
        subscription = analyser.subscribe(buffer_size=1000)  # before any frame can arrive
        pacer = analyser.subscribe()
        async with analyser:
            await next_frames(pacer, FRAMES_BEFORE)
            fault_time = time.monotonic()
            fault(sim)
            raised: object = None
            if act is not None:
                raised = await act(sim, analyser)
            try:
                await next_frames(pacer, FRAMES_AFTER)
            except ServomexConnectionError as exc:
                raised = type(exc)  # the link ended: the pulled cable
            dropped = analyser.dropped_frames
        frames, errors, lost = await drain(subscription)
        sent = good_broadcasts(sim.log)
    received = [comparable(f) for f in frames]
    shown = window(sent, received)
    facts: list[tuple[str, object]] = []
    if lost:
        # every good frame sent before the cable was pulled arrived, up to the last one
        facts.append(("good frames sent after the last one received", len(sent) - len(shown)))
    if isinstance(raised, type) and issubclass(raised, ServomexConnectionError):
        facts.append(("link lost", lost))
    return Observed(
        Outcome(
            raised=raised if isinstance(raised, (type, str)) else None,
            reported=tuple(type(e) for e in errors),
            dropped_frames=dropped,
            facts=tuple(facts),
        ),
        shown,
        received,
        fault_time,
    )


async def open_the_port_again(sim: SimHandle, analyser: Analyzer) -> object:
    """A second client tries the port the first one holds."""
    with pytest.raises(ServomexConnectionError) as info:
        async with Analyzer(sim.port, protocol=CONTINUOUS, expected_period=PERIOD):
            pass
    assert info.value.context.port == sim.port
    assert sim.port in str(info.value)
    return type(info.value)


async def mid_frame_join() -> Observed:
    """The client joins 100 bytes into the first broadcast (a fragment of 106 bytes)."""
    async with serve_memory(continuous_config()) as sim:
        link = JoinedLate(sim.transport, skip=100)
        fault_time = time.monotonic()
        analyser = Analyzer(link, protocol=CONTINUOUS, timeout=0.5, expected_period=PERIOD)
        subscription = analyser.subscribe(buffer_size=1000)  # before any frame can arrive
        pacer = analyser.subscribe()
        async with analyser:
            await next_frames(pacer, FRAMES_AFTER)
            dropped = analyser.dropped_frames
        frames, errors, _ = await drain(subscription)
        sent = good_broadcasts(sim.log)
    received = [comparable(f) for f in frames]
    first = [s.frame for s in sent].index(received[0]) if received else -1
    return Observed(
        Outcome(
            reported=tuple(type(e) for e in errors),
            dropped_frames=dropped,
            facts=(("first frame received", f"broadcast {first}"),),
        ),
        window(sent, received),
        received,
        fault_time,
    )


# --- Modbus scenarios ----------------------------------------------------------------------


async def poll(sim: SimHandle, analyser: Analyzer) -> object:
    """The faulted call: one sweep."""
    return await analyser.poll()


async def analyser_status(sim: SimHandle, analyser: Analyzer) -> object:
    """The faulted call: the analyser-status read (FC02 1000 × 16)."""
    return await analyser.analyser_status()


async def cancelled_poll(sim: SimHandle, analyser: Analyzer) -> object:
    """A poll whose caller gives up while the first request is on the wire, unanswered."""
    seen = sim.log.requests_received
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_once_asked() -> None:
                # the wire log has no event to wait on: look every millisecond
                while sim.log.requests_received == seen:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                scope.cancel()

            tg.start_soon(cancel_once_asked)
            await analyser.poll()
    return "cancelled" if scope.cancelled_caught else None


type Server = Callable[[SimConfig], Any]


async def modbus_case(
    mode: ProtocolKind,
    fault: Inject,
    call: Act = poll,
    *,
    server: Server = serve_pty,
    config: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> Observed:
    """Poll, inject the fault, make the faulted call, poll again; compare with the log."""
    settings = FAST_MODBUS | (options or {})
    async with server(modbus_config(mode, **(config or {}))) as sim:
        async with Analyzer(sim.port, protocol=mode, address=ADDRESS, **settings) as analyser:
            subscription = analyser.subscribe(buffer_size=1000)
            polled = [await analyser.poll() for _ in range(POLLS_BEFORE)]
            fault_time = time.monotonic()
            fault(sim)
            raised: object = None
            try:
                result = await call(sim, analyser)
                if isinstance(result, Frame):
                    polled.append(result)
                elif isinstance(result, str):
                    raised = result
            except ServomexError as exc:
                raised = type(exc)
            recovered_at = time.monotonic()
            if not (isinstance(raised, type) and issubclass(raised, ServomexConnectionError)):
                polled += [await analyser.poll() for _ in range(POLLS_AFTER)]
            assert analyser.modbus is not None
            retries = analyser.modbus.line.retried
            dropped = analyser.dropped_frames
        frames, errors, lost = await drain(subscription)
        sent = good_sweeps(sim.log, mode)
        discarded = len(sim.log.events(WireKind.DISCARDED))
    facts: list[tuple[str, object]] = [("requests the analyser discarded as broken", discarded)]
    abandoned = 0
    if raised == "cancelled":
        # the sweep the cancelled caller gave up on still ran to its end in the port's owner
        # task (whole requests, whole replies); the caller never got its frame, but
        # subscribers did: nothing that came off the wire is lost
        abandoned = len([s for s in sent if fault_time <= s.time < recovered_at])
        assert len(frames) == len(polled) + abandoned
    else:
        assert [comparable(f) for f in frames] == [comparable(f) for f in polled]
    if lost:
        facts.append(("link lost", True))
    return Observed(
        Outcome(
            raised=raised if isinstance(raised, (type, str)) else None,
            reported=tuple(type(e) for e in errors),
            dropped_frames=dropped,
            retries=retries,
            facts=tuple(facts),
        ),
        sent,
        [comparable(f) for f in frames],
        fault_time,
        abandoned=abandoned,
    )


def pull_usb_adapter(sim: SimHandle) -> None:
    """The next ``tcflush`` of the port fails as an unplugged USB-serial adapter makes it:
    ``termios.error(EIO)``, which is no ``OSError`` (once; then the port behaves again)."""
    import errno
    import termios

    from anyserial.stream import _PosixSerialPort

    original = _PosixSerialPort.reset_input_buffer

    async def unplugged(self: _PosixSerialPort) -> None:
        _PosixSerialPort.reset_input_buffer = original  # type: ignore[method-assign]
        raise termios.error(errno.EIO, "Input/output error")

    _PosixSerialPort.reset_input_buffer = unplugged  # type: ignore[method-assign]


def refuse(code: int) -> Inject:
    """The next reply becomes Modbus exception ``code``."""

    def apply(sim: SimHandle) -> None:
        assert isinstance(sim.faults, RefusingFaults)
        sim.faults.refuse_next(code)

    return apply


async def port_busy_case() -> Observed:
    return await continuous_case(nothing, open_the_port_again)


# --- the catalog ------------------------------------------------------------------------------


class BackgroundServer:
    """A ``tiled serve`` process (the catalog tests' :class:`TiledServer`) started on a
    thread, so its ~10 s start-up overlaps the other rows instead of adding to them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._server: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="tiled-serve", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self._server = TiledServer(self.directory)
        except BaseException as exc:  # reported by get()
            self._error = exc

    def get(self) -> Any:
        """The running server (waits for it to come up)."""
        self._thread.join(timeout=180)
        if self._error is not None:
            raise self._error
        assert self._server is not None, "tiled serve did not start in time"
        return self._server

    def stop(self) -> None:
        self._thread.join(timeout=180)
        if self._server is not None:
            self._server.stop()


@dataclass
class Resources:
    """What a scenario may use: a temporary directory and the (early-started) tiled server."""

    tmp_path: Path
    server: BackgroundServer | None


def catalog_server_down(resources: Resources) -> Observed:
    """A tiled server dies in the middle of a monitored run of a 20 frames/s broadcast.

    The RunEngine, the device and the simulator carry on; the writer keeps the run in its
    journal; ``recover()`` later writes the whole run into the server's catalog (opened
    embedded, the server being down). Every broadcast of the run must be in it.
    """
    import stamina
    from bluesky import RunEngine
    from bluesky.run_engine import call_in_bluesky_event_loop
    from ophyd_async.core import init_devices

    from ophyd_servomex.catalog import (
        close_catalog,
        open_catalog,
        read_journal,
        recover,
        run_table,
        subscribe_writer,
    )
    from ophyd_servomex.devices import ServomexAnalyser
    from ophyd_servomex.plans import monitor_broadcast
    from ophyd_servomex.sim import SimulatorThread

    channels = ("i1", "i2", "i3", "e1", "e2")
    keys = [f"analyser-{c}-value" for c in channels]

    def values(frame: Frame) -> Comparable:
        return tuple(frame.channel(c.upper()).value for c in channels)

    assert resources.server is not None
    server = resources.server.get()
    tmp_path = resources.tmp_path
    backup = tmp_path / "backup"
    RE = RunEngine({}, loop=asyncio.new_event_loop())
    try:
        with SimulatorThread(continuous_config()) as sim:
            catalog = open_catalog(server.uri, api_key=API_KEY)
            subscription = subscribe_writer(RE, catalog, backup_directory=backup, batch_size=5)
            with init_devices(set_name=False):
                analyser = ServomexAnalyser(
                    sim.port, protocol=CONTINUOUS, expected_period=PERIOD, name="analyser"
                )
            fault_times: list[float] = []

            def pull_the_plug() -> None:
                fault_times.append(time.monotonic())
                server.kill()

            killer = threading.Timer(0.6, pull_the_plug)
            killer.start()
            with stamina.set_testing(True, attempts=1):  # no minute of retries
                uid = RE(monitor_broadcast([analyser], 1.2))[0]
            killer.join()
            call_in_bluesky_event_loop(analyser.disconnect())
            sent = good_broadcasts(sim.log, values)
        subscription.unsubscribe()
    finally:
        server.stop()
        RE.loop.call_soon_threadsafe(RE.loop.stop)
        RE._th.join()
        RE.loop.close()

    failed = list(subscription.writer.failed_runs)
    journal = read_journal(backup / f"{uid}.jsonl")
    journal_events = sum(1 for name, _ in journal if name == "event")
    catalog = open_catalog(server.directory)
    try:
        recovered = recover(catalog, backup)
        table = run_table(catalog[uid], "analyser_monitor")
        stop = catalog[uid].metadata["stop"]
    finally:
        close_catalog(catalog)
    received = [tuple(row) for row in table[keys].itertuples(index=False)]
    return Observed(
        Outcome(
            facts=(
                ("failed runs", len(failed)),
                ("journal events == catalog rows", journal_events == len(received)),
                ("recovered runs", len(recovered)),
                ("exit status", stop["exit_status"]),
                ("backup files left", len(list(backup.glob("*.jsonl")))),
            )
        ),
        window(sent, received),
        received,
        fault_times[0],
    )


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One fault: what it is, where, how it is made, and what must come of it."""

    fault: str
    mode: str
    injection: str
    expected: Outcome
    scenario: Callable[[Resources], Observed]
    before: int = 2
    """Good frames that must be sent (and received) before the fault."""
    after: int = 2
    """… and after it."""

    @property
    def id(self) -> str:
        return f"{self.fault} [{self.mode}]".replace(" ", "-")


def run_async(make: Callable[[], Awaitable[Observed]]) -> Callable[[Resources], Observed]:
    """A scenario that runs ``make()`` on its own asyncio loop, cut off if it hangs."""

    def scenario(resources: Resources) -> Observed:
        async def bounded() -> Observed:
            with anyio.fail_after(SCENARIO_LIMIT):
                return await make()

        return anyio.run(bounded, backend="asyncio")

    return scenario


def cont(fault: Inject, act: Act | None = None) -> Callable[[Resources], Observed]:
    return run_async(partial(continuous_case, fault, act))


def modbus(mode: ProtocolKind, fault: Inject, **kwargs: Any) -> Callable[[Resources], Observed]:
    return run_async(partial(modbus_case, mode, fault, **kwargs))


NOTHING_DISCARDED = (("requests the analyser discarded as broken", 0),)

ROWS = [
    # -- continuous ASCII: a bad line is counted, reported and skipped ----------------------
    Row(
        "corrupt checksum",
        "continuous",
        "Fault.CORRUPT_CHECKSUM: one broadcast's checksum inverted",
        Outcome(reported=(ServomexChecksumError,), dropped_frames=1),
        cont(inject(Fault.CORRUPT_CHECKSUM)),
    ),
    Row(
        "truncated frame",
        "continuous",
        "Fault.TRUNCATE: half a broadcast, no line end; the next frame runs into it",
        Outcome(reported=(ServomexFrameError,), dropped_frames=1),
        cont(inject(Fault.TRUNCATE)),
    ),
    Row(
        "garbage bytes",
        "continuous",
        "Fault.GARBAGE: 4 junk bytes glued before a broadcast (rescued from the line's end)",
        Outcome(reported=(ServomexFrameError,), dropped_frames=1),
        cont(inject(Fault.GARBAGE)),
    ),
    Row(
        "mid-frame join",
        "continuous",
        "the client's link starts 100 bytes into the first broadcast",
        Outcome(facts=(("first frame received", "broadcast 1"),)),
        run_async(mid_frame_join),
        before=0,
    ),
    Row(
        "wrong channel count",
        "continuous",
        "Fault.WRONG_CHANNEL_COUNT: N says 6 for 5 blocks, checksum recomputed",
        Outcome(reported=(ServomexFrameError,), dropped_frames=1),
        cont(inject(Fault.WRONG_CHANNEL_COUNT)),
    ),
    Row(
        "dropped broadcast",
        "continuous",
        "Fault.DROP: one broadcast never sent",
        Outcome(),
        cont(inject(Fault.DROP)),
    ),
    Row(
        "late broadcast",
        "continuous",
        "Fault.DELAY: one broadcast 0.12 s late (after the next slot)",
        Outcome(),
        cont(inject(Fault.DELAY, seconds=0.12)),
    ),
    Row(
        "cable pulled mid-run",
        "continuous",
        "Fault.DISCONNECT: half a broadcast, then the pty master closes",
        Outcome(
            raised=LinkLostError,
            facts=(("good frames sent after the last one received", 0), ("link lost", True)),
        ),
        cont(inject(Fault.DISCONNECT)),
        after=0,
    ),
    Row(
        "port busy",
        "continuous",
        "a second client opens the port the first one holds (exclusive open)",
        Outcome(raised=ServomexConnectionError, facts=(("link lost", False),)),
        run_async(port_busy_case),
    ),
    # -- Modbus RTU / ASCII: retried, or a typed error; the next polls are exact ------------
    Row(
        "CRC error",
        "modbus-rtu",
        "Fault.CORRUPT_CHECKSUM: one reply's CRC inverted",
        Outcome(retries=1, facts=NOTHING_DISCARDED),
        modbus(RTU, inject(Fault.CORRUPT_CHECKSUM)),
    ),
    Row(
        "CRC error on every attempt",
        "modbus-rtu",
        "Fault.CORRUPT_CHECKSUM on three replies in a row",
        Outcome(
            raised=ServomexChecksumError,
            reported=(ServomexChecksumError,),
            dropped_frames=1,
            retries=2,
            facts=NOTHING_DISCARDED,
        ),
        modbus(RTU, inject(Fault.CORRUPT_CHECKSUM, count=3)),
    ),
    Row(
        "LRC error",
        "modbus-ascii",
        "Fault.CORRUPT_CHECKSUM: one reply's LRC inverted",
        Outcome(retries=1, facts=NOTHING_DISCARDED),
        modbus(ASCII, inject(Fault.CORRUPT_CHECKSUM)),
    ),
    Row(
        "LRC error on every attempt",
        "modbus-ascii",
        "Fault.CORRUPT_CHECKSUM on three replies in a row",
        Outcome(
            raised=ServomexChecksumError,
            reported=(ServomexChecksumError,),
            dropped_frames=1,
            retries=2,
            facts=NOTHING_DISCARDED,
        ),
        modbus(ASCII, inject(Fault.CORRUPT_CHECKSUM, count=3)),
    ),
    Row(
        "truncated reply",
        "modbus-rtu",
        "Fault.TRUNCATE: half a reply, then silence",
        Outcome(retries=1, facts=NOTHING_DISCARDED),
        modbus(RTU, inject(Fault.TRUNCATE)),
    ),
    Row(
        "garbage bytes",
        "modbus-rtu",
        "Fault.GARBAGE: 4 junk bytes before a reply",
        Outcome(retries=1, facts=NOTHING_DISCARDED),
        modbus(RTU, inject(Fault.GARBAGE)),
    ),
    Row(
        "dropped reply",
        "modbus-rtu",
        "Fault.DROP: one reply never sent",
        Outcome(retries=1, facts=NOTHING_DISCARDED),
        modbus(RTU, inject(Fault.DROP)),
    ),
    Row(
        "dropped reply on every attempt",
        "modbus-rtu",
        "Fault.DROP on three replies in a row (the unit has answered full sweeps before, so "
        "its silence is lost replies, not a refused span)",
        Outcome(
            raised=ServomexTimeoutError,
            reported=(ServomexTimeoutError,),
            dropped_frames=1,
            retries=2,
            facts=NOTHING_DISCARDED,
        ),
        modbus(RTU, inject(Fault.DROP, count=3)),
    ),
    Row(
        "late reply",
        "modbus-rtu",
        "Fault.DELAY: one reply 0.3 s late, after the 0.2 s timeout",
        Outcome(retries=1, facts=NOTHING_DISCARDED),
        modbus(RTU, inject(Fault.DELAY, seconds=0.3)),
    ),
    Row(
        "wrong address",
        "modbus-rtu",
        "Fault.WRONG_ADDRESS: one reply from slave 31, valid CRC",
        Outcome(retries=1, facts=NOTHING_DISCARDED),
        modbus(RTU, inject(Fault.WRONG_ADDRESS)),
    ),
    Row(
        "wrong address",
        "modbus-ascii",
        "Fault.WRONG_ADDRESS: one reply from slave 31, valid LRC",
        Outcome(retries=1, facts=NOTHING_DISCARDED),
        modbus(ASCII, inject(Fault.WRONG_ADDRESS)),
    ),
    Row(
        "exception 01",
        "modbus-rtu",
        "the sweep's FC04 answered with exception 01 (illegal function)",
        Outcome(
            raised=ServomexIllegalFunctionError,
            reported=(ServomexIllegalFunctionError,),
            dropped_frames=1,
            facts=NOTHING_DISCARDED,
        ),
        modbus(RTU, refuse(1), server=serve_refusing),
    ),
    Row(
        "exception 02",
        "modbus-rtu",
        "the analyser-status read (FC02 1000×16) answered with exception 02",
        Outcome(raised=ServomexIllegalDataAddressError, facts=NOTHING_DISCARDED),
        modbus(RTU, refuse(2), call=analyser_status, server=serve_refusing),
    ),
    Row(
        "exception 01",
        "modbus-ascii",
        "the sweep's FC04 answered with exception 01 (illegal function)",
        Outcome(
            raised=ServomexIllegalFunctionError,
            reported=(ServomexIllegalFunctionError,),
            dropped_frames=1,
            facts=NOTHING_DISCARDED,
        ),
        modbus(ASCII, refuse(1), server=serve_refusing),
    ),
    Row(
        "cable pulled mid-run",
        "modbus-rtu",
        "Fault.DISCONNECT: half a reply, then the pty master closes",
        Outcome(
            raised=LinkLostError,
            dropped_frames=1,
            facts=(*NOTHING_DISCARDED, ("link lost", True)),
        ),
        modbus(RTU, inject(Fault.DISCONNECT)),
        after=0,
    ),
    Row(
        "USB adapter pulled",
        "modbus-rtu",
        "the port's tcflush raises termios.error(EIO), as an unplugged USB-serial adapter does",
        Outcome(
            raised=LinkLostError,
            dropped_frames=1,
            facts=(*NOTHING_DISCARDED, ("link lost", True)),
        ),
        modbus(RTU, pull_usb_adapter),
        after=0,
    ),
    Row(
        "cancellation mid-transaction",
        "modbus-rtu",
        "the poll's caller is cancelled once its first request is on the wire "
        "(realistic timing: the reply is 20–40 ms away)",
        Outcome(raised="cancelled", facts=NOTHING_DISCARDED),
        modbus(
            RTU,
            nothing,
            call=cancelled_poll,
            config={"realistic_timing": True},
            options={"inter_frame_idle": 0.05, "timeout": 0.5},
        ),
    ),
    # -- the catalog --------------------------------------------------------------------------
    Row(
        "catalog server down",
        "catalog",
        "the tiled server is killed (SIGKILL) 0.6 s into a 1.2 s monitored run, batch size 5",
        Outcome(
            facts=(
                ("failed runs", 1),
                ("journal events == catalog rows", True),
                ("recovered runs", 1),
                ("exit status", "success"),
                ("backup files left", 0),
            )
        ),
        catalog_server_down,
    ),
]


CATALOG_ROW = "catalog-server-down"


@pytest.fixture(scope="module")
def tiled_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundServer | None]:
    """Start the catalog row's server with the first row, if that row is to run at all."""
    if not any(CATALOG_ROW in item.nodeid for item in request.session.items):
        yield None
        return
    server = BackgroundServer(tmp_path_factory.mktemp("tiled") / "server")
    yield server
    server.stop()


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_fault_matrix(row: Row, tmp_path: Path, tiled_server: BackgroundServer | None) -> None:
    observed = row.scenario(Resources(tmp_path, tiled_server))

    # the named outcome, exactly
    assert observed.outcome == row.expected, row.injection

    # no good frame lost: every good frame the simulator sent in the window the client
    # listened to, before and after the fault, arrived exactly, in order
    assert observed.received == [s.frame for s in observed.sent]
    assert observed.before >= row.before, "too few good frames before the fault to tell"
    assert observed.after >= row.after, "too few good frames after the fault to tell"
    if row.fault == "cancellation mid-transaction":
        assert observed.abandoned == 1
