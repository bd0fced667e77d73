"""``ophyd-servomex demo``: the whole product on simulated analysers, in well under a minute.

1. Opens the catalog (``--catalog PATH|URI``, else ``OPHYD_SERVOMEX_CATALOG``, else the
   embedded catalog in the user data directory) and subscribes the journaled writer.
2. Starts two simulated SERVOPRO 4100s on pseudo-terminals, each in its own thread: one in
   Modbus RTU mode at address 30 like the bench unit, one broadcasting continuous frames every
   0.1 s. Connects a ``ServomexAnalyser`` to each with protocol AUTO, which finds the mode.
3. Runs ``count([modbus], num=N)``, ``monitor_broadcast([broadcast], S)`` and a time-scaled
   autocalibration (group 1, with bluesky's ``ProgressBarManager`` drawing its phases).
4. Starts a separate process that opens the catalog afresh, replays the three runs, prints a
   summary table (run, plan, scan id, events per stream, channel means with units) and writes
   ``gas_channels.png`` (O₂, CO, CO₂ against time) into ``--output``.

Exit status 0 when all of it worked, 1 when something failed (the message says what).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._options import positive_float, positive_int

__all__ = ["demo_command", "register"]

CATALOG_HELP = (
    "catalog directory or http(s):// tiled server URI "
    "(default: $OPHYD_SERVOMEX_CATALOG, else the user data directory)"
)


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="simulated analysers → RunEngine → catalog → replay, table and plot",
        description=(
            "Run two simulated analysers (Modbus RTU at address 30, continuous broadcast), "
            "record a count, a monitored broadcast and a time-scaled calibration into the "
            "catalog, then replay them from a separate process: summary table and PNG plot."
        ),
    )
    parser.add_argument("--catalog", metavar="PATH|URI", default=None, help=CATALOG_HELP)
    parser.add_argument(
        "--output",
        metavar="DIR",
        default="demo-output",
        help="where the plot goes (default ./demo-output/)",
    )
    parser.add_argument(
        "--events",
        type=positive_int,
        default=100,
        metavar="N",
        help="events in the count run (default 100)",
    )
    parser.add_argument(
        "--monitor-seconds",
        type=positive_float,
        default=3.0,
        metavar="S",
        help="how long the broadcast is monitored (default 3)",
    )
    parser.set_defaults(func=demo_command)


def _say(text: str) -> None:
    print(text, flush=True)


def _configure_logging() -> None:
    """Warnings and errors as tidy one-liners (the driver and tiled log through ``logging``)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="  [%(levelname)s %(name)s] %(message)s")


def demo_command(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    from ..catalog import resolve_location
    from ..codec.errors import ServomexError

    _configure_logging()
    # A demo should fail fast on an unreachable server, not retry for most of a minute
    # (tiled reads these when it is imported; the user's own settings win).
    os.environ.setdefault("TILED_RETRY_ATTEMPTS", "1")
    os.environ.setdefault("TILED_RETRY_TIMEOUT", "2")
    began = time.monotonic()
    _say("ophyd-servomex demo: simulated analysers → RunEngine → catalog → replay\n")
    try:
        location = str(resolve_location(args.catalog))
    except ServomexError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # The reader starts as soon as the catalog is open, so that it imports tiled and
    # matplotlib while the runs are taken; it opens the catalog itself only once it is given
    # the uids, after this process has closed it.
    readers: list[subprocess.Popen[str]] = []

    def start_reader() -> None:
        readers.append(_start_reader(location, Path(args.output)))

    try:
        uids = _record(args, location, on_catalog_ready=start_reader)
    except BaseException as error:
        for reader in readers:
            _cancel_reader(reader)
        if isinstance(error, ServomexError):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise
    reader = readers[0] if readers else _start_reader(location, Path(args.output))
    _say(f"\nreplaying from the catalog in a separate process (pid {reader.pid}) …")
    status = _finish_reader(reader, uids)
    if status != 0:
        print(f"error: the replay process failed (exit status {status})", file=sys.stderr)
        return 1
    _say(f"\ndone in {time.monotonic() - began:.1f} s")
    _say(
        f"look again with `ophyd-servomex runs --catalog {location}` "
        f"or `ophyd-servomex replay -1 --catalog {location}`"
    )
    return 0


def _record(
    args: argparse.Namespace, location: str, *, on_catalog_ready: Callable[[], None]
) -> tuple[str, ...]:
    """Open the catalog, take the three runs, close the catalog; returns the run uids.

    The catalog opens in a worker thread while the simulators start and the devices connect
    (creating an embedded catalog runs a subprocess, and AUTO detection mostly waits).
    """
    from concurrent.futures import ThreadPoolExecutor

    from bluesky import RunEngine

    from ..catalog import CatalogError, close_catalog, open_catalog, subscribe_writer
    from ._demo_acquire import simulated_analysers, take_runs

    started = time.monotonic()
    catalog: Any = None
    with ThreadPoolExecutor(1, thread_name_prefix="open-catalog") as pool:
        opening = pool.submit(open_catalog, location)
        try:
            run_engine = RunEngine({"purpose": "ophyd-servomex demo"}, call_returns_result=True)
            with simulated_analysers(_say) as devices:
                catalog = opening.result()
                subscription = subscribe_writer(run_engine, catalog)
                on_catalog_ready()
                _say(
                    f"catalog: {location} ({len(catalog)} run(s) so far, ready "
                    f"{time.monotonic() - started:.1f} s after start); next scan id "
                    f"{subscription.scan_id + 1}"
                )
                try:
                    runs = take_runs(
                        run_engine,
                        devices,
                        events=args.events,
                        monitor_seconds=args.monitor_seconds,
                        say=_say,
                    )
                finally:
                    subscription.unsubscribe()
        finally:
            if catalog is None and opening.done() and opening.exception() is None:
                catalog = opening.result()
            if catalog is not None:
                close_catalog(catalog)
    failed = subscription.writer.failed_runs
    if failed:
        raise CatalogError(
            f"{len(failed)} run(s) did not reach the catalog; their documents are kept in "
            f"{subscription.backup_directory}",
            location=location,
        )
    return runs.uids


def _start_reader(location: str, output: Path) -> subprocess.Popen[str]:
    """Start the replay process; it waits for the uids on its standard input."""
    command = [
        sys.executable,
        "-m",
        "ophyd_servomex.cli._demo_replay",
        "--catalog",
        location,
        "--output",
        str(output),
        "--uids-from-stdin",
    ]
    return subprocess.Popen(command, stdin=subprocess.PIPE, text=True)


def _finish_reader(reader: subprocess.Popen[str], uids: tuple[str, ...]) -> int:
    """Hand the uids to the replay process and wait for it."""
    sys.stdout.flush()
    reader.communicate(" ".join(uids) + "\n")
    return reader.returncode


def _cancel_reader(reader: subprocess.Popen[str]) -> None:
    """Tell the replay process there is nothing to replay (an empty line) and reap it."""
    try:
        reader.communicate("\n", timeout=10)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        reader.kill()
        reader.wait()
