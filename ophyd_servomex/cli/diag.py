"""``ophyd-servomex diag``: link diagnostics with jitter statistics.

Modbus mode: ``--count`` FC08 loopback round trips (the analyser echoes ``--data``), each
printed as it completes. A round trip is timed from the call, so it includes the line's idle
gap (``--idle``, 50 ms by default) that the driver keeps before every request, less any
``--interval`` pause that already covered it; the header line says so. Then min / p50 /
p99 / max / mean and the jitter (standard deviation) of the round-trip times, and the
line's attempt, retry and failure counters. Continuous mode (which cannot loop back): the
intervals between ``--count`` + 1 broadcast frames, with the same statistics, and the bad
lines skipped. Exit status 0 when every round trip or frame was good, 1 otherwise. Ctrl-C
stops early and still prints the statistics.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from ..codec.errors import ServomexError
from ._options import add_connection_options, non_negative_float, positive_int
from ._run import print_err, run_command, until_interrupted
from ._stats import timing

if TYPE_CHECKING:
    from ..driver import Analyzer

__all__ = ["register"]


def _two_bytes(text: str) -> bytes:
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hexadecimal: {text!r}") from None
    if len(data) != 2:
        raise argparse.ArgumentTypeError(f"the loopback carries exactly 2 bytes: {text!r}")
    return data


def register(subparsers: Any) -> None:
    """Add the ``diag`` sub-command."""
    parser = subparsers.add_parser(
        "diag",
        help="loopback round trips (or frame intervals) with jitter statistics",
        description=(
            "Measure the link: FC08 loopback round trips in Modbus mode, frame intervals in "
            "continuous mode; prints min/p50/p99/max, mean and jitter. A Modbus round trip "
            "includes the line's idle gap before each request (--idle, default 50 ms)."
        ),
    )
    add_connection_options(parser)
    parser.add_argument(
        "--count", type=positive_int, default=20, metavar="N", help="round trips or intervals (20)"
    )
    parser.add_argument(
        "--data",
        type=_two_bytes,
        default=b"\xa5\x5a",
        metavar="HEX",
        help="the two loopback bytes, as hex (default A55A)",
    )
    parser.add_argument(
        "--interval",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="pause between round trips (default 0: back to back, after the line's idle gap)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_command("diag", _diag, args)


class _Tally:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.failures = 0


async def _diag(args: argparse.Namespace) -> int:
    from ._options import open_analyzer

    tally = _Tally()
    async with open_analyzer(args, identify=False) as analyzer:
        modbus = analyzer.protocol.is_modbus
        what = "loopback round trips" if modbus else "frame intervals"
        where = f", address {analyzer.address}" if analyzer.address is not None else ""
        note = f", {_idle_note(args)}" if modbus else ""
        print(f"{analyzer.port}: {analyzer.protocol.value}{where}; {args.count} {what}{note}")
        body = _loopbacks if modbus else _intervals
        _, interrupted = await until_interrupted(lambda: body(args, analyzer, tally))
        if interrupted:
            print_err("interrupted")
        if tally.times:
            stats = timing(tally.times)
            label = "round trip" if modbus else "interval"
            print(f"{label}: {stats.describe()}")
        ok = len(tally.times)
        print(f"{ok} good, {tally.failures} failed")
        if modbus and analyzer.modbus is not None:
            line = analyzer.modbus.line
            failures = ", ".join(f"{k} {v}" for k, v in sorted(line.failures.items())) or "none"
            print(f"line: {line.attempts} attempts, {line.retried} retried, failures: {failures}")
        elif not modbus:
            print(f"bad lines skipped: {analyzer.dropped_frames}")
    return 0 if tally.failures == 0 and ok > 0 else 1


def _idle_note(args: argparse.Namespace) -> str:
    """What a round trip includes besides the analyser: the idle gap before the request."""
    idle = f"{args.idle * 1000:g} ms"
    if args.idle == 0:
        return "with no line idle before the requests (--idle 0)"
    note = f"each including the {idle} line idle before its request"
    return f"{note}, less the --interval pause" if args.interval > 0 else note


async def _loopbacks(args: argparse.Namespace, analyzer: Analyzer, tally: _Tally) -> None:
    import anyio

    width = len(str(args.count))
    for index in range(1, args.count + 1):
        if index > 1 and args.interval > 0:
            await anyio.sleep(args.interval)
        started = time.perf_counter()
        try:
            echo = await analyzer.loopback(args.data)
        except ServomexError as exc:
            tally.failures += 1
            print(f"  {index:>{width}}/{args.count}  error: {exc.message}", flush=True)
            continue
        elapsed = time.perf_counter() - started
        if echo != args.data:
            tally.failures += 1
            print(
                f"  {index:>{width}}/{args.count}  wrong echo {echo.hex(' ')} "
                f"(sent {args.data.hex(' ')})",
                flush=True,
            )
            continue
        tally.times.append(elapsed)
        print(
            f"  {index:>{width}}/{args.count}  echo {echo.hex(' ')}  {elapsed * 1000:.2f} ms",
            flush=True,
        )


async def _intervals(args: argparse.Namespace, analyzer: Analyzer, tally: _Tally) -> None:
    width = len(str(args.count))
    previous: float | None = None
    dropped = analyzer.dropped_frames
    async with analyzer.subscribe() as frames:
        async for frame in frames:
            if previous is not None:
                interval = frame.timestamp - previous
                tally.times.append(interval)
                index = len(tally.times)
                bad = analyzer.dropped_frames - dropped
                dropped = analyzer.dropped_frames
                tally.failures += bad
                note = f"  ({bad} bad line{'s' if bad != 1 else ''} before it)" if bad else ""
                print(
                    f"  {index:>{width}}/{args.count}  frame after {interval * 1000:.1f} ms{note}",
                    flush=True,
                )
                if index >= args.count:
                    return
            previous = frame.timestamp
