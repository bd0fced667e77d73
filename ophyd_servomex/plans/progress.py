"""A progress display for calibrations (and any watchable status) that suits logs too.

bluesky's ``ProgressBarManager`` draws a tqdm bar whose unit is the watcher update's
``unit`` and redraws it in place with cursor escapes (``\\x1b[A``) whatever the output is,
so a log, CI or the queue server gets a screenful of escape codes. This module's
:class:`CalibrationProgressManager` is a drop-in ``waiting_hook``::

    RE.waiting_hook = CalibrationProgressManager()
    RE(calibration_run(gas, 1, confirm=True, gas_time=60))

Each status gets one line: its update's ``name`` (for a calibration the phase, e.g.
``gas-calibration group 1: cal_gas_2``), the time in that phase against the expected time
when known (``12.0/60.0 s``), the share of the sequence done and the total time::

    gas-calibration group 1: cal_gas_2  12.0/60.0 s  50%  total 75.3 s

On a terminal the lines are redrawn in place and left showing the final state. Anywhere
else (the output is not a terminal) they are written as plain lines, with no escape
sequence: one when the phase (the ``name``) changes, one every ``line_interval`` seconds
in between, and the final one.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterable
from functools import partial
from typing import Any, TextIO

from bluesky.utils import ProgressBarBase, ProgressBarManager

__all__ = ["CalibrationProgressBar", "CalibrationProgressManager", "describe_update"]

_UP = "\x1b[A"


def describe_update(
    *,
    name: str | None = None,
    current: Any = None,
    initial: Any = None,
    target: Any = None,
    unit: str | None = None,
    precision: Any = None,
    fraction: Any = None,
    time_elapsed: float | None = None,
    time_remaining: float | None = None,
) -> str:
    """One line for one watcher update: name, current[/target] unit, fraction, total time.

    ``"gas-calibration group 1: cal_gas_2  12.0/60.0 s  50%  total 75.3 s"``; fields
    that are ``None`` are left out. ``initial`` is accepted (watchers receive it) but not
    shown: the calibration's is always 0.
    """
    del initial  # part of the watcher signature; nothing to show
    digits = precision if isinstance(precision, int) and 0 <= precision <= 6 else 1
    parts = [name or "status"]
    if current is not None:
        value = _number(current, digits)
        if target is not None:
            value = f"{value}/{_number(target, digits)}"
        parts.append(f"{value} {unit}" if unit else value)
    if isinstance(fraction, int | float):
        parts.append(f"{fraction:.0%}")
    if time_remaining is not None and time_remaining >= 0.05:  # "~0.0 s left" says nothing
        parts.append(f"~{time_remaining:.1f} s left")
    if time_elapsed is not None:
        parts.append(f"total {time_elapsed:.1f} s")
    return "  ".join(parts)


def _number(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


class CalibrationProgressBar(ProgressBarBase):
    """The lines for one set of statuses: redrawn in place on a terminal, plain elsewhere.

    ``stream`` defaults to ``sys.stdout``; ``tty`` (default: ``stream.isatty()``)
    chooses in-place drawing; without a terminal, a line is written when a status's
    ``name`` changes, every ``line_interval`` seconds otherwise, and once at the end.
    """

    def __init__(
        self,
        status_objs: Iterable[Any],
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        line_interval: float = 10.0,
    ) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stdout
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.line_interval = line_interval
        self.status_objs: list[Any] = []
        self.done = False
        self._lock = threading.RLock()
        self._lines: list[str | None] = []
        self._names: list[str | None] = []  # the name of the last line written, per status
        self._written: list[str | None] = []  # the last line written, per status
        self._written_at: list[float] = []
        self._drawn = 0  # lines drawn in place (terminal only)
        statuses = [st for st in status_objs if hasattr(st, "watch") and not st.done]
        with self._lock:
            for st in statuses:
                self.status_objs.append(st)
                self._lines.append(None)
                self._names.append(None)
                self._written.append(None)
                self._written_at.append(0.0)
            for pos, st in enumerate(statuses):
                st.watch(partial(self.update, pos))
                st.add_callback(self._status_finished)

    def update(self, pos: int, **kwargs: Any) -> None:
        """Receive one watcher update of the status at ``pos`` (registered with ``watch``)."""
        line = describe_update(**kwargs)
        name = kwargs.get("name")
        with self._lock:
            if self.done:
                return
            self._lines[pos] = line
            if self.tty:
                self._draw()
                return
            now = time.monotonic()
            if name != self._names[pos] or now - self._written_at[pos] >= self.line_interval:
                self._write_line(pos, line, name, now)

    def _write_line(self, pos: int, line: str, name: str | None, now: float) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self._names[pos] = name
        self._written[pos] = line
        self._written_at[pos] = now

    def _draw(self, *, final: bool = False) -> None:
        lines = [line for line in self._lines if line is not None]
        if not lines:
            return
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
        out = [_UP * self._drawn] if self._drawn else []
        for line in lines:
            out.append("\r" + line[:width].ljust(width) + "\n")
        self._drawn = 0 if final else len(lines)
        self.stream.write("".join(out))
        self.stream.flush()

    def _status_finished(self, status: Any) -> None:
        with self._lock:
            if all(st.done for st in self.status_objs):
                self.clear()

    def clear(self) -> None:
        """Finish: leave the final state of every status on the output, once."""
        with self._lock:
            if self.done:
                return
            self.done = True
            if self.tty:
                self._draw(final=True)
                return
            now = time.monotonic()
            for pos, line in enumerate(self._lines):
                if line is not None and line != self._written[pos]:
                    self._write_line(pos, line, self._names[pos], now)


class CalibrationProgressManager(ProgressBarManager):
    """A RunEngine ``waiting_hook`` drawing :class:`CalibrationProgressBar` lines.

    ``RE.waiting_hook = CalibrationProgressManager()`` (stdout; plain lines unless it is a
    terminal) or ``CalibrationProgressManager(stream, tty=False, line_interval=30)``.
    Unlike bluesky's manager it does not warn when a wait ends without its bar being
    cleaned up (a paused or aborted calibration), and keeps the bar when the RunEngine
    announces the same statuses again.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        line_interval: float = 10.0,
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.line_interval = line_interval
        super().__init__(self._new_bar)
        self.pbar: CalibrationProgressBar | None = None

    def _new_bar(self, status_objs: Iterable[Any]) -> CalibrationProgressBar:
        return CalibrationProgressBar(
            status_objs, stream=self.stream, tty=self.tty, line_interval=self.line_interval
        )

    def __call__(self, status_objs_or_none: Iterable[Any] | None) -> None:
        """Start lines for new statuses (``None``: the wait is over, finish the lines)."""
        pbar = self.pbar
        if status_objs_or_none is None:
            if pbar is not None:
                pbar.clear()
                self.pbar = None
            return
        statuses = list(status_objs_or_none)
        if pbar is not None:
            if not pbar.done and {id(s) for s in statuses} == {id(s) for s in pbar.status_objs}:
                return
            pbar.clear()
        self.pbar = self._new_bar(statuses)
