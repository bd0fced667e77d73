"""Recording the broadcast: one run whose monitor streams hold every frame for a while.

While it records, :func:`monitor_broadcast` shows that it is alive: a progress line with
the frames received per stream, their rate and the latest value of the first named
channel (the O₂ reading on the bench unit), about once a second, and the count at the end
(see :class:`BroadcastProgress`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO, cast

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import MsgGenerator

from ..codec.errors import ServomexValidationError
from ..devices import ServomexAnalyser

__all__ = ["BroadcastProgress", "monitor_broadcast", "monitor_stream_name"]

_LOGGER = logging.getLogger(__name__)


def monitor_stream_name(analyser: ServomexAnalyser) -> str:
    """The event stream ``monitor_broadcast`` records ``analyser`` into."""
    return f"{analyser.name}_monitor"


@dataclass
class _Stream:
    """What the progress line knows about one monitored analyser."""

    name: str
    key: str | None
    label: str
    units: str = ""
    precision: int | None = None
    frames: int = 0
    first_time: float | None = None
    last_time: float | None = None
    value: Any = None

    def rate(self) -> float | None:
        """Frames per second between the first and the latest frame (``None`` until two)."""
        if self.first_time is None or self.last_time is None or self.frames < 2:
            return None
        span = self.last_time - self.first_time
        return (self.frames - 1) / span if span > 0 else None

    def value_text(self) -> str:
        value = self.value
        if self.key is None or value is None:
            return ""
        if isinstance(value, float) and self.precision is not None and math.isfinite(value):
            text = f"{value:.{self.precision}f}"
        else:
            text = str(value)
        return f", {self.label} {text}{f' {self.units}' if self.units else ''}"


def _first_named_value(analyser: ServomexAnalyser) -> tuple[str | None, str]:
    """The hinted value key and label of the analyser's first named channel (else its
    first channel), or ``(None, "")`` without channels."""
    ids = analyser.channel_ids
    if not ids:
        return None, ""
    children = [analyser.channel(cid) for cid in ids]
    named = [c for c in children if c.info.name]
    child = named[0] if named else children[0]
    return child.value.name, child.info.name or child.channel_id.value


class BroadcastProgress:
    """A document callback that prints how a :func:`monitor_broadcast` run is going.

    For each analyser's stream: frames received, their rate (from the frames' own
    timestamps) and the latest value of its first named channel, with its units and
    display precision. A line goes out at most every ``interval`` s (0: one per frame),
    and a summary with each stream's count when the run stops. On a terminal the line is
    rewritten in place; otherwise (a log file, a pipe, a notebook capture) each update is
    a plain line. ``out`` is where to write (default: ``sys.stdout`` at each write).
    """

    def __init__(
        self,
        analysers: Sequence[ServomexAnalyser],
        duration: float,
        *,
        interval: float = 1.0,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.duration = duration
        self.interval = interval
        self._out = out
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        for analyser in analysers:
            key, label = _first_named_value(analyser)
            name = monitor_stream_name(analyser)
            self._streams[name] = _Stream(name, key, label)
        self._descriptors: dict[str, _Stream] = {}
        self._started: float | None = None
        self._last_line: float | None = None
        self._width = 0
        self._broken = False
        self.lines: list[str] = []
        """Every line written, for whoever wants the record."""

    @property
    def out(self) -> TextIO:
        """Where the lines go."""
        return self._out if self._out is not None else sys.stdout

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document (never raises: a progress display must not end a run)."""
        if self._broken:
            return
        try:
            self._take(name, doc)
        except Exception:
            self._broken = True
            _LOGGER.exception("monitor_broadcast progress display failed; it is switched off")

    def _take(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self._started = float(doc["time"])
        elif name == "descriptor":
            stream = self._streams.get(str(doc.get("name")))
            if stream is not None:
                self._descriptors[str(doc["uid"])] = stream
                key = doc.get("data_keys", {}).get(stream.key or "", {})
                stream.units = str(key.get("units") or "")
                precision = key.get("precision")
                stream.precision = precision if isinstance(precision, int) else None
        elif name == "event":
            stream = self._descriptors.get(str(doc.get("descriptor")))
            if stream is None:
                return
            stamp = float(doc["time"])
            stream.frames += 1
            if stream.first_time is None:
                stream.first_time = stamp
            stream.last_time = stamp
            if stream.key is not None:
                stream.value = doc["data"].get(stream.key)
            now = self._clock()
            if self._last_line is None or now - self._last_line >= self.interval:
                self._last_line = now
                self._write(self._progress_line(stamp), final=False)
        elif name == "stop":
            self._write(self._summary(float(doc["time"])), final=True)

    def _elapsed(self, stamp: float) -> str:
        if self._started is None:
            return ""
        return f"{max(0.0, stamp - self._started):.1f}/{self.duration:g} s"

    def _progress_line(self, stamp: float) -> str:
        parts = []
        for stream in self._streams.values():
            rate = stream.rate()
            rate_text = f"{rate:.1f}/s" if rate is not None else "-/s"
            parts.append(f"{stream.name}: {stream.frames} frames, {rate_text}{stream.value_text()}")
        return f"monitor_broadcast {self._elapsed(stamp)}  " + " | ".join(parts)

    def _summary(self, stamp: float) -> str:
        took = f" in {stamp - self._started:.1f} s" if self._started is not None else ""
        parts = []
        for stream in self._streams.values():
            rate = stream.rate()
            rate_text = f" ({rate:.1f} frames/s)" if rate is not None else ""
            parts.append(f"{stream.name} {stream.frames} frames{rate_text}")
        return f"monitor_broadcast done{took}: " + ", ".join(parts)

    def _write(self, line: str, *, final: bool) -> None:
        self.lines.append(line)
        out = self.out
        if _is_terminal(out):
            pad = " " * max(0, self._width - len(line))
            self._width = 0 if final else len(line)
            out.write(f"\r{line}{pad}{chr(10) if final else ''}")
        else:
            out.write(line + "\n")
        out.flush()


def _is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


def monitor_broadcast(
    analysers: Sequence[ServomexAnalyser],
    duration: float,
    *,
    md: Mapping[str, Any] | None = None,
    progress: bool | TextIO = True,
    progress_interval: float = 1.0,
) -> MsgGenerator[str]:
    """One run that records every frame of each analyser for ``duration`` seconds.

    Each analyser is monitored as a whole (``bps.monitor(analyser)``), so its stream
    (``<name>_monitor``) gets one event per frame — every continuous broadcast, or every
    background poll in Modbus mode (at the analyser's ``poll_rate_hz``) — with all the
    analyser's fields sharing the frame's timestamp. The frame current when monitoring
    starts is the first event. Returns the run's uid.

    While it runs, a progress line (frames, rate, the latest value of the first named
    channel; see :class:`BroadcastProgress`) is printed every ``progress_interval`` s
    and the counts when it ends. ``progress=False`` silences it; a text stream instead
    of ``True`` sends it there.
    """
    if not analysers:
        raise ServomexValidationError("monitor_broadcast needs at least one analyser")
    if not duration > 0:
        raise ServomexValidationError(f"duration must be > 0 s, not {duration!r}")
    if not progress_interval >= 0:
        raise ServomexValidationError(
            f"progress_interval must be >= 0 s, not {progress_interval!r}"
        )
    names = [a.name for a in analysers]
    if len(set(names)) != len(names) or not all(names):
        raise ServomexValidationError(f"analysers need distinct, non-empty names, not {names}")
    metadata: dict[str, Any] = {
        "plan_name": "monitor_broadcast",
        "detectors": names,
        "plan_args": {"analysers": [repr(a) for a in analysers], "duration": duration},
        "duration": duration,
        "hints": {"monitors": [monitor_stream_name(a) for a in analysers]},
    }
    metadata.update(md or {})

    def record() -> MsgGenerator[None]:
        for analyser in analysers:
            yield from bps.monitor(analyser, name=monitor_stream_name(analyser))
        yield from bps.sleep(duration)
        for analyser in analysers:
            yield from bps.unmonitor(analyser)

    run_wrapper = cast(Callable[..., MsgGenerator[str]], bpp.run_wrapper)
    plan = run_wrapper(record(), md=metadata)
    if progress is not False:
        out = None if progress is True else progress
        display = BroadcastProgress(analysers, duration, interval=progress_interval, out=out)
        subs_wrapper = cast(Callable[..., MsgGenerator[str]], bpp.subs_wrapper)
        plan = subs_wrapper(plan, {"all": [display]})
    uid: str = yield from plan
    return uid
