"""The devices' frames: ordering, listeners, following the driver's hub, pinning, down/up."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fakesession import make_frame

from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexConnectionError,
    ServomexError,
)
from ophyd_servomex.devices import DeviceFrames, FrameSnapshot
from ophyd_servomex.driver import FrameHub

pytestmark = pytest.mark.anyio


async def test_publish_numbers_frames_and_ignores_repeats_and_stale_ones() -> None:
    hub = DeviceFrames()
    assert hub.latest is None
    assert hub.current() is None
    first = make_frame(1.0, stamp=100.0)
    snap = hub.publish(first, dropped_frames=2)
    assert snap == FrameSnapshot(first, 1, 2)
    assert snap.timestamp == 100.0
    assert hub.publish(first) is None  # the same frame again (from a second publisher)
    assert hub.publish(make_frame(0.0, stamp=99.0)) is None  # older than the latest
    second = hub.publish(make_frame(2.0, stamp=100.0))  # same instant: a new frame
    assert second is not None
    assert second.sequence == 2
    assert hub.sequence == 2
    assert hub.latest is second


async def test_listeners_get_the_current_frame_then_every_new_one() -> None:
    counts: list[int] = []
    hub = DeviceFrames(on_demand=counts.append)
    got: list[float] = []
    hub.publish(make_frame(1.0, stamp=1.0))
    key = hub.add_listener(lambda s: got.append(s.frame.readings[0].value or 0.0))
    quiet = hub.add_listener(lambda s: got.append(-1.0), deliver_current=False)
    hub.publish(make_frame(2.0, stamp=2.0))
    hub.remove_listener(quiet)
    hub.remove_listener(quiet)  # unknown keys are ignored
    hub.publish(make_frame(3.0, stamp=3.0))
    hub.remove_listener(key)
    hub.publish(make_frame(4.0, stamp=4.0))
    assert got == [1.0, 2.0, -1.0, 3.0]
    assert counts == [1, 2, 1, 0]
    assert hub.listener_count == 0


async def test_a_failing_listener_does_not_starve_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = DeviceFrames()
    got: list[int] = []

    def broken(snapshot: FrameSnapshot) -> None:
        raise RuntimeError("subscriber bug")

    hub.add_listener(broken)
    hub.add_listener(lambda s: got.append(s.sequence))
    with caplog.at_level(logging.ERROR):
        hub.publish(make_frame(1.0, stamp=1.0))
    assert got == [1]
    assert "subscriber bug" in caplog.text


async def test_following_a_driver_hub_takes_each_frame_inside_its_publish() -> None:
    frames = DeviceFrames()
    driver = FrameHub()
    dropped = [3]
    closed: list[ServomexError | None] = []
    got: list[FrameSnapshot] = []
    frames.add_listener(got.append)
    stop = frames.follow(driver, dropped_frames=lambda: dropped[0], on_close=closed.append)
    assert driver.listener_count == 1
    first = make_frame(1.0, stamp=1.0)
    driver.publish(first)  # no await: the snapshot exists when publish returns
    assert frames.latest == FrameSnapshot(first, 1, 3)
    driver.publish(ServomexChecksumError("bad", expected=1, actual=2, raw=b"x"))
    assert frames.sequence == 1  # an error is no frame
    dropped[0] = 4
    driver.publish(make_frame(0.5, stamp=0.5))  # older than the latest: ignored
    second = make_frame(2.0, stamp=2.0)
    driver.publish(second)
    assert [(s.frame, s.sequence, s.dropped_frames) for s in got] == [(first, 1, 3), (second, 2, 4)]
    assert frames.snapshot_of(second) is frames.latest
    assert frames.snapshot_of(first, dropped_frames=3) == FrameSnapshot(first, 2, 3)
    stop()
    driver.publish(make_frame(3.0, stamp=3.0))
    assert frames.sequence == 2  # no longer following
    assert closed == []
    frames.follow(driver, dropped_frames=lambda: 0, on_close=closed.append)
    lost = ServomexConnectionError("cable pulled")
    driver.close(lost)
    assert closed == [lost]


async def test_a_pin_holds_one_snapshot_across_gathered_tasks_and_is_reentrant() -> None:
    hub = DeviceFrames()
    assert hub.current() is None
    with hub.pinned() as nothing:
        assert nothing is None
        assert not hub.is_pinned()
    old = hub.publish(make_frame(1.0, stamp=1.0))

    async def look(delay: int) -> FrameSnapshot | None:
        for _ in range(delay):
            await asyncio.sleep(0)
        return hub.current()

    with hub.pinned() as pinned:
        assert pinned is old
        tasks = [asyncio.ensure_future(look(d)) for d in range(4)]
        await asyncio.sleep(0)
        hub.publish(make_frame(2.0, stamp=2.0))
        with hub.pinned(hub.latest) as inner:
            assert inner is old  # the outer pin wins
        assert await asyncio.gather(*tasks) == [old] * 4
    assert not hub.is_pinned()
    assert hub.current() is hub.latest


async def test_reads_report_the_triggered_snapshot_until_cleared() -> None:
    hub = DeviceFrames()
    taken = hub.publish(make_frame(1.0, stamp=1.0))
    hub.set_triggered(taken)
    hub.publish(make_frame(2.0, stamp=2.0))
    assert hub.read_snapshot() is taken
    with hub.pinned() as pinned:
        assert pinned is taken
    hub.clear_trigger()
    assert hub.read_snapshot() is hub.latest


async def test_down_frames_read_nothing_and_send_one_invalid_copy() -> None:
    hub = DeviceFrames(unavailable=lambda: ServomexConnectionError("gas is down"))
    got: list[FrameSnapshot] = []
    hub.add_listener(got.append)
    taken = hub.publish(make_frame(1.0, stamp=1.0))
    assert taken is not None
    hub.set_triggered(taken)
    pinned_before = None
    with hub.pinned() as pin:
        pinned_before = pin
        invalid = hub.mark_down()
        assert hub.current() is taken  # a read already under way keeps its frame
    assert pinned_before is taken
    assert invalid is not None
    assert invalid.frame is taken.frame
    assert invalid.sequence == taken.sequence
    assert not invalid.valid
    assert invalid.timestamp == invalid.lost_at
    assert invalid.lost_at is not None
    assert invalid.lost_at > 1.0
    assert got == [taken, invalid]
    assert hub.mark_down() is None  # once
    assert got == [taken, invalid]
    assert hub.down
    assert str(hub.unavailable()) == "gas is down"
    assert hub.current() is None
    assert hub.read_snapshot() is None
    assert hub.triggered is None
    with hub.pinned() as nothing:
        assert nothing is None
    assert hub.describe_snapshot() is taken  # describe() still knows the data types
    late: list[FrameSnapshot] = []
    hub.add_listener(late.append)
    assert late == [invalid]  # a new subscriber sees the invalid value, not a valid one
    hub.mark_up()
    back = hub.publish(make_frame(2.0, stamp=3.0))
    assert back is not None
    assert back.valid
    assert hub.current() is back
    assert got[-1] is back
    assert late == [invalid, back]
