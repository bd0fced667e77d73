"""The demo's acquisition half: simulated analysers → ophyd-async devices → RunEngine → catalog.

Imported only by ``ophyd-servomex demo`` when it runs (it pulls in bluesky and ophyd-async).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from bluesky import RunEngine
from bluesky.plans import count
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import init_devices

from ..codec.errors import ErrorContext, ServomexError
from ..codec.models import CalibrationProgress, ProtocolKind
from ..codec.options import parse_protocol
from ..devices import ServomexAnalyser
from ..plans import CalibrationProgressManager, calibration_run, monitor_broadcast
from ..sim import SimConfig, SimulatorThread

__all__ = [
    "BENCH_ADDRESS",
    "BROADCAST_PERIOD",
    "CALIBRATION_GROUP",
    "FLUSH_TIME",
    "TIME_SCALE",
    "DemoDevices",
    "DemoRuns",
    "simulated_analysers",
    "take_runs",
]

BENCH_ADDRESS = 30
"""The Modbus slave address of the bench 4100D (not the usual 1)."""

BROADCAST_PERIOD = 0.1
"""Seconds between the simulated continuous broadcasts (a real panel allows 1 s and up)."""

TIME_SCALE = 60.0
"""Simulated seconds per real second: one simulated minute of calibration gas per second."""

FLUSH_TIME = 60.0
"""Simulated seconds each calibration gas flows."""

CALIBRATION_GROUP = 1

SIM_TIMEOUT = 0.25
"""Per-request timeout against the zero-latency simulator (a real unit: keep the 1 s default);
AUTO's Modbus probes wait this long each, so detection is quick."""

SIM_INTER_FRAME_IDLE = 0.002
"""Line silence before each Modbus request. The real unit needs 50 ms (the driver's default);
the simulator answers at once, so the demo's 100-event count stays fast."""

MODBUS_POLL_RATE = 5.0
"""Background polls per second while the Modbus analyser is monitored."""

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DemoRuns:
    """The uids of the three runs the demo wrote."""

    count_uid: str
    monitor_uid: str
    calibration_uid: str
    calibration: CalibrationProgress | None = None

    @property
    def uids(self) -> tuple[str, str, str]:
        """The three uids in the order they ran."""
        return (self.count_uid, self.monitor_uid, self.calibration_uid)


@contextmanager
def _quiet_probes() -> Iterator[None]:
    """AUTO's Modbus probes time out on the broadcaster by design: hide anymodbus's retries."""
    logger = logging.getLogger("anymodbus")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _describe(analyser: ServomexAnalyser) -> str:
    protocol = call_in_bluesky_event_loop(analyser.protocol.get_value())
    address = call_in_bluesky_event_loop(analyser.address.get_value())
    channels = []
    for cid in analyser.channel_ids:
        info = analyser.channel(cid).info
        label = f" {info.name}" if info.name else ""
        unit = f" [{info.unit_text or info.unit.value}]" if (info.unit_text or info.unit) else ""
        channels.append(f"{cid.value}{label}{unit}")
    where = f" at address {address}" if parse_protocol(protocol).is_modbus else ""
    return f"detected {protocol}{where}; channels {', '.join(channels)}"


def _disconnect(analyser: ServomexAnalyser) -> None:
    try:
        call_in_bluesky_event_loop(analyser.disconnect())
    except Exception as error:  # closing must not hide the demo's result
        logging.getLogger(__name__).warning("closing %s: %s", analyser.name, error)


def _uid(result: Any) -> str:
    uids = tuple(getattr(result, "run_start_uids", ()) or ())
    if len(uids) != 1:
        raise ServomexError(
            f"expected one run, the RunEngine reported {len(uids)}",
            context=ErrorContext(),
        )
    return str(uids[0])


@dataclass(frozen=True, slots=True)
class DemoDevices:
    """The two connected analysers and the simulators behind them."""

    modbus: ServomexAnalyser
    broadcast: ServomexAnalyser
    modbus_sim: SimulatorThread
    broadcast_sim: SimulatorThread


