"""The device-side frame hub: the latest frame of one analyser, fan-out, and read pinning.

Every signal of a :class:`~ophyd_servomex.devices.ServomexAnalyser` reads this hub and
never does I/O. The connector publishes each frame the driver delivers (every continuous
broadcast, every Modbus sweep); listeners (signal subscriptions, device monitors) are
called synchronously on the event loop with the new :class:`FrameSnapshot`.

**Pinning.** ``StandardReadable.read()`` reads its signals in separate tasks. Without
care, a broadcast arriving half-way through would give half the fields from one frame and
half from the next. :meth:`DeviceFrames.pinned` fixes one snapshot in a context variable for
the duration of a read; the tasks that ``asyncio.gather`` creates copy the context, so
every signal of that read sees the same frame, whatever arrives meanwhile.

**Down.** While the link is lost (or was never made) the hub is *down*:
:meth:`DeviceFrames.current` and :meth:`DeviceFrames.pinned` give nothing (so every read raises
the connector's :meth:`DeviceFrames.unavailable` error), waiters in
:meth:`DeviceFrames.next_snapshot` fail at once, and listeners get the last frame once more as
an *invalid* snapshot (``lost_at`` set: alarm severity INVALID, stamped with the moment
the link was lost). The next published frame after :meth:`DeviceFrames.mark_up` is valid again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import MappingProxyType

from ..codec.errors import ServomexConnectionError, ServomexError
from ..codec.models import Frame

__all__ = ["DeviceFrames", "FrameListener", "FrameSnapshot"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameSnapshot:
    """One published frame plus what the driver knew with it.

    ``sequence`` grows by one per published frame (starting at 1), so a waiter can ask for
    "anything newer than the one I saw". ``dropped_frames`` is the driver's count of bad
    or lost frames at the moment this frame was published. ``lost_at`` is set on the
    invalid copy of the last frame that listeners get when the link is lost.
    """

    frame: Frame
    sequence: int
    dropped_frames: int = 0
    lost_at: float | None = None

    @property
    def timestamp(self) -> float:
        """The frame's host timestamp (``time.time()`` at receipt / end of sweep), or the
        moment the link was lost for an invalid snapshot."""
        return self.lost_at if self.lost_at is not None else self.frame.timestamp

    @property
    def valid(self) -> bool:
        """False for the invalid snapshot published when the link is lost."""
        return self.lost_at is None


FrameListener = Callable[[FrameSnapshot], None]
"""A synchronous callback run on the event loop for every published snapshot."""

# hub id -> pinned snapshot. One module-level variable (ContextVars must not be created per
# instance); the mapping is replaced, never mutated, so copied contexts stay independent.
_PINNED: ContextVar[MappingProxyType[int, FrameSnapshot]] = ContextVar(
    "ophyd_servomex_pinned_frames", default=MappingProxyType({})
)


class DeviceFrames:
    """Latest frame, listeners and pinning for one analyser; all on one event loop.

    ``on_demand`` (optional) is called with the new listener count whenever a listener is
    added or removed; the connector uses it to run a background Modbus poll only while
    something is subscribed. ``unavailable`` (optional) builds the error a read raises
    while the hub is down or has no frame yet; the connector's names the device, the port
    and what the link is doing. ``up=False`` starts the hub down (a device that has not
    connected yet).
    """

    def __init__(
        self,
        *,
        on_demand: Callable[[int], None] | None = None,
        unavailable: Callable[[], ServomexError] | None = None,
        up: bool = True,
    ) -> None:
        self._latest: FrameSnapshot | None = None
        self._invalid: FrameSnapshot | None = None
        self._down = not up
        self._triggered: FrameSnapshot | None = None
        self._listeners: dict[int, FrameListener] = {}
        self._next_key = 0
        self._sequence = 0
        self._changed: asyncio.Event | None = None
        self.on_demand = on_demand
        self._unavailable = unavailable

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

    @property
    def down(self) -> bool:
        """True before the first :meth:`mark_up` and after :meth:`mark_down`."""
        return self._down

    def unavailable(self) -> ServomexError:
        """The error a read raises while there is nothing valid to read."""
        if self._unavailable is not None:
            return self._unavailable()
        return ServomexConnectionError("not connected")

    def current(self) -> FrameSnapshot | None:
        """What a signal reads now: the pinned snapshot in this context, else the latest
        (``None`` while the hub is down and nothing is pinned)."""
        pinned = _PINNED.get().get(id(self))
        if pinned is not None:
            return pinned
        return None if self._down else self._latest

    def describe_snapshot(self) -> FrameSnapshot | None:
        """The snapshot ``describe()`` takes data types from: current, else the last one."""
        return self.current() or self._latest

    def read_snapshot(self) -> FrameSnapshot | None:
        """What a device ``read()`` reports: the triggered snapshot if any, else the latest
        (``None`` while the hub is down)."""
        if self._down:
            return None
        return self._triggered if self._triggered is not None else self._latest

    # --- the link -----------------------------------------------------------------------

    def mark_up(self) -> None:
        """The link is (back) up: frames published from now on are read again."""
        self._down = False
        self._invalid = None
        self._triggered = None

    def mark_down(self) -> FrameSnapshot | None:
        """The link is lost (or closed): reads raise :meth:`unavailable`, waiters fail.

        Listeners get the last frame once more as an invalid snapshot (``lost_at`` now),
        which is returned; nothing happens when the hub is already down.
        """
        if self._down:
            return None
        self._down = True
        self._triggered = None
        latest = self._latest
        if latest is not None:
            self._invalid = replace(latest, lost_at=time.time())
            self._notify(self._invalid)
        self._wake()
        return self._invalid

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
        self._notify(snapshot)
        self._wake()
        return snapshot

    def _notify(self, snapshot: FrameSnapshot) -> None:
        for key, listener in tuple(self._listeners.items()):
            if key not in self._listeners:
                continue
            try:
                listener(snapshot)
            except Exception:  # one bad subscriber must not starve the others
                _LOGGER.exception("frame listener %r failed", listener)

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def set_triggered(self, snapshot: FrameSnapshot | None) -> None:
        """Remember the snapshot a ``trigger()`` produced, for the next ``read()``."""
        self._triggered = snapshot

    def clear_trigger(self) -> None:
        """Forget the triggered snapshot (reads report the latest frame again)."""
        self._triggered = None

    async def next_snapshot(self, after: int) -> FrameSnapshot:
        """Wait for a snapshot whose sequence is greater than ``after``.

        Raises :meth:`unavailable` at once while the hub is down (also when it goes down
        during the wait), so a trigger never waits out its timeout on a dead link.
        """
        while True:
            if self._down:
                raise self.unavailable()
            latest = self._latest
            if latest is not None and latest.sequence > after:
                return latest
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    # --- listeners ----------------------------------------------------------------------

    def add_listener(self, listener: FrameListener, *, deliver_current: bool = True) -> int:
        """Call ``listener`` for every published snapshot; returns a key for removal.

        With ``deliver_current`` the latest snapshot (if any; the invalid one while the
        link is lost) is delivered at once, as ophyd-async expects of
        ``SignalBackend.set_callback``.
        """
        key = self._next_key
        self._next_key += 1
        self._listeners[key] = listener
        self._demand_changed()
        current = self._invalid if self._down else self._latest
        if deliver_current and current is not None:
            listener(current)
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

        ``snapshot`` defaults to :meth:`read_snapshot`. With no frame yet, or while the
        hub is down, nothing is pinned (and reads raise :meth:`unavailable`).
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
