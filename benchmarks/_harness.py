"""The benchmark harness: discovery, side-by-side timing and the results table.

A benchmark module ``benchmarks/bench_<name>.py`` defines ``run(quick: bool) ->
list[Result]``. Time things with :func:`side_by_side`, which interleaves the cases round
by round so that a ratio between two of them is measured under the same machine load,
and report ratios against a baseline wherever there is one. ``quick`` must keep a module
to a second or two.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import pkgutil
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Result", "discover", "format_table", "interleaved", "main", "side_by_side"]


@dataclass(frozen=True, slots=True)
class Result:
    """One figure of a benchmark: ``figure`` in ``unit`` (e.g. ``×`` for a ratio)."""

    name: str
    figure: float
    unit: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Budget:
    """How long to time: ``rounds`` interleaved rounds of batches of about ``batch`` s each."""

    rounds: int
    batch: float

    @classmethod
    def for_mode(cls, quick: bool) -> Budget:
        """A few hundredths of a second per case when quick, a few seconds otherwise."""
        return cls(rounds=3, batch=0.02) if quick else cls(rounds=7, batch=0.25)


def _timed(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def _calibrate(fn: Callable[[], object], batch: float) -> int:
    """Calls of ``fn`` that take about ``batch`` seconds (at least one)."""
    calls = 1
    while True:
        elapsed = _timed(fn, calls)
        if elapsed >= batch / 4 or calls >= 1 << 24:
            return max(1, int(calls * batch / max(elapsed, 1e-9)))
        calls *= 4


def side_by_side(cases: dict[str, Callable[[], object]], *, quick: bool) -> dict[str, float]:
    """Seconds per call of each case, timed in interleaved rounds; the best round is kept.

    Interleaving means every case sees the same background load, so ratios between the
    cases are fair even on a busy machine. The garbage collector is off while timing.
    """
    budget = Budget.for_mode(quick)
    calls = {name: _calibrate(fn, budget.batch) for name, fn in cases.items()}
    best = dict.fromkeys(cases, float("inf"))
    names = list(cases)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(budget.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                per_call = _timed(cases[name], calls[name]) / calls[name]
                best[name] = min(best[name], per_call)
    finally:
        if enabled:
            gc.enable()
    return best


def interleaved(cases: dict[str, Callable[[], float]], *, rounds: int) -> dict[str, float]:
    """The best of ``rounds`` runs of each case, the cases taking turns round by round.

    For cases too long to repeat in batches (a whole ``count()``): each case times itself
    and returns its seconds, so its set-up stays out of the figure. The order rotates each
    round and every other round runs backwards, so no case always runs first, nor always
    right after one particular other case (whose after-effects it would always pay).
    """
    best = dict.fromkeys(cases, float("inf"))
    names = list(cases)
    for round_ in range(rounds):
        shift = round_ % len(names)
        order = names[shift:] + names[:shift]
        for name in reversed(order) if round_ % 2 else order:
            gc.collect()  # no case pays for garbage another one left
            best[name] = min(best[name], cases[name]())
    return best


def discover() -> list[str]:
    """Names of the benchmark modules (``bench_parse`` → ``parse``), sorted."""
    package = importlib.import_module(__package__ or "benchmarks")
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.startswith("bench_")
    )


def _figure(value: float) -> str:
    if isinstance(value, int):  # a count (fields, frames): no decimals
        return f"{value:,}"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(rows: Sequence[tuple[str, Result]]) -> str:
    """One aligned table: benchmark, result, figure, unit, note."""
    header = ("bench", "result", "figure", "unit", "note")
    cells = [header] + [(bench, r.name, _figure(r.figure), r.unit, r.note) for bench, r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = []
    for i, row in enumerate(cells):
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  "
            f"{row[3]:<{widths[3]}}  {row[4]}".rstrip()
        )
        if i == 0:
            lines.append("-" * max(len(line) for line in lines))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 if any of them failed."""
    available = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (CI): a few seconds")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(available)}",
    )
    args = parser.parse_args(argv)
    selected = available
    if args.only:
        wanted = [name.removeprefix("bench_") for name in args.only]
        unknown = [name for name in wanted if name not in available]
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)}; have {', '.join(available)}")
        selected = [name for name in available if name in wanted]

    print(
        f"benchmarks ({'quick' if args.quick else 'full'}) on Python "
        f"{platform.python_version()}, {platform.machine()}"
    )
    rows: list[tuple[str, Result]] = []
    failed = False
    started = time.perf_counter()
    for name in selected:
        module = importlib.import_module(f"{__package__ or 'benchmarks'}.bench_{name}")
        try:
            results = module.run(args.quick)
        except Exception:
            failed = True
            print(f"benchmark {name} failed:", file=sys.stderr)
            traceback.print_exc()
            continue
        rows += [(name, result) for result in results]
    print(format_table(rows))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 1 if failed else 0
