"""``ophyd-servomex runs`` and ``ophyd-servomex replay``: look at the runs in a catalog.

The catalog is ``--catalog PATH|URI``, else ``OPHYD_SERVOMEX_CATALOG``, else the embedded
catalog in the user data directory; a server's API key comes from ``TILED_API_KEY``. Both
commands only read: a catalog that does not exist is an error (exit status 1), never created.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import datetime
from typing import IO, Any

__all__ = ["format_runs", "format_table", "register", "replay_command", "runs_command"]

CATALOG_HELP = (
    "catalog directory or http(s):// tiled server URI "
    "(default: $OPHYD_SERVOMEX_CATALOG, else the user data directory)"
)


def register(subparsers: Any) -> None:
    """Add the ``runs`` and ``replay`` sub-commands."""
    runs = subparsers.add_parser(
        "runs",
        help="list recent runs in the catalog",
        description="List the most recent runs in the catalog, newest first.",
    )
    runs.add_argument("--catalog", metavar="PATH|URI", default=None, help=CATALOG_HELP)
    runs.add_argument("--limit", type=int, default=20, metavar="N", help="runs to show (20)")
    runs.set_defaults(func=runs_command)

    replay = subparsers.add_parser(
        "replay",
        help="show one run: summary and data table",
        description="Print a run's summary and one stream as a table; optionally save a CSV.",
    )
    replay.add_argument("run", metavar="RUN", help="uid, partial uid (5+ chars), scan id or -1")
    replay.add_argument("--catalog", metavar="PATH|URI", default=None, help=CATALOG_HELP)
    replay.add_argument(
        "--stream",
        default=None,
        help="stream to tabulate (default: primary, else the run's first stream)",
    )
    replay.add_argument(
        "--csv",
        metavar="FILE",
        default=None,
        help="also write the whole table here (checked writable before anything is printed)",
    )
    replay.add_argument(
        "--rows", type=int, default=20, metavar="N", help="rows to print, 0 for all (20)"
    )
    replay.set_defaults(func=replay_command)


def _when(timestamp: Any) -> str:
    if not isinstance(timestamp, (int, float)):
        return "-"
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def format_runs(rows: list[dict[str, Any]]) -> str:
    """The ``runs`` table for summaries from :func:`ophyd_servomex.catalog.list_runs`."""
    header = ("scan_id", "uid", "plan", "started", "status", "events")
    body = [
        (
            _text(row["scan_id"]),
            _text(row["uid"])[:8],
            _text(row["plan_name"]),
            _when(row["start_time"]),
            _text(row["exit_status"]) if row["exit_status"] else "running?",
            _text(row["num_events"]),
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *body]
    )


def runs_command(args: argparse.Namespace) -> int:
    """List recent runs; exit status 1 when the catalog cannot be read."""
    from ..catalog import CatalogError, list_runs, open_catalog

    try:
        catalog = open_catalog(args.catalog, create=False)
        rows = list_runs(catalog, limit=args.limit)
    except CatalogError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not rows:
        print("no runs")
        return 0
    print(format_runs(rows))
    return 0


def _format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"uid:         {summary['uid']}",
        f"scan_id:     {_text(summary['scan_id'])}",
        f"plan:        {_text(summary['plan_name'])}",
        f"started:     {_when(summary['start_time'])}",
        f"stopped:     {_when(summary['stop_time'])}",
        f"exit_status: {_text(summary['exit_status'])}"
        + (f" ({summary['reason']})" if summary["reason"] else ""),
    ]
    for stream in summary["streams"]:
        keys = ", ".join(
            f"{key} [{units}]" if units else key
            for key, units in summary["data_keys"].get(stream, {}).items()
        )
        count = summary["num_events"].get(stream, 0)
        lines.append(f"stream {stream}: {count} event(s); {keys}")
    return "\n".join(lines)


def _stream_to_show(requested: str | None, streams: list[str]) -> str:
    """The stream asked for, else ``primary``, else the first (a monitor-only run has no
    ``primary``: ``monitor_broadcast`` records only ``<name>_monitor``)."""
    if requested is not None:
        return requested
    if "primary" in streams or not streams:
        return "primary"
    return streams[0]


def _cell(value: Any, precision: Any) -> str:
    """A table cell: floats with the data key's precision (else up to 10 significant digits)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        number = float(value)
        if math.isnan(number):
            return "nan"
        if isinstance(precision, int) and not isinstance(precision, bool) and precision >= 0:
            return f"{number:.{precision}f}"
        return f"{number:.10g}"
    if hasattr(value, "strftime"):
        try:
            return str(value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])
        except ValueError:  # NaT
            return "-"
    return str(value)


