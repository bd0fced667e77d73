"""Scan ids that continue across sessions.

A new RunEngine starts counting at 1. :func:`seed_scan_id` sets ``RE.md["scan_id"]`` to the
highest scan id in the catalog (unless the RunEngine is already further on), so the next run
gets the next number whichever process or session wrote the last one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["latest_scan_id", "seed_scan_id"]


def latest_scan_id(catalog: Any) -> int:
    """The highest ``start.scan_id`` in the catalog, or 0 when it holds no numbered run."""
    ordered = catalog.sort(("start.scan_id", -1))
    for run in ordered.values().head(1):
        scan_id = run.metadata.get("start", {}).get("scan_id")
        if isinstance(scan_id, int) and not isinstance(scan_id, bool):
            return scan_id
    return 0


def seed_scan_id(RE: Any, catalog: Any) -> int:  # the Bluesky name
    """Make the RunEngine's next scan id follow the catalog's highest; returns the seed.

    ``RE.md["scan_id"]`` becomes ``max(RE.md.get("scan_id", 0), latest_scan_id(catalog))``;
    the RunEngine adds one when the next run opens.
    """
    current = RE.md.get("scan_id", 0)
    current = current if isinstance(current, int) and not isinstance(current, bool) else 0
    seed = max(current, latest_scan_id(catalog))
    if seed != RE.md.get("scan_id"):
        RE.md["scan_id"] = seed
    return seed
