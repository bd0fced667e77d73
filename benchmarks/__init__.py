"""Benchmarks: ``python -m benchmarks [--quick] [--only NAME]``.

Each ``bench_*.py`` module exposes ``run(quick: bool) -> list[Result]``; the harness in
:mod:`benchmarks._harness` finds them, runs them and prints one table. Figures are ratios
measured side by side in the same run wherever there is a baseline to compare with.
"""
