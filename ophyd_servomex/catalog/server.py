"""Configuration for a shared tiled server holding the catalog.

Several processes cannot write one SQLite catalog at once (SQLite is effectively one writer
process); a tiled server in front of the catalog can. :func:`write_server_config` writes the
``config.yml`` that ``tiled serve config config.yml`` runs: a catalog with the
``CatalogOfBlueskyRuns`` root spec, a folder for arrays, a database for event tables and the
json-seq exporter (``run.documents()``). With ``uri="postgresql://…"`` the same file serves a
PostgreSQL catalog (event tables go to the same database).

Secrets stay out of sight: the file is created with mode 0600 (it may hold a database
password), and the server's API key goes through the ``TILED_SINGLE_USER_API_KEY``
environment variable (:func:`serve_environment`), never the command line, where every user
of the machine could read it in the process list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from .client import JSON_SEQ, JSON_SEQ_EXPORTER, ROOT_SPEC
from .errors import CatalogError
from .location import CATALOG_FILE, DATA_DIRECTORY, TABLES_FILE
from .redact import redact, register_secret

__all__ = [
    "CONFIG_FILE",
    "SERVER_API_KEY_ENV",
    "serve_command",
    "serve_environment",
    "write_private_file",
    "write_server_config",
]

CONFIG_FILE = "config.yml"
SERVER_API_KEY_ENV = "TILED_SINGLE_USER_API_KEY"
"""The environment variable ``tiled serve`` reads its single-user API key from."""


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600), atomically.

    The file is created with mode 0600 from the start (``os.open``), in the same directory,
    then renamed over ``path``: there is no moment when the content is readable by others,
    even when ``path`` already existed with a wider mode.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)  # left by a crashed writer with this pid
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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
    line override them). The catalog is created when the server first starts. The file is
    written with mode 0600: it may hold the database password.
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
            f"a server catalog URI is sqlite:///… or postgresql://…, not {redact(uri)!r}",
            location=str(root),
        )
    if uri is not None:
        password = urlsplit(uri).password
        register_secret(password)
    lines = [
        "# tiled server for ophyd-servomex runs; start it with the key in the environment",
        "# (never on the command line, where the process list shows it):",
        f"#   TILED_SINGLE_USER_API_KEY=KEY tiled serve config {root / CONFIG_FILE}",
        "# Clients: open_catalog('http://HOST:PORT', api_key=KEY) or TILED_API_KEY=KEY.",
        "# This file may hold a database password: keep it mode 0600.",
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
    write_private_file(path, "\n".join(lines))
    return path


def serve_command(
    config: str | os.PathLike[str],
    *,
    host: str | None = None,
    port: int | None = None,
    tiled: str = "tiled",
) -> list[str]:
    """The ``tiled serve config`` command line (an argv list) for a config file.

    It holds no API key: start it with :func:`serve_environment` (``TILED_SINGLE_USER_API_KEY``)
    as its environment, e.g. ``subprocess.Popen(serve_command(cfg), env=serve_environment(key))``.
    """
    argv = [tiled, "serve", "config", os.fspath(config)]
    if host is not None:
        argv += ["--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    return argv


def serve_environment(api_key: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``tiled serve``: ``base`` (default ``os.environ``) plus the API key
    in ``TILED_SINGLE_USER_API_KEY``.

    tiled accepts alphanumeric keys only; anything else is a
    :class:`~ophyd_servomex.catalog.errors.CatalogError` (the key is not shown).
    """
    if not api_key or not api_key.isalnum():
        raise CatalogError("a tiled API key is a non-empty string of letters and digits")
    register_secret(api_key)
    environment = dict(os.environ if base is None else base)
    environment[SERVER_API_KEY_ENV] = api_key
    return environment
