"""FrameHub: latest frame, fan-out, drop-oldest overflow, terminal errors after buffered frames,
synchronous listeners."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexConnectionError,
    ServomexError,
)
from ophyd_servomex.codec.models import ChannelId, Frame, Reading
from ophyd_servomex.driver import FrameHub, HubItem
from ophyd_servomex.driver.hub import Listeners

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


async def test_listeners_run_inside_publish_in_the_order_they_were_added() -> None:
    hub = FrameHub()
    calls: list[tuple[str, float | str, int]] = []

    def listener(name: str) -> Any:
        def on_item(item: HubItem) -> None:
            # the frame is already latest when a listener sees it
            value = item.timestamp if isinstance(item, Frame) else type(item).__name__
            calls.append((name, value, hub.version))

        return on_item

    remove_a = hub.add_listener(listener("a"))
    hub.add_listener(listener("b"))
    assert hub.listener_count == 2
    hub.publish(frame(1))  # no await: delivered before publish returns
    bad = ServomexChecksumError("bad", expected=1, actual=2, raw=b"x")
    hub.publish(bad)
    remove_a()
    remove_a()  # removing twice does nothing
    hub.publish(frame(2))
    assert calls == [
        ("a", 1.0, 1),
        ("b", 1.0, 1),
        ("a", "ServomexChecksumError", 1),
        ("b", "ServomexChecksumError", 1),
        ("b", 2.0, 2),
    ]
    assert hub.listener_count == 1


async def test_a_raising_listener_is_logged_and_does_not_starve_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = FrameHub()
    got: list[float] = []
    sub = hub.subscribe()

    def broken(item: HubItem) -> None:
        raise RuntimeError("listener bug")

    hub.add_listener(broken)
    hub.add_listener(lambda item: got.append(item.timestamp if isinstance(item, Frame) else -1))
    with caplog.at_level(logging.ERROR, logger="ophyd_servomex.driver.hub"):
        hub.publish(frame(1))
        hub.publish(frame(2))
    assert got == [1.0, 2.0]
    assert hub.latest == frame(2)
    assert (await sub.next_frame(), await sub.next_frame()) == (frame(1), frame(2))
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError] * 2


async def test_a_listener_removed_by_an_earlier_one_is_not_called() -> None:
    hub = FrameHub()
    got: list[str] = []
    removers: dict[str, Any] = {}

    def first(item: HubItem) -> None:
        got.append("first")
        removers["second"]()

    removers["first"] = hub.add_listener(first)
    removers["second"] = hub.add_listener(lambda item: got.append("second"))
    hub.publish(frame(1))
    hub.publish(frame(2))
    assert got == ["first", "first"]


async def test_closing_tells_each_listener_once_and_drops_them() -> None:
    hub = FrameHub()
    closed: list[tuple[str, ServomexError | None]] = []
    items: list[HubItem] = []
    hub.add_listener(items.append, on_close=lambda e: closed.append(("a", e)))
    hub.add_listener(items.append)  # no on_close: fine
    removed = hub.add_listener(items.append, on_close=lambda e: closed.append(("gone", e)))
    removed()
    lost = ServomexConnectionError("pulled cable")
    hub.close(lost)
    hub.close(ServomexConnectionError("again"))  # a second close changes nothing
    hub.publish(frame(1))  # after the close: nobody hears it
    assert closed == [("a", lost)]
    assert items == []
    assert hub.listener_count == 0
    # a listener added to a closed hub hears the close at once and is never registered
    late: list[ServomexError | None] = []
    remove = hub.add_listener(items.append, on_close=late.append)
    assert late == [lost]
    assert hub.listener_count == 0
    remove()


async def test_a_clean_close_tells_listeners_none() -> None:
    hub = FrameHub()
    closed: list[ServomexError | None] = []
    hub.add_listener(lambda item: None, on_close=closed.append)
    hub.close()
    assert closed == [None]


def test_listeners_run_in_order_skip_removed_ones_and_log_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The one listener registry of the frame path (the hub's and the devices' frames')."""
    listeners: Listeners[int] = Listeners("test listener", logging.getLogger("listeners-test"))
    got: list[tuple[str, int]] = []
    keys: dict[str, int] = {}

    def first(n: int) -> None:
        got.append(("first", n))
        listeners.remove(keys["third"])  # removed meanwhile: not called this time

    def broken(n: int) -> None:
        raise RuntimeError("listener bug")

    keys["first"] = listeners.add(first)
    keys["broken"] = listeners.add(broken)
    keys["third"] = listeners.add(lambda n: got.append(("third", n)))
    keys["last"] = listeners.add(lambda n: got.append(("last", n)))
    assert list(keys.values()) == [0, 1, 2, 3]
    with caplog.at_level(logging.ERROR, logger="listeners-test"):
        listeners.notify(7)
    assert got == [("first", 7), ("last", 7)]
    assert [r.getMessage().split(" <")[0] for r in caplog.records] == ["test listener"]
    assert caplog.records[0].exc_info is not None
    assert len(listeners) == 3
    assert listeners.remove(keys["broken"]) is True
    assert listeners.remove(keys["broken"]) is False
    assert listeners.add(first) == 4  # keys are never reused
