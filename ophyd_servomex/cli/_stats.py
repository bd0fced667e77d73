"""Timing statistics for ``diag`` and ``capture``: min, p50, p99, max, mean and jitter of
a set of durations."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..codec.errors import ServomexValidationError

__all__ = ["Timing", "timing"]


@dataclass(frozen=True, slots=True)
class Timing:
    """Statistics of a set of durations, in seconds."""

    count: int
    minimum: float
    p50: float
    p99: float
    maximum: float
    mean: float
    jitter: float
    """The standard deviation (0 for fewer than two values)."""

    def describe(self, scale: float = 1000.0, unit: str = "ms") -> str:
        """``min … p50 … p99 … max … mean … jitter …`` in ``unit``."""
        fields = (
            ("min", self.minimum),
            ("p50", self.p50),
            ("p99", self.p99),
            ("max", self.maximum),
            ("mean", self.mean),
            ("jitter (stdev)", self.jitter),
        )
        return ", ".join(f"{name} {value * scale:.2f} {unit}" for name, value in fields)


def timing(values: Sequence[float]) -> Timing:
    """Min, p50, p99, max, mean and jitter of ``values`` (at least one)."""
    from ..driver.record import percentile

    if not values:
        raise ServomexValidationError("no timings to summarise")
    p50 = percentile(values, 0.5)
    p99 = percentile(values, 0.99)
    assert p50 is not None
    assert p99 is not None
    return Timing(
        count=len(values),
        minimum=min(values),
        p50=p50,
        p99=p99,
        maximum=max(values),
        mean=statistics.fmean(values),
        jitter=statistics.pstdev(values) if len(values) > 1 else 0.0,
    )
