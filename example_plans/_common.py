"""What every example shares: the command line (a real port or ``--sim``) and the simulator.

The examples import this module from their own directory (``python example_plans/count.py``
puts that directory on ``sys.path``). Everything about Bluesky stays in the examples
themselves, so each one reads from top to bottom as the code you would write.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ophyd_servomex.codec.models import ProtocolKind, SerialSettings

__all__ = ["analyser_options", "disconnect", "example_parser", "port_or_simulator"]

BENCH_ADDRESS = 30
"""The bench 4100D answers at Modbus address 30; the usual factory default is 1."""

PROTOCOLS = tuple(kind.value for kind in ProtocolKind)


def example_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the options every example takes; add your own before ``parse_args``."""
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0] if doc else None,
        epilog="Give --port for a real analyser or --sim for a simulated one.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--port",
        help="serial device (/dev/ttyUSB0, COM11), socket://host:port or rfc2217://host:port",
    )
    where.add_argument(
        "--sim", action="store_true", help="start a simulated SERVOPRO 4100 in a thread"
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=ProtocolKind.AUTO.value,
        help="the front-panel mode, or auto to detect it (default auto)",
    )
    parser.add_argument(
        "--address",
        type=int,
        default=BENCH_ADDRESS,
        help=f"Modbus slave address (default {BENCH_ADDRESS}, the bench unit's)",
    )
    parser.add_argument("--baud", type=int, default=19200, help="baud rate (default 19200)")
    parser.add_argument(
        "--period",
        type=float,
        default=2.0,
        help="continuous-mode frame period set on the front panel, seconds (default 2)",
    )
    parser.add_argument(
        "--catalog",
        metavar="PATH|URI",
        default=None,
        help="catalog directory or tiled server (default $OPHYD_SERVOMEX_CATALOG, "
        "else the user data directory)",
    )
    return parser


@contextmanager
def port_or_simulator(args: argparse.Namespace, sim: Any = None) -> Iterator[str]:
    """Yield the port to open: ``--port``, or a simulator started from ``sim`` (a SimConfig).

    With ``--sim``, an explicit ``--protocol`` picks the simulator's mode (``auto`` keeps the
    example's choice) and a continuous simulator's period becomes ``args.period``.
    """
    if not args.sim:
        yield args.port
        return
    from ophyd_servomex.sim import SimConfig, SimulatorThread

    config = sim if sim is not None else SimConfig()
    if args.protocol != ProtocolKind.AUTO.value:
        config = dataclasses.replace(config, mode=ProtocolKind(args.protocol))
    if config.mode is ProtocolKind.CONTINUOUS_ASCII:
        args.period = config.period
    # AUTO's Modbus probes time out on a continuous-mode line by design; keep that quiet.
    logging.getLogger("anymodbus").setLevel(logging.ERROR)
    with SimulatorThread(config) as thread:
        addresses = ", ".join(str(a.address) for a in thread.analysers)
        print(
            f"simulated SERVOPRO 4100 ({config.mode.value}, address {addresses}) on {thread.port}"
        )
        yield thread.port


def analyser_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``ServomexAnalyser`` from the common options."""
    return {
        "protocol": ProtocolKind(args.protocol),
        "address": args.address,
        "serial_settings": SerialSettings(args.port or "", baudrate=args.baud),
        "expected_period": args.period,
    }


def disconnect(*devices: Any) -> None:
    """Close the devices' ports (from outside the RunEngine's event loop)."""
    from bluesky.run_engine import call_in_bluesky_event_loop

    for device in devices:
        call_in_bluesky_event_loop(device.disconnect())
