"""databroker's v1 ``Broker`` API over the same catalog, for legacy user code.

``databroker.v1.Broker`` (databroker 2.0.2) accepts a tiled ``CatalogOfBlueskyRuns`` node, so
``db[-1].table()``, ``db[uid].start``, ``db(scan_id=3)`` replay runs written by
``TiledWriter``. Importing ``databroker.v1`` needs the packages of databroker's
``back-compat`` extra (humanize, doct, boltons, jinja2); without them
:func:`legacy_broker` raises a :class:`~ophyd_servomex.catalog.errors.CatalogError` that says so.
"""

from __future__ import annotations

from typing import Any

from .client import catalog_location
from .errors import CatalogError

__all__ = ["legacy_broker"]


def legacy_broker(catalog: Any) -> Any:
    """A ``databroker.v1.Broker`` reading from ``catalog`` (as returned by ``open_catalog``)."""
    try:
        from databroker.v1 import Broker
    except ImportError as error:
        raise CatalogError(
            f"databroker's legacy Broker API needs {error.name!r}: install "
            "'databroker[back-compat]' (humanize, doct, boltons, jinja2)",
            location=str(catalog_location(catalog)),
        ) from error
    broker = Broker(catalog)
    broker._version = "1.0"  # as bluesky_tiled_plugins' CatalogOfBlueskyRuns.v1 sets it
    return broker
