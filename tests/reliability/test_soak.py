"""The soak: ten minutes of a 20 frames/s broadcast, time-scaled — 12 000 frames.

The simulated analyser runs in its own process (it keeps its own pace, like the real one)
and lives ten simulated minutes while it broadcasts as fast as it can:

* 10 000 frames go through the driver (``open_device`` over a pty, one subscription):
  every frame the simulator's wire log shows, from the first one the client heard, arrives
  in order with its exact line and values, none dropped, and the memory the driver holds
  does not grow over the second half (``tracemalloc``: what was allocated in the second
  5 000 frames and is still alive at the end stays under a small bound);
* 2 000 frames go through the devices: a ``ServomexAnalyser`` monitored by a RunEngine
  (``monitor_broadcast``) into an embedded catalog via the journaled writer; the catalog
  then holds one row per frame broadcast during the run, values exact.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
import tracemalloc
from array import array
from pathlib import Path
from typing import Any

import anyio
import pytest
from reliabilityhelpers import SimulatorProcess

from ophyd_servomex.codec.continuous import parse_frame
from ophyd_servomex.codec.models import ChannelId, ProtocolKind
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.sim import SimChannel, SimConfig, bench_channels

pytestmark = pytest.mark.slow

CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII
REAL_PERIOD = 0.05
"""The broadcast being soaked: 20 frames a second …"""
REAL_DURATION = 600.0
"""… for ten minutes: 12 000 frames."""
DRIVER_FRAMES = 10_000
DEVICE_FRAMES = 2_000
DRIVER_PERIOD = 0.0008
"""As fast as the simulator can send (about 800 frames/s on two cores)."""
DEVICE_PERIOD = 0.005
"""200 frames/s: what a RunEngine monitoring a 5-channel analyser keeps up with."""
GROWTH_LIMIT = 256 * 1024
"""Bytes the driver may hold on to after the second 5 000 frames: ~50 bytes a frame would
already break it, where keeping each frame (≈1 kB) would take 5 MB."""
CHANNELS = (ChannelId.I1, ChannelId.I2, ChannelId.I3, ChannelId.E1, ChannelId.E2)


def soak_config(period: float, **changes: Any) -> SimConfig:
    """The noisy bench unit, living ten simulated minutes in 12 000 frames."""
    options: dict[str, Any] = {
        "mode": CONTINUOUS,
        "period": period,
        "seed": 12_000,
        "time_scale": REAL_PERIOD / period,
        "log_size": 20_000,
    }
    return SimConfig(**(options | changes))


def sent_lines(sim: SimulatorProcess) -> list[bytes]:
    """Every broadcast the simulator's log shows (no faults in a soak)."""
    assert all(note == "" for _, _, note in sim.broadcasts)
    return [data.removesuffix(b"\r\n") for _, data, _ in sim.broadcasts]


def contiguous_match(sent: list[Any], received: list[Any]) -> int:
    """Where ``received`` sits in ``sent`` as one unbroken run (the client joined late, so
    it may start anywhere); fails when there is no such place."""
    for start in (i for i, item in enumerate(sent) if item == received[0]):
        if sent[start : start + len(received)] == received:
            return start
    raise AssertionError("the frames received are not an unbroken run of those sent")


# --- through the driver ------------------------------------------------------------------------


