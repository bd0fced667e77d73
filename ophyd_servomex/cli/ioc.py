"""``ophyd-servomex ioc``: serve analysers on the controls network (EPICS PVA and CA).

One analyser: ``ophyd-servomex ioc --prefix SMX1: --protocol modbus-rtu --address 30
/dev/ttyUSB0``. Several from one process: ``ophyd-servomex ioc --config analysers.toml``.
Runs until SIGINT or SIGTERM (exit status 0). Calibration through the IOC needs
``--allow-calibration``. The EPICS addresses and ports come from the usual ``EPICS_*``
environment variables (see docs/facility.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._options import PORT_HELP, PROTOCOLS, positive_float, single_address

__all__ = ["register"]


def _channels(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if not parts:
        raise argparse.ArgumentTypeError(f"no channels in {text!r}")
    return parts


def register(subparsers: Any) -> None:
    """Add the ``ioc`` sub-command."""
    parser = subparsers.add_parser(
        "ioc",
        help="serve analysers over EPICS PVA and Channel Access (FastCS IOC)",
        description=(
            "Serve one analyser (--prefix and PORT) or several (--config FILE) over EPICS "
            "PV Access and Channel Access. Runs until interrupted."
        ),
    )
    parser.add_argument("port", nargs="?", help=PORT_HELP)
    parser.add_argument("--prefix", help="EPICS PV prefix ending in ':' (such as SMX1:)")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a .toml or .yaml file listing analysers (prefix, port, protocol, address …)",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="auto", help="default auto")
    parser.add_argument(
        "--address", type=single_address, default=1, metavar="ADDR", help="Modbus address"
    )
    parser.add_argument("--baud", type=int, default=19200, help="baud rate (default 19200)")
    parser.add_argument(
        "--channels",
        type=_channels,
        metavar="I1,I2,…",
        help="the channels to serve (default: those the analyser reports at start)",
    )
    parser.add_argument(
        "--poll-period",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between Modbus polls; settable later through P:PollPeriod (default 1)",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=1.0, metavar="SECONDS", help="per request"
    )
    parser.add_argument(
        "--period",
        type=positive_float,
        default=2.0,
        metavar="SECONDS",
        help="the continuous broadcast period set on the panel (default 2)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="Modbus line silence before each request (default 0.05)",
    )
    parser.add_argument(
        "--discover-timeout",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait at start for the channel set (default 5)",
    )
    parser.add_argument(
        "--allow-calibration",
        action="store_true",
        help="let clients start and stop autocalibration through P:CalStart / P:CalStop",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    parser.set_defaults(func=_run)


def _config(args: argparse.Namespace) -> Any:
    from ..ioc import AnalyserConfig, IocConfig, load_config

    if args.config is not None:
        if args.port is not None or args.prefix is not None:
            raise SystemExit("ophyd-servomex ioc: give --config or --prefix and PORT, not both")
        return load_config(args.config, allow_calibration=args.allow_calibration)
    if args.port is None or args.prefix is None:
        raise SystemExit("ophyd-servomex ioc: --prefix and PORT are required (or --config)")
    from ..codec.models import ChannelId, ProtocolKind

    return IocConfig(
        (
            AnalyserConfig(
                prefix=args.prefix,
                port=args.port,
                protocol=ProtocolKind(args.protocol),
                address=args.address,
                baud=args.baud,
                channels=None
                if args.channels is None
                else tuple(ChannelId.parse(c) for c in args.channels),
                poll_period=args.poll_period,
                timeout=args.timeout,
                expected_period=args.period,
                inter_frame_idle=args.idle,
                discover_timeout=args.discover_timeout,
            ),
        ),
        allow_calibration=args.allow_calibration,
    )


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from ..codec.errors import ServomexError

    level = (
        logging.WARNING
        if args.verbose <= 0
        else logging.INFO
        if args.verbose == 1
        else logging.DEBUG
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose <= 0:
        logging.getLogger("ophyd_servomex.ioc").setLevel(logging.INFO)
        logging.getLogger("anymodbus").setLevel(logging.ERROR)
    try:
        config = _config(args)
    except ServomexError as exc:
        print(f"ophyd-servomex ioc: error: {exc}", file=sys.stderr)
        return 2
    from ..ioc import serve

    names = ", ".join(f"{a.prefix} on {a.port}" for a in config.analysers)
    print(f"serving {names} over PVA and CA; Ctrl-C or SIGTERM stops", file=sys.stderr, flush=True)
    asyncio.run(serve(config, verbose=args.verbose))
    return 0
