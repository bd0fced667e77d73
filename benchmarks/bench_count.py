"""``RE(count([analyser], num=1000))`` events/s, as a ratio to a soft-signal device.

The analyser is a ``ServomexAnalyser`` on the simulated bench unit (Modbus RTU over a
pseudo-terminal, zero latency: no realistic timing and no 50 ms idle gap), so every event
is one full three-transaction sweep through the driver plus the device's coherent read of
its 18 fields. The reference is a plain ophyd-async ``StandardReadable`` of the same shape
(five channels of a hinted value and a status string, with the single flags as children
``read()`` does not report, eight analyser-level signals, the same configuration signals)
whose ``trigger()`` does nothing: the ratio is
what the wire, the driver and the frame hub cost on top of the RunEngine's own work.
The same analyser in mock mode (no I/O at all) is a third case. Cases run in
interleaved rounds, best round kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from bluesky import RunEngine
from bluesky.plans import count
from bluesky.run_engine import TransitionError, call_in_bluesky_event_loop
from ophyd_async.core import (
    StandardReadable,
    StandardReadableFormat,
    init_devices,
    soft_signal_rw,
)

from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser
from ophyd_servomex.sim import SimConfig, SimulatorThread

from ._harness import Result

FLAGS = (
    "fault",
    "maintenance",
    "calibrating",
    "warming_up",
    "alarm1",
    "alarm2",
    "alarm3",
    "alarm4",
    "ok",
)


class SoftChannel(StandardReadable):
    """One channel's shape with soft signals."""

    def __init__(self, units: str, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_UNCACHED_SIGNAL):
            self.value = soft_signal_rw(float, 20.378, units=units, precision=3)
        with self.add_children_as_readables(StandardReadableFormat.UNCACHED_SIGNAL):
            self.status = soft_signal_rw(str, "ok")
        for flag in FLAGS:  # children, not read (as the analyser's single flags)
            setattr(self, flag, soft_signal_rw(bool, flag == "ok"))
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.display_name = soft_signal_rw(str, "Oxygen")
            self.unit = soft_signal_rw(str, units)
        super().__init__(name=name)


class SoftAnalyser(StandardReadable):
    """The analyser's shape with soft signals and a trigger that does nothing."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.UNCACHED_SIGNAL):
            self.fault = soft_signal_rw(bool, False)
            self.maintenance = soft_signal_rw(bool, False)
            for group in (1, 2, 3, 4):
                setattr(self, f"cal_group{group}", soft_signal_rw(str, "idle"))
            self.clock = soft_signal_rw(str, "")
            self.dropped_frames = soft_signal_rw(int, 0)
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.protocol = soft_signal_rw(str, "modbus-rtu")
            self.address = soft_signal_rw(int, 30)
        with self.add_children_as_readables():
            for cid, units in (("i1", "%"), ("i2", "%"), ("i3", "%"), ("e1", "mA"), ("e2", "mA")):
                setattr(self, cid, SoftChannel(units))
        super().__init__(name=name)


def _stop(engine: RunEngine) -> None:
    if engine.state not in ("idle", "panicked"):
        with contextlib.suppress(TransitionError):
            engine.halt()
    engine.loop.call_soon_threadsafe(engine.loop.stop)
    engine._th.join()
    engine.loop.close()


def run(quick: bool) -> list[Result]:
    """Events/s of count() on the simulated analyser, mock analyser and soft device."""
    num = 100 if quick else 1000
    rounds = 1 if quick else 3
    engine = RunEngine({}, call_returns_result=True, loop=asyncio.new_event_loop())
    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, noisy=False, seed=3)
    try:
        with SimulatorThread(config) as sim:
            with init_devices():
                analyser = ServomexAnalyser(
                    sim.port, protocol=ProtocolKind.MODBUS_RTU, address=30, inter_frame_idle=0.0
                )
                soft = SoftAnalyser()
            with init_devices(mock=True):
                mock = ServomexAnalyser()
            events: list[int] = []
            engine.subscribe(lambda name, doc: events.append(1) if name == "event" else None)

            def counting(device: object) -> Callable[[int], float]:
                def once(events_wanted: int) -> float:
                    events.clear()
                    start = time.perf_counter()
                    engine(count([device], num=events_wanted))
                    elapsed = time.perf_counter() - start
                    if len(events) != events_wanted:
                        raise RuntimeError(f"{len(events)} events instead of {events_wanted}")
                    return elapsed

                return once

            cases = {"analyser": counting(analyser), "mock": counting(mock), "soft": counting(soft)}
            for case in cases.values():  # warm up: first-run describe caches, imports
                case(10)
            best = dict.fromkeys(cases, float("inf"))
            names = list(cases)
            for round_ in range(rounds):
                for name in names[round_ % 3 :] + names[: round_ % 3]:
                    best[name] = min(best[name], cases[name](num))
            call_in_bluesky_event_loop(analyser.disconnect())
    finally:
        _stop(engine)

    rate = {name: num / seconds for name, seconds in best.items()}
    shape = "18 read fields, 12 configuration fields"
    return [
        Result(
            "count(): simulated Modbus RTU analyser", rate["analyser"], "events/s", f"num={num}"
        ),
        Result(
            "simulated analyser ÷ soft-signal device",
            rate["analyser"] / rate["soft"],
            "×",
            f"same shape ({shape}), trigger a no-op",
        ),
        Result("count(): mock-mode analyser", rate["mock"], "events/s", "no I/O"),
        Result(
            "mock-mode analyser ÷ soft-signal device",
            rate["mock"] / rate["soft"],
            "×",
            "the device layer's own cost",
        ),
        Result("count(): soft-signal device", rate["soft"], "events/s", "the RunEngine's floor"),
    ]
