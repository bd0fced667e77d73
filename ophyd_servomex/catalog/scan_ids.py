"""Scan ids: numbers, unique and increasing across sessions and processes.

A new RunEngine starts counting at 1. :func:`seed_scan_id` sets ``RE.md["scan_id"]`` to the
highest scan id in the catalog (unless the RunEngine is already further on), so the next run
gets the next number whichever process or session wrote the last one.

The highest scan id is found by *numeric* comparison. (tiled sorts JSON metadata as text on
SQLite, where ``"9" > "10"``: a sort alone made every session after the ninth run start at 10
again.)

:class:`ScanIdSource` goes further for an embedded catalog: installed as the RunEngine's
``scan_id_source`` by :func:`~ophyd_servomex.catalog.writer.subscribe_writer`, it takes the
catalog's ``flock`` (``catalog.lock`` beside ``catalog.db``), picks
``max(RunEngine's next, catalog's highest + 1, last handed out + 1)``, records it in
``last_scan_id`` and keeps the lock until the writer has stored the run's start document. Two
processes writing one catalog at once therefore never get the same scan id.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from .location import CatalogKind, CatalogLocation
from .lock import FileLock
from .redact import redacting_logger

__all__ = ["ScanIdSource", "latest_scan_id", "seed_scan_id"]

logger = redacting_logger(__name__)
_SEARCH_LIMIT = 64  # refinements of the text-sorted maximum (one per extra digit, in practice)


def _is_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_sorted_max(node: Any) -> int | None:
    """The first integer scan id in tiled's (textual) descending sort of ``node``."""
    ordered = node.sort(("start.scan_id", -1))
    for run in ordered.values().head(5):
        scan_id = run.metadata.get("start", {}).get("scan_id")
        if _is_number(scan_id):
            return int(scan_id)
    return None


def latest_scan_id(catalog: Any) -> int:
    """The highest ``start.scan_id`` in the catalog (compared as numbers), or 0 when none.

    tiled's sort compares the values as text on SQLite; its search compares numbers. So the
    text-sorted maximum is refined by searching for anything numerically greater until nothing
    is: a few queries, however many runs the catalog holds.
    """
    from tiled.queries import Key

    best = _text_sorted_max(catalog)
    if best is None:
        return 0
    for _ in range(_SEARCH_LIMIT):
        candidate = _text_sorted_max(catalog.search(Key("start.scan_id") > best))
        if candidate is None or candidate <= best:
            return best
        best = candidate
    return best


def seed_scan_id(RE: Any, catalog: Any) -> int:  # the Bluesky name
    """Make the RunEngine's next scan id follow the catalog's highest; returns the seed.

    ``RE.md["scan_id"]`` becomes ``max(RE.md.get("scan_id", 0), latest_scan_id(catalog))``;
    the RunEngine adds one when the next run opens.
    """
    current = RE.md.get("scan_id", 0)
    current = current if _is_number(current) else 0
    seed = max(current, latest_scan_id(catalog))
    if seed != RE.md.get("scan_id"):
        RE.md["scan_id"] = seed
    return seed


def _is_atomic(source: object) -> bool:
    """Whether a scan-id source hands out unique ids across processes by itself."""
    owner = getattr(source, "__self__", source)
    return getattr(owner, "atomic_scan_ids", False) is True


class ScanIdSource:
    """A RunEngine ``scan_id_source`` that never repeats a catalog's scan id.

    Called by the RunEngine as a run opens: for an embedded catalog it takes the catalog lock
    (released by :meth:`release` once the start document is stored, which the journaled writer
    does), then returns ``max(previous(md), latest_scan_id(catalog) + 1, last handed out + 1)``.
    ``previous`` is the RunEngine's own source (by default ``md["scan_id"] + 1``). A catalog
    that cannot be read (a dead server) is logged and left out: the run still opens.

    A ``previous`` source that is itself atomic across processes (its owner has
    ``atomic_scan_ids = True``, as the Redis-shared counter of
    :mod:`~ophyd_servomex.catalog.shared_md` does) is used as it is: taking a maximum with
    the catalog's highest id would let two processes compute the same number again.
    """

    def __init__(
        self,
        catalog: Any,
        location: CatalogLocation,
        previous: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.catalog = catalog
        self.location = location
        self.previous = previous
        self._last = 0  # the last scan id this source handed out
        embedded = location.kind is CatalogKind.EMBEDDED
        self._lock = FileLock(location.lock_file) if embedded else None

    def __call__(self, md: dict[str, Any]) -> int:
        """The scan id of the run being opened (the lock stays held until :meth:`release`)."""
        if _is_atomic(self.previous):
            assert self.previous is not None
            scan_id = int(self.previous(md))
            if self._lock is not None:
                self._lock.acquire()
            self._last = scan_id
            return scan_id
        floor = self._floor(md)
        if self._lock is not None:
            self._lock.acquire()
        try:
            scan_id = max(
                floor, self._catalog_latest() + 1, self._last_handed_out() + 1, self._last + 1
            )
            self._record(scan_id)
        except BaseException:
            self.release()
            raise
        self._last = scan_id
        return scan_id

    def _catalog_latest(self) -> int:
        """The catalog's highest scan id; 0 when it cannot be read (a dead server must not
        stop a run: its documents go to the journal and the other sources still count)."""
        try:
            return latest_scan_id(self.catalog)
        except Exception as error:
            logger.warning(
                "cannot read the highest scan id from the catalog (%s: %s): continuing from "
                "the RunEngine's and the last one handed out",
                type(error).__name__,
                error,
            )
            return 0

    def release(self) -> None:
        """Let other processes choose a scan id again (the start document is stored)."""
        if self._lock is not None:
            self._lock.release()

    def _floor(self, md: dict[str, Any]) -> int:
        current = md.get("scan_id", 0)
        default = (current if _is_number(current) else 0) + 1
        if self.previous is None or getattr(self.previous, "__name__", "") in (
            "default_scan_id_source",
        ):
            return int(default)
        value = self.previous(md)
        if inspect.isawaitable(value):  # an async source cannot be awaited here
            close = getattr(value, "close", None)
            if callable(close):
                close()
            return int(default)
        return int(value) if _is_number(value) else int(default)

    def _last_handed_out(self) -> int:
        if self.location.kind is not CatalogKind.EMBEDDED:
            return 0
        try:
            text = self.location.scan_id_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return 0
        return int(text) if text.isdigit() else 0

    def _record(self, scan_id: int) -> None:
        if self.location.kind is not CatalogKind.EMBEDDED:
            return
        try:
            self.location.scan_id_file.write_text(f"{scan_id}\n", encoding="ascii")
        except OSError as error:  # a full or read-only disk: the catalog still knows
            logger.log(
                logging.WARNING,
                "cannot record scan id %d in %s: %s",
                scan_id,
                self.location.scan_id_file,
                error,
            )
