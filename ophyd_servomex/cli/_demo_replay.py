"""The demo's reading half: a fresh catalog client replays the runs, tabulates and plots them.

``ophyd-servomex demo`` runs this module in a separate process
(``python -m ophyd_servomex.cli._demo_replay --catalog LOC --output DIR UID…``), so what it
prints was read back from the catalog, not remembered by the process that wrote it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ChannelMean",
    "StreamData",
    "format_table",
    "main",
    "read_stream",
    "replay",
]

PLOT_FILE = "gas_channels.png"
_VALUE_KEY = re.compile(r"^(?P<device>.+)-(?P<channel>[idIDeE][1-4])-value$")
_GAS_UNITS = frozenset({"%", "vpm", "ppm"})
_CHANNEL_ORDER = ("I1", "I2", "I3", "I4", "D1", "D2", "D3", "D4", "E1", "E2")
_CALIBRATING = frozenset({"cal_gas_1", "cal_gas_2"})


@dataclass(frozen=True, slots=True)
class ChannelMean:
    """One channel of one stream: id, display name, mean value and units."""

    channel: str
    name: str
    mean: float
    units: str
    precision: int

    @property
    def text(self) -> str:
        """The mean at the channel's display precision, with its units."""
        value = "nan" if math.isnan(self.mean) else f"{self.mean:.{self.precision}f}"
        return f"{value} {self.units}".strip()

    @property
    def is_gas(self) -> bool:
        """True for a concentration channel (%, vpm, ppm)."""
        return self.units in _GAS_UNITS


@dataclass(slots=True)
class StreamData:
    """One stream of one run as the replay saw it."""

    uid: str
    scan_id: int | None
    plan: str
    stream: str
    events: int
    channels: list[ChannelMean] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    """Channel id → value per event (same order as ``times``)."""
    calibrating: list[bool] = field(default_factory=list)
    """Per event: any autocal group flowing calibration gas."""


def read_stream(run: Any, stream: str) -> StreamData:
    """Read one stream of a run from the catalog into a :class:`StreamData`."""
    from ..catalog import run_table

    start = run.metadata["start"]
    node = run[stream]
    data_keys: dict[str, Any] = node.metadata.get("data_keys", {})
    configuration: dict[str, Any] = node.metadata.get("configuration", {})
    table = run_table(run, stream, epoch_time=True)  # times as epoch seconds for arithmetic
    data = StreamData(
        uid=str(start["uid"]),
        scan_id=start.get("scan_id"),
        plan=str(start.get("plan_name", "?")),
        stream=stream,
        events=len(table),
        times=[float(t) for t in table["time"]] if len(table) else [],
    )
    found: list[tuple[int, ChannelMean]] = []
    for key in table.columns:
        match = _VALUE_KEY.match(str(key))
        if match is None:
            continue
        device, channel = match["device"], match["channel"].upper()
        described = data_keys.get(key, {})
        config = configuration.get(device, {}).get("data", {})
        name = str(config.get(f"{device}-{channel.lower()}-display_name", "") or "")
        column = [float(v) for v in table[key]]
        finite = [v for v in column if not math.isnan(v)]
        mean = sum(finite) / len(finite) if finite else math.nan
        precision = described.get("precision")
        found.append(
            (
                _CHANNEL_ORDER.index(channel),
                ChannelMean(
                    channel=channel,
                    name=name,
                    mean=mean,
                    units=str(described.get("units") or ""),
                    precision=precision if isinstance(precision, int) else 3,
                ),
            )
        )
        data.values[channel] = column
    data.channels = [mean for _, mean in sorted(found, key=lambda item: item[0])]
    groups = [c for c in table.columns if re.fullmatch(r".+-cal_group[1-4]", str(c))]
    data.calibrating = [
        any(str(table[c].iloc[i]) in _CALIBRATING for c in groups) for i in range(len(table))
    ]
    return data


