"""Test helpers: an analyser-shaped ophyd-async device made of soft signals, and plans.

The device has the shape of a SERVOPRO with five fitted channels (data keys
``analyser-i1-value`` … ``analyser-e2-value``, units "%" and "mA") but no driver behind it,
so the catalog tests depend on nothing from the device layer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.plans import count
from ophyd_async.core import StandardReadable, StandardReadableFormat, soft_signal_r_and_setter

CHANNEL_UNITS: dict[str, str] = {"i1": "%", "i2": "%", "i3": "%", "e1": "mA", "e2": "mA"}
DATA_KEYS: list[str] = [f"analyser-{channel}-value" for channel in CHANNEL_UNITS]


def channel_value(index: int, shot: int) -> float:
    """The value channel ``index`` (0–4) shows at shot ``shot``: exact in binary floating point."""
    return 10.0 * index + 0.25 * shot


class FakeChannel(StandardReadable):
    """One channel: a float value with units."""

    def __init__(self, units: str, name: str = "") -> None:
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.value, self._put = soft_signal_r_and_setter(float, 0.0, units=units, precision=3)
        super().__init__(name=name)

    def put(self, value: float) -> None:
        """Set the value as if a new frame had arrived."""
        self._put(value)


class FakeAnalyser(StandardReadable):
    """Five channels named like a SERVOPRO's."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.i1 = FakeChannel("%")
            self.i2 = FakeChannel("%")
            self.i3 = FakeChannel("%")
            self.e1 = FakeChannel("mA")
            self.e2 = FakeChannel("mA")
        super().__init__(name=name)

    @property
    def channels(self) -> list[FakeChannel]:
        return [self.i1, self.i2, self.i3, self.e1, self.e2]

    def show_shot(self, shot: int) -> None:
        for index, channel in enumerate(self.channels):
            channel.put(channel_value(index, shot))


def connected_analyser(name: str = "analyser") -> FakeAnalyser:
    """A connected FakeAnalyser (create the RunEngine first: it owns the event loop)."""
    from ophyd_async.core import init_devices

    with init_devices():
        analyser = FakeAnalyser(name=name)
    return analyser


def counting(
    analyser: FakeAnalyser,
    num: int,
    *,
    delay: float = 0.0,
    md: dict[str, Any] | None = None,
) -> Generator[Any, Any, Any]:
    """``count([analyser], num)`` where shot k (1-based) shows :func:`channel_value` (·, k)."""
    shots = iter(range(1, num + 1))

    def per_shot(detectors: Sequence[Any]) -> Generator[Any, Any, Any]:
        analyser.show_shot(next(shots))
        return (yield from bps.trigger_and_read(list(detectors)))

    return (yield from count([analyser], num=num, delay=delay, per_shot=per_shot, md=md))


MONITOR_VALUES = [101.0, 102.5, 104.0, 105.5]


def monitoring(analyser: FakeAnalyser) -> Generator[Any, Any, Any]:
    """A run that monitors I1 while it changes MONITOR_VALUES, plus one primary reading."""

    @bpp.run_decorator(md={"plan_name": "monitoring"})
    def inner() -> Generator[Any, Any, Any]:
        yield from bps.monitor(analyser.i1.value, name="i1_monitor")
        for value in MONITOR_VALUES:
            analyser.i1.put(value)
            yield from bps.sleep(0.02)
        yield from bps.trigger_and_read([analyser])
        yield from bps.unmonitor(analyser.i1.value)

    return (yield from inner())


def collect_documents(
    sink: list[tuple[str, dict[str, Any]]],
) -> Callable[[str, dict[str, Any]], None]:
    def callback(name: str, doc: dict[str, Any]) -> None:
        sink.append((name, doc))

    return callback


def names(documents: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in documents]
