"""``ophyd-servomex sim``: run a simulated SERVOPRO 4100 on a pseudo-terminal or TCP port.

The first line on stdout is the port to connect to (a pty path such as ``/dev/pts/5``, or
``socket://127.0.0.1:PORT``), flushed at once, so a script can read it and connect. The
simulator then runs until SIGINT or SIGTERM and exits with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ._options import (
    addresses,
    non_negative_float,
    positive_float,
    protocol_choices,
    protocol_type,
)

__all__ = ["register"]

_MODES = ("continuous", "modbus-rtu", "modbus-ascii")


def register(subparsers: Any) -> None:
    """Add the ``sim`` sub-command."""
    parser = subparsers.add_parser(
        "sim",
        help="run a simulated SERVOPRO 4100 on a pseudo-terminal or TCP port",
        description=(
            "Run simulated Servomex SERVOPRO 4100 analysers (the bench unit's channels). "
            "The first line printed is the port to connect to; runs until interrupted."
        ),
    )
    parser.add_argument(
        "--mode",
        "--protocol",
        dest="mode",
        type=protocol_type(_MODES),
        default="modbus-rtu",
        metavar="MODE",
        help=f"front-panel mode: {protocol_choices(_MODES)}, any case (default modbus-rtu)",
    )
    parser.add_argument(
        "--address",
        type=addresses,
        default=(30,),
        metavar="ADDR[,ADDR…]",
        help="Modbus slave address(es); several share one bus (default 30; continuous mode "
        "has no address)",
    )
    parser.add_argument(
        "--period",
        type=non_negative_float,
        default=2.0,
        metavar="SECONDS",
        help="continuous frame period, fractions allowed, 0 = off (default 2)",
    )
    link = parser.add_mutually_exclusive_group()
    link.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (default)")
    link.add_argument(
        "--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT (0 = any free port)"
    )
    parser.add_argument(
        "--realistic-timing",
        action="store_true",
        help="bench timing: drop requests < 50 ms apart, 20–40 ms replies, wire time",
    )
    parser.add_argument(
        "--time-scale",
        type=positive_float,
        default=1.0,
        metavar="X",
        help="simulated seconds per real second (speeds up calibration)",
    )
    parser.add_argument(
        "--baud", type=int, default=19200, help="baud rate for timing (default 19200)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for noise and drift")
    parser.add_argument(
        "--no-noise", action="store_true", help="values sit exactly on their set-points"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..codec.errors import ServomexError

    if args.mode == "continuous" and len(args.address) > 1:
        print("ophyd-servomex sim: continuous mode serves one analyser", file=sys.stderr)
        return 2
    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        print(f"ophyd-servomex sim: bad TCP port {args.tcp}", file=sys.stderr)
        return 2
    try:
        import anyio

        return anyio.run(_serve, args)
    except ServomexError as exc:
        print(f"ophyd-servomex sim: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ophyd-servomex sim: error: {exc}", file=sys.stderr)
        return 2


async def _serve(args: argparse.Namespace) -> int:
    import anyio

    from ..codec.models import ProtocolKind, SerialSettings
    from ..codec.options import parse_protocol
    from ..sim import SimConfig, serve_pty, serve_tcp

    config = SimConfig(
        mode=parse_protocol(args.mode),
        addresses=args.address,
        noisy=not args.no_noise,
        seed=args.seed,
        time_scale=args.time_scale,
        period=args.period,
        realistic_timing=args.realistic_timing,
        settings=SerialSettings("", baudrate=args.baud),
    )
    config.build_analysers()  # validate before opening anything
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        server = serve_tcp(config, port=args.tcp) if args.tcp is not None else serve_pty(config)
        async with server as sim:
            print(sim.port, flush=True)
            if config.mode is ProtocolKind.CONTINUOUS_ASCII:  # broadcasts: no address
                every = f"a frame every {args.period:g} s" if args.period else "output off"
                what = f"{args.mode} ({every})"
            else:
                addresses = ",".join(str(a.address) for a in sim.analysers)
                what = f"{args.mode} at address {addresses}"
            print(
                f"simulating {what} on {sim.port}; Ctrl-C or SIGTERM stops",
                file=sys.stderr,
                flush=True,
            )
            async for signum in signals:
                name = signal.Signals(signum).name
                print(f"stopping on {name}", file=sys.stderr, flush=True)
                break
    return 0
