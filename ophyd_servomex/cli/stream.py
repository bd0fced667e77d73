"""``ophyd-servomex stream``: print live samples until Ctrl-C or ``--duration``.

One analyser: continuous mode prints every broadcast frame as it arrives; Modbus polls at
``--rate``. Several addresses on one line (``--address 30,31`` with a Modbus
``--protocol``) are polled together on a drift-free schedule. One line per frame on stdout
(``--json``: one long-format sample per line, as the driver's :class:`Sample`); a summary
on stderr at the end. Ctrl-C stops cleanly with status 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..codec.models import Sample
from ._options import add_connection_options, positive_float, several
from ._run import print_err, run_command, until_interrupted
from ._samples import follow, format_batch_line, group_frames, sample_record

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``stream`` sub-command."""
    parser = subparsers.add_parser(
        "stream",
        help="print live samples until Ctrl-C or --duration",
        description=(
            "Print one line per sample as it comes: every broadcast frame in continuous "
            "mode, polls at --rate in Modbus mode. Ctrl-C stops."
        ),
    )
    add_connection_options(parser, several_addresses=True)
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=1.0,
        metavar="HZ",
        help="Modbus polls per second (continuous mode follows the analyser; default 1)",
    )
    parser.add_argument(
        "--duration", type=positive_float, metavar="SECONDS", help="stop after this long"
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N frames")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per channel sample (long format)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        print("ophyd-servomex stream: --count must be at least 1", file=sys.stderr)
        return 2
    return run_command("stream", _stream, args)


class _Printer:
    """Prints each frame of a batch; says when ``--count`` frames have been printed."""

    def __init__(self, as_json: bool, count: int | None) -> None:
        self.as_json = as_json
        self.count = count
        self.frames = 0
        self.errors = 0

    def __call__(self, batch: Sequence[Sample]) -> bool:
        for frame in group_frames(batch):
            if self.count is not None and self.frames >= self.count:
                return True
            self.frames += 1
            if frame[0].error is not None:
                self.errors += 1
            if self.as_json:
                for sample in frame:
                    print(json.dumps(sample_record(sample), ensure_ascii=False), flush=True)
            else:
                print(format_batch_line(frame), flush=True)
        return self.count is not None and self.frames >= self.count


async def _stream(args: argparse.Namespace) -> int:
    printer = _Printer(args.json, args.count)
    started = time.monotonic()
    body = _poll_several if several(args) else _follow_one
    _, interrupted = await until_interrupted(lambda: body(args, printer))
    elapsed = time.monotonic() - started
    how = "interrupted" if interrupted else "done"
    print_err(f"{how}: {printer.frames} frames ({printer.errors} errors) in {elapsed:.1f} s")
    return 0


async def _follow_one(args: argparse.Namespace, printer: _Printer) -> None:
    from ._options import open_analyzer

    async with open_analyzer(args) as analyzer:
        mode = (
            "following broadcasts"
            if not analyzer.protocol.is_modbus
            else (f"polling at {args.rate:g} Hz")
        )
        print_err(f"{analyzer.port}: {analyzer.protocol.value}, {mode}; Ctrl-C stops")
        await follow(analyzer, printer, rate_hz=args.rate, duration=args.duration)


async def _poll_several(args: argparse.Namespace, printer: _Printer) -> None:
    from ..driver import ServomexManager, record
    from ._options import open_manager

    async with ServomexManager(inter_frame_idle=args.idle) as manager:
        await open_manager(args, manager)
        print_err(
            f"{args.port}: {args.protocol}, {len(manager)} analysers, polling at "
            f"{args.rate:g} Hz; Ctrl-C stops"
        )
        async with record(manager, rate_hz=args.rate, duration=args.duration) as rec:
            async for batch in rec.stream:
                if printer(batch):
                    return
