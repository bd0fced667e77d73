"""FrameHub: latest frame, fan-out, drop-oldest overflow, terminal errors after buffered frames."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.errors import ServomexChecksumError, ServomexConnectionError
from ophyd_servomex.codec.models import ChannelId, Frame, Reading
from ophyd_servomex.driver import FrameHub

pytestmark = pytest.mark.anyio


def frame(i: int) -> Frame:
    return Frame(readings=(Reading(ChannelId.I1, float(i)),), timestamp=float(i))


async def test_every_subscriber_gets_every_frame_in_order() -> None:
    hub = FrameHub()
    subs = [hub.subscribe() for _ in range(3)]
    for i in range(5):
        hub.publish(frame(i))
    hub.close()
    for sub in subs:
        assert [f.timestamp async for f in sub] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert hub.latest == frame(4)
    assert hub.version == 5


async def test_a_slow_subscriber_loses_the_oldest_frames_and_never_blocks_publishing() -> None:
    hub = FrameHub()
    slow = hub.subscribe(buffer_size=3)
    fast = hub.subscribe(buffer_size=100)
    for i in range(10):
        hub.publish(frame(i))  # synchronous: would deadlock if it blocked
    hub.close()
    assert [f.timestamp async for f in slow] == [7.0, 8.0, 9.0]
    assert slow.dropped == 7
    assert [f.timestamp async for f in fast] == [float(i) for i in range(10)]
    assert fast.dropped == 0


async def test_errors_are_skipped_by_iteration_but_returned_by_next_item() -> None:
    hub = FrameHub()
    sub = hub.subscribe()
    items = hub.subscribe()
    bad = ServomexChecksumError("bad", expected=1, actual=2, raw=b"x")
    hub.publish(frame(1))
    hub.publish(bad)
    hub.publish(frame(2))
    hub.close()
    assert [f.timestamp async for f in sub] == [1.0, 2.0]
    assert await items.next_item() == frame(1)
    assert await items.next_item() is bad
    assert hub.errors == 1
    assert hub.latest == frame(2)


async def test_a_lost_link_is_raised_after_the_frames_already_buffered() -> None:
    hub = FrameHub()
    sub = hub.subscribe()
    hub.publish(frame(1))
    hub.publish(frame(2))
    lost = ServomexConnectionError("pulled cable")
    hub.close(lost)
    assert (await sub.next_frame()).timestamp == 1.0
    assert (await sub.next_frame()).timestamp == 2.0
    with pytest.raises(ServomexConnectionError, match="pulled cable"):
        await sub.next_frame()
    late = hub.subscribe()
    with pytest.raises(ServomexConnectionError):
        await late.next_frame()


async def test_closing_a_subscription_unsubscribes_it() -> None:
    hub = FrameHub()
    async with hub.subscribe() as sub:
        assert hub.subscriber_count == 1
    assert hub.subscriber_count == 0
    hub.publish(frame(1))
    assert [f async for f in sub] == []


async def test_wait_change_wakes_on_publish() -> None:
    hub = FrameHub()
    async with anyio.create_task_group() as tg:
        woke = anyio.Event()

        async def waiter() -> None:
            await hub.wait_change()
            woke.set()

        tg.start_soon(waiter)
        await anyio.sleep(0.001)
        hub.publish(frame(3))
        with anyio.fail_after(1):
            await woke.wait()


@settings(max_examples=60, deadline=None)
@given(published=st.integers(0, 40), size=st.integers(1, 10))
def test_overflow_keeps_the_newest_items_and_counts_the_rest(published: int, size: int) -> None:
    async def scenario() -> tuple[list[float], int]:
        hub = FrameHub()
        sub = hub.subscribe(buffer_size=size)
        for i in range(published):
            hub.publish(frame(i))
        hub.close()
        return [f.timestamp async for f in sub], sub.dropped

    got, dropped = anyio.run(scenario)
    kept = min(published, size)
    assert got == [float(i) for i in range(published - kept, published)]
    assert dropped == published - kept
