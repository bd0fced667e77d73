"""Where a catalog lives: an embedded SQLite directory or a tiled server URI.

Resolution order, the same for the Python API and the CLI:

1. the explicit ``location`` argument (``--catalog PATH|URI`` on the command line);
2. the ``OPHYD_SERVOMEX_CATALOG`` environment variable;
3. ``platformdirs.user_data_dir("ophyd-servomex")/catalog``.

A location is either a directory (``catalog.db``, ``tables.db`` and ``data/`` are created inside
it; ``sqlite:///DIR/catalog.db``, ``file:///DIR`` and a path to an existing ``catalog.db`` are
accepted too) or an ``http(s)://`` tiled server. Nothing here imports tiled.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import CatalogError

__all__ = [
    "API_KEY_ENV",
    "CATALOG_ENV",
    "CatalogKind",
    "CatalogLocation",
    "default_catalog_directory",
    "default_data_directory",
    "resolve_location",
]

CATALOG_ENV = "OPHYD_SERVOMEX_CATALOG"
"""Environment variable naming the default catalog (a directory or an ``http(s)://`` URI)."""

API_KEY_ENV = "TILED_API_KEY"
"""Environment variable holding the API key for a tiled server (tiled's own convention)."""

APP_NAME = "ophyd-servomex"

CATALOG_FILE = "catalog.db"
TABLES_FILE = "tables.db"
DATA_DIRECTORY = "data"
BACKUP_DIRECTORY = "backup"


class CatalogKind(StrEnum):
    """How a catalog is reached."""

    EMBEDDED = "embedded"
    """SQLite files in a local directory, served by an in-process tiled app (no server)."""
    SERVER = "server"
    """A tiled server reached over HTTP(S)."""


@dataclass(frozen=True, slots=True)
class CatalogLocation:
    """A resolved catalog location."""

    kind: CatalogKind
    directory: Path | None = None
    """The catalog directory (embedded catalogs only)."""
    uri: str | None = None
    """The server URI without a trailing slash (server catalogs only)."""

    def __str__(self) -> str:
        return str(self.directory) if self.kind is CatalogKind.EMBEDDED else str(self.uri)

    @property
    def catalog_file(self) -> Path:
        """The SQLite catalog database of an embedded catalog."""
        return self._require_directory() / CATALOG_FILE

    @property
    def tables_file(self) -> Path:
        """The SQLite database holding the event tables of an embedded catalog."""
        return self._require_directory() / TABLES_FILE

    @property
    def data_directory(self) -> Path:
        """The directory holding array data (zarr) of an embedded catalog."""
        return self._require_directory() / DATA_DIRECTORY

    @property
    def backup_directory(self) -> Path:
        """Where the writer journals runs until the catalog has them.

        Beside the files of an embedded catalog; for a server, a folder per server in the
        user data directory, so runs written while a server is down stay on this machine.
        """
        if self.kind is CatalogKind.EMBEDDED:
            return self._require_directory() / BACKUP_DIRECTORY
        parts = urlsplit(self.uri or "")
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parts.hostname}_{parts.port}{parts.path}")
        return default_data_directory() / BACKUP_DIRECTORY / name.strip("_")

    def _require_directory(self) -> Path:
        if self.directory is None:
            raise CatalogError("a server catalog has no local files", location=str(self))
        return self.directory


def default_data_directory() -> Path:
    """The per-user data directory of ophyd-servomex (created by the callers that write)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def default_catalog_directory() -> Path:
    """The embedded catalog used when neither an argument nor the environment names one."""
    return default_data_directory() / "catalog"


def resolve_location(location: str | os.PathLike[str] | None = None) -> CatalogLocation:
    """Turn an argument, the environment or the default into a :class:`CatalogLocation`.

    Raises :class:`~ophyd_servomex.catalog.errors.CatalogError` for an empty string or a URI
    scheme other than ``http``, ``https``, ``sqlite`` or ``file``.
    """
    if location is None:
        location = os.environ.get(CATALOG_ENV) or default_catalog_directory()
    text = os.fspath(location).strip()
    if not text:
        raise CatalogError("the catalog location is empty")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("http", "https"):
        return CatalogLocation(CatalogKind.SERVER, uri=text.rstrip("/"))
    if scheme == "sqlite" or scheme.startswith("sqlite+"):
        # SQLAlchemy spelling: sqlite:///relative/catalog.db, sqlite:////absolute/catalog.db
        rest = unquote(text.split("://", 1)[1])
        path = Path(rest[1:] if rest.startswith("/") else rest).expanduser()
        return _embedded(path.parent if path.suffix == ".db" else path)
    if scheme == "file":
        return _embedded(Path(unquote(urlsplit(text).path)).expanduser())
    if scheme:
        raise CatalogError(
            f"unsupported catalog location scheme {scheme!r}: use a directory for an embedded "
            "catalog or an http(s):// tiled server (serve PostgreSQL through `tiled serve`)",
            location=text,
        )
    path = Path(text).expanduser()
    if path.is_file() and path.name == CATALOG_FILE:
        path = path.parent
    return _embedded(path)


def _embedded(path: Path) -> CatalogLocation:
    return CatalogLocation(CatalogKind.EMBEDDED, directory=path.absolute())
