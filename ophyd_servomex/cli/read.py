"""``ophyd-servomex read``: identify one analyser and print one frame as a table.

Opens the port (AUTO detects the mode unless ``--protocol`` names it), reads the channel
names and units, takes one coherent frame and prints it. ``--json`` prints the same as
one JSON object instead. Exit status 0, or 1 with a one-line error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._options import add_connection_options
from ._render import format_frame_table, frame_to_dict
from ._run import run_command

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``read`` sub-command."""
    parser = subparsers.add_parser(
        "read",
        help="identify an analyser and print one frame",
        description=(
            "Open an analyser (any port form, including the simulator's), identify its "
            "channels and print one frame as a table."
        ),
    )
    add_connection_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_command("read", _read, args)


async def _read(args: argparse.Namespace) -> int:
    from ._options import open_analyzer

    async with open_analyzer(args) as analyzer:
        info = analyzer.info if analyzer.info is not None else await analyzer.identify()
        frame = await analyzer.poll()
    if args.json:
        out = {
            "port": analyzer.port,
            "protocol": analyzer.protocol.value,
            "address": analyzer.address,
            "channels": [
                {"id": c.channel.value, "name": c.name, "unit": c.unit_text} for c in info.channels
            ],
            "frame": frame_to_dict(frame),
        }
        print(json.dumps(out, ensure_ascii=False))
        return 0
    where = f", address {analyzer.address}" if analyzer.address is not None else ""
    named = ", ".join(f"{c.channel.value} {c.name}" for c in info.populated) or "none named"
    print(f"{analyzer.port}: {analyzer.protocol.value}{where}")
    print(f"channels: {named}")
    print(format_frame_table(frame))
    return 0
