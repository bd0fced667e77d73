"""Device-level monitoring: one ``read()``-shaped reading dict per frame.

``bps.monitor(analyser)`` subscribes the whole analyser: bluesky then emits one event per
call of the subscription callback, so delivering one dict per frame gives one event per
broadcast frame (or per background Modbus poll), every field with that frame's timestamp.
The dict is rendered synchronously from the frame's snapshot, so nothing can come between
the frame arriving and its event.

When the link is lost no event is made up: the invalid copy of the last frame that the
device's frames re-send (so signal subscribers see severity INVALID) is not a new frame, and the
device subscription skips it; events resume with the first frame after the reconnect.

In mock mode there are no frames: each read signal is subscribed instead, and the whole
dict is delivered again whenever any mock value changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bluesky.protocols import Reading
from ophyd_async.core import Callback

from .frames import DeviceFrames, FrameSnapshot
from .signals import FrameSignalR

__all__ = ["DeviceMonitor"]

Readings = dict[str, Reading[Any]]


@dataclass(eq=False)
class _MockSubscription:
    """One device subscription in mock mode: a callback on every read signal."""

    function: Callback[Readings]
    latest: Readings = field(default_factory=dict)
    callbacks: list[tuple[FrameSignalR[Any], Callback[Readings]]] = field(default_factory=list)
    armed: bool = False


class DeviceMonitor:
    """Keeps the device's read signals in read order and serves device subscriptions.

    ``frames`` feed real mode; ``is_mock`` says, at subscribe time, which mode the device
    is connected in.
    """

    def __init__(self, frames: DeviceFrames, is_mock: Callable[[], bool]) -> None:
        self._frames = frames
        self._is_mock = is_mock
        self._signals: list[FrameSignalR[Any]] = []
        self._real: dict[Callback[Readings], int] = {}
        self._mock: dict[Callback[Readings], _MockSubscription] = {}

    def add(self, *signals: FrameSignalR[Any]) -> None:
        """Register read signals (in the order ``read()`` reports them)."""
        self._signals.extend(signals)

    def render(self, snapshot: FrameSnapshot) -> Readings:
        """The full reading dict of one snapshot, exactly the keys of ``describe()``."""
        return {sig.name: sig.frame_backend.reading_for(snapshot) for sig in self._signals}

    def subscribe(self, function: Callback[Readings]) -> None:
        """Deliver a full reading dict for every frame (the current one at once)."""
        if function in self._real or function in self._mock:
            return
        if self._is_mock():
            self._subscribe_mock(function)
        else:
            self._real[function] = self._frames.add_listener(
                lambda snapshot: function(self.render(snapshot)) if snapshot.valid else None
            )

    def clear_sub(self, function: Callback[Readings]) -> None:
        """Stop delivering to ``function`` (unknown callbacks are ignored)."""
        key = self._real.pop(function, None)
        if key is not None:
            self._frames.remove_listener(key)
        sub = self._mock.pop(function, None)
        if sub is not None:
            for signal, callback in sub.callbacks:
                signal.clear_sub(callback)

    def _subscribe_mock(self, function: Callback[Readings]) -> None:
        sub = _MockSubscription(function)
        self._mock[function] = sub
        for signal in self._signals:

            def on_change(readings: Readings, sub: _MockSubscription = sub) -> None:
                sub.latest.update(readings)
                if sub.armed:
                    sub.function({s.name: sub.latest[s.name] for s in self._signals})

            sub.callbacks.append((signal, on_change))
            signal.subscribe_reading(on_change)
        sub.armed = True
        function({s.name: sub.latest[s.name] for s in self._signals})
