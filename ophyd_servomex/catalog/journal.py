"""A write-ahead journal of one run's documents, as JSON lines.

Each document is appended as ``{"name": ..., "doc": ...}`` (the line format of
``bluesky_tiled_plugins``' own backup files) and flushed to the operating system before the
catalog writer sees it, so a process killed at any moment (``kill -9``) leaves every document
it had emitted in the file. An ``fsync`` at most every ``fsync_interval`` seconds bounds what a
power cut can take to that interval. While a run is being written its journal holds an
exclusive ``flock``, so recovery never touches a file that a live process is still writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .redact import redacting_logger

try:  # POSIX advisory locks; without them (Windows) recovery trusts the caller.
    import fcntl
except ImportError:  # pragma: no cover - not on the Linux CI
    fcntl = None  # type: ignore[assignment]

__all__ = ["Document", "RunJournal", "iter_journal", "journal_is_locked", "read_journal"]

Document = tuple[str, dict[str, Any]]
"""A Bluesky document as the RunEngine emits it: its name and its body."""

logger = redacting_logger(__name__)


def _jsonable(value: Any) -> Any:
    """JSON fallback for numpy scalars and arrays (anything with ``tolist``) and the rest."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def encode_document(name: str, doc: dict[str, Any]) -> str:
    """One journal line (without the newline) for a document."""
    return json.dumps({"name": name, "doc": doc}, default=_jsonable, separators=(",", ":"))


class RunJournal:
    """The append-only journal file of one run, locked for as long as it is open.

    Each document is one ``os.write`` of its whole line (no user-space buffer), so a failed
    append (a full or read-only disk) raises ``OSError`` at once and :attr:`count` says how
    many documents the file holds completely; :meth:`documents` reads them back.
    """

    def __init__(self, path: Path, *, fsync_interval: float | None = 1.0) -> None:
        self.path = path
        self.fsync_interval = fsync_interval
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
        self._fd: int | None = fd
        self._last_sync = time.monotonic()
        self.count = 0
        """Documents completely written to the file."""

    @property
    def closed(self) -> bool:
        """True once :meth:`close` (or :meth:`abandon`) has run."""
        return self._fd is None

    def append(self, name: str, doc: dict[str, Any]) -> None:
        """Write one document and hand it to the OS (survives the death of this process).

        Raises ``OSError`` when the file cannot take it (``ENOSPC``, ``EROFS``, ``EIO``); the
        file then holds the first :attr:`count` documents and perhaps part of this one.
        """
        if self._fd is None:
            raise ValueError(f"journal {self.path} is closed")
        data = (encode_document(name, doc) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.count += 1
        if self.fsync_interval is not None:
            now = time.monotonic()
            if now - self._last_sync >= self.fsync_interval:
                os.fsync(self._fd)
                self._last_sync = now

    def sync(self) -> None:
        """``fsync`` now (raises ``OSError`` when the disk refuses)."""
        if self._fd is not None:
            os.fsync(self._fd)
            self._last_sync = time.monotonic()

    def documents(self) -> list[Document]:
        """The documents completely written so far (a torn last line is left out)."""
        return read_journal(self.path)[: self.count]

    def close(self, *, remove: bool = False) -> None:
        """Close (and release the lock); with ``remove`` delete the file first.

        The file is removed while the lock is still held, so a concurrent recovery never
        replays a run that the catalog already has. Without ``remove`` the file is
        ``fsync``-ed first (an ``OSError`` from that propagates; the file is closed anyway).
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if remove:
                self.path.unlink(missing_ok=True)
            else:
                os.fsync(fd)
        finally:
            os.close(fd)

    def abandon(self, *, remove: bool) -> None:
        """Close after a failure, never raising; with ``remove`` try to delete the file."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if remove:
                try:
                    self.path.unlink(missing_ok=True)
                except OSError:
                    logger.warning("cannot remove %s (kept; recovery skips duplicates)", self.path)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)


def journal_is_locked(path: Path) -> bool:
    """True while a live :class:`RunJournal` (in any process) holds ``path`` open."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        with path.open("rb") as file:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def iter_journal(path: Path) -> Iterator[Document]:
    """The documents of a journal or backup file, in order.

    A line cut short by a crash (the last one, normally) and any line that is not a
    ``{"name", "doc"}`` object are skipped with a warning: a journal is read as far as it goes.
    """
    with path.open("r", encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                item = json.loads(text)
                name, doc = item["name"], item["doc"]
            except (ValueError, KeyError, TypeError):
                logger.warning("%s:%d: skipped an unreadable journal line", path, number)
                continue
            if isinstance(name, str) and isinstance(doc, dict):
                yield name, doc
            else:
                logger.warning("%s:%d: skipped a line that is not a document", path, number)


def read_journal(path: Path) -> list[Document]:
    """All readable documents of a journal or backup file (see :func:`iter_journal`)."""
    return list(iter_journal(path))
