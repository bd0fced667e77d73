"""Open a catalog of Bluesky runs: embedded SQLite (an in-process tiled app) or a tiled server.

tiled is imported inside the functions (it costs seconds), never when this module loads.

An embedded catalog is created atomically: its schema is built in a temporary file beside
``catalog.db`` and renamed into place, under the catalog's lock, so a process killed (or
interrupted) while creating one leaves either no ``catalog.db`` or a complete one. A
``catalog.db`` left uninitialised by older versions is set aside and created again.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .embedded_app import NoStreamsMiddleware, resolve_dependency_overrides
from .errors import CatalogAccessError, CatalogError, CatalogNotFoundError
from .location import (
    API_KEY_ENV,
    CatalogKind,
    CatalogLocation,
    default_catalog_directory,
    resolve_location,
)
from .lock import FileLock
from .redact import redact, redacting_logger, register_secret

if TYPE_CHECKING:
    from bluesky_tiled_plugins import CatalogOfBlueskyRuns

__all__ = ["ROOT_SPEC", "catalog_location", "close_catalog", "open_catalog"]

ROOT_SPEC: dict[str, str] = {"name": "CatalogOfBlueskyRuns", "version": "3.0"}
"""The root spec that makes tiled hand out ``CatalogOfBlueskyRuns`` (scan-id lookup, runs)."""

JSON_SEQ = "application/json-seq"
JSON_SEQ_EXPORTER = "bluesky_tiled_plugins.exporters:json_seq_exporter"

CREATING_PREFIX = ".catalog.db.creating-"
"""Name prefix of the temporary file a catalog's schema is built in before the rename."""
UNINITIALISED_SUFFIX = ".uninitialised-"

logger = redacting_logger(__name__)

# The location each opened catalog came from, keyed by its tiled Context (shared by every
# node derived from the root), so the writer and recovery find the backup directory.
_LOCATIONS: weakref.WeakKeyDictionary[Any, CatalogLocation] = weakref.WeakKeyDictionary()


def open_catalog(
    location: str | os.PathLike[str] | None = None,
    *,
    api_key: str | None = None,
    create: bool = True,
) -> CatalogOfBlueskyRuns:
    """Open the catalog of Bluesky runs and return its tiled client node.

    ``location`` is a directory for an embedded SQLite catalog (created on first use when
    ``create`` is true, no server) or an ``http(s)://`` tiled server URI; when omitted, the
    ``OPHYD_SERVOMEX_CATALOG`` environment variable, else the user data directory, is used (see
    :func:`~ophyd_servomex.catalog.location.resolve_location`). ``api_key`` is for a server; it
    defaults to the ``TILED_API_KEY`` environment variable. Readers pass ``create=False``: a
    missing embedded catalog is then a
    :class:`~ophyd_servomex.catalog.errors.CatalogNotFoundError` and nothing is created.

    The result supports tiled's Bluesky API: ``cat.values()``, ``cat[uid]``, ``cat[scan_id]``,
    ``cat["partial-uid"]``, ``cat[-1]``, ``run.metadata["start"]``, ``run["primary"].read()``
    and ``run.documents()``.

    Raises :class:`~ophyd_servomex.catalog.errors.CatalogAccessError` when a server refuses
    the client or cannot be reached, and
    :class:`~ophyd_servomex.catalog.errors.CatalogError` when an embedded catalog cannot be
    created or opened. No message shows a password or API key.
    """
    register_secret(api_key)
    resolved = resolve_location(location)
    if resolved.kind is CatalogKind.EMBEDDED:
        client = _open_embedded(resolved, create=create)
    else:
        client = _open_server(resolved, api_key)
    _LOCATIONS[client.context] = resolved
    return client


def catalog_location(catalog: Any) -> CatalogLocation:
    """The location a catalog client was opened from.

    Works for any node of a catalog returned by :func:`open_catalog`; for a tiled client built
    some other way it is derived from the client's connection (an in-process app maps to the
    default catalog directory, a server to its URI).
    """
    context = catalog.context
    known = _LOCATIONS.get(context)
    if known is not None:
        return known
    if getattr(context.http_client, "app", None) is not None:
        default = resolve_location(None)
        if default.kind is CatalogKind.EMBEDDED:
            return default
        return resolve_location(default_catalog_directory())
    uri = str(context.api_uri).rstrip("/")
    uri = uri.removesuffix("/api/v1")
    return CatalogLocation(CatalogKind.SERVER, uri=uri)


def close_catalog(catalog: Any) -> None:
    """Release a catalog's connection (for an embedded catalog: stop its in-process app)."""
    context = catalog.context
    _LOCATIONS.pop(context, None)
    context.close()


def _open_embedded(location: CatalogLocation, *, create: bool) -> Any:
    """Open (creating it first if allowed) the embedded catalog in ``location.directory``."""
    if not location.catalog_file.exists():
        if not create:
            raise CatalogNotFoundError(
                "no catalog here (nothing was created): check the path, or write a run first",
                location=str(location),
            )
        _create_embedded(location)
    try:
        return _build_embedded_client(location)
    except CatalogError as error:
        if not _is_uninitialised(error):
            raise
        if not create:
            raise CatalogError(
                "the catalog database was never fully created (its creation was interrupted); "
                "opening it for writing (open_catalog(..., create=True)) creates it again",
                location=str(location),
            ) from error
    _set_aside_uninitialised(location)
    _create_embedded(location)
    return _build_embedded_client(location)


