"""The device side of the frame path: what one analyser's signals read, and read pinning.

Frames reach the devices through the driver's :class:`~ophyd_servomex.driver.FrameHub`
alone: :meth:`DeviceFrames.follow` registers a synchronous listener on the session's hub, so
every frame the driver publishes (each continuous broadcast as it is decoded, each Modbus
sweep as the poll ends) becomes a :class:`FrameSnapshot` here inside the driver's own
``publish`` call, with no queue and no task in between. The driver hub is the latest-frame
cache; this class keeps only what the devices add to it: a snapshot number and the
dropped-frame count with each frame, the snapshot a ``trigger()`` took, read pinning, and
whether the link is up. Listeners (signal subscriptions, device monitors) are called
synchronously on the event loop with each new snapshot, through the driver's
:class:`~ophyd_servomex.driver.hub.Listeners` (one that raises is logged, the others still
run). Every signal of a :class:`~ophyd_servomex.devices.ServomexAnalyser` reads this and
never does I/O.

**Pinning.** ``StandardReadable.read()`` reads its signals in separate tasks. Without
care, a broadcast arriving half-way through would give half the fields from one frame and
half from the next. :meth:`DeviceFrames.pinned` fixes one snapshot in a context variable
for the duration of a read; the tasks that ``asyncio.gather`` creates copy the context, so
every signal of that read sees the same frame, whatever arrives meanwhile.

**Down.** While the link is lost (or was never made) the frames are *down*:
:meth:`DeviceFrames.current` and :meth:`DeviceFrames.pinned` give nothing (so every read
raises the connector's :meth:`DeviceFrames.unavailable` error), and listeners get the last
frame once more as an *invalid* snapshot (``lost_at`` set: alarm severity INVALID, stamped
with the moment the link was lost). The next published frame after
:meth:`DeviceFrames.mark_up` is valid again.

Waiting for the next frame is the driver's (``Analyzer.poll``); nothing here waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..codec.errors import ServomexConnectionError, ServomexError
from ..codec.models import Frame
from ..driver.hub import Listeners

if TYPE_CHECKING:
    from ..driver.hub import FrameHub, HubItem

__all__ = ["DeviceFrames", "FrameListener", "FrameSnapshot"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrameSnapshot:
    """One frame as the devices see it, plus what the driver knew with it.

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

# DeviceFrames id -> pinned snapshot. One module-level variable (ContextVars must not be created per
# instance); the mapping is replaced, never mutated, so copied contexts stay independent.
_PINNED: ContextVar[MappingProxyType[int, FrameSnapshot]] = ContextVar(
    "ophyd_servomex_pinned_frames", default=MappingProxyType({})
)


class DeviceFrames:
    """The snapshots, listeners and pinning of one analyser; all on one event loop.

    ``on_demand`` (optional) is called with the new listener count whenever a listener is
    added or removed; the connector uses it to run a background Modbus poll only while
    something is subscribed. ``unavailable`` (optional) builds the error a read raises
    while the frames are down or there is none yet; the connector's names the device, the
    port and what the link is doing. ``up=False`` starts down (a device that has not
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
        self._listeners: Listeners[FrameSnapshot] = Listeners("frame listener", _LOGGER)
        self._sequence = 0
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
        (``None`` while down and nothing is pinned)."""
        pinned = _PINNED.get().get(id(self))
        if pinned is not None:
            return pinned
        return None if self._down else self._latest

    def describe_snapshot(self) -> FrameSnapshot | None:
        """The snapshot ``describe()`` takes data types from: current, else the last one."""
        return self.current() or self._latest

    def read_snapshot(self) -> FrameSnapshot | None:
        """What a device ``read()`` reports: the triggered snapshot if any, else the latest
        (``None`` while down)."""
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
        """The link is lost (or closed): reads raise :meth:`unavailable`.

        Listeners get the last frame once more as an invalid snapshot (``lost_at`` now),
        which is returned; nothing happens when already down.
        """
        if self._down:
            return None
        self._down = True
        self._triggered = None
        latest = self._latest
        if latest is not None:
            self._invalid = replace(latest, lost_at=time.time())
            self._listeners.notify(self._invalid)
        return self._invalid

    # --- publishing ---------------------------------------------------------------------

    def follow(
        self,
        hub: FrameHub,
        *,
        dropped_frames: Callable[[], int],
        on_close: Callable[[ServomexError | None], None],
    ) -> Callable[[], None]:
        """Take every frame ``hub`` publishes from now on, inside its ``publish`` call.

        ``dropped_frames`` gives the driver's count to store with each snapshot;
        ``on_close`` is told when the hub closes (with its error; ``None`` for a clean
        close). Errors published in between (bad lines, failed polls) are not frames and
        change nothing here. Returns the function that stops following.
        """

        def take(item: HubItem) -> None:
            if isinstance(item, Frame):
                self.publish(item, dropped_frames=dropped_frames())

        return hub.add_listener(take, on_close=on_close)

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
        self._listeners.notify(snapshot)
        return snapshot

    def snapshot_of(self, frame: Frame, *, dropped_frames: int = 0) -> FrameSnapshot:
        """The snapshot ``frame`` became (the latest, when it is that frame), else one made
        for it with the current sequence: what a ``trigger()`` that took ``frame`` reports
        when a newer frame overtook it."""
        latest = self._latest
        if latest is not None and latest.frame is frame:
            return latest
        return FrameSnapshot(frame, self._sequence, dropped_frames)

    def set_triggered(self, snapshot: FrameSnapshot | None) -> None:
        """Remember the snapshot a ``trigger()`` produced, for the next ``read()``."""
        self._triggered = snapshot

    def clear_trigger(self) -> None:
        """Forget the triggered snapshot (reads report the latest frame again)."""
        self._triggered = None

    # --- listeners ----------------------------------------------------------------------

    def add_listener(self, listener: FrameListener, *, deliver_current: bool = True) -> int:
        """Call ``listener`` for every published snapshot; returns a key for removal.

        With ``deliver_current`` the latest snapshot (if any; the invalid one while the
        link is lost) is delivered at once, as ophyd-async expects of
        ``SignalBackend.set_callback``.
        """
        key = self._listeners.add(listener)
        self._demand_changed()
        current = self._invalid if self._down else self._latest
        if deliver_current and current is not None:
            listener(current)
        return key

    def remove_listener(self, key: int) -> None:
        """Stop calling the listener registered under ``key`` (unknown keys are ignored)."""
        if self._listeners.remove(key):
            self._demand_changed()

    def _demand_changed(self) -> None:
        if self.on_demand is not None:
            self.on_demand(len(self._listeners))

    # --- pinning ------------------------------------------------------------------------

    def is_pinned(self) -> bool:
        """True when a snapshot is pinned for these frames in the current context."""
        return id(self) in _PINNED.get()

    @contextmanager
    def pinned(self, snapshot: FrameSnapshot | None = None) -> Iterator[FrameSnapshot | None]:
        """Fix one snapshot for every read in this context (re-entrant: an outer pin wins).

        ``snapshot`` defaults to :meth:`read_snapshot`. With no frame yet, or while the
        frames are down, nothing is pinned (and reads raise :meth:`unavailable`).
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
