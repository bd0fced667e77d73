"""read() reports one frame, even while frames arrive faster than reads complete."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from devicehelpers import connect, disconnect, simulator
from fakesession import FakeSession, make_frame

from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.devices import ServomexAnalyser

CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII


def test_2000_reads_during_a_fast_broadcast_mix_no_frames(RE: RunEngine) -> None:
    with simulator(CONTINUOUS, period=0.002, noisy=True) as sim:
        analyser = connect(sim, CONTINUOUS, expected_period=0.05)
        # frames by timestamp; frames that arrive in one chunk share their receipt time
        frames: dict[float, list[dict[str, Any]]] = {}

        def remember(readings: dict[str, Any]) -> None:
            stamp = next(iter(readings.values()))["timestamp"]
            frames.setdefault(stamp, []).append({k: r["value"] for k, r in readings.items()})

        async def read_many(batches: int, size: int) -> tuple[list[dict[str, Any]], int]:
            analyser.subscribe(remember)
            results: list[dict[str, Any]] = []
            arrived = 0
            try:
                for _ in range(batches):
                    seen = analyser.hub_sequence
                    results += await asyncio.gather(*(analyser.read() for _ in range(size)))
                    await asyncio.sleep(0.001)  # let the simulator's thread have the GIL
                    # a read renders its frame in one step, so frames arrive between reads
                    arrived += analyser.hub_sequence - seen
            finally:
                analyser.clear_sub(remember)
            return results, arrived

        try:
            results, arrived = call_in_bluesky_event_loop(read_many(200, 10), timeout=120)
        finally:
            disconnect(analyser)

    mixed = 0
    for reading in results:
        stamps = {r["timestamp"] for r in reading.values()}
        values = {k: r["value"] for k, r in reading.items()}
        if len(stamps) != 1 or values not in frames.get(stamps.pop(), []):
            mixed += 1
    assert len(results) == 2000
    assert mixed == 0
    # frames really arrived while the batches of reads went on, and reads saw many of them
    assert arrived >= 20, arrived
    assert len({next(iter(r.values()))["timestamp"] for r in results}) >= 20


@pytest.mark.anyio
async def test_a_frame_published_mid_read_does_not_leak_into_the_read() -> None:
    """Deterministic: publish a new frame after k loop iterations of a read in flight."""
    session = FakeSession(ProtocolKind.MODBUS_RTU)
    analyser = ServomexAnalyser(session_factory=session.factory(), name="a")
    await analyser.connect()
    hub = analyser._hub
    try:
        held_old_frame = 0
        for k in range(8):
            old = make_frame(100.0 + k, stamp=2e9 + 2 * k)
            new = make_frame(200.0 + k, stamp=2e9 + 2 * k + 1)
            hub.publish(old)
            task = asyncio.ensure_future(analyser.read())
            for _ in range(k):
                await asyncio.sleep(0)
            hub.publish(new)
            reading = await task
            assert hub.latest is not None
            assert hub.latest.frame is new
            values = {r["value"] for key, r in reading.items() if key.endswith("-value")}
            stamps = {r["timestamp"] for r in reading.values()}
            assert stamps in ({old.timestamp}, {new.timestamp})
            assert values == ({100.0 + k} if stamps == {old.timestamp} else {200.0 + k})
            held_old_frame += stamps == {old.timestamp}
        # the publish landed while reads were in flight, and those reads kept their frame
        assert held_old_frame >= 5
    finally:
        await analyser.disconnect()