def _is_uninitialised(error: BaseException) -> bool:
    """True when tiled refused a catalog database that has no schema stamp."""
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__name__ == "UninitializedDatabase" or "no revision stamp" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_embedded(location: CatalogLocation) -> None:
    """Build the schema in a temporary file, then rename it to ``catalog.db`` (atomic).

    Runs under the catalog's lock: a concurrent creator waits and then finds the catalog made.
    Temporary files of creators that died are removed first.
    """
    directory = location.catalog_file.parent
    try:
        location.data_directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CatalogError(
            f"cannot create the catalog directory: {error}", location=str(location)
        ) from error
    with FileLock(location.lock_file):
        if location.catalog_file.exists():
            return  # another process made it while we waited
        for stale in directory.glob(CREATING_PREFIX + "*"):
            stale.unlink(missing_ok=True)
        temporary = directory / f"{CREATING_PREFIX}{os.getpid()}"
        try:
            _initialise_database(temporary, location)
            with temporary.open("rb+") as file:
                os.fsync(file.fileno())
            os.replace(temporary, location.catalog_file)
            _fsync_directory(directory)
        except OSError as error:
            raise CatalogError(
                f"cannot create the catalog: {error}", location=str(location)
            ) from error
        finally:
            for leftover in directory.glob(f"{temporary.name}*"):
                leftover.unlink(missing_ok=True)


def _initialise_database(path: Path, location: CatalogLocation) -> None:
    """``tiled catalog init`` on ``path`` in a subprocess (as tiled's own init does)."""
    command = [sys.executable, "-m", "tiled", "catalog", "init", f"sqlite:///{path}"]
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise CatalogError(
            f"cannot create the catalog: tiled catalog init failed: {process.stderr[-1000:]}",
            location=str(location),
        )


def _set_aside_uninitialised(location: CatalogLocation) -> None:
    """Rename an uninitialised ``catalog.db`` (and its SQLite side files) out of the way."""
    with FileLock(location.lock_file):
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-journal", "-wal", "-shm"):
            source = location.catalog_file.with_name(location.catalog_file.name + suffix)
            if source.exists():
                target = source.with_name(f"{source.name}{UNINITIALISED_SUFFIX}{stamp}")
                os.replace(source, target)
                logger.warning(
                    "%s was never fully created (no schema stamp): kept as %s, creating anew",
                    source,
                    target.name,
                )


def _build_embedded_client(location: CatalogLocation) -> Any:
    """Build the in-process tiled app over the SQLite files in ``location.directory``."""
    with warnings.catch_warnings():
        # httpx + starlette's test client (the in-process transport) warn about deprecations
        # that are tiled's to fix; they must not reach users or break warnings-as-errors runs.
        import starlette.exceptions

        starlette_warning = getattr(starlette.exceptions, "StarletteDeprecationWarning", None)
        if isinstance(starlette_warning, type) and issubclass(starlette_warning, Warning):
            warnings.filterwarnings("ignore", category=starlette_warning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from tiled.catalog import from_uri
        from tiled.client import Context, from_context
        from tiled.server.app import build_app

        # tiled announces its version at INFO level on every app start-up (its module sets
        # that level on import): keep library and CLI use quiet.
        server_logger = logging.getLogger("tiled.server.app")
        if server_logger.level <= logging.INFO:
            server_logger.setLevel(logging.WARNING)

        try:
            adapter = from_uri(
                f"sqlite:///{location.catalog_file}",
                writable_storage=[
                    location.data_directory.as_uri(),
                    f"sqlite:///{location.tables_file}",
                ],
                init_if_not_exists=False,  # created (atomically) by _create_embedded
                specs=[dict(ROOT_SPEC)],
            )
            app = build_app(adapter, serialization_registry=_serialization_registry())
            app.add_middleware(NoStreamsMiddleware)
            context = Context.from_app(app)
            resolve_dependency_overrides(app)  # after start-up: the routes are all there
            return from_context(context)
        except Exception as error:
            raise CatalogError(
                f"cannot open the embedded catalog: {type(error).__name__}: {error}",
                location=str(location),
            ) from error


def _serialization_registry() -> Any:
    """tiled's default serializers plus the Bluesky json-seq exporter (``run.documents()``)."""
    import copy

    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.media_type_registration import default_serialization_registry

    registry = copy.deepcopy(default_serialization_registry)
    registry.register("BlueskyRun", JSON_SEQ, json_seq_exporter)
    return registry


def _open_server(location: CatalogLocation, api_key: str | None) -> Any:
    """Connect to a tiled server; a refused or unreachable server is a CatalogAccessError."""
    import httpx
    from tiled.client import from_uri

    key = api_key or os.environ.get(API_KEY_ENV) or None
    register_secret(key)
    redacting_logger("httpx")  # it logs each request's URL at INFO: credentials included
    where = str(location)
    try:
        client = from_uri(location.uri, api_key=key)
    except RuntimeError as error:
        if "API key" in str(error):
            raise CatalogAccessError(
                f"the server requires an API key: pass api_key= or set {API_KEY_ENV}",
                location=where,
            ) from error
        raise CatalogError(f"cannot open the catalog: {redact(error)}", location=where) from error
    except httpx.HTTPStatusError as error:
        status = error.response.status_code
        if status in (401, 403):
            raise CatalogAccessError(
                f"the server refused the API key (HTTP {status})", location=where
            ) from error
        raise CatalogError(f"the server answered HTTP {status}", location=where) from error
    except httpx.TransportError as error:
        raise CatalogAccessError(
            f"cannot reach the server: {type(error).__name__}: {error}", location=where
        ) from error
    specs = {spec.name for spec in getattr(client, "specs", [])}
    if "CatalogOfBlueskyRuns" not in specs:
        logger.warning(
            "%s has no CatalogOfBlueskyRuns root spec: scan-id lookup and run helpers may fail",
            where,
        )
    return client
