"""Replay journaled or backed-up runs into a catalog.

The backup directory of a :class:`~ophyd_servomex.catalog.writer.JournaledWriter` holds one
``<uid>.jsonl`` file per run that has not (yet) fully reached the catalog; files written by
``bluesky_tiled_plugins.TiledWriter(backup_directory=...)`` have the same line format and are
replayed the same way. For each file not locked by a live writer, :func:`recover`:

1. skips (and deletes) it when the catalog already has the run with its stop document;
2. deletes the partial run a crash left in the catalog (the batches written before it died);
3. writes the whole run again from the file; a run cut off by a crash gets a synthesized stop
   document (``exit_status="fail"``, a ``reason`` saying so, the event counts per stream);
4. deletes the file once the run is in the catalog.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .client import catalog_location
from .errors import CatalogRecoveryError
from .journal import Document, journal_is_locked, read_journal
from .redact import redacting_logger

__all__ = ["RECOVERED_REASON", "complete_run", "recover", "write_documents"]

RECOVERED_REASON = "recovered from the write-ahead journal: the run was cut off before its stop"

logger = redacting_logger(__name__)


def complete_run(documents: Iterable[Document]) -> list[Document]:
    """The documents of one run, ending with a stop document (synthesized when missing).

    Documents after a stop are dropped. Raises
    :class:`~ophyd_servomex.catalog.errors.CatalogRecoveryError` when there is no start.
    """
    docs: list[Document] = []
    stream_of: dict[str, str] = {}
    events: Counter[str] = Counter()
    start: dict[str, Any] | None = None
    last_time = 0.0
    for name, doc in documents:
        if name == "start":
            if start is not None:
                break  # a second run: not ours
            start = doc
        elif start is None:
            continue
        docs.append((name, doc))
        if isinstance(doc.get("time"), (int, float)):
            last_time = max(last_time, float(doc["time"]))
        if name == "descriptor":
            stream_of[doc["uid"]] = doc.get("name", "primary")
        elif name == "event":
            events[stream_of.get(doc.get("descriptor", ""), "unknown")] += 1
        elif name == "event_page":
            times = doc.get("time") or []
            if times:
                last_time = max(last_time, float(max(times)))
            events[stream_of.get(doc.get("descriptor", ""), "unknown")] += len(
                doc.get("seq_num", [])
            )
        elif name == "stop":
            return docs
    if start is None:
        raise CatalogRecoveryError("the documents hold no start document")
    stop = {
        "uid": str(uuid.uuid4()),
        "run_start": start["uid"],
        "time": max(last_time, float(start.get("time", 0.0))),
        "exit_status": "fail",
        "reason": RECOVERED_REASON,
        "num_events": {stream: events[stream] for stream in stream_of.values()},
    }
    docs.append(("stop", stop))
    return docs


def write_documents(
    catalog: Any, documents: Iterable[Document], *, batch_size: int = 10_000
) -> None:
    """Write one run's documents into ``catalog`` with a fresh ``TiledWriter`` (errors raise)."""
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(catalog, batch_size=batch_size)
    for name, doc in documents:
        writer(name, doc)


def _complete_in_catalog(catalog: Any, uid: str) -> tuple[bool, Any]:
    try:
        run = catalog[uid]
    except (KeyError, ValueError):
        return False, None
    return bool(run.metadata.get("stop")), run


def recover(
    catalog: Any,
    backup_directory: str | Path | None = None,
    *,
    fallback_directory: str | Path | None = None,
) -> list[str]:
    """Replay every unlocked ``*.jsonl`` journal into ``catalog``.

    With no arguments both journal directories of this catalog are read: its backup directory
    and its fallback directory (see :func:`~ophyd_servomex.catalog.writer.subscribe_writer`).
    An explicit ``backup_directory`` alone reads just that directory; add
    ``fallback_directory`` to read both. When one run has a journal in both (a copy that could
    not be removed after the move), the one holding more documents is replayed and both are
    deleted.

    Returns the uids written (runs already complete in the catalog are not listed; their files
    are deleted). Files that fail stay where they are, and after trying them all a
    :class:`~ophyd_servomex.catalog.errors.CatalogRecoveryError` names them.
    """
    directories: list[Path] = []
    if backup_directory is None:
        location = catalog_location(catalog)
        directories = [location.backup_directory]
        directories.append(
            Path(fallback_directory)
            if fallback_directory is not None
            else location.fallback_directory
        )
    else:
        directories = [Path(backup_directory)]
        if fallback_directory is not None:
            directories.append(Path(fallback_directory))
    by_run: dict[str, list[Path]] = {}
    for directory in dict.fromkeys(directories):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.jsonl")):
            by_run.setdefault(path.stem, []).append(path)
    recovered: list[str] = []
    failures: list[str] = []
    for stem in sorted(by_run):
        paths = by_run[stem]
        if any(journal_is_locked(path) for path in paths):
            logger.info("%s is being written by a live process: left alone", paths[0])
            continue
        try:
            uid = _recover_file(catalog, _fullest(paths), copies=paths)
        except Exception as error:
            logger.exception("cannot replay %s", paths[0])
            failures.append(f"{paths[0]}: {type(error).__name__}: {error}")
            continue
        if uid is not None:
            recovered.append(uid)
    if failures:
        raise CatalogRecoveryError(
            f"{len(failures)} backup file(s) could not be replayed and were kept: "
            + "; ".join(failures),
            location=str(catalog_location(catalog)),
        )
    return recovered


def _fullest(paths: list[Path]) -> Path:
    """The copy of a run's journal holding the most documents."""
    if len(paths) == 1:
        return paths[0]
    return max(paths, key=lambda path: len(read_journal(path)))


def _remove(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            logger.warning("cannot remove %s after replaying it: %s", path, error)


def _recover_file(catalog: Any, path: Path, *, copies: list[Path]) -> str | None:
    documents = read_journal(path)
    if not any(name == "start" for name, _ in documents):
        logger.warning("%s holds no start document: removed", path)
        _remove(copies)
        return None
    run_documents = complete_run(documents)
    uid = str(run_documents[0][1]["uid"])
    complete, partial = _complete_in_catalog(catalog, uid)
    if complete:
        _remove(copies)
        return None
    if partial is not None:
        logger.info("run %s: deleting the partial copy before replaying %s", uid, path)
        partial.delete(recursive=True, external_only=False)
    write_documents(catalog, run_documents)
    _remove(copies)
    logger.info("run %s: replayed %d documents from %s", uid, len(run_documents), path)
    return uid
