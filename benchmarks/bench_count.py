"""``RE(count([analyser]))`` events/s, as ratios to a soft-signal device and a composed floor.

Three devices, all named ``gas``, so that their events carry identical data keys:

* **simulated** — a ``ServomexAnalyser`` on the bench unit simulated by ``ophyd-servomex
  sim`` in a process of its own (Modbus RTU over a pseudo-terminal, zero latency: no
  turnaround, no wire time, no 50 ms idle gap). Every event is one full three-transaction
  sweep through the driver plus the device's coherent read of one frame.
* **mock** — the same analyser in mock mode: no I/O, the device layer alone.
* **soft** — a plain ophyd-async ``StandardReadable`` of soft signals that mirrors the mock
  analyser: the same read and configuration data keys (taken from its ``describe()`` and
  ``describe_configuration()``, with each signal's datatype, units and precision), the same
  hints, the same uncached read format, and a ``trigger()`` that does nothing.

A fourth case is the **bare poll**: the driver's ``Analyzer.poll()`` in a loop against the
same simulator process (the device is disconnected meanwhile; the pty serves one client at a
time). The **composed floor** is what the simulated analyser could reach if the device cost
nothing beyond soft signals and the wire cost nothing beyond the driver's poll:
1 / (seconds per soft-signal event + seconds per bare poll). The simulated analyser's keys
are checked to be the mock's, so one soft device serves both ratios.

The **measured floor** is the same sum taken in one run: ``count()`` of the soft device
whose ``trigger()`` awaits a bare ``Analyzer.poll()`` (right after the bare poll loop, on
the same connection). It differs from the composed floor where the two parts interact: a
pty round trip to the simulator takes longer when the client process has just run the
RunEngine's few milliseconds of Python than in a tight poll loop (the simulator process
has to be scheduled again). Its ratio is the device layer's own share.

The cases run in one process (all in the RunEngine's loop thread), taking turns round by
round (:func:`~benchmarks._harness.interleaved`), best round kept: many short runs (250
events, 12 rounds) rather than a few long ones, so that each case catches the machine's
quiet moments and the cases of a round see the same load.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from bluesky import RunEngine
from bluesky.plans import count
from bluesky.protocols import Readable
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import (
    AsyncStatus,
    Device,
    SignalR,
    StandardReadable,
    StandardReadableFormat,
    init_devices,
    soft_signal_rw,
)

from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.driver import Analyzer

from ._harness import Result, interleaved

NAME = "gas"
ADDRESS = 30
SIM_ARGS = ("sim", "--mode", "modbus-rtu", "--address", str(ADDRESS), "--no-noise", "--seed", "3")
"""The project's own simulator, zero latency (no ``--realistic-timing``), on a pty."""
SIM_START_TIMEOUT = 60.0


# --- the soft-signal mirror --------------------------------------------------------------


def _signals(device: Device) -> Iterator[SignalR[Any]]:
    for _, child in device.children():
        if isinstance(child, SignalR):
            yield child
        else:
            yield from _signals(child)


