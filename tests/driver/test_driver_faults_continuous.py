"""Continuous-mode faults: each bad line is counted and reported, and no good frame is lost.

The simulator broadcasts 20 noisy frames a second over a real pty; a subscription taken
before the faults must receive, in order, exactly the good frames the simulator sent.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from driverhelpers import quiet_config

from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexConnectionError,
    ServomexFrameError,
    ServomexTimeoutError,
)
from ophyd_servomex.codec.models import ChannelId, Frame, ProtocolKind
from ophyd_servomex.driver import Analyzer, Subscription
from ophyd_servomex.sim import (
    DEFAULT_GARBAGE,
    Fault,
    SimChannel,
    SimConfig,
    SimHandle,
    WireKind,
    bench_channels,
    serve_pty,
)
from ophyd_servomex.transport import memory_transport_pair

pytestmark = pytest.mark.anyio

MODE = ProtocolKind.CONTINUOUS_ASCII
FIXTURES = Path(__file__).parent.parent / "fixtures"


def device(sim: SimHandle) -> Analyzer:
    return Analyzer(sim.port, protocol=MODE, timeout=0.5, expected_period=0.05)


def good_lines_sent(sim: SimHandle) -> list[bytes]:
    """The whole, valid frames the simulator put on the wire (a garbage-prefixed frame is
    whole after its garbage; a truncated or corrupted one is not)."""
    lines = []
    for event in sim.log.events(WireKind.BROADCAST):
        data = event.data
        if "garbage" in event.note:
            data = data[len(DEFAULT_GARBAGE) :]
        elif event.note and "delay" not in event.note:
            continue
        lines.append(data.removesuffix(b"\r\n"))
    return lines


async def collect(subscription: Subscription, count: int) -> list[Frame]:
    frames = []
    with anyio.fail_after(5):
        for _ in range(count):
            frames.append(await subscription.next_frame())
    return frames


def assert_nothing_lost(received: list[Frame], sent: list[bytes]) -> None:
    """The frames received are, in order, every good frame sent from the first of them."""
    raws = [f.raw for f in received]
    starts = [i for i, line in enumerate(sent) if line == raws[0]]
    assert any(raws == sent[i : i + len(raws)] for i in starts), (raws, sent)


def noisy_config(**changes: object) -> SimConfig:
    """The bench unit with a wildly noisy I1, so that no two frames are alike."""
    channels = (
        SimChannel(ChannelId.I1, "Oxygen", "%", 20.378, noise=2.0),
        *bench_channels(noisy=False)[1:],
    )
    return quiet_config(MODE, channels=channels, **changes)


@pytest.mark.parametrize(
    ("fault", "params", "error", "rescued"),
    [
        (Fault.CORRUPT_CHECKSUM, {}, ServomexChecksumError, 0),
        (Fault.GARBAGE, {}, ServomexFrameError, 1),
        (Fault.TRUNCATE, {}, ServomexFrameError, 1),
        (Fault.WRONG_CHANNEL_COUNT, {}, ServomexFrameError, 0),
    ],
    ids=lambda v: v.value if isinstance(v, Fault) else None,
)
async def test_a_bad_frame_is_counted_reported_and_skipped(
    fault: Fault, params: dict[str, object], error: type[Exception], rescued: int
) -> None:
    async with serve_pty(noisy_config()) as sim, device(sim) as analyser:
        subscription = analyser.subscribe()
        items = analyser.subscribe()
        await subscription.next_frame()
        sim.faults.inject(fault, **params)
        received = await collect(subscription, 6)
        assert analyser.dropped_frames == 1
        assert analyser._continuous is not None
        assert analyser._continuous.rescued_frames == rescued
        assert_nothing_lost(received, good_lines_sent(sim))
        # the error went to the item stream, as an error sample would
        errors = []
        with anyio.fail_after(2):
            while not errors:
                item = await items.next_item()
                if not isinstance(item, Frame):
                    errors.append(item)
        assert isinstance(errors[0], error)
        assert errors[0].context.port == sim.port


async def test_an_error_sample_appears_in_the_stream() -> None:
    async with serve_pty(noisy_config()) as sim, device(sim) as analyser:
        session = analyser.stream(count=8)
        first = await session.__anext__()
        sim.faults.inject(Fault.CORRUPT_CHECKSUM)
        samples = [first] + [s async for s in session]
        assert [s.ok for s in samples].count(False) == 1
        bad = next(s for s in samples if not s.ok)
        assert isinstance(bad.error, ServomexChecksumError)
        assert bad.device == sim.port
        assert session.errors == 1


async def test_a_missed_or_late_broadcast_is_just_waited_for() -> None:
    async with serve_pty(noisy_config()) as sim, device(sim) as analyser:
        subscription = analyser.subscribe()
        await subscription.next_frame()
        sim.faults.inject(Fault.DROP)
        sim.faults.inject(Fault.DELAY, seconds=0.12)
        received = await collect(subscription, 5)
        assert analyser.dropped_frames == 0
        assert_nothing_lost(received, good_lines_sent(sim))


async def test_joining_mid_frame_skips_the_fragment_without_counting_it() -> None:
    capture = (FIXTURES / "continuous_4100_idle_5ch.bin").read_bytes()
    client, peer = memory_transport_pair(port="memory://capture")
    async with Analyzer(client, protocol=MODE, expected_period=0.05, identify=False) as a:
        subscription = a.subscribe()
        await peer.send(capture[100:])  # join half-way through frame 0 (LF-only capture)
        frames = await collect(subscription, 5)
        assert [f.raw for f in frames] == capture.splitlines()[1:]
        assert a.dropped_frames == 0


async def test_joining_a_paced_broadcast_mid_frame() -> None:
    """At 19200 baud a frame trickles in for ~107 ms; a client joining then loses nothing
    but the fragment."""
    config = noisy_config(realistic_timing=True, period=0.25)
    async with serve_pty(config) as sim:
        await anyio.sleep(0.3)  # the broadcaster is now mid-schedule
        async with device(sim) as analyser:
            subscription = analyser.subscribe()
            received = await collect(subscription, 3)
            assert analyser.dropped_frames == 0
            assert_nothing_lost(received, good_lines_sent(sim))


async def test_a_pulled_cable_delivers_every_frame_then_the_error() -> None:
    async with serve_pty(noisy_config()) as sim, device(sim) as analyser:
        subscription = analyser.subscribe()
        await subscription.next_frame()
        await anyio.sleep(0.2)
        sim.faults.inject(Fault.DISCONNECT)
        received = []
        with pytest.raises(ServomexConnectionError), anyio.fail_after(5):  # noqa: PT012
            while True:
                received.append(await subscription.next_frame())
        assert_nothing_lost(received, good_lines_sent(sim))
        assert received[-1].raw == good_lines_sent(sim)[-1]
        with pytest.raises(ServomexConnectionError):
            await analyser.poll()
        with pytest.raises(ServomexConnectionError):
            async for _ in analyser.stream():
                pass


async def test_no_frame_in_time_suggests_a_modbus_mode() -> None:
    async with (
        serve_pty(quiet_config(ProtocolKind.MODBUS_RTU)) as sim,
        Analyzer(
            sim.port, protocol=MODE, timeout=0.1, expected_period=0.1, identify=False
        ) as analyser,
    ):
        with pytest.raises(ServomexTimeoutError, match="Modbus mode") as info:
            await analyser.poll()
        assert info.value.context.port == sim.port
        assert "0.2 s" in str(info.value)  # timeout + expected period
