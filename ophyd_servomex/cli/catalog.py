"""``ophyd-servomex runs`` and ``ophyd-servomex replay``: look at the runs in a catalog.

The catalog is ``--catalog PATH|URI``, else ``OPHYD_SERVOMEX_CATALOG``, else the embedded
catalog in the user data directory; a server's API key comes from ``TILED_API_KEY``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

__all__ = ["format_runs", "register", "replay_command", "runs_command"]

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
    replay.add_argument("--csv", metavar="FILE", default=None, help="also write the table here")
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
        catalog = open_catalog(args.catalog)
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


def replay_command(args: argparse.Namespace) -> int:
    """Print a run's summary and table; exit status 1 when it cannot be found or read."""
    from ..catalog import CatalogError, get_run, open_catalog, run_summary, run_table

    try:
        catalog = open_catalog(args.catalog)
        run = get_run(catalog, args.run)
        summary = run_summary(run)
        table = run_table(run, _stream_to_show(args.stream, summary["streams"]))
    except CatalogError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(_format_summary(summary))
    print()
    if args.rows and len(table) > args.rows:
        half = max(args.rows // 2, 1)
        print(table.head(half).to_string())
        print(f"... {len(table) - 2 * half} more row(s) ...")
        print(table.tail(half).to_string(header=False))
    else:
        print(table.to_string())
    if args.csv:
        try:
            table.to_csv(args.csv)
        except OSError as error:
            print(f"error: cannot write {args.csv}: {error}", file=sys.stderr)
            return 1
        print(f"\nwrote {len(table)} row(s) to {args.csv}")
    return 0