class SoftMirror(StandardReadable):
    """Soft signals in the place of ``source``'s read and configuration signals.

    ``read`` and ``config`` map data keys to the values to start with (a reading of the
    source); ``hinted`` are the hinted keys. Signals the source does not read (its single
    flags, its link state, commands) are left out: ``read()`` never touches them.
    ``trigger()`` does nothing, so an event costs the RunEngine's trigger and wait too;
    with :attr:`poll` set it awaits that instead (a bare driver poll: the measured floor).
    """

    poll: Callable[[], Awaitable[object]] | None = None
    """What ``trigger()`` awaits, if anything."""

    def __init__(
        self,
        source: Device,
        read: dict[str, Any],
        config: dict[str, Any],
        describe: dict[str, Any],
        hinted: set[str],
        name: str = "",
    ) -> None:
        wanted = read.keys() | config.keys()
        for attr, child in source.children():
            if isinstance(child, SignalR):
                key = child.name
                if key in read:
                    form = (
                        StandardReadableFormat.HINTED_UNCACHED_SIGNAL
                        if key in hinted
                        else StandardReadableFormat.UNCACHED_SIGNAL
                    )
                    value = read[key]
                elif key in config:
                    form, value = StandardReadableFormat.CONFIG_SIGNAL, config[key]
                else:
                    continue
                datakey, datatype = describe[key], child.datatype
                if datatype is None:
                    raise RuntimeError(f"{key} has no datatype to mirror")
                soft = soft_signal_rw(
                    datatype,
                    value,
                    units=datakey.get("units"),
                    precision=datakey.get("precision"),
                )
                with self.add_children_as_readables(form):
                    setattr(self, attr, soft)
            elif any(s.name in wanted for s in _signals(child)):
                with self.add_children_as_readables():
                    setattr(self, attr, SoftMirror(child, read, config, describe, hinted))
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Await :attr:`poll` if set; else nothing (the values are there), but the
        RunEngine still sends its trigger and waits for the status, as for the analyser."""
        if self.poll is not None:
            await self.poll()


def _shape(describe: dict[str, Any]) -> dict[str, tuple[object, ...]]:
    """A describe() without the sources: keys, dtypes, shapes, units, precisions, choices."""
    return {
        key: tuple(datakey.get(f) for f in ("dtype", "shape", "units", "precision", "choices"))
        for key, datakey in describe.items()
    }


async def mirror_of(device: StandardReadable) -> SoftMirror:
    """A connected soft-signal device with ``device``'s data keys, hints and values.

    Raises:
        RuntimeError: the mirror's keys, data types or hints differ from the device's.
    """
    describe = await device.describe()
    describe_config = await device.describe_configuration()
    read = {k: r["value"] for k, r in (await device.read()).items()}
    config = {k: r["value"] for k, r in (await device.read_configuration()).items()}
    hinted = set(device.hints.get("fields", ()))
    datakeys = {**describe, **describe_config}
    soft = SoftMirror(device, read, config, datakeys, hinted, name=device.name)
    await soft.connect()
    for what, mine, theirs in (
        ("read", await soft.describe(), describe),
        ("configuration", await soft.describe_configuration(), describe_config),
    ):
        if _shape(mine) != _shape(theirs):
            raise RuntimeError(f"soft mirror's {what} keys differ: {mine} != {theirs}")
    if soft.hints != device.hints:
        raise RuntimeError(f"soft mirror's hints differ: {soft.hints} != {device.hints}")
    return soft


# --- the simulator in its own process ----------------------------------------------------


@contextlib.contextmanager
def simulator_process() -> Iterator[str]:
    """Run ``ophyd-servomex sim`` (zero latency) in a child process; yields its pty path."""
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ophyd_servomex.cli", *SIM_ARGS],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], SIM_START_TIMEOUT)
            port = proc.stdout.readline().strip() if ready else ""
            if not port:
                proc.kill()
                status = proc.wait()
                errors.seek(0)
                said = errors.read().strip().splitlines() or ["nothing"]
                raise RuntimeError(
                    f"the simulator did not start (exit status {status}; it said: {said[-1]})"
                )
            yield port
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# --- the cases ---------------------------------------------------------------------------


def _stop(engine: RunEngine) -> None:
    if engine.state not in ("idle", "panicked"):
        with contextlib.suppress(RuntimeError):  # bluesky's TransitionError: already stopping
            engine.halt()  # type: ignore[no-untyped-call]
    engine.loop.call_soon_threadsafe(engine.loop.stop)
    engine._th.join()
    engine.loop.close()


async def bare_polls(port: str, polls: int) -> float:
    """Seconds per ``Analyzer.poll()`` on ``port`` in a loop of ``polls`` (after a warm-up)."""
    analyzer = Analyzer(
        port, protocol=ProtocolKind.MODBUS_RTU, address=ADDRESS, inter_frame_idle=0.0
    )
    async with analyzer:
        return await poll_loop(analyzer, polls)


async def _hold(port: str, opened: asyncio.Future[Analyzer], stop: asyncio.Event) -> None:
    try:
        analyzer = Analyzer(
            port, protocol=ProtocolKind.MODBUS_RTU, address=ADDRESS, inter_frame_idle=0.0
        )
        async with analyzer:
            opened.set_result(analyzer)
            await stop.wait()
    except BaseException as exc:
        if not opened.done():
            opened.set_exception(exc)
        raise


@contextlib.contextmanager
def held_analyzer(port: str) -> Iterator[Analyzer]:
    """A driver ``Analyzer`` open on ``port``, held by a task of the RunEngine's loop (it is
    entered and left in one task), for the RunEngine's tasks to poll."""

    async def start() -> tuple[Analyzer, asyncio.Event, asyncio.Task[None]]:
        opened: asyncio.Future[Analyzer] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(_hold(port, opened, stop))
        return await opened, stop, task

    analyzer, stop, task = call_in_bluesky_event_loop(start())

    async def finish() -> None:
        stop.set()
        await task

    try:
        yield analyzer
    finally:
        call_in_bluesky_event_loop(finish())


async def poll_loop(analyzer: Analyzer, polls: int) -> float:
    """Seconds per ``analyzer.poll()`` in a loop of ``polls`` (after one warm-up)."""
    await analyzer.poll()
    start = time.perf_counter()
    for _ in range(polls):
        await analyzer.poll()
    return (time.perf_counter() - start) / polls


def _counting(
    engine: RunEngine, events: list[int], device: Readable[Any], num: int
) -> Callable[[], float]:
    """A case: seconds per event of ``count([device], num)``, whole run included."""

    def once() -> float:
        events.clear()
        start = time.perf_counter()
        engine(count([device], num=num))
        elapsed = time.perf_counter() - start
        if len(events) != num:
            raise RuntimeError(f"{len(events)} events instead of {num}")
        return elapsed / num

    return once


