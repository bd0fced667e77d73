"""``ophyd-servomex capture``: record samples to CSV or JSON-lines, with a progress bar.

Two ways to take samples:

* ``--mode poll`` (the default for Modbus): a drift-free schedule at ``--rate``; several
  ``--address`` es on one line are polled together. The summary reports late and missed
  ticks, the largest drift and the tick durations.
* ``--mode subscribe`` (the default for continuous mode): every frame the analyser
  produces — each broadcast in continuous mode, each poll at ``--rate`` in Modbus mode.

``--duration`` bounds the capture; otherwise it runs until Ctrl-C, which ends it cleanly
(everything received is written, status 0). The default layout is the driver's long
format (:class:`Sample`): one row per channel reading, one row per lost frame with its
error. ``--wide`` writes one row per tick instead, a column per channel with its unit in
the header, for spreadsheets. The progress bar and the summary go to stderr, so ``-o -``
(stdout) can be piped.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

from ..codec.models import Sample
from ._options import add_connection_options, positive_float, several
from ._run import print_err, run_command, until_interrupted
from ._samples import LONG_COLUMNS, WideTable, follow, sample_record, sample_row

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``capture`` sub-command."""
    parser = subparsers.add_parser(
        "capture",
        help="record samples to CSV or JSON-lines at a rate, with a progress bar",
        description=(
            "Poll (drift-free, at --rate) or subscribe (every frame) and write the samples "
            "to CSV or JSON-lines for --duration or until Ctrl-C."
        ),
    )
    add_connection_options(parser, several_addresses=True)
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=1.0,
        metavar="HZ",
        help="ticks (polls) per second (default 1)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help="how long to capture (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--mode",
        choices=("auto", "poll", "subscribe"),
        default="auto",
        help="poll on a schedule, or subscribe to every frame (default: poll for Modbus, "
        "subscribe for continuous mode)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="FILE",
        help="where to write (default - for stdout)",
    )
    parser.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="file format (default: jsonl for a .jsonl/.json file, else csv)",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="one row per tick with a column per channel (units in the header), instead of "
        "the long format's row per channel reading",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _format(args: argparse.Namespace) -> str:
    if args.format is not None:
        return str(args.format)
    name = str(args.output).lower()
    return "jsonl" if name.endswith((".jsonl", ".json", ".ndjson")) else "csv"


class _Writer:
    """Writes batches in the chosen layout and format, and counts them."""

    def __init__(self, stream: IO[str], kind: str, wide: bool) -> None:
        self.stream = stream
        self.kind = kind
        self.samples = 0
        self.errors = 0
        self._wide = WideTable() if wide else None
        self._csv = csv.writer(stream, lineterminator="\n") if kind == "csv" else None
        self._header: list[str] | None = None
        if self._csv is not None and self._wide is None:
            self._csv.writerow(LONG_COLUMNS)

    def write(self, batch: Sequence[Sample]) -> None:
        self.samples += len(batch)
        self.errors += sum(1 for s in batch if s.error is not None)
        if self._wide is not None:
            self._write_wide(self._wide, batch)
        elif self._csv is not None:
            self._csv.writerows(sample_row(s) for s in batch)
        else:
            for sample in batch:
                self.stream.write(json.dumps(sample_record(sample), ensure_ascii=False) + "\n")

    def _write_wide(self, table: WideTable, batch: Sequence[Sample]) -> None:
        header = table.header(batch)
        if header is not None:
            self._header = header
            if self._csv is not None:
                self._csv.writerow(header)
        if self._header is None:
            return  # nothing but errors so far: no columns to put them under
        row = table.row(batch)
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            record = dict(zip(self._header, row, strict=True))
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def _open_output(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as stream:
        yield stream


class _Progress:
    """A tqdm bar on stderr (or nothing)."""

    def __init__(self, enabled: bool, total: int | None, unit: str) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.2
            )

    def update(self, n: int = 1, **postfix: object) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _run(args: argparse.Namespace) -> int:
    return run_command("capture", _capture, args)


async def _capture(args: argparse.Namespace) -> int:
    kind = _format(args)
    with _open_output(args.output) as stream:
        writer = _Writer(stream, kind, args.wide)
        started = time.monotonic()
        _, interrupted = await until_interrupted(lambda: _dispatch(args, writer))
        writer.flush()
    elapsed = time.monotonic() - started
    how = "interrupted" if interrupted else "done"
    where = "stdout" if args.output == "-" else args.output
    print_err(
        f"{how}: {writer.samples} samples ({writer.errors} errors) in {elapsed:.1f} s "
        f"written to {where} as {kind}"
    )
    return 0


async def _dispatch(args: argparse.Namespace, writer: _Writer) -> None:
    if several(args):
        if args.mode == "subscribe":
            from ..codec.errors import ServomexConfigurationError

            raise ServomexConfigurationError(
                "--mode subscribe follows one analyser; several addresses are polled"
            )
        await _poll_several(args, writer)
    else:
        await _one(args, writer)


async def _one(args: argparse.Namespace, writer: _Writer) -> None:
    from ._options import open_analyzer

    async with open_analyzer(args) as analyzer:
        mode = args.mode
        if mode == "auto":
            mode = "poll" if analyzer.protocol.is_modbus else "subscribe"
        print_err(
            f"{analyzer.port}: {analyzer.protocol.value}, capturing by {mode}"
            + (f" at {args.rate:g} Hz" if mode == "poll" else "")
            + ("" if args.duration is None else f" for {args.duration:g} s")
            + "; Ctrl-C stops"
        )
        if mode == "poll":
            await _record(args, analyzer, writer)
            return
        progress = _Progress(not args.no_progress, None, "frame")

        def on_batch(batch: Sequence[Sample]) -> None:
            writer.write(batch)
            progress.update(1, errors=writer.errors)

        try:
            await follow(analyzer, on_batch, rate_hz=args.rate, duration=args.duration)
        finally:
            progress.close()


async def _poll_several(args: argparse.Namespace, writer: _Writer) -> None:
    from ..driver import ServomexManager
    from ._options import open_manager

    async with ServomexManager(inter_frame_idle=args.idle) as manager:
        await open_manager(args, manager)
        print_err(
            f"{args.port}: {args.protocol}, {len(manager)} analysers, capturing by poll at "
            f"{args.rate:g} Hz" + ("" if args.duration is None else f" for {args.duration:g} s")
        )
        await _record(args, manager, writer)


async def _record(args: argparse.Namespace, source: Any, writer: _Writer) -> None:
    import math

    from ..driver import Recording, record

    total = None if args.duration is None else math.ceil(args.duration * args.rate - 1e-9)
    progress = _Progress(not args.no_progress, total, "tick")
    recording: Recording[Sequence[Sample]] | None = None
    try:
        async with record(source, rate_hz=args.rate, duration=args.duration) as recording:
            async for batch in recording.stream:
                writer.write(batch)
                summary = recording.summary
                progress.update(1, late=summary.samples_late, errors=summary.error_samples)
    finally:
        progress.close()
        if recording is not None:  # also after Ctrl-C: the summary is complete by now
            print_err(f"schedule: {recording.summary}")
