"""The demo's plot: every gas channel (O₂, CO, CO₂ …) of the replayed runs against time.

Drawn with matplotlib's Agg backend (no display needed) into a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._demo_replay import StreamData

__all__ = ["plot_gas_channels"]

_ORDER = ("I1", "I2", "I3", "I4", "D1", "D2", "D3", "D4", "E1", "E2")


def _spans(times: Sequence[float], flags: Sequence[bool]) -> list[tuple[float, float]]:
    """The (first, last) times of each run of consecutive True flags."""
    spans: list[tuple[float, float]] = []
    begin: float | None = None
    last = 0.0
    for when, flag in zip(times, flags, strict=True):
        if flag and begin is None:
            begin = when
        if not flag and begin is not None:
            spans.append((begin, last))
            begin = None
        last = when
    if begin is not None:
        spans.append((begin, last))
    return spans


def plot_gas_channels(streams: Sequence[StreamData], path: Path) -> int:
    """Plot each gas channel in its own panel, one series per stream; returns the series drawn.

    Time is seconds since the first event of any stream. Periods in which an autocal group
    flowed calibration gas are shaded. The directory of ``path`` is created.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gas: dict[str, tuple[str, str]] = {}  # channel id -> (name, units)
    for data in streams:
        for mean in data.channels:
            if mean.is_gas and (mean.channel not in gas or not gas[mean.channel][0]):
                gas[mean.channel] = (mean.name, mean.units)
    channels = sorted(gas, key=_ORDER.index)
    starts = [data.times[0] for data in streams if data.times]
    origin = min(starts) if starts else 0.0

    panels = max(len(channels), 1)
    figure, axes = plt.subplots(panels, 1, figsize=(10, 2.4 * panels + 1.6), sharex=True)
    axes_list = list(axes) if panels > 1 else [axes]
    drawn = 0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, data in enumerate(streams):
        if not data.times:
            continue
        colour = colours[index % len(colours)]
        elapsed = [t - origin for t in data.times]
        label = f"scan {data.scan_id} {data.plan} ({data.stream}, {data.events} events)"
        for axis, channel in zip(axes_list, channels, strict=False):
            values = data.values.get(channel)
            if values is None:
                continue
            style = ".-" if len(values) > 3 else "o"  # a before/after pair is no time series
            axis.plot(elapsed, values, style, color=colour, ms=3, lw=0.8, label=label)
            drawn += 1
            for begin, end in _spans(elapsed, data.calibrating):
                axis.axvspan(begin, end, color="orange", alpha=0.2, linewidth=0)
    for axis, channel in zip(axes_list, channels, strict=False):
        name, units = gas[channel]
        axis.set_ylabel(f"{name or channel} [{units}]")
        axis.set_title(f"{channel} {name}".strip(), loc="left", fontsize="medium")
        axis.grid(True, alpha=0.3)
        axis.ticklabel_format(axis="y", useOffset=False)
    axes_list[-1].set_xlabel("time since the first event [s] (shaded: calibration gas flowing)")
    figure.suptitle("ophyd-servomex demo: gas channels replayed from the catalog")
    handles, labels = axes_list[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncols=2, fontsize="small")
    figure.tight_layout(rect=(0.0, 0.08, 1.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return drawn
