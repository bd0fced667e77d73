#!/usr/bin/env python
"""Replay: find a run in the catalog, print its summary and data, optionally plot it.

    python example_plans/replay.py                 # the latest run
    python example_plans/replay.py 12 --plot o2.png
    python example_plans/replay.py 3fa2c --stream gas_monitor
    python example_plans/replay.py --sim           # record a short simulated run first

A run is named by its uid, the first 5+ characters of it, its scan id, or -1 for the
latest (-2 the one before). The catalog is ``--catalog PATH|URI``, else
``$OPHYD_SERVOMEX_CATALOG``, else the embedded catalog in the user data directory. This
needs no analyser: it reads only what earlier runs stored.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any


def _record_simulated_run(catalog: Any) -> None:
    """A 5-event count from a simulated analyser, so there is something to replay."""
    from bluesky import RunEngine
    from bluesky.plans import count
    from bluesky.run_engine import call_in_bluesky_event_loop
    from ophyd_async.core import init_devices

    from ophyd_servomex import ProtocolKind, ServomexAnalyser
    from ophyd_servomex.catalog import subscribe_writer
    from ophyd_servomex.sim import SimConfig, SimulatorThread

    with SimulatorThread(SimConfig(mode=ProtocolKind.MODBUS_RTU)) as sim:
        RE = RunEngine()
        subscription = subscribe_writer(RE, catalog)
        with init_devices():
            gas = ServomexAnalyser(sim.port, protocol=ProtocolKind.MODBUS_RTU, address=30)
        try:
            RE(count([gas], num=5))
        finally:
            call_in_bluesky_event_loop(gas.disconnect())
            subscription.unsubscribe()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("run", nargs="?", default="-1", help="uid, partial uid, scan id or -1")
    parser.add_argument("--catalog", metavar="PATH|URI", default=None, help="the catalog")
    parser.add_argument("--stream", default=None, help="stream (default: primary, else first)")
    parser.add_argument("--plot", metavar="PNG", default=None, help="plot the values here")
    parser.add_argument("--sim", action="store_true", help="record a simulated run first")
    args = parser.parse_args(argv)

    from ophyd_servomex.catalog import (
        CatalogError,
        close_catalog,
        get_run,
        list_runs,
        open_catalog,
        run_summary,
        run_table,
    )

    catalog = open_catalog(args.catalog)
    try:
        if args.sim:
            _record_simulated_run(catalog)
        print("recent runs:")
        for row in list_runs(catalog, limit=5):
            print(f"  scan {row['scan_id']}  {row['uid'][:8]}  {row['plan_name']}")

        try:
            run = get_run(catalog, args.run)
        except CatalogError as error:  # RunNotFoundError is one
            print(f"error: {error}", file=sys.stderr)
            return 1
        summary = run_summary(run)
        started = datetime.fromtimestamp(summary["start_time"]).isoformat(
            sep=" ", timespec="seconds"
        )
        print(f"\nscan {summary['scan_id']}: {summary['plan_name']}, started {started}, ", end="")
        print(f"{summary['exit_status']}; events per stream {summary['num_events']}")

        stream = args.stream or ("primary" if "primary" in run else summary["streams"][0])
        table = run_table(run, stream, epoch_time=True)  # pandas: a row per event; time in s
        values = [c for c in table.columns if c.endswith("-value")]
        units = summary["data_keys"][stream]
        print(f"\n{stream}: {len(table)} events; channel values and units:")
        for column in values:
            print(f"  {column:28s} mean {table[column].mean():10.4f} {units.get(column) or ''}")
        # tiled's own view of the same data: run[stream].read() is an xarray Dataset

        if args.plot:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            figure, axes = plt.subplots(len(values), 1, sharex=True, squeeze=False)
            elapsed = table["time"] - table["time"].iloc[0]
            for axis, column in zip(axes[:, 0], values, strict=True):
                axis.plot(elapsed, table[column], ".-")
                axis.set_ylabel(f"{column}\n[{units.get(column) or ''}]", fontsize="small")
            axes[-1, 0].set_xlabel("seconds since the first event")
            figure.tight_layout()
            figure.savefig(args.plot)
            print(f"\nplot: {args.plot}")
    finally:
        close_catalog(catalog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
