"""The wire log: bounded, filterable, counting, readable from another thread."""

from __future__ import annotations

import threading

from ophyd_servomex.sim import Direction, WireEvent, WireKind, WireLog


def event(i: int, kind: WireKind = WireKind.REPLY, address: int | None = 30) -> WireEvent:
    direction = Direction.RX if kind in (WireKind.REQUEST, WireKind.DISCARDED) else Direction.TX
    return WireEvent(float(i), direction, kind, bytes([i % 256]), address)


def test_ring_buffer_keeps_the_newest_and_counters_keep_counting() -> None:
    log = WireLog(maxlen=10)
    for i in range(25):
        log.record(event(i, WireKind.REQUEST))
        log.record(event(i, WireKind.REPLY))
    assert len(log) == 10
    assert [e.time for e in log][:2] == [20.0, 20.0]
    assert log.frames_sent == 25
    assert log.requests_received == 25
    assert log.total == 50
    log.clear()
    assert len(log) == 0
    assert log.frames_sent == 25


def test_filters() -> None:
    log = WireLog()
    log.record(event(1, WireKind.REQUEST, 30))
    log.record(event(2, WireKind.REPLY, 30))
    log.record(event(3, WireKind.REQUEST, 31))
    log.record(event(4, WireKind.BROADCAST, None))
    log.record(event(5, WireKind.DISCARDED, None))
    assert [e.time for e in log.events(WireKind.REQUEST)] == [1.0, 3.0]
    assert [e.time for e in log.events(address=30)] == [1.0, 2.0]
    assert [e.time for e in log.events(direction=Direction.TX)] == [2.0, 4.0]
    assert log.frames_sent == 2  # replies and broadcasts


def test_concurrent_writers_and_readers() -> None:
    log = WireLog(maxlen=1000)

    def write() -> None:
        for i in range(5000):
            log.record(event(i))

    writers = [threading.Thread(target=write) for _ in range(4)]
    for w in writers:
        w.start()
    while any(w.is_alive() for w in writers):
        assert len(log.events()) <= 1000
    for w in writers:
        w.join()
    assert log.frames_sent == 20000
