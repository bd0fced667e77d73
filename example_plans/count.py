#!/usr/bin/env python
"""Count: read every channel of one analyser N times into the catalog, then show the table.

    python example_plans/count.py --port /dev/ttyUSB0 --address 30 --num 20
    python example_plans/count.py --port /dev/ttyUSB0 --protocol modbus-rtu --delay 1
    python example_plans/count.py --sim

Each event is one fresh frame (a Modbus sweep of all channels, or the next continuous
broadcast), so every channel in an event comes from the same instant.
"""

from __future__ import annotations

import sys

from _common import analyser_options, disconnect, example_parser, port_or_simulator


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--num", type=int, default=10, help="events (default 10)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between events")
    args = parser.parse_args(argv)

    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd_async.core import init_devices

    from ophyd_servomex import ProtocolKind, ServomexAnalyser
    from ophyd_servomex.catalog import (
        close_catalog,
        get_run,
        open_catalog,
        run_table,
        subscribe_writer,
    )
    from ophyd_servomex.sim import SimConfig

    with port_or_simulator(args, SimConfig(mode=ProtocolKind.MODBUS_RTU)) as port:
        RE = RunEngine()
        catalog = open_catalog(args.catalog)
        subscribe_writer(RE, catalog)  # journaled: a crash or a dead server loses nothing
        with init_devices():
            analyser = ServomexAnalyser(port, **analyser_options(args))
        try:
            (uid,) = RE(count([analyser], num=args.num, delay=args.delay))
        finally:
            disconnect(analyser)

        run = get_run(catalog, uid)
        table = run_table(run)
        values = [c for c in table.columns if c.endswith("-value")]
        start = run.metadata["start"]
        print(f"scan {start['scan_id']} ({uid[:8]}): {len(table)} events in the catalog")
        print(table[values].describe().loc[["mean", "std", "min", "max"]].to_string())
        close_catalog(catalog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
