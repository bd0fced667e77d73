"""Plans that wait for the analysers to be fit to measure: idle, and stable."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
from bluesky.utils import MsgGenerator

from ..codec.errors import (
    ServomexConfigurationError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ..codec.models import CalPhase, ChannelId
from ..devices import ServomexAnalyser

__all__ = ["calibrating_groups", "count_when_idle", "wait_for_stable"]

_CALIBRATING = frozenset({CalPhase.CAL_GAS_1.value, CalPhase.CAL_GAS_2.value})


def calibrating_groups(analyser: ServomexAnalyser) -> MsgGenerator[tuple[int, ...]]:
    """The autocal groups (1–4) the analyser's current frame shows calibrating.

    Reads the ``cal_group1`` … ``cal_group4`` signals (no trigger: trigger first for a
    fresh frame); a calibration started from this session that is still in its sampling
    step counts as group busy too.
    """
    busy: list[int] = []
    signals = (analyser.cal_group1, analyser.cal_group2, analyser.cal_group3, analyser.cal_group4)
    for group, signal in enumerate(signals, start=1):
        phase = yield from bps.rd(signal, default_value=CalPhase.IDLE.value)
        if phase in _CALIBRATING:
            busy.append(group)
    progress = analyser.calibration.last_progress
    if analyser.calibration.running and progress is not None and progress.group not in busy:
        busy.append(progress.group)
    return tuple(sorted(busy))


def count_when_idle(
    analysers: Sequence[ServomexAnalyser],
    num: int | None = 1,
    delay: float | Sequence[float] = 0.0,
    *,
    wait: bool = True,
    poll_period: float = 1.0,
    timeout: float | None = None,
    md: Mapping[str, Any] | None = None,
) -> MsgGenerator[str]:
    """``count`` whose every event is taken while no analyser is calibrating.

    Before each event the analysers are triggered (one fresh frame each) and their cal
    groups checked; that same frame is the event. While a calibration runs the plan waits
    (``wait=True``, re-checking every ``poll_period`` s, failing with
    :class:`ServomexTimeoutError` after ``timeout`` s) or refuses
    (``wait=False``: :class:`ServomexConfigurationError`). Returns the run's uid.
    """
    if not analysers:
        raise ServomexValidationError("count_when_idle needs at least one analyser")
    if poll_period <= 0:
        raise ServomexValidationError(f"poll_period must be > 0 s, not {poll_period!r}")
    detectors = list(analysers)

    def take_when_idle(dets: Sequence[Any], take_reading: Any = None) -> MsgGenerator[None]:
        started = time.monotonic()
        while True:
            group = f"idle-check-{uuid.uuid4()}"
            for analyser in detectors:
                yield from bps.trigger(analyser, group=group)
            yield from bps.wait(group=group)
            busy: dict[str, tuple[int, ...]] = {}
            for analyser in detectors:
                groups = yield from calibrating_groups(analyser)
                if groups:
                    busy[analyser.name] = groups
            if not busy:
                break
            what = "; ".join(f"{n} group(s) {', '.join(map(str, g))}" for n, g in busy.items())
            if not wait:
                raise ServomexConfigurationError(f"calibration running: {what}")
            if timeout is not None and time.monotonic() - started > timeout:
                raise ServomexTimeoutError(f"still calibrating after {timeout} s: {what}")
            yield from bps.sleep(poll_period)
        yield from bps.checkpoint()
        yield from bps.create("primary")
        for det in list(dets):
            yield from bps.read(det)
        yield from bps.save()

    metadata: dict[str, Any] = {"plan_name": "count_when_idle"}
    metadata.update(md or {})
    uid: str = yield from bp.count(
        detectors, num=num, delay=delay, per_shot=take_when_idle, md=metadata
    )
    return uid


def wait_for_stable(
    analyser: ServomexAnalyser,
    channel: ChannelId | str,
    tolerance: float,
    window: float,
    *,
    poll_period: float = 0.5,
    timeout: float | None = None,
) -> MsgGenerator[float]:
    """Wait until ``channel`` stays within ``tolerance`` for ``window`` seconds.

    The analyser is triggered repeatedly (Modbus: a sweep every ``poll_period`` s;
    continuous: each broadcast) and the channel's value, stamped with its frame's time,
    kept for the last ``window`` seconds. The value is stable once those samples span at
    least ``window`` and their spread (max − min) is at most ``tolerance``; the plan then
    returns their mean. NaN values (no number from the analyser) restart the window.
    Raises :class:`ServomexTimeoutError` after ``timeout`` seconds. Needs no open run.
    """
    if tolerance < 0:
        raise ServomexValidationError(f"tolerance must be ≥ 0, not {tolerance!r}")
    if window < 0 or poll_period < 0:
        raise ServomexValidationError("window and poll_period must be ≥ 0")
    value_signal = analyser.channel(channel).value
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    while True:
        yield from bps.trigger(analyser, wait=True)
        reading = yield from bps.read(value_signal)
        if reading is None:  # list()-ed without a RunEngine
            return 0.0
        entry = reading[value_signal.name]
        stamp, value = float(entry["timestamp"]), float(entry["value"])
        if value != value:  # NaN
            samples.clear()
        elif not samples or stamp > samples[-1][0]:
            samples.append((stamp, value))
        # keep the newest sample at or before the window's start, and everything after it
        while len(samples) >= 2 and samples[1][0] <= stamp - window:
            samples.pop(0)
        if samples and samples[-1][0] - samples[0][0] >= window:
            values = [v for _, v in samples]
            if max(values) - min(values) <= tolerance:
                return sum(values) / len(values)
        if timeout is not None and time.monotonic() - started > timeout:
            spread = max(v for _, v in samples) - min(v for _, v in samples) if samples else None
            raise ServomexTimeoutError(
                f"{value_signal.name} not stable within ±{tolerance} over {window} s "
                f"after {timeout} s (last spread {spread})",
                context=analyser.context.merged(channel=ChannelId.parse(channel).value),
            )
        if poll_period > 0:
            yield from bps.sleep(poll_period)
