"""The device-side frame hub: the latest frame of one analyser, fan-out, and read pinning.

Every signal of a :class:`~ophyd_servomex.devices.ServomexAnalyser` reads this hub and
never does I/O. The connector publishes each frame the driver delivers (every continuous
broadcast, every Modbus sweep); listeners (signal subscriptions, device monitors) are
called synchronously on the event loop with the new :class:`FrameSnapshot`.

**Pinning.** ``StandardReadable.read()`` reads its signals in separate tasks. Without
care, a broadcast arriving half-way through would give half the fields from one frame and
half from the next. :meth:`FrameHub.pinned` fixes one snapshot in a context variable for
the duration of a read; the tasks that ``asyncio.gather`` creates copy the context, so
every signal of that read sees the same frame, whatever arrives meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType

from ..codec.models import Frame

__all__ = ["FrameHub", "FrameListener", "FrameSnapshot"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameSnapshot:
    """One published frame plus what the driver knew with it.

    ``sequence`` grows by one per published frame (starting at 1), so a waiter can ask for
    "anything newer than the one I saw". ``dropped_frames`` is the driver's count of bad
    or lost frames at the moment this frame was published.
    """

    frame: Frame
    sequence: int
    dropped_frames: int = 0

    @property
    def timestamp(self) -> float:
        """The frame's host timestamp (``time.time()`` at receipt / end of sweep)."""
        return self.frame.timestamp


FrameListener = Callable[[FrameSnapshot], None]
"""A synchronous callback run on the event loop for every published snapshot."""

# hub id -> pinned snapshot. One module-level variable (ContextVars must not be created per
# instance); the mapping is replaced, never mutated, so copied contexts stay independent.
_PINNED: ContextVar[MappingProxyType[int, FrameSnapshot]] = ContextVar(
    "ophyd_servomex_pinned_frames", default=MappingProxyType({})
)


class FrameHub:
    """Latest frame, listeners and pinning for one analyser; all on one event loop.

    ``on_demand`` (optional) is called with the new listener count whenever a listener is
    added or removed; the connector uses it to run a background Modbus poll only while
    something is subscribed.
    """

    def __init__(self, *, on_demand: Callable[[int], None] | None = None) -> None:
        self._latest: FrameSnapshot | None = None
        self._triggered: FrameSnapshot | None = None
        self._listeners: dict[int, FrameListener] = {}
        self._next_key = 0
        self._sequence = 0
        self._changed: asyncio.Event | None = None
        self.on_demand = on_demand

    # --- state ------------------------------------------------------------------------

    @property
    def latest(self) -> FrameSnapshot | None:
        """The newest published snapshot, or ``None`` before the first frame."""
        return self._latest

    @property
    def triggered(self) -> FrameSnapshot | None:
        """The snapshot taken by the last ``trigger()``, until :meth:`clear_trigger`."""
        return self._triggered

    @property
    def sequence(self) -> int:
        """How many frames were published (0 before the first)."""
        return self._sequence

    @property
    def listener_count(self) -> int:
        """Live listeners (signal subscriptions and device monitors)."""
        return len(self._listeners)

    def current(self) -> FrameSnapshot | None:
        """What a signal reads now: the pinned snapshot in this context, else the latest."""
        pinned = _PINNED.get().get(id(self))
        return pinned if pinned is not None else self._latest

    def read_snapshot(self) -> FrameSnapshot | None:
        """What a device ``read()`` reports: the triggered snapshot if any, else the latest."""
        return self._triggered if self._triggered is not None else self._latest

    # --- publishing ---------------------------------------------------------------------

    def publish(self, frame: Frame, *, dropped_frames: int = 0) -> FrameSnapshot | None:
        """Make ``frame`` the latest and notify every listener; returns the new snapshot.

        A frame that is the one already latest, or older than it (a late poll result
        racing a newer broadcast), is ignored and ``None`` is returned, so listeners see
        each frame once and in time order.
        """
        latest = self._latest
        if latest is not None and (
            frame is latest.frame or frame.timestamp < latest.frame.timestamp
        ):
            return None
        self._sequence += 1
        snapshot = FrameSnapshot(frame, self._sequence, dropped_frames)
        self._latest = snapshot
        for key, listener in tuple(self._listeners.items()):
            if key not in self._listeners:
                continue
            try:
                listener(snapshot)
            except Exception:  # one bad subscriber must not starve the others
                _LOGGER.exception("frame listener %r failed", listener)
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()
        return snapshot

    def set_triggered(self, snapshot: FrameSnapshot | None) -> None:
        """Remember the snapshot a ``trigger()`` produced, for the next ``read()``."""
        self._triggered = snapshot

    def clear_trigger(self) -> None:
        """Forget the triggered snapshot (reads report the latest frame again)."""
        self._triggered = None

    async def next_snapshot(self, after: int) -> FrameSnapshot:
        """Wait for a snapshot whose sequence is greater than ``after``."""
        while True:
            latest = self._latest
            if latest is not None and latest.sequence > after:
                return latest
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    # --- listeners ----------------------------------------------------------------------

    def add_listener(self, listener: FrameListener, *, deliver_current: bool = True) -> int:
        """Call ``listener`` for every published snapshot; returns a key for removal.

        With ``deliver_current`` the latest snapshot (if any) is delivered at once, as
        ophyd-async expects of ``SignalBackend.set_callback``.
        """
        key = self._next_key
        self._next_key += 1
        self._listeners[key] = listener
        self._demand_changed()
        if deliver_current and self._latest is not None:
            listener(self._latest)
        return key

    def remove_listener(self, key: int) -> None:
        """Stop calling the listener registered under ``key`` (unknown keys are ignored)."""
        if self._listeners.pop(key, None) is not None:
            self._demand_changed()

    def _demand_changed(self) -> None:
        if self.on_demand is not None:
            self.on_demand(len(self._listeners))

    # --- pinning ------------------------------------------------------------------------

    def is_pinned(self) -> bool:
        """True when a snapshot is pinned for this hub in the current context."""
        return id(self) in _PINNED.get()

    @contextmanager
    def pinned(self, snapshot: FrameSnapshot | None = None) -> Iterator[FrameSnapshot | None]:
        """Fix one snapshot for every read in this context (re-entrant: an outer pin wins).

        ``snapshot`` defaults to :meth:`read_snapshot`. With no frame yet, nothing is pinned.
        """
        pins = _PINNED.get()
        existing = pins.get(id(self))
        if existing is not None:
            yield existing
            return
        chosen = snapshot if snapshot is not None else self.read_snapshot()
        if chosen is None:
            yield None
            return
        token = _PINNED.set(MappingProxyType({**pins, id(self): chosen}))
        try:
            yield chosen
        finally:
            _PINNED.reset(token)
