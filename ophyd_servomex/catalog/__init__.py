"""Where runs end up: a tiled catalog of Bluesky runs, written safely and replayed.

>>> from ophyd_servomex.catalog import open_catalog, subscribe_writer, get_run, run_table
>>> cat = open_catalog()                 # embedded SQLite in the user data directory
>>> subscribe_writer(RE, cat)            # journaled TiledWriter; scan ids continue, unique
>>> run_table(get_run(cat, -1))          # the latest run's primary stream as a DataFrame
>>> open_catalog(path, create=False)     # readers: a missing catalog is an error, not created

Importing this package is cheap: tiled, bluesky and databroker are imported by the functions
that need them.
"""

from __future__ import annotations

from .client import ROOT_SPEC, catalog_location, close_catalog, open_catalog
from .errors import (
    AmbiguousRunError,
    CatalogAccessError,
    CatalogError,
    CatalogNotFoundError,
    CatalogRecoveryError,
    CatalogWriteError,
    RunNotFoundError,
)
from .journal import RunJournal, journal_is_locked, read_journal
from .legacy import legacy_broker
from .location import (
    API_KEY_ENV,
    CATALOG_ENV,
    FALLBACK_ENV,
    CatalogKind,
    CatalogLocation,
    default_catalog_directory,
    default_fallback_directory,
    resolve_location,
)
from .recovery import complete_run, recover, write_documents
from .redact import redact
from .replay import get_run, list_runs, local_times, run_summary, run_table
from .scan_ids import ScanIdSource, latest_scan_id, seed_scan_id
from .server import serve_command, serve_environment, write_server_config
from .writer import DEFAULT_BATCH_SIZE, CatalogSubscription, JournaledWriter, subscribe_writer

__all__ = [
    "API_KEY_ENV",
    "CATALOG_ENV",
    "DEFAULT_BATCH_SIZE",
    "FALLBACK_ENV",
    "ROOT_SPEC",
    "AmbiguousRunError",
    "CatalogAccessError",
    "CatalogError",
    "CatalogKind",
    "CatalogLocation",
    "CatalogNotFoundError",
    "CatalogRecoveryError",
    "CatalogSubscription",
    "CatalogWriteError",
    "JournaledWriter",
    "RunJournal",
    "RunNotFoundError",
    "ScanIdSource",
    "catalog_location",
    "close_catalog",
    "complete_run",
    "default_catalog_directory",
    "default_fallback_directory",
    "get_run",
    "journal_is_locked",
    "latest_scan_id",
    "legacy_broker",
    "list_runs",
    "local_times",
    "open_catalog",
    "read_journal",
    "recover",
    "redact",
    "resolve_location",
    "run_summary",
    "run_table",
    "seed_scan_id",
    "serve_command",
    "serve_environment",
    "subscribe_writer",
    "write_documents",
    "write_server_config",
]
