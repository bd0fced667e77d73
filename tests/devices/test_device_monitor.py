"""Monitoring: every broadcast frame reaches bps.monitor and signal subscribers; Modbus
polls in the background only while something is subscribed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from devicehelpers import (
    broadcasts,
    connect,
    disconnect,
    documents,
    f32,
    requests,
    simulator,
)

from ophyd_servomex.codec.models import ChannelId, ProtocolKind
from ophyd_servomex.plans import monitor_broadcast
from ophyd_servomex.sim import SimChannel, WireKind

CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII
# noisy enough that consecutive frames differ, so matching events to broadcasts is exact
LIVELY = (
    SimChannel(ChannelId.I1, "Oxygen", "%", 20.4, noise=0.05),
    SimChannel(ChannelId.I2, "CO", "%", 0.5, noise=0.05),
    SimChannel(ChannelId.I3, "CO₂", "%", 0.8, noise=0.05),
    SimChannel(ChannelId.E1, None, "mA", 12.0, noise=0.5),
)


def _stream_events(docs: list[tuple[str, dict[str, Any]]], stream: str) -> list[dict[str, Any]]:
    descriptors = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
    return [d for n, d in docs if n == "event" and d["descriptor"] in descriptors]


def _values(data: dict[str, Any]) -> tuple[float, ...]:
    return tuple(data[f"analyser-{c}-value"] for c in ("i1", "i2", "i3", "e1"))


def test_a_monitored_run_records_every_frame_of_a_20_hz_broadcast_for_10_s(
    RE: RunEngine,
) -> None:
    offset = time.time() - time.monotonic()
    with simulator(CONTINUOUS, period=0.05, channels=LIVELY, noisy=True) as sim:
        analyser = connect(sim, CONTINUOUS)
        try:
            docs = documents(RE)
            RE(monitor_broadcast([analyser], 10.0, md={"purpose": "test"}))
        finally:
            disconnect(analyser)
        sent = broadcasts(sim)
        sent_at = [e.time + offset for e in sim.log.events(WireKind.BROADCAST)]

    start = next(d for n, d in docs if n == "start")
    stop = next(d for n, d in docs if n == "stop")
    assert start["plan_name"] == "monitor_broadcast"
    assert start["purpose"] == "test"
    assert stop["exit_status"] == "success"
    events = _stream_events(docs, "analyser_monitor")
    assert stop["num_events"] == {"analyser_monitor": len(events)}
    recorded = [_values(e["data"]) for e in events]
    truth = [tuple(f.channel(c).value for c in ("I1", "I2", "I3", "E1")) for f in sent]
    assert len(set(truth)) == len(truth), "broadcasts not distinguishable"

    # the events are a contiguous run of the broadcasts: nothing skipped, nothing repeated
    first = truth.index(recorded[0])
    assert truth[first : first + len(recorded)] == recorded
    # ... and it covers every broadcast sent while the run was recording
    inside = [i for i, t in enumerate(sent_at) if start["time"] + 0.2 < t < stop["time"] - 0.2]
    assert inside[0] >= first
    assert inside[-1] < first + len(recorded)
    assert len(recorded) >= 190  # 10 s at 20 frames/s
    for event in events:
        assert len(set(event["timestamps"].values())) == 1
    assert [e["seq_num"] for e in events] == list(range(1, len(events) + 1))


def test_a_value_signal_subscription_sees_every_broadcast(RE: RunEngine) -> None:
    with simulator(CONTINUOUS, period=0.02, channels=LIVELY, noisy=True) as sim:
        analyser = connect(sim, CONTINUOUS)
        got: list[dict[str, Any]] = []

        async def watch(seconds: float) -> tuple[int, int]:
            first = analyser.hub_sequence
            analyser.i1.value.subscribe(got.append)
            await asyncio.sleep(seconds)
            analyser.i1.value.clear_sub(got.append)
            return first, analyser.hub_sequence

        try:
            first, last = call_in_bluesky_event_loop(watch(1.0))
        finally:
            disconnect(analyser)
    # the current frame at once, then one callback per frame published
    assert len(got) == last - first + 1
    assert len(got) >= 30
    stamps = [g["analyser-i1-value"]["timestamp"] for g in got]
    assert stamps == sorted(stamps)


def test_modbus_polls_in_the_background_only_while_monitored(RE: RunEngine) -> None:
    mode = ProtocolKind.MODBUS_RTU
    with simulator(mode) as sim:
        analyser = connect(sim, mode, poll_rate_hz=20.0)
        try:
            idle_before = len(requests(sim))
            time.sleep(0.3)
            assert len(requests(sim)) == idle_before  # nobody subscribed: no traffic
            docs = documents(RE)
            RE(monitor_broadcast([analyser], 1.0))
            time.sleep(0.1)  # a sweep already under way when the run ended completes
            after_run = len(requests(sim))
            time.sleep(0.3)
            assert len(requests(sim)) == after_run  # unsubscribed: the poll stopped
            truth = sim.analyser.truth()
        finally:
            disconnect(analyser)
    events = _stream_events(docs, "analyser_monitor")
    # one event per sweep at 20 Hz for 1 s, plus the frame current at subscription
    assert 15 <= len(events) <= 25
    # three transactions per background sweep (the last may have ended after the run)
    assert after_run - idle_before in (3 * (len(events) - 1), 3 * len(events))
    expected = tuple(f32(truth.channel(c).value or 0.0) for c in ("I1", "I2", "I3", "E1"))
    assert all(_values(e["data"]) == expected for e in events)
