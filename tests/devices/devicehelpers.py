"""Helpers for the device tests: RunEngines, simulators in a thread, connected analysers."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

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
    """``x`` as it travels in two Modbus registers (float32)."""
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


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
