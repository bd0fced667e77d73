"""Configuration for a shared tiled server holding the catalog.

Several processes cannot write one SQLite catalog at once (SQLite is effectively one writer
process); a tiled server in front of the catalog can. :func:`write_server_config` writes the
``config.yml`` that ``tiled serve config config.yml --api-key KEY`` runs: a catalog with the
``CatalogOfBlueskyRuns`` root spec, a folder for arrays, a database for event tables and the
json-seq exporter (``run.documents()``). With ``uri="postgresql://…"`` the same file serves a
PostgreSQL catalog (event tables go to the same database).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .client import JSON_SEQ, JSON_SEQ_EXPORTER, ROOT_SPEC
from .errors import CatalogError
from .location import CATALOG_FILE, DATA_DIRECTORY, TABLES_FILE

__all__ = ["CONFIG_FILE", "serve_command", "write_server_config"]

CONFIG_FILE = "config.yml"


def _quote(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text)


def write_server_config(
    directory: str | os.PathLike[str],
    *,
    uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> Path:
    """Write ``directory/config.yml`` for ``tiled serve config`` and return its path.

    ``uri`` is the catalog database: by default ``sqlite:///<directory>/catalog.db`` with event
    tables in ``tables.db``; a ``postgresql://user:password@host/db`` URI keeps both the catalog
    and the event tables in PostgreSQL. Array data always goes to ``directory/data``. The
    server binds ``host``:``port`` (loopback by default; ``--host``/``--port`` on the command
    line override them). The catalog is created when the server first starts.
    """
    root = Path(directory).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    data = root / DATA_DIRECTORY
    data.mkdir(exist_ok=True)
    if uri is None:
        catalog_uri = f"sqlite:///{root / CATALOG_FILE}"
        tables_uri = f"sqlite:///{root / TABLES_FILE}"
    elif uri.startswith(("postgresql://", "postgresql+")) or uri.startswith("sqlite:"):
        catalog_uri = uri
        tables_uri = uri if uri.startswith("postgresql") else f"sqlite:///{root / TABLES_FILE}"
    else:
        raise CatalogError(
            f"a server catalog URI is sqlite:///… or postgresql://…, not {uri!r}",
            location=str(root),
        )
    lines = [
        "# tiled server for ophyd-servomex runs; start it with",
        f"#   tiled serve config {root / CONFIG_FILE} --api-key KEY",
        "# Clients: open_catalog('http://HOST:PORT', api_key=KEY) or TILED_API_KEY=KEY.",
        "catalog:",
        f"  uri: {_quote(catalog_uri)}",
        "  writable_storage:",
        f"    - {_quote(data.as_uri())}",
        f"    - {_quote(tables_uri)}",
        "  init_if_not_exists: true",
        "  specs:",
        f"    - name: {_quote(ROOT_SPEC['name'])}",
        f"      version: {_quote(ROOT_SPEC['version'])}",
        "media_types:",
        "  BlueskyRun:",
        f"    {_quote(JSON_SEQ)}: {_quote(JSON_SEQ_EXPORTER)}",
        "uvicorn:",
        f"  host: {_quote(host)}",
        f"  port: {int(port)}",
        "",
    ]
    path = root / CONFIG_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def serve_command(
    config: str | os.PathLike[str],
    api_key: str,
    *,
    host: str | None = None,
    port: int | None = None,
    tiled: str = "tiled",
) -> list[str]:
    """The ``tiled serve config`` command line (an argv list) for a config file."""
    argv = [tiled, "serve", "config", os.fspath(config), "--api-key", api_key]
    if host is not None:
        argv += ["--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    return argv