async def receive(port: str, count: int) -> dict[str, Any]:
    """Take ``count`` frames from ``port``; trace memory over the second half.

    What the test keeps (each line and value) goes into one bytearray and one array
    allocated here, and allocations made in this file are left out of the measurement.
    """
    analyser = Analyzer(
        port, protocol=CONTINUOUS, timeout=2.0, expected_period=DRIVER_PERIOD, identify=False
    )
    subscription = analyser.subscribe(buffer_size=4096)  # before the first frame arrives
    lines = bytearray()
    values = array("d")
    async with analyser:
        for n in range(count):
            if n == count // 2:
                gc.collect()
                tracemalloc.start(1)
            with anyio.fail_after(5):
                frame = await subscription.next_frame()
            lines += frame.raw or b"?"
            lines += b"\n"
            values.extend(math.nan if v is None else v for v in frame.values.values())
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        dropped = analyser.dropped_frames
        lagged = subscription.dropped
    held = snapshot.filter_traces(
        [tracemalloc.Filter(False, __file__), tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    return {
        "lines": bytes(lines).split(b"\n")[:-1],
        "values": values,
        "dropped": dropped,
        "lagged": lagged,
        "growth": sum(stat.size for stat in held.statistics("filename")),
        "top": [str(stat) for stat in held.statistics("lineno")[:5]],
    }


def test_10000_frames_through_the_driver_every_one_exact_and_memory_flat() -> None:
    with SimulatorProcess(soak_config(DRIVER_PERIOD)) as sim:
        got = anyio.run(receive, sim.port, DRIVER_FRAMES, backend="asyncio")
    sent = sent_lines(sim)

    # nothing skipped, nothing repeated, nothing out of order, nothing reported bad
    received: list[bytes] = got["lines"]
    summary = {k: v for k, v in got.items() if k not in ("lines", "values")}
    assert len(received) == DRIVER_FRAMES
    assert got["dropped"] == 0, summary  # no line reported bad
    assert got["lagged"] == 0, summary  # the subscriber never fell 4096 frames behind
    start = contiguous_match(sent, received)
    # ... values exact: what the driver decoded is what the codec reads from the log's bytes
    expected = array("d")
    for line in sent[start : start + DRIVER_FRAMES]:
        frame = parse_frame(line, timestamp=0.0)
        expected.extend(math.nan if v is None else v for v in frame.values.values())
    assert got["values"].tobytes() == expected.tobytes()
    assert sim.log_total == len(sent)  # the log kept everything it recorded

    # the analyser lived its simulated minutes
    assert sim.sim_time >= REAL_PERIOD * len(sent) * 0.9

    # memory flat over the second half
    assert got["growth"] < GROWTH_LIMIT, "\n".join(got["top"])


# --- through the devices, the RunEngine and the catalog --------------------------------------


def test_2000_frames_monitored_by_a_run_engine_are_all_in_the_embedded_catalog(
    tmp_path: Path,
) -> None:
    from bluesky import RunEngine
    from bluesky.run_engine import call_in_bluesky_event_loop
    from ophyd_async.core import init_devices

    from ophyd_servomex.catalog import close_catalog, open_catalog, run_table, subscribe_writer
    from ophyd_servomex.devices import ServomexAnalyser
    from ophyd_servomex.plans import monitor_broadcast

    # I1 noisy enough that a run of rows matches one run of broadcasts only
    channels = (
        SimChannel(ChannelId.I1, "Oxygen", "%", 20.378, noise=2.0),
        *bench_channels(noisy=True)[1:],
    )
    RE = RunEngine({}, loop=asyncio.new_event_loop())
    catalog = open_catalog(tmp_path / "catalog")
    try:
        subscription = subscribe_writer(RE, catalog)
        with SimulatorProcess(soak_config(DEVICE_PERIOD, channels=channels)) as sim:
            with init_devices(set_name=False):
                analyser = ServomexAnalyser(
                    sim.port, protocol=CONTINUOUS, expected_period=DEVICE_PERIOD, name="analyser"
                )
            try:
                (uid,) = RE(monitor_broadcast([analyser], DEVICE_FRAMES * DEVICE_PERIOD))
            finally:
                call_in_bluesky_event_loop(analyser.disconnect())
        subscription.unsubscribe()
        run = catalog[uid]
        table = run_table(run, "analyser_monitor")
        start, stop = run.metadata["start"], run.metadata["stop"]
    finally:
        close_catalog(catalog)
        RE.loop.call_soon_threadsafe(RE.loop.stop)
        RE._th.join()
        RE.loop.close()

    assert stop["exit_status"] == "success"
    assert subscription.writer.failed_runs == []
    keys = [f"analyser-{c.value.lower()}-value" for c in CHANNELS]
    rows = [tuple(row) for row in table[keys].itertuples(index=False)]
    assert table.index.tolist() == list(range(1, len(rows) + 1))
    assert stop["num_events"] == {"analyser_monitor": len(rows)}

    # every row is a broadcast, in order, none skipped or repeated ...
    sent = sent_lines(sim)
    truth = [tuple(parse_frame(line).channel(c).value for c in CHANNELS) for line in sent]
    first = contiguous_match(truth, rows)
    # ... and every broadcast sent while the run was recording is a row
    offset = time.time() - time.monotonic()
    inside = [
        i
        for i, (sent_at, _, _) in enumerate(sim.broadcasts)
        if start["time"] + 0.2 < sent_at + offset < stop["time"] - 0.2
    ]
    assert first <= inside[0]
    assert inside[-1] < first + len(rows)
    assert len(rows) >= DEVICE_FRAMES * 0.9