def _fields_rows(describe: dict[str, Any], analyser: ServomexAnalyser) -> list[Result]:
    channels = [cid.value.lower() for cid in analyser.channel_ids]
    with_status = [c for c in channels if f"{NAME}-{c}-status" in describe]
    return [
        Result(
            f"event fields, {len(channels)}-channel simulated analyser",
            len(describe),
            "fields",
            f"goal ≤ 20; status recorded for {len(with_status)} of {len(channels)} channels "
            f"({', '.join(f'{c}-status' for c in with_status)})",
        )
    ]


def run(quick: bool) -> list[Result]:
    """Events/s of count() on the simulated and mock analysers against their floors."""
    num = 50 if quick else 250
    rounds = 2 if quick else 12
    engine = RunEngine({}, call_returns_result=True, loop=asyncio.new_event_loop())
    events: list[int] = []
    engine.subscribe(  # type: ignore[no-untyped-call]
        lambda name, doc: events.append(1) if name == "event" else None
    )
    try:
        with simulator_process() as port:
            with init_devices():
                analyser = ServomexAnalyser(
                    port,
                    protocol=ProtocolKind.MODBUS_RTU,
                    address=ADDRESS,
                    inter_frame_idle=0.0,
                    name=NAME,
                )
            with init_devices(mock=True):
                mock = ServomexAnalyser(name=NAME)
            soft = call_in_bluesky_event_loop(mirror_of(mock))
            describe = call_in_bluesky_event_loop(analyser.describe())
            if _shape(describe) != _shape(call_in_bluesky_event_loop(soft.describe())):
                raise RuntimeError("the simulated analyser's data keys differ from the mock's")
            shape = f"{len(describe)} read fields"

            simulated = _counting(engine, events, analyser, num)

            polling = call_in_bluesky_event_loop(mirror_of(mock))
            measured_floor = _counting(engine, events, polling, num)
            best_measured = [float("inf")]

            def bare_poll() -> float:
                """The bare poll loop, then the soft device polling in its trigger (the
                device is disconnected meanwhile: the pty serves one client at a time)."""
                call_in_bluesky_event_loop(analyser.disconnect())
                try:
                    with held_analyzer(port) as analyzer:
                        seconds = call_in_bluesky_event_loop(poll_loop(analyzer, num))
                        polling.poll = analyzer.poll
                        try:
                            best_measured[0] = min(best_measured[0], measured_floor())
                        finally:
                            polling.poll = None
                        return seconds
                finally:
                    call_in_bluesky_event_loop(analyser.connect())

            cases = {
                "simulated": simulated,
                "soft": _counting(engine, events, soft, num),
                "poll": bare_poll,
                "mock": _counting(engine, events, mock, num),
            }
            for device in (analyser, soft, mock, polling):  # warm-up: caches, imports
                _counting(engine, events, device, 5)()
            best = interleaved(cases, rounds=rounds)
            call_in_bluesky_event_loop(analyser.disconnect())
    finally:
        _stop(engine)

    floor_seconds = best["soft"] + best["poll"]
    ms = 1e3
    return [
        *_fields_rows(describe, analyser),
        Result(
            "count(): simulated analyser",
            1 / best["simulated"],
            "events/s",
            f"num={num}; Modbus RTU on a pty to `ophyd-servomex sim` in its own process, "
            "zero latency",
        ),
        Result(
            "  soft-signal device, same keys",
            best["soft"] * ms,
            "ms/event",
            f"count() of the soft mirror ({shape}, the simulated analyser's keys too), "
            "trigger a no-op",
        ),
        Result(
            "  bare driver poll, same simulator",
            best["poll"] * ms,
            "ms/poll",
            f"Analyzer.poll() × {num} in a loop: one sweep (3 Modbus reads), no idle gap",
        ),
        Result(
            "  composed floor",
            1 / floor_seconds,
            "events/s",
            "1 / (soft-signal event + bare poll)",
        ),
        Result(
            "simulated analyser ÷ composed floor",
            floor_seconds / best["simulated"],
            "×",
            "goal ≥ 0.8",
        ),
        Result(
            "  measured floor",
            1 / best_measured[0],
            "events/s",
            "count() of the soft mirror whose trigger() awaits a bare Analyzer.poll(): "
            "the RunEngine's work and the wire's in one run, no device layer",
        ),
        Result(
            "simulated analyser ÷ measured floor",
            best_measured[0] / best["simulated"],
            "×",
            "the device layer's own share of the wire path",
        ),
        Result("count(): mock-mode analyser", 1 / best["mock"], "events/s", "no I/O"),
        Result(
            "count(): soft-signal device",
            1 / best["soft"],
            "events/s",
            f"a soft mirror of the mock analyser ({shape}): the RunEngine's floor",
        ),
        Result(
            "mock-mode analyser ÷ soft-signal device",
            best["soft"] / best["mock"],
            "×",
            "goal ≥ 0.9; the device layer's own cost",
        ),
    ]