def replay(catalog: Any, uids: Sequence[str]) -> list[StreamData]:
    """Every stream of every run in ``uids`` (runs in the given order, streams by name)."""
    from ..catalog import get_run

    streams: list[StreamData] = []
    for uid in uids:
        run = get_run(catalog, uid)
        for stream in sorted(run, key=lambda name: (name != "primary", name)):
            streams.append(read_stream(run, stream))
    return streams


def _channel_headers(streams: Sequence[StreamData]) -> list[tuple[str, str]]:
    """(channel id, header) for every channel in any stream, names from the first that has one."""
    names: dict[str, str] = {}
    for data in streams:
        for mean in data.channels:
            if not names.get(mean.channel):
                names[mean.channel] = mean.name
    ordered = sorted(names, key=_CHANNEL_ORDER.index)
    return [(cid, f"{cid} {names[cid]}".strip()) for cid in ordered]


def format_table(streams: Sequence[StreamData]) -> str:
    """The summary table: one row per stream, the mean of every channel with its units."""
    channels = _channel_headers(streams)
    header = ["scan", "run", "plan", "stream", "events", *(h for _, h in channels)]
    rows: list[list[str]] = []
    for data in streams:
        means = {m.channel: m.text for m in data.channels}
        rows.append(
            [
                "-" if data.scan_id is None else str(data.scan_id),
                data.uid[:8],
                data.plan,
                data.stream,
                str(data.events),
                *(means.get(cid, "-") for cid, _ in channels),
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {0, 4, *range(5, len(header))}

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ophyd_servomex.cli._demo_replay",
        description="Replay the demo's runs from the catalog: summary table and gas plot.",
    )
    parser.add_argument("uids", nargs="*", metavar="UID", help="runs to replay, in order")
    parser.add_argument("--catalog", default=None, metavar="PATH|URI")
    parser.add_argument("--output", default="demo-output", metavar="DIR")
    parser.add_argument(
        "--uids-from-stdin",
        action="store_true",
        help="import everything first, then read the uids from one line of standard input "
        "(an empty line: nothing to do, exit status 3)",
    )
    return parser


def _warm_up() -> None:
    """Import what the replay needs (tiled, pandas, matplotlib) before there is work."""
    import importlib

    for module in (
        "tiled.catalog",
        "tiled.client",
        "tiled.server.app",
        "bluesky_tiled_plugins",
        "pandas",
        "matplotlib.pyplot",
    ):
        with contextlib.suppress(ImportError):  # the real use reports it properly
            importlib.import_module(module)


def main(argv: Sequence[str] | None = None) -> int:
    """Replay, print the table, write the plot; exit status 1 when a run cannot be read."""
    from ..catalog import catalog_location, close_catalog, open_catalog
    from ..codec.errors import ServomexError

    args = _parser().parse_args(argv)
    uids: list[str] = list(args.uids)
    if args.uids_from_stdin:
        import matplotlib

        matplotlib.use("Agg")
        _warm_up()
        uids += sys.stdin.readline().split()
        if not uids:
            return 3
    if not uids:
        print("error: no runs to replay", file=sys.stderr)
        return 2
    try:
        catalog = open_catalog(args.catalog)
    except ServomexError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        print(
            f"a fresh catalog client (process {os.getpid()}) opened {catalog_location(catalog)}"
            f" and holds {len(catalog)} run(s); replaying the demo's {len(uids)}:\n",
            flush=True,
        )
        streams = replay(catalog, uids)
    except ServomexError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        close_catalog(catalog)
    print(format_table(streams), flush=True)

    from ._demo_plot import plot_gas_channels

    path = Path(args.output) / PLOT_FILE
    try:
        written = plot_gas_channels(streams, path)
    except OSError as error:
        print(f"error: cannot write the plot {path}: {error}", file=sys.stderr)
        return 1
    print(f"\nplot of the gas channels ({written} series): {path}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by the demo in a subprocess
    sys.exit(main())
