"""Write a RunEngine's documents into a catalog, losing nothing when the catalog or process dies.

:func:`subscribe_writer` subscribes a :class:`JournaledWriter` to the RunEngine. For every run
it keeps a write-ahead journal (``<backup_directory>/<uid>.jsonl``, see
:mod:`~ophyd_servomex.catalog.journal`) and feeds ``bluesky_tiled_plugins.TiledWriter``, which
writes events to the catalog in batches of ``batch_size``:

- the run reaches the catalog: its journal is deleted when the stop document is written;
- the catalog fails (a dead server, a full disk): the error is logged, the run goes on, and the
  journal stays in the backup directory as the run's backup;
- the process dies (``kill -9``, power cut): every document emitted before the death is in the
  journal (flushed per document, ``fsync`` every ``fsync_interval`` s).

:func:`~ophyd_servomex.catalog.recovery.recover` replays what the backup directory holds.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import catalog_location
from .journal import RunJournal

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_BATCH_SIZE", "CatalogSubscription", "JournaledWriter", "subscribe_writer"]

DEFAULT_BATCH_SIZE = 100
"""Events per table append. 100 costs the RunEngine next to nothing (an append is one SQL
write) while readers of a live run see it grow every 100 events; 1 shows every event at once
but caps a run near 25 events/s. The journal, not the batch, bounds what a crash can lose."""

logger = logging.getLogger(__name__)


class _RunCallback:
    """One run's path: journal first, then the catalog, until the catalog fails."""

    def __init__(
        self,
        owner: JournaledWriter,
        uid: str,
        journal: RunJournal | None,
        writer: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self._owner = owner
        self._uid = uid
        self._journal = journal
        self._writer = writer
        self._failed = False

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if self._journal is not None:
            try:
                self._journal.append(name, doc)
            except Exception:
                logger.exception("run %s: the journal %s failed", self._uid, self._journal.path)
                self._journal = None
        if not self._failed:
            try:
                if name == "start":
                    with warnings.catch_warnings():
                        # event-model blames a failing start on an outdated factory: misleading
                        warnings.filterwarnings("ignore", message=r".*passed it a 'start'")
                        self._writer(name, doc)
                else:
                    self._writer(name, doc)
            except Exception:
                self._failed = True
                self._owner.failed_runs.append(self._uid)
                where = self._journal.path if self._journal is not None else "nowhere (no journal)"
                logger.exception(
                    "run %s: writing a %r document to the catalog failed; the run goes on and "
                    "its documents are kept in %s (replay them with recover())",
                    self._uid,
                    name,
                    where,
                )
        if name == "stop":
            self._finish()

    def _finish(self) -> None:
        if self._failed:
            if self._journal is not None:
                self._journal.close(remove=False)
            return
        self._owner.written_runs.append(self._uid)
        if self._journal is not None:
            self._journal.close(remove=True)


class JournaledWriter:
    """A RunEngine callback: journal every document, then write it with ``TiledWriter``.

    ``writer_factory(client, batch_size=...)`` makes each run's catalog writer (by default
    ``bluesky_tiled_plugins.TiledWriter``; pass e.g. ``functools.partial(TiledWriter,
    normalizer=None)`` to skip its per-event validation).
    ``failed_runs`` lists the uids whose documents stayed in ``backup_directory``;
    ``written_runs`` those that reached the catalog completely.
    """

    def __init__(
        self,
        catalog: Any,
        backup_directory: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        fsync_interval: float | None = 1.0,
        writer_factory: Callable[..., Callable[[str, dict[str, Any]], None]] | None = None,
    ) -> None:
        if writer_factory is None:
            from bluesky_tiled_plugins import TiledWriter

            writer_factory = TiledWriter

        self.backup_directory = Path(backup_directory)
        self.backup_directory.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.fsync_interval = fsync_interval
        self.failed_runs: list[str] = []
        self.written_runs: list[str] = []
        self._writer_factory = writer_factory
        # fetched once, so the per-run TiledWriter does not ask the server again
        self._client = catalog.include_data_sources()
        self._runs: dict[str, _RunCallback] = {}
        self._run_of: dict[str, str] = {}  # descriptor / resource uid -> run uid

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Route a document to its run (documents pass through unchanged, events stay events)."""
        if name == "start":
            uid = str(doc["uid"])
            self._runs[uid] = self._start_run(uid)
        else:
            found = self._run_for(name, doc)
            if found is None:
                logger.warning("a %r document belongs to no open run: not written", name)
                return
            uid = found
            if name in ("descriptor", "resource", "stream_resource") and "uid" in doc:
                self._run_of[str(doc["uid"])] = uid
        callback = self._runs[uid]
        try:
            callback(name, doc)
        finally:
            if name == "stop":
                del self._runs[uid]
                self._run_of = {k: v for k, v in self._run_of.items() if v != uid}

    def _run_for(self, name: str, doc: dict[str, Any]) -> str | None:
        """The open run a (non-start) document belongs to."""
        for field_name in ("run_start", "descriptor", "resource", "stream_resource"):
            ref = doc.get(field_name)
            if isinstance(ref, str):
                uid = ref if field_name == "run_start" else self._run_of.get(ref)
                if uid in self._runs:
                    return uid
        # documents without a back-reference (an old-style resource, say) go to the only run
        return next(iter(self._runs)) if len(self._runs) == 1 else None

    def journal_path(self, uid: str) -> Path:
        """Where the journal of run ``uid`` is (or was) kept."""
        return self.backup_directory / f"{uid}.jsonl"

    def _start_run(self, uid: str) -> _RunCallback:
        journal: RunJournal | None
        try:
            journal = RunJournal(self.journal_path(uid), fsync_interval=self.fsync_interval)
        except OSError:
            logger.exception("run %s: cannot open its journal; writing without one", uid)
            journal = None
        writer = self._writer_factory(self._client, batch_size=self.batch_size)
        return _RunCallback(self, uid, journal, writer)


@dataclass
class CatalogSubscription:
    """What :func:`subscribe_writer` returns: the RunEngine token and the writer."""

    run_engine: Any
    token: int
    writer: JournaledWriter
    scan_id: int
    """``RE.md["scan_id"]`` after seeding (the next run gets ``scan_id + 1``)."""
    recovered: list[str] = field(default_factory=list)
    """Runs replayed from the backup directory when subscribing."""

    @property
    def backup_directory(self) -> Path:
        """Where journals of unfinished or unwritten runs are kept."""
        return self.writer.backup_directory

    def unsubscribe(self) -> None:
        """Stop writing this RunEngine's documents."""
        self.run_engine.unsubscribe(self.token)


def subscribe_writer(
    RE: Any,  # the Bluesky name for a RunEngine
    catalog: Any,
    *,
    backup_directory: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fsync_interval: float | None = 1.0,
    seed_scan_id: bool = True,
    recover_pending: bool = True,
    writer_factory: Callable[..., Callable[[str, dict[str, Any]], None]] | None = None,
) -> CatalogSubscription:
    """Subscribe a journaled ``TiledWriter`` for ``catalog`` to the RunEngine ``RE``.

    ``backup_directory`` defaults to ``backup/`` beside an embedded catalog, or to a folder per
    server in the user data directory. With ``seed_scan_id`` the RunEngine's ``scan_id``
    continues from the catalog's highest; with ``recover_pending`` runs left in the backup
    directory by an earlier crash or outage are replayed first (a failure there is logged, not
    raised). ``writer_factory`` is passed to :class:`JournaledWriter`. Returns a
    :class:`CatalogSubscription`; call its ``unsubscribe()`` to stop.
    """
    from .recovery import recover
    from .scan_ids import seed_scan_id as seed

    directory = (
        Path(backup_directory)
        if backup_directory is not None
        else catalog_location(catalog).backup_directory
    )
    recovered: list[str] = []
    if recover_pending:
        from .errors import CatalogError

        try:
            recovered = recover(catalog, directory)
        except CatalogError:
            logger.exception("replaying the backup directory %s failed", directory)
    scan_id = seed(RE, catalog) if seed_scan_id else int(RE.md.get("scan_id", 0))
    writer = JournaledWriter(
        catalog,
        directory,
        batch_size=batch_size,
        fsync_interval=fsync_interval,
        writer_factory=writer_factory,
    )
    token = RE.subscribe(writer)
    return CatalogSubscription(RE, token, writer, scan_id, recovered)
