"""The simulator's wire log: every request, reply and broadcast, with timestamps.

Tests assert exact bytes and spacing from it. It is a bounded ring buffer (a long soak
does not grow memory without limit) with running counters that are never trimmed, and it
is safe to read from another thread while the simulator writes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DEFAULT_LOG_SIZE", "Direction", "WireEvent", "WireKind", "WireLog"]

DEFAULT_LOG_SIZE = 100_000
"""Entries the log keeps before the oldest are dropped."""


class Direction(StrEnum):
    """Which way the bytes went, seen from the analyser."""

    RX = "rx"
    """Received by the analyser (a request from the master)."""
    TX = "tx"
    """Sent by the analyser (a reply or a broadcast)."""


class WireKind(StrEnum):
    """What a log entry is."""

    REQUEST = "request"
    """A complete, well-formed request (answered or not: see the note)."""
    REPLY = "reply"
    """A Modbus reply as sent (after any fault)."""
    BROADCAST = "broadcast"
    """A continuous-mode frame as sent (after any fault)."""
    DISCARDED = "discarded"
    """Received bytes that formed no request: bad CRC/LRC, junk, or a fragment cut by silence."""
    SUPPRESSED = "suppressed"
    """A reply or broadcast that a fault kept off the wire; ``data`` is what would have gone."""
    DISCONNECT = "disconnect"
    """The simulator closed the link (the pulled cable)."""


@dataclass(frozen=True, slots=True)
class WireEvent:
    """One log entry.

    ``time`` is ``time.monotonic()`` (anyio's clock on asyncio) when the bytes were
    complete (received) or handed to the link (sent); ``address`` the Modbus slave address
    (``None`` when unknown, e.g. continuous mode or unframed bytes); ``note`` says what
    happened to it: the fault applied, ``"dropped: …"`` for a request ignored for timing,
    ``"no analyser at address N"`` …
    """

    time: float
    direction: Direction
    kind: WireKind
    data: bytes
    address: int | None = None
    note: str = ""


class WireLog:
    """A bounded, thread-safe log of :class:`WireEvent` with running counters."""

    def __init__(self, maxlen: int = DEFAULT_LOG_SIZE) -> None:
        self._events: deque[WireEvent] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._frames_sent = 0
        self._requests = 0
        self._total = 0

    def record(self, event: WireEvent) -> None:
        """Append one event and update the counters."""
        with self._lock:
            self._events.append(event)
            self._total += 1
            if event.direction is Direction.TX and event.kind in (
                WireKind.REPLY,
                WireKind.BROADCAST,
            ):
                self._frames_sent += 1
            elif event.kind is WireKind.REQUEST:
                self._requests += 1

    @property
    def frames_sent(self) -> int:
        """Replies and broadcasts put on the wire since the start (never trimmed)."""
        with self._lock:
            return self._frames_sent

    @property
    def requests_received(self) -> int:
        """Well-formed requests received since the start (never trimmed)."""
        with self._lock:
            return self._requests

    @property
    def total(self) -> int:
        """Events recorded since the start, including any the ring buffer dropped."""
        with self._lock:
            return self._total

    def events(
        self,
        kind: WireKind | None = None,
        *,
        direction: Direction | None = None,
        address: int | None = None,
    ) -> list[WireEvent]:
        """A snapshot of the kept events, optionally filtered."""
        with self._lock:
            snapshot = list(self._events)
        return [
            e
            for e in snapshot
            if (kind is None or e.kind is kind)
            and (direction is None or e.direction is direction)
            and (address is None or e.address == address)
        ]

    def clear(self) -> None:
        """Forget the kept events (the counters keep counting)."""
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def __iter__(self) -> Iterator[WireEvent]:
        return iter(self.events())
