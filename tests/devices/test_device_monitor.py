"""Monitoring: every broadcast frame reaches bps.monitor and signal subscribers; Modbus
polls in the background only while something is subscribed, at a rate settable with
bps.mv; monitor_broadcast shows its progress."""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import time
from typing import Any

import bluesky.plan_stubs as bps
import pytest
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
from ophyd_servomex.plans.monitoring import BroadcastProgress
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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_monitor_broadcast_shows_frames_rate_and_oxygen_while_it_records(
    RE: RunEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator(CONTINUOUS, period=0.05, channels=LIVELY, noisy=True) as sim:
        analyser = connect(sim, CONTINUOUS, name="bc")
        try:
            docs = documents(RE)
            RE(monitor_broadcast([analyser], 1.0, progress_interval=0.0))
            quiet = capsys.readouterr()
            RE(monitor_broadcast([analyser], 0.3, progress=False))
            silent = capsys.readouterr()
            terminal = _Terminal()
            RE(monitor_broadcast([analyser], 0.3, progress=terminal))
        finally:
            disconnect(analyser)
    first_run = docs[: next(i for i, (n, _) in enumerate(docs) if n == "stop") + 1]
    events = _stream_events(first_run, "bc_monitor")
    start = next(d for n, d in first_run if n == "start")
    stop = next(d for n, d in first_run if n == "stop")
    lines = quiet.out.splitlines()
    # stdout is no terminal here: plain lines, one per frame at interval 0, then the count
    assert len(lines) == len(events) + 1
    assert "\r" not in quiet.out
    pattern = re.compile(
        r"monitor_broadcast (\d+\.\d)/1 s  bc_monitor: (\d+) frames, "
        r"(-|\d+\.\d)/s, Oxygen (\d+\.\d{3}) %"
    )
    for n, (line, event) in enumerate(zip(lines, events, strict=False), start=1):
        match = pattern.fullmatch(line)
        assert match, line
        assert int(match.group(2)) == n
        assert match.group(4) == f"{event['data']['bc-i1-value']:.3f}"  # the latest O2
        assert float(match.group(1)) == pytest.approx(event["time"] - start["time"], abs=0.051)
        assert (match.group(3) == "-") == (n == 1)
    span = events[-1]["time"] - events[0]["time"]
    assert lines[-1] == (
        f"monitor_broadcast done in {stop['time'] - start['time']:.1f} s: "
        f"bc_monitor {len(events)} frames ({(len(events) - 1) / span:.1f} frames/s)"
    )
    assert silent.out == ""
    # on a terminal the line is rewritten in place and the summary ends it
    written = terminal.getvalue()
    assert written.startswith("\rmonitor_broadcast ")
    assert written.endswith("\n")
    assert written.count("\n") == 1
    updates = written[1:].rstrip("\n").split("\r")
    assert updates[-1].rstrip(" ").endswith(" frames/s)")
    assert updates[-1].startswith("monitor_broadcast done in ")
    assert all(len(u) >= len(p.rstrip()) for p, u in itertools.pairwise(updates))  # covered


def test_monitor_broadcast_progress_lines_come_about_once_per_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = 0.0
    analyser = _NamedOnly()
    progress = BroadcastProgress([analyser], 10.0, interval=1.0, clock=lambda: now)  # type: ignore[list-item]
    progress("start", {"time": 100.0})
    progress(
        "descriptor",
        {
            "uid": "d1",
            "name": "gas_monitor",
            "data_keys": {"gas-i1-value": {"units": "%", "precision": 3}},
        },
    )
    progress("descriptor", {"uid": "other", "name": "primary", "data_keys": {}})
    for n in range(25):  # 10 frames per second for 2.5 s
        now = n / 10
        progress(
            "event",
            {"descriptor": "d1", "time": 100.0 + n / 10, "data": {"gas-i1-value": 20.9 + n / 1000}},
        )
        progress("event", {"descriptor": "other", "time": 100.0, "data": {}})
    progress("stop", {"time": 102.6})
    assert capsys.readouterr().out.splitlines() == [
        "monitor_broadcast 0.0/10 s  gas_monitor: 1 frames, -/s, Oxygen 20.900 %",
        "monitor_broadcast 1.0/10 s  gas_monitor: 11 frames, 10.0/s, Oxygen 20.910 %",
        "monitor_broadcast 2.0/10 s  gas_monitor: 21 frames, 10.0/s, Oxygen 20.920 %",
        "monitor_broadcast done in 2.6 s: gas_monitor 25 frames (10.0 frames/s)",
    ]
    assert progress.lines[-1].startswith("monitor_broadcast done")
    progress("event", {"descriptor": "d1"})  # a malformed document switches it off, quietly
    progress("stop", {"time": 103.0})
    assert capsys.readouterr().out == ""


class _Channel:
    def __init__(self, key: str, name: str | None, cid: ChannelId) -> None:
        self.value = type("Sig", (), {"name": key})()
        self.info = type("Info", (), {"name": name})()
        self.channel_id = cid


class _NamedOnly:
    """Just what BroadcastProgress reads of an analyser: its name and channels."""

    name = "gas"
    channel_ids = (ChannelId.E1, ChannelId.I1)

    def channel(self, cid: ChannelId) -> _Channel:
        if cid is ChannelId.E1:
            return _Channel("gas-e1-value", None, cid)
        return _Channel("gas-i1-value", "Oxygen", cid)


def test_bps_mv_changes_the_poll_rate_of_a_running_monitor(RE: RunEngine) -> None:
    mode = ProtocolKind.MODBUS_RTU
    marks: dict[str, float] = {}

    def plan(analyser: Any) -> Any:
        yield from bps.open_run()
        yield from bps.monitor(analyser, name="fast_then_slow")
        marks["start"] = time.time()
        yield from bps.sleep(0.6)
        yield from bps.mv(analyser.poll_rate_hz, 4.0)
        marks["switched"] = time.time()
        yield from bps.sleep(1.0)
        marks["end"] = time.time()
        yield from bps.unmonitor(analyser)
        yield from bps.close_run()

    with simulator(mode) as sim:
        analyser = connect(sim, mode, poll_rate_hz=20.0)
        try:
            docs = documents(RE)
            RE(plan(analyser))
            rate = call_in_bluesky_event_loop(analyser.poll_rate_hz.get_value())
        finally:
            disconnect(analyser)
    assert rate == 4.0
    stamps = [e["time"] for e in _stream_events(docs, "fast_then_slow")]
    before = [t for t in stamps if marks["start"] < t <= marks["switched"]]
    after = [t for t in stamps if marks["switched"] < t <= marks["end"]]
    # an absolute schedule never polls more often than the rate (load only makes it rarer):
    # 1 s at 4 Hz is at most 4 sweeps plus the one under way at the switch
    assert len(after) <= 5
    assert len(before) >= 5  # 0.6 s at 20 Hz is 12 sweeps on an idle machine
