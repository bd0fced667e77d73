#!/usr/bin/env python
"""Calibrate: run one autocalibration group with a progress bar, recorded as a run.

    python example_plans/calibrate.py --port /dev/ttyUSB0 --protocol modbus-rtu --group 1 --confirm
    python example_plans/calibrate.py --sim --confirm

Starting an autocalibration makes the analyser flow calibration gas, which affects the
process: nothing is written to the analyser without ``--confirm`` (the library itself
refuses without ``confirm=True``). It needs Modbus mode; continuous mode is read-only.
The run holds one reading before and one after (``primary``) and every polled frame while
the calibration runs (``<name>_monitor``). Ctrl-C stops the calibration (stop-all pulse).
"""

from __future__ import annotations

import sys

from _common import analyser_options, disconnect, example_parser, port_or_simulator


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--group", type=int, default=1, help="autocal group 1-4 (default 1)")
    parser.add_argument("--confirm", action="store_true", help="really start the calibration")
    parser.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds"
    )
    args = parser.parse_args(argv)
    if not args.confirm:
        parser.error("calibration flows calibration gas into the analyser: pass --confirm")

    from bluesky import RunEngine
    from ophyd_async.core import init_devices

    from ophyd_servomex import ProtocolKind, ServomexAnalyser
    from ophyd_servomex.catalog import close_catalog, open_catalog, subscribe_writer
    from ophyd_servomex.plans import CalibrationProgressManager, calibration_run
    from ophyd_servomex.sim import SimConfig

    # simulated: 100× faster, so the three 60 s gas phases take under 2 s
    sim = SimConfig(mode=ProtocolKind.MODBUS_RTU, time_scale=100.0, flush_time=60.0)
    with port_or_simulator(args, sim) as port:
        RE = RunEngine(call_returns_result=True)
        RE.waiting_hook = CalibrationProgressManager()  # the phases; plain lines off a terminal
        catalog = open_catalog(args.catalog)
        subscribe_writer(RE, catalog)
        with init_devices():
            analyser = ServomexAnalyser(port, calibration_poll_period=0.1, **analyser_options(args))
        try:
            result = RE(
                calibration_run(analyser, args.group, confirm=args.confirm, timeout=args.timeout)
            )
        finally:
            disconnect(analyser)
        progress = analyser.calibration.last_progress  # a CalibrationProgress
        print(
            f"group {progress.group}: {progress.phase.value} after {progress.elapsed:.1f} s "
            f"(run {result.run_start_uids[0][:8]}, exit status {result.exit_status})"
        )
        close_catalog(catalog)
    return 0 if result.exit_status == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
