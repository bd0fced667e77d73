"""Helpers for the device tests: RunEngines, simulators in a thread, connected analysers,
and a cable to pull."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy
from bluesky import RunEngine
from bluesky.run_engine import TransitionError, call_in_bluesky_event_loop
from ophyd_async.core import init_devices

from ophyd_servomex.codec.continuous import parse_frame
from ophyd_servomex.codec.models import ChannelId, Frame, ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.sim import SimConfig, SimulatorThread, WireKind

ADDRESS = 30
MODES = (ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII, ProtocolKind.CONTINUOUS_ASCII)
CHANNELS = (ChannelId.I1, ChannelId.I2, ChannelId.I3, ChannelId.E1, ChannelId.E2)


def make_run_engine() -> RunEngine:
    """A RunEngine on its own fresh loop (the loop the devices then live on)."""
    return RunEngine({}, call_returns_result=True, loop=asyncio.new_event_loop())


def stop_run_engine(engine: RunEngine) -> None:
    """Halt anything still running, then stop and close the RunEngine's loop."""
    if engine.state not in ("idle", "panicked"):
        with suppress(TransitionError):
            engine.halt()
    engine.loop.call_soon_threadsafe(engine.loop.stop)
    engine._th.join()
    engine.loop.close()


def f32(x: float) -> float:
    """``x`` as the device reports a value that travelled in two Modbus registers: the
    float32 on the wire, given as the shortest decimal that reads back as that float32
    (``f32(20.378) == 20.378``, where the widened double is 20.378000259399414)."""
    wire = struct.unpack(">f", struct.pack(">f", x))[0]
    return float(numpy.format_float_positional(numpy.float32(wire), unique=True))


def sim_config(mode: ProtocolKind, **changes: Any) -> SimConfig:
    """The bench unit, quiet (no noise) and fast (20 broadcasts per second) by default."""
    options: dict[str, Any] = {"mode": mode, "noisy": False, "seed": 1, "period": 0.05}
    options.update(changes)
    return SimConfig(**options)


@contextmanager
def simulator(mode: ProtocolKind, **changes: Any) -> Iterator[SimulatorThread]:
    """A simulated analyser on a pseudo-terminal, served from its own thread."""
    with SimulatorThread(sim_config(mode, **changes)) as sim:
        yield sim


def connect(
    sim: SimulatorThread, mode: ProtocolKind, *, name: str = "analyser", **options: Any
) -> ServomexAnalyser:
    """A ServomexAnalyser on the simulator, connected on the RunEngine's loop."""
    options.setdefault("address", ADDRESS)
    options.setdefault("inter_frame_idle", 0.0)
    options.setdefault("expected_period", sim.handle.config.period or 2.0)
    with init_devices(set_name=False):
        analyser = ServomexAnalyser(sim.port, protocol=mode, name=name, **options)
    return analyser


def disconnect(analyser: ServomexAnalyser) -> None:
    """Close the analyser's session from outside the loop."""
    call_in_bluesky_event_loop(analyser.disconnect())


def requests(sim: SimulatorThread) -> list[bytes]:
    """Every well-formed request the simulator received, in order."""
    return [e.data for e in sim.log.events(WireKind.REQUEST)]


def broadcasts(sim: SimulatorThread) -> list[Frame]:
    """Every continuous frame the simulator sent, decoded with the codec."""
    return [parse_frame(e.data.rstrip(b"\r\n")) for e in sim.log.events(WireKind.BROADCAST)]


def documents(engine: RunEngine) -> list[tuple[str, dict[str, Any]]]:
    """Subscribe a list to the RunEngine and return it (filled as documents come)."""
    docs: list[tuple[str, dict[str, Any]]] = []
    engine.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs


def wait_for(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; a guard against hanging, not a timing claim."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {limit} s")
        time.sleep(0.01)


def fds_open_to(path: str) -> int:
    """How many of this process's file descriptors point at ``path``."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                found += 1
        except OSError:
            continue
    return found


class Cable:
    """A simulator that can be pulled and plugged back in under the same port string.

    The pseudo-terminal is reached through a symlink, the way udev names a USB adapter
    (``/dev/serial/by-id/…``): plugged back, it is a new ``/dev/pts/N`` behind the same
    path. Over TCP the server comes back on the same port.
    """

    def __init__(self, mode: ProtocolKind, link: str, tmp_path: Path, **changes: Any) -> None:
        self.mode = mode
        self.link = link
        self.changes = {"period": 0.05, **changes}
        self.symlink = tmp_path / "ttyUSB0"
        self.sim: SimulatorThread | None = None
        self.tcp_port = 0
        self.plug()
        assert self.sim is not None
        self.port = str(self.symlink) if link == "pty" else self.sim.port
        """What the device opens: the stable symlink, or socket://127.0.0.1:PORT."""

    def plug(self) -> None:
        config = sim_config(self.mode, **self.changes)
        if self.link == "tcp":
            self.sim = SimulatorThread(config, link="tcp", tcp_port=self.tcp_port)
            self.sim.start()
            self.tcp_port = int(self.sim.port.rsplit(":", 1)[1])
        else:
            self.sim = SimulatorThread(config)
            self.sim.start()
            staging = self.symlink.with_suffix(".new")
            staging.symlink_to(self.sim.port)
            staging.replace(self.symlink)  # the adapter is back under the same name

    def pull(self) -> str:
        assert self.sim is not None
        real = self.sim.port
        self.sim.stop()
        self.sim = None
        if self.link == "pty":
            self.symlink.unlink()
        return real

    def close(self) -> None:
        if self.sim is not None:
            self.sim.stop()


@contextmanager
def cable(mode: ProtocolKind, link: str, tmp_path: Path, **changes: Any) -> Iterator[Cable]:
    """A :class:`Cable` (``link`` "pty" or "tcp"), stopped at the end."""
    made = Cable(mode, link, tmp_path, **changes)
    try:
        yield made
    finally:
        made.close()


def bench_read_keys(name: str) -> list[str]:
    """The data keys of the bench unit's ``read()`` and ``describe()``, sorted: the
    analyser's eight fields and each channel's value and status (18 in all)."""
    channels = [
        f"{name}-{cid}-{field}"
        for cid in ("i1", "i2", "i3", "e1", "e2")
        for field in ("value", "status")
    ]
    analyser = [
        f"{name}-{field}"
        for field in (
            "fault",
            "maintenance",
            "cal_group1",
            "cal_group2",
            "cal_group3",
            "cal_group4",
            "clock",
            "dropped_frames",
        )
    ]
    return sorted(analyser + channels)
