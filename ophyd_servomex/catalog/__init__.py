"""Where runs end up: a tiled catalog of Bluesky runs, written safely and replayed.

>>> from ophyd_servomex.catalog import open_catalog, subscribe_writer, get_run, run_table
>>> cat = open_catalog()                 # embedded SQLite in the user data directory
>>> subscribe_writer(RE, cat)            # journaled TiledWriter; scan ids continue
>>> run_table(get_run(cat, -1))          # the latest run's primary stream as a DataFrame

Importing this package is cheap: tiled, bluesky and databroker are imported by the functions
that need them.
"""

from __future__ import annotations

from .client import ROOT_SPEC, catalog_location, close_catalog, open_catalog
from .errors import CatalogAccessError, CatalogError, CatalogRecoveryError, RunNotFoundError
from .journal import RunJournal, journal_is_locked, read_journal
from .legacy import legacy_broker
from .location import (
    API_KEY_ENV,
    CATALOG_ENV,
    CatalogKind,
    CatalogLocation,
    default_catalog_directory,
    resolve_location,
)
from .recovery import complete_run, recover, write_documents
from .replay import get_run, list_runs, run_summary, run_table
from .scan_ids import latest_scan_id, seed_scan_id
from .server import serve_command, write_server_config
from .writer import DEFAULT_BATCH_SIZE, CatalogSubscription, JournaledWriter, subscribe_writer

__all__ = [
    "API_KEY_ENV",
    "CATALOG_ENV",
    "DEFAULT_BATCH_SIZE",
    "ROOT_SPEC",
    "CatalogAccessError",
    "CatalogError",
    "CatalogKind",
    "CatalogLocation",
    "CatalogRecoveryError",
    "CatalogSubscription",
    "JournaledWriter",
    "RunJournal",
    "RunNotFoundError",
    "catalog_location",
    "close_catalog",
    "complete_run",
    "default_catalog_directory",
    "get_run",
    "journal_is_locked",
    "latest_scan_id",
    "legacy_broker",
    "list_runs",
    "open_catalog",
    "read_journal",
    "recover",
    "resolve_location",
    "run_summary",
    "run_table",
    "seed_scan_id",
    "serve_command",
    "subscribe_writer",
    "write_documents",
    "write_server_config",
]
