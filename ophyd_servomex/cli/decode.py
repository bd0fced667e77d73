"""``ophyd-servomex decode``: print continuous-mode frames from a capture, hex text or stdin.

Each frame is shown as a header line (analyser clock, analyser fault/maintenance, the four
autocal groups, checksum) and one row per channel. Each bad line is shown with its line
number, byte offset and the reason. The exit status is 1 when any line was bad or the input
held no frame at all (empty, or only fragments and garbage; said on stderr), else 0 (2 when
the input cannot be read).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from ..codec.continuous import ContinuousDecoder
from ..codec.errors import ServomexProtocolError
from ..codec.models import CalGroupState, CalPhase, Frame, Reading, Unit
from ._render import flags_text

__all__ = ["decode_stream", "format_frame", "register"]


def register(subparsers: Any) -> None:
    """Add the ``decode`` sub-command."""
    parser = subparsers.add_parser(
        "decode",
        help="decode continuous-mode frames from a capture file, hex text or stdin",
        description=(
            "Decode Servomex continuous-mode (ASCII) frames and print them as tables. "
            "Lines may end in CR LF or LF. Exit status 1 when any line is bad or there is no "
            "frame at all, 2 when the input cannot be read."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "file", nargs="?", metavar="FILE", help="a capture file of raw bytes, or - for stdin"
    )
    source.add_argument(
        "--hex", metavar="HEX", help="the bytes as hexadecimal text (spaces and newlines allowed)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        data = _read_input(args)
    except (OSError, ValueError) as exc:
        print(f"ophyd-servomex decode: error: {exc}", file=sys.stderr)
        return 2
    try:
        return decode_stream(data, sys.stdout)
    except BrokenPipeError:  # the reader went away (``… | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _read_input(args: argparse.Namespace) -> bytes:
    if args.hex is not None:
        try:
            return bytes.fromhex(args.hex)
        except ValueError as exc:
            raise ValueError(f"--hex is not hexadecimal text: {exc}") from None
    if args.file == "-":
        return sys.stdin.buffer.read()
    with open(args.file, "rb") as stream:
        return stream.read()


def decode_stream(data: bytes, out: TextIO, err: TextIO | None = None) -> int:
    """Decode ``data`` line by line, print frames and bad lines to ``out``; return the status.

    The status is 1 when a line was bad or no frame was found (then a message goes to
    ``err``, by default stderr), else 0.
    """
    decoder = ContinuousDecoder()
    bad = 0
    count = 0
    offset = 0
    number = 0
    while offset < len(data):
        number += 1
        end = data.find(b"\n", offset)
        last = end < 0
        stop = len(data) if last else end + 1
        fragments = decoder.fragments
        if last:  # no LF after the last line
            items = decoder.feed(data[offset:stop]) + decoder.flush()
        else:
            items = decoder.feed(data[offset:stop])
        where = f"line {number} (offset {offset})"
        if decoder.fragments != fragments:
            print(
                f"{where}: skipped {stop - offset} bytes: the tail of a frame (join fragment)",
                file=out,
            )
        for item in items:
            if isinstance(item, ServomexProtocolError):
                bad += 1
                print(f"{where}: bad frame: {type(item).__name__}: {item.message}", file=out)
            else:
                count += 1
                print(format_frame(item, title=f"frame {count}, {where}"), file=out)
        offset = stop
    print(
        f"{count} frame{'s' if count != 1 else ''}, {bad} bad, "
        f"{decoder.fragments} fragment{'s' if decoder.fragments != 1 else ''} skipped",
        file=out,
    )
    if count == 0:
        what = f"in {len(data)} bytes of input" if data else "the input is empty"
        print(
            f"ophyd-servomex decode: error: no continuous-mode frame: {what}",
            file=sys.stderr if err is None else err,
        )
        return 1
    return 1 if bad else 0


_PHASES = {
    CalPhase.IDLE: "S",
    CalPhase.SAMPLING: "S",
    CalPhase.CAL_GAS_1: "C",
    CalPhase.CAL_GAS_2: "C",
    CalPhase.DONE: "S",
    CalPhase.STOPPED: "S",
}


def _group(group: CalGroupState) -> str:
    gas = "?" if group.cal_gas is None else str(group.cal_gas)
    state = "calibrating" if group.calibrating else "sampling"
    return f"{group.group}:{_PHASES[group.phase]}{gas} {state}"


def _value(reading: Reading) -> str:
    if reading.value is None:
        return "(none)"
    decimals = 1 if reading.unit is Unit.MILLIAMP else 3
    return f"{reading.value:.{decimals}f}"


def format_frame(frame: Frame, *, title: str = "frame") -> str:
    """A readable table of one frame: header line, then one row per channel."""
    analyser = frame.analyser
    if analyser.clock is not None:
        clock = analyser.clock.isoformat(sep=" ")
    else:
        clock = f"{analyser.clock_text!r} (not a date)"
    status = " ".join(
        name
        for name, on in (("FAULT", analyser.fault), ("MAINTENANCE", analyser.maintenance))
        if on
    )
    raw = frame.raw or b""
    carried = raw.rstrip(b"\r\n")[-5:-1].decode("latin-1")
    lines = [
        f"{title}: clock {clock}, analyser {status or 'ok'}, checksum {carried}",
        f"  cal groups: {', '.join(_group(g) for g in analyser.cal_groups)}",
        f"  {'id':<3} {'name':<7} {'value':>9} {'unit':<5} flags",
    ]
    for reading in frame.readings:
        name = "(none)" if reading.name is None else reading.name
        lines.append(
            f"  {reading.channel.value:<3} {name:<7} {_value(reading):>9} "
            f"{reading.unit_text:<5} {flags_text(reading.status, none='-')}"
        )
    return "\n".join(lines)