def _is_numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) or type(value).__name__.startswith(("int", "float"))


def format_table(
    table: Any, rows: int | None = None, *, precision: dict[str, Any] | None = None
) -> str:
    """A :func:`~ophyd_servomex.catalog.run_table` table as aligned text.

    The header names ``seq_num``, ``time`` (local date-time, to the millisecond) and each data
    key with its units (``analyser-i1-value [%]``, from ``table.attrs["units"]``). Numbers are
    right-aligned, floats shown with the key's ``precision`` when given. With ``rows`` (> 0)
    and a longer table, the first ``ceil(rows/2)`` and last ``floor(rows/2)`` rows are shown
    around a ``... N more row(s) ...`` line, all under one header and one alignment.
    """
    units: dict[str, Any] = dict(table.attrs.get("units") or {})
    precision = precision or {}
    columns = list(table.columns)
    header = [str(table.index.name or "seq_num")] + [
        f"{c} [{units[c]}]" if units.get(c) else str(c) for c in columns
    ]
    count = len(table)
    shown = list(range(count))
    hidden = 0
    if rows and count > rows:
        head, tail = (rows + 1) // 2, rows // 2
        shown = list(range(head)) + list(range(count - tail, count))
        hidden = count - rows
    body: list[list[str]] = []
    numeric = [True] + [False] * len(columns)
    for position in shown:
        values = table.iloc[position]
        cells = [str(table.index[position])]
        for offset, column in enumerate(columns, start=1):
            value = values[column]
            numeric[offset] = numeric[offset] or _is_numeric(value)
            cells.append(_cell(value, precision.get(column)))
        body.append(cells)
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if numeric[i] else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [line(header)]
    split = (rows + 1) // 2 if hidden and rows else len(body)
    lines += [line(cells) for cells in body[:split]]
    if hidden:
        lines.append(f"... {hidden} more row(s) ...")
        lines += [line(cells) for cells in body[split:]]
    return "\n".join(lines)


def _precisions(run: Any, stream: str) -> dict[str, Any]:
    try:
        described = run[stream].metadata.get("data_keys", {})
    except Exception:
        return {}
    return {key: info.get("precision") for key, info in described.items()}


def replay_command(args: argparse.Namespace) -> int:
    """Print a run's summary and table; exit status 1 when it cannot be found or read, or when
    ``--csv`` names a file that cannot be written (checked before anything is printed)."""
    from ..catalog import CatalogError, get_run, open_catalog, run_summary, run_table

    try:
        catalog = open_catalog(args.catalog, create=False)
        run = get_run(catalog, args.run)
        summary = run_summary(run)
        stream = _stream_to_show(args.stream, summary["streams"])
        table = run_table(run, stream)
        precision = _precisions(run, stream)
    except CatalogError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    csv_file: IO[str] | None = None
    if args.csv:
        try:
            csv_file = open(args.csv, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as error:
            print(f"error: cannot write {args.csv}: {error.strerror or error}", file=sys.stderr)
            return 1
    try:
        print(_format_summary(summary))
        print()
        print(format_table(table, args.rows, precision=precision))
        if csv_file is not None:
            try:
                table.to_csv(csv_file)
            except OSError as error:
                print(f"error: cannot write {args.csv}: {error.strerror or error}", file=sys.stderr)
                return 1
            print(f"\nwrote {len(table)} row(s) to {args.csv}")
    finally:
        if csv_file is not None:
            csv_file.close()
    return 0
