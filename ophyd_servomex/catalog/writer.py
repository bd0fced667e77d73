"""Write a RunEngine's documents into a catalog, losing nothing when the catalog or process dies.

:func:`subscribe_writer` subscribes a :class:`JournaledWriter` to the RunEngine. For every run
it keeps a write-ahead journal (``<backup_directory>/<uid>.jsonl``, see
:mod:`~ophyd_servomex.catalog.journal`) and feeds ``bluesky_tiled_plugins.TiledWriter``, which
writes events to the catalog in batches of ``batch_size``:

- the run reaches the catalog: its journal is deleted when the stop document is written;
- the catalog fails (a dead server, a full disk): the error is logged, the run goes on, and the
  journal stays as the run's backup;
- the journal's disk fails (full, read-only): the journal moves, with the documents it already
  holds, to the *fallback directory* (another filesystem: the user state directory by
  default) and the run goes on;
- no journal location can take a document: the callback raises
  :class:`~ophyd_servomex.catalog.errors.CatalogWriteError`, the RunEngine aborts the plan and
  the run's exit status is ``fail`` — never a silent loss;
- the process dies (``kill -9``, power cut): every document emitted before the death is in the
  journal (written per document, ``fsync`` every ``fsync_interval`` s).

:func:`~ophyd_servomex.catalog.recovery.recover` replays what both directories hold.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import catalog_location
from .errors import CatalogError, CatalogWriteError
from .journal import Document, RunJournal
from .location import CatalogKind
from .redact import redacting_logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from .scan_ids import ScanIdSource

__all__ = ["DEFAULT_BATCH_SIZE", "CatalogSubscription", "JournaledWriter", "subscribe_writer"]

DEFAULT_BATCH_SIZE = 100
"""Events per table append. 100 costs the RunEngine next to nothing (an append is one SQL
write) while readers of a live run see it grow every 100 events; 1 shows every event at once
but caps a run near 25 events/s. The journal, not the batch, bounds what a crash can lose."""

logger = redacting_logger(__name__)


class _RunCallback:
    """One run's path: journal first (moving to the next location when one fails), then the
    catalog, until the catalog fails."""

    def __init__(
        self,
        owner: JournaledWriter,
        uid: str,
        writer: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self._owner = owner
        self._uid = uid
        self._writer = writer
        self._failed = False
        self._lost = False
        self._journal: RunJournal | None = None
        self._place = 0  # index into owner.journal_directories
        self._left_behind: list[RunJournal] = []  # partial copies that could not be removed

    @property
    def journal_path(self) -> Path | None:
        """Where the run is journaled now (``None`` once no location could take it)."""
        return self._journal.path if self._journal is not None else None

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if self._lost:
            self._to_catalog(name, doc)
            if name == "stop":
                logger.error(
                    "run %s ended (%s) with documents that no journal location could keep",
                    self._uid,
                    doc.get("exit_status"),
                )
            return
        try:
            self._to_journal(name, doc)
        except CatalogWriteError:
            self._lost = True
            self._owner.lost_runs.append(self._uid)
            self._to_catalog(name, doc)  # best effort: it may still hold the run
            raise
        self._to_catalog(name, doc)
        if name == "stop":
            self._finish()

    # --- the journal ---------------------------------------------------------------------

    def _to_journal(self, name: str, doc: dict[str, Any]) -> None:
        if self._journal is None:
            self._open_journal(carried=[])
        assert self._journal is not None
        try:
            self._journal.append(name, doc)
        except OSError as error:
            self._move_journal(error, pending=(name, doc))

    def _open_journal(self, carried: list[Document]) -> None:
        """Open the run's journal in the first location (from ``_place`` on) that takes
        ``carried``; :class:`CatalogWriteError` when none does."""
        directories = self._owner.journal_directories
        problems: list[str] = []
        while self._place < len(directories):
            path = directories[self._place] / f"{self._uid}.jsonl"
            journal: RunJournal | None = None
            try:
                journal = RunJournal(path, fsync_interval=self._owner.fsync_interval)
                for name, doc in carried:
                    journal.append(name, doc)
                if carried:
                    journal.sync()
            except OSError as error:
                problems.append(f"{path.parent}: {error}")
                logger.error("run %s: the journal location %s failed: %s", self._uid, path, error)
                if journal is not None:
                    journal.abandon(remove=True)
                self._place += 1
                continue
            self._journal = journal
            if self._place > 0:
                logger.warning(
                    "run %s: journaling to the fallback location %s", self._uid, journal.path
                )
            return
        raise CatalogWriteError(
            f"run {self._uid}: no journal location can store its documents, so the run is "
            f"stopped rather than losing them ({'; '.join(problems)})",
            location=self._owner.location_text,
        )

    def _move_journal(self, error: OSError, pending: Document | None) -> None:
        """The current journal failed: carry what it holds (and ``pending``) to the next
        location, then drop the partial copy."""
        failed = self._journal
        assert failed is not None
        logger.error(
            "run %s: the journal %s failed (%s); moving it to the next location",
            self._uid,
            failed.path,
            error,
        )
        try:
            carried = failed.documents()
        except OSError as read_error:
            raise CatalogWriteError(
                f"run {self._uid}: the journal {failed.path} failed ({error}) and cannot be "
                f"read back ({read_error})",
                location=self._owner.location_text,
            ) from error
        if pending is not None:
            carried.append(pending)
        self._journal = None
        self._place += 1
        try:
            self._open_journal(carried)
        except CatalogWriteError:
            failed.abandon(remove=False)  # what it holds is all there is: keep it
            raise
        failed.abandon(remove=True)
        if failed.path.exists():
            self._left_behind.append(failed)

    # --- the catalog ---------------------------------------------------------------------

    def _to_catalog(self, name: str, doc: dict[str, Any]) -> None:
        if self._failed:
            return
        try:
            if name == "start":
                with warnings.catch_warnings():
                    # event-model blames a failing start on an outdated factory: misleading
                    warnings.filterwarnings("ignore", message=r".*passed it a 'start'")
                    self._writer(name, doc)
            else:
                self._writer(name, doc)
        except Exception as error:
            self._failed = True
            self._owner.failed_runs.append(self._uid)
            where = self.journal_path or "nowhere (no journal location could take it)"
            logger.error(
                "run %s: writing a %r document to the catalog failed (%s: %s); the run goes on "
                "and its documents are kept in %s (replay them with recover())",
                self._uid,
                name,
                type(error).__name__,
                error,
                where,
            )

    def _finish(self) -> None:
        journal = self._journal
        if journal is None:
            return
        if self._failed:
            try:
                journal.close(remove=False)
            except OSError as error:  # the final fsync failed: move it once more
                self._journal = journal
                self._move_journal(error, pending=None)
                assert self._journal is not None
                self._journal.close(remove=False)
            return
        self._owner.written_runs.append(self._uid)
        journal.close(remove=True)
        for left in self._left_behind:
            left.path.unlink(missing_ok=True)


class JournaledWriter:
    """A RunEngine callback: journal every document, then write it with ``TiledWriter``.

    ``writer_factory(client, batch_size=...)`` makes each run's catalog writer (by default
    ``bluesky_tiled_plugins.TiledWriter``; pass e.g. ``functools.partial(TiledWriter,
    normalizer=None)`` to skip its per-event validation). Journals go to ``backup_directory``
    and, when that cannot take a document, to ``fallback_directory``.

    ``failed_runs`` lists the uids whose documents stayed in a journal (the catalog failed);
    ``written_runs`` those that reached the catalog completely; ``lost_runs`` those stopped
    because no journal location could take a document (a :class:`CatalogWriteError` was
    raised into the RunEngine).
    """

    def __init__(
        self,
        catalog: Any,
        backup_directory: str | Path,
        *,
        fallback_directory: str | Path | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        fsync_interval: float | None = 1.0,
        writer_factory: Callable[..., Callable[[str, dict[str, Any]], None]] | None = None,
        scan_ids: ScanIdSource | None = None,
    ) -> None:
        if writer_factory is None:
            from bluesky_tiled_plugins import TiledWriter

            writer_factory = TiledWriter

        self.backup_directory = Path(backup_directory)
        self.fallback_directory = (
            Path(fallback_directory) if fallback_directory is not None else None
        )
        self.journal_directories: list[Path] = [self.backup_directory]
        if self.fallback_directory is not None and self.fallback_directory != self.backup_directory:
            self.journal_directories.append(self.fallback_directory)
        self.batch_size = batch_size
        self.fsync_interval = fsync_interval
        self.failed_runs: list[str] = []
        self.written_runs: list[str] = []
        self.lost_runs: list[str] = []
        self.scan_ids = scan_ids
        self._writer_factory = writer_factory
        try:
            self.location_text: str | None = str(catalog_location(catalog))
        except Exception:
            self.location_text = None
        # fetched once, so the per-run TiledWriter does not ask the server again
        self._client = catalog.include_data_sources()
        self._runs: dict[str, _RunCallback] = {}
        self._run_of: dict[str, str] = {}  # descriptor / resource uid -> run uid

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Route a document to its run (documents pass through unchanged, events stay events).

        Raises :class:`CatalogWriteError` when no journal location can store the document: the
        RunEngine then aborts the plan (its exit status becomes ``fail``).
        """
        if name == "start":
            uid = str(doc["uid"])
            try:
                self._runs[uid] = _RunCallback(self, uid, self._start_writer())
                self._runs[uid](name, doc)
            finally:
                if self.scan_ids is not None:
                    self.scan_ids.release()  # the start is stored: others may pick scan ids
            return
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
        """Where the journal of run ``uid`` is now (or, for a closed run, first went)."""
        run = self._runs.get(uid)
        if run is not None and run.journal_path is not None:
            return run.journal_path
        return self.backup_directory / f"{uid}.jsonl"

    def _start_writer(self) -> Callable[[str, dict[str, Any]], None]:
        return self._writer_factory(self._client, batch_size=self.batch_size)


