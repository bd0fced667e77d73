#!/usr/bin/env python
"""Monitor the broadcast: record every frame an analyser sends for a while, as one run.

    python example_plans/monitor_broadcast.py --port /dev/ttyUSB0 --protocol continuous \\
        --period 2 --seconds 60
    python example_plans/monitor_broadcast.py --sim --seconds 5

In continuous mode the analyser sends a frame every *frame-frequency* seconds (set on its
front panel); each frame becomes one event of the ``<name>_monitor`` stream. A Modbus-mode
analyser is polled in the background instead (``--poll-rate`` per second).
"""

from __future__ import annotations

import sys

from _common import analyser_options, disconnect, example_parser, port_or_simulator


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument(
        "--poll-rate", type=float, default=2.0, help="Modbus polls per second (default 2)"
    )
    args = parser.parse_args(argv)

    from bluesky import RunEngine
    from ophyd_async.core import init_devices

    from ophyd_servomex import ProtocolKind, ServomexAnalyser
    from ophyd_servomex.catalog import close_catalog, open_catalog, run_table, subscribe_writer
    from ophyd_servomex.plans import monitor_broadcast, monitor_stream_name
    from ophyd_servomex.sim import SimConfig

    sim = SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=0.2)
    with port_or_simulator(args, sim) as port:
        RE = RunEngine()
        catalog = open_catalog(args.catalog)
        subscribe_writer(RE, catalog)
        with init_devices():
            gas = ServomexAnalyser(port, poll_rate_hz=args.poll_rate, **analyser_options(args))
        try:
            (uid,) = RE(monitor_broadcast([gas], args.seconds))
        finally:
            disconnect(gas)

        stream = monitor_stream_name(gas)
        table = run_table(catalog[uid], stream, epoch_time=True)  # seconds, for the gaps
        print(f"{len(table)} frames in stream {stream!r} of run {uid[:8]}")
        if len(table) > 1:
            gaps = table["time"].diff().dropna()
            print(f"time between frames: mean {gaps.mean():.3f} s, max {gaps.max():.3f} s")
        close_catalog(catalog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
