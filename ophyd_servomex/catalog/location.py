"""Where a catalog lives: an embedded SQLite directory or a tiled server URI.

Resolution order, the same for the Python API and the CLI:

1. the explicit ``location`` argument (``--catalog PATH|URI`` on the command line);
2. the ``OPHYD_SERVOMEX_CATALOG`` environment variable;
3. ``platformdirs.user_data_dir("ophyd-servomex")/catalog``.

A location is either a directory (``catalog.db``, ``tables.db`` and ``data/`` are created inside
it; ``sqlite:///DIR/catalog.db``, ``file:///DIR`` and a path to an existing ``catalog.db`` are
accepted too) or an ``http(s)://`` tiled server. Nothing here imports tiled.

Journals of runs not yet in the catalog go to :attr:`CatalogLocation.backup_directory`; when
that cannot take a document (a full or read-only disk), to
:attr:`CatalogLocation.fallback_directory`, by default in the user *state* directory
(``OPHYD_SERVOMEX_JOURNAL_FALLBACK`` overrides it).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import CatalogError
from .redact import redact

__all__ = [
    "API_KEY_ENV",
    "CATALOG_ENV",
    "FALLBACK_ENV",
    "CatalogKind",
    "CatalogLocation",
    "default_catalog_directory",
    "default_data_directory",
    "default_fallback_directory",
    "resolve_location",
]

CATALOG_ENV = "OPHYD_SERVOMEX_CATALOG"
"""Environment variable naming the default catalog (a directory or an ``http(s)://`` URI)."""

API_KEY_ENV = "TILED_API_KEY"
"""Environment variable holding the API key for a tiled server (tiled's own convention)."""

FALLBACK_ENV = "OPHYD_SERVOMEX_JOURNAL_FALLBACK"
"""Environment variable naming the directory for fallback journals (default: the user state
directory's ``journal-fallback``); each catalog gets its own folder inside it."""

APP_NAME = "ophyd-servomex"

CATALOG_FILE = "catalog.db"
TABLES_FILE = "tables.db"
DATA_DIRECTORY = "data"
BACKUP_DIRECTORY = "backup"
LOCK_FILE = "catalog.lock"
SCAN_ID_FILE = "last_scan_id"


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
        return str(self.directory) if self.kind is CatalogKind.EMBEDDED else redact(self.uri)

    def __repr__(self) -> str:
        return f"CatalogLocation({self.kind.value}, {str(self)!r})"

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
        return default_data_directory() / BACKUP_DIRECTORY / self._folder_name(hashed=False)

    @property
    def fallback_directory(self) -> Path:
        """Where journals go when :attr:`backup_directory` cannot take a document.

        ``$OPHYD_SERVOMEX_JOURNAL_FALLBACK/<catalog>`` if that variable is set, else
        ``platformdirs.user_state_dir("ophyd-servomex")/journal-fallback/<catalog>``: another
        place than the catalog's own disk, so a full or read-only catalog filesystem loses
        nothing. ``<catalog>`` names the catalog (its path or server, and a short hash).
        """
        return default_fallback_directory() / self._folder_name(hashed=True)

    @property
    def lock_file(self) -> Path:
        """The ``flock`` file beside an embedded catalog (creation and scan ids)."""
        return self._require_directory() / LOCK_FILE

    @property
    def scan_id_file(self) -> Path:
        """The last scan id handed out for an embedded catalog (written under the lock)."""
        return self._require_directory() / SCAN_ID_FILE

    def _folder_name(self, *, hashed: bool) -> str:
        if self.kind is CatalogKind.EMBEDDED:
            source = str(self._require_directory())
        else:
            parts = urlsplit(self.uri or "")
            source = f"{parts.hostname}_{parts.port}{parts.path}"
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("_")
        if not hashed:
            return name
        digest = hashlib.sha256(source.encode()).hexdigest()[:10]
        return f"{name[-60:].strip('_')}-{digest}"

    def _require_directory(self) -> Path:
        if self.directory is None:
            raise CatalogError("a server catalog has no local files", location=str(self))
        return self.directory


def default_data_directory() -> Path:
    """The per-user data directory of ophyd-servomex (created by the callers that write)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def default_fallback_directory() -> Path:
    """The parent of the fallback journal folders (``$OPHYD_SERVOMEX_JOURNAL_FALLBACK`` or the
    user state directory's ``journal-fallback``)."""
    configured = os.environ.get(FALLBACK_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME)) / "journal-fallback"


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