@dataclass
class CatalogSubscription:
    """What :func:`subscribe_writer` returns: the RunEngine token and the writer."""

    run_engine: Any
    token: int
    writer: JournaledWriter
    scan_id: int
    """``RE.md["scan_id"]`` after seeding (the next run gets ``scan_id + 1`` or more)."""
    recovered: list[str] = field(default_factory=list)
    """Runs replayed from the journal directories when subscribing."""
    previous_scan_id_source: Any = None
    """The RunEngine's ``scan_id_source`` before this subscription replaced it."""

    @property
    def backup_directory(self) -> Path:
        """Where journals of unfinished or unwritten runs are kept."""
        return self.writer.backup_directory

    @property
    def fallback_directory(self) -> Path | None:
        """Where journals go when the backup directory cannot take a document."""
        return self.writer.fallback_directory

    def unsubscribe(self) -> None:
        """Stop writing this RunEngine's documents (and restore its scan id source)."""
        self.run_engine.unsubscribe(self.token)
        source = self.writer.scan_ids
        if source is None:
            return
        source.release()
        if getattr(self.run_engine, "scan_id_source", None) is source:
            self.run_engine.scan_id_source = self.previous_scan_id_source


def _probe_directory(directory: Path) -> str | None:
    """``None`` when a file can be created (and removed) in ``directory``, else the reason."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        try:
            os.write(fd, b"probe\n")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as error:
        return f"{directory}: {error.strerror or error}"
    return None


def _check_writable(
    RE: Any, catalog: Any, journal_directories: list[Path], location_text: str
) -> None:
    """Refuse, before any run, a set-up that could only lose documents silently."""
    if getattr(RE, "ignore_callback_exceptions", False):
        raise CatalogWriteError(
            "the RunEngine ignores callback exceptions (RE.ignore_callback_exceptions is "
            "True), so a run whose documents cannot be stored would still end as 'success': "
            "set it to False before subscribing the writer",
            location=location_text,
        )
    location = catalog_location(catalog)
    if location.kind is CatalogKind.EMBEDDED:
        problems = [p for p in [_probe_directory(location.catalog_file.parent)] if p]
        for path in (location.catalog_file, location.tables_file):
            if path.exists() and not os.access(path, os.W_OK):
                problems.append(f"{path}: not writable")
        if problems:
            raise CatalogWriteError(
                "the catalog cannot be written (" + "; ".join(problems) + "): no run would be "
                "stored; open a writable catalog",
                location=location_text,
            )
    journal_problems = [_probe_directory(directory) for directory in journal_directories]
    if all(journal_problems):
        raise CatalogWriteError(
            "no journal location is writable ("
            + "; ".join(p for p in journal_problems if p)
            + "): documents could not be kept safe",
            location=location_text,
        )
    if journal_problems[0]:
        logger.warning(
            "the backup directory is not writable (%s): runs will be journaled in %s",
            journal_problems[0],
            journal_directories[1],
        )


def subscribe_writer(
    RE: Any,  # the Bluesky name for a RunEngine
    catalog: Any,
    *,
    backup_directory: str | Path | None = None,
    fallback_directory: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fsync_interval: float | None = 1.0,
    seed_scan_id: bool = True,
    recover_pending: bool = True,
    writer_factory: Callable[..., Callable[[str, dict[str, Any]], None]] | None = None,
) -> CatalogSubscription:
    """Subscribe a journaled ``TiledWriter`` for ``catalog`` to the RunEngine ``RE``.

    ``backup_directory`` defaults to ``backup/`` beside an embedded catalog, or to a folder per
    server in the user data directory; ``fallback_directory`` (where journals go when that one
    fails) to the catalog's folder in the user state directory (``OPHYD_SERVOMEX_JOURNAL_FALLBACK``
    overrides it). Raises :class:`~ophyd_servomex.catalog.errors.CatalogWriteError` up front
    when the embedded catalog or every journal location cannot be written, or when the
    RunEngine ignores callback exceptions (a failing writer could not stop a run).

    With ``seed_scan_id`` the RunEngine's ``scan_id`` continues from the catalog's highest and
    the RunEngine's ``scan_id_source`` becomes a
    :class:`~ophyd_servomex.catalog.scan_ids.ScanIdSource`: scan ids stay unique across
    processes writing one embedded catalog. With ``recover_pending`` runs left in the journal
    directories by an earlier crash or outage are replayed first (a failure there is logged,
    not raised). ``writer_factory`` is passed to :class:`JournaledWriter`. Returns a
    :class:`CatalogSubscription`; call its ``unsubscribe()`` to stop.
    """
    from .recovery import recover
    from .scan_ids import ScanIdSource
    from .scan_ids import seed_scan_id as seed

    location = catalog_location(catalog)
    directory = (
        Path(backup_directory) if backup_directory is not None else location.backup_directory
    )
    fallback = (
        Path(fallback_directory) if fallback_directory is not None else location.fallback_directory
    )
    directories = [directory] + ([fallback] if fallback != directory else [])
    _check_writable(RE, catalog, directories, str(location))
    recovered: list[str] = []
    if recover_pending:
        try:
            recovered = recover(catalog, directory, fallback_directory=fallback)
        except CatalogError:
            logger.exception("replaying the journal directories %s failed", directories)
    previous = getattr(RE, "scan_id_source", None)
    source: ScanIdSource | None = None
    if seed_scan_id:
        scan_id = seed(RE, catalog)
        source = ScanIdSource(catalog, location, previous)
        RE.scan_id_source = source
    else:
        scan_id = int(RE.md.get("scan_id", 0))
    writer = JournaledWriter(
        catalog,
        directory,
        fallback_directory=fallback,
        batch_size=batch_size,
        fsync_interval=fsync_interval,
        writer_factory=writer_factory,
        scan_ids=source,
    )
    token = RE.subscribe(writer)
    return CatalogSubscription(RE, token, writer, scan_id, recovered, previous)