@contextmanager
def simulated_analysers(say: Say) -> Iterator[DemoDevices]:
    """Start the two simulators and connect a ``ServomexAnalyser`` to each with protocol AUTO.

    A RunEngine must exist already (``init_devices`` connects on its event loop). On exit the
    devices are disconnected before the simulators stop, so no "link lost" is reported.
    """
    modbus_config = SimConfig(
        mode=ProtocolKind.MODBUS_RTU,
        addresses=(BENCH_ADDRESS,),
        seed=1,
        time_scale=TIME_SCALE,
        flush_time=FLUSH_TIME,
    )
    broadcast_config = SimConfig(
        mode=ProtocolKind.CONTINUOUS_ASCII, seed=2, period=BROADCAST_PERIOD
    )
    with ExitStack() as stack:
        modbus_sim = stack.enter_context(SimulatorThread(modbus_config))
        broadcast_sim = stack.enter_context(SimulatorThread(broadcast_config))
        started = time.monotonic()
        with _quiet_probes(), init_devices():
            modbus = ServomexAnalyser(
                modbus_sim.port,
                protocol=ProtocolKind.AUTO,
                address=BENCH_ADDRESS,
                timeout=SIM_TIMEOUT,
                inter_frame_idle=SIM_INTER_FRAME_IDLE,
                poll_rate_hz=MODBUS_POLL_RATE,
                calibration_poll_period=0.1,
            )
            broadcast = ServomexAnalyser(
                broadcast_sim.port,
                protocol=ProtocolKind.AUTO,
                address=BENCH_ADDRESS,
                timeout=SIM_TIMEOUT,
                expected_period=BROADCAST_PERIOD,
            )
        stack.callback(_disconnect, broadcast)
        stack.callback(_disconnect, modbus)
        say(f"simulated 4100 in Modbus RTU mode at address {BENCH_ADDRESS} on {modbus_sim.port}")
        say(
            f"simulated 4100 in continuous mode, a frame every {BROADCAST_PERIOD:g} s, "
            f"on {broadcast_sim.port}"
        )
        say(f"connected both with protocol AUTO in {time.monotonic() - started:.1f} s:")
        say(f"  {modbus.name}: {_describe(modbus)}")
        say(f"  {broadcast.name}: {_describe(broadcast)}")
        yield DemoDevices(modbus, broadcast, modbus_sim, broadcast_sim)


def take_runs(
    run_engine: RunEngine,
    devices: DemoDevices,
    *,
    events: int,
    monitor_seconds: float,
    say: Say,
) -> DemoRuns:
    """The demo's three runs; ``run_engine`` must have the catalog writer subscribed."""
    modbus, broadcast = devices.modbus, devices.broadcast

    say(f"\nrun 1: count([{modbus.name}], num={events})")
    started = time.monotonic()
    count_uid = _uid(run_engine(count([modbus], num=events)))
    say(f"  {events} events in {time.monotonic() - started:.1f} s, uid {count_uid}")

    say(f"\nrun 2: monitor_broadcast([{broadcast.name}], {monitor_seconds:g} s)")
    started = time.monotonic()
    monitored: list[str] = []
    engine: Any = run_engine  # bluesky's subscribe/unsubscribe are unannotated
    token = engine.subscribe(lambda name, doc: monitored.append(name), "event")
    try:
        monitor_uid = _uid(run_engine(monitor_broadcast([broadcast], monitor_seconds)))
    finally:
        engine.unsubscribe(token)
    say(
        f"  {len(monitored)} broadcast frames recorded in {time.monotonic() - started:.1f} s, "
        f"uid {monitor_uid}"
    )

    say(
        f"\nrun 3: calibrate({modbus.name}, group {CALIBRATION_GROUP}, confirm=True), "
        f"time-scaled ×{TIME_SCALE:g}: each gas flows {FLUSH_TIME:g} s simulated "
        f"= {FLUSH_TIME / TIME_SCALE:g} s real"
    )
    started = time.monotonic()
    # the phases as descriptions with their times; plain lines when stdout is no terminal
    progress_bar: Any = CalibrationProgressManager()  # bluesky annotates the hook as None
    run_engine.waiting_hook = progress_bar
    try:
        calibration_uid = _uid(
            run_engine(
                calibration_run(
                    modbus,
                    CALIBRATION_GROUP,
                    confirm=True,
                    poll_period=0.1,
                    gas_time=FLUSH_TIME / TIME_SCALE,
                )
            )
        )
    finally:
        run_engine.waiting_hook = None
    progress = modbus.calibration.last_progress
    phase = progress.phase.value if progress is not None else "unknown"
    say(f"  finished ({phase}) in {time.monotonic() - started:.1f} s, uid {calibration_uid}")
    phases = [entry.phase.value for entry in devices.modbus_sim.analyser.calibration_log]
    say(f"  the simulated analyser went through: {' → '.join(phases)}")
    return DemoRuns(count_uid, monitor_uid, calibration_uid, progress)
