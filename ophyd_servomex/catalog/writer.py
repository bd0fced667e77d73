"""Write a RunEngine's documents into a catalog without stalling the run or losing a document.

:func:`subscribe_writer` subscribes a :class:`JournaledWriter` to the RunEngine. In the
RunEngine's callback every document is appended to its run's write-ahead journal
(``<backup_directory>/<uid>.jsonl``, see :mod:`~ophyd_servomex.catalog.journal`): that
synchronous append is the durability point. One router, ``event_model.RunRouter``, sends each
document to its run: the run's journal and, through the queue of a background daemon thread
(the *catalog worker*), the run's catalog writer (by default ``TiledWriter``'s own per-run
writer, see :func:`~ophyd_servomex.catalog.normalizer.tiled_run_writer`, which writes events
in batches of ``batch_size``). The worker takes the documents in the order they were emitted,
in runs: woken by a document, it sleeps 50 ms and then takes everything queued meanwhile, so
it does not take the interpreter lock from the RunEngine's thread at every callback. A slow
append to the catalog therefore never holds up the RunEngine:

- the run reaches the catalog: the run's stop waits (at most ``stop_timeout`` s, logged)
  for the worker to store its last documents, then its journal is deleted;
- the catalog fails (a dead server, a full disk): the error is logged, the run goes on, and
  the journal stays as the run's backup;
- the catalog is slower than ``stop_timeout``: the stop logs it and returns; the worker
  finishes the run later and only then deletes the journal (it stays locked until then);
- the journal's disk fails (full, read-only): the journal moves, with the documents it already
  holds, to the *fallback directory* (another filesystem: the user state directory by
  default) and the run goes on;
- no journal location can take a document: the callback raises
  :class:`~ophyd_servomex.catalog.errors.CatalogWriteError`, the RunEngine aborts the plan and
  the run's exit status is ``fail`` — never a silent loss;
- the catalog worker itself dies: the next callback raises
  :class:`~ophyd_servomex.catalog.errors.CatalogWriteError` (the journals keep every run);
- the process dies (``kill -9``): every document emitted before the death is in the journal
  (written per document), whatever the worker had or had not written yet; a power cut can
  take the documents of the last ``fsync_interval`` s (the journal is ``fsync``-ed that often).

:func:`~ophyd_servomex.catalog.recovery.recover` replays what both directories hold.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
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

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_STOP_TIMEOUT",
    "CatalogSubscription",
    "JournaledWriter",
    "subscribe_writer",
]

DEFAULT_BATCH_SIZE = 1000
"""Events per table append. Each append of an embedded catalog costs ~25–50 ms of CPU whatever
its size (an HTTP request through the tiled app, a table write), and the catalog worker
shares the RunEngine's interpreter: 1 000 needs about half the catalog's CPU per event that
100 did. Readers of a live run see it grow every 1 000 events and at its stop; 1 shows every
event at once but caps the catalog near 25 events/s. The journal, not the batch, bounds what
a crash can lose."""

DEFAULT_STOP_TIMEOUT = 60.0
"""Seconds a run's stop waits for the catalog worker to store the run before it gives up
waiting (the worker goes on; the journal stays until the run is stored)."""

BACKLOG_WARNING = 50_000
"""Documents waiting for the catalog worker above which a warning is logged (they are all in
the journal already; the backlog only costs memory)."""

_SLOW_STOP_LOG = 2.0  # seconds of waiting at a stop before it is logged
_IDLE_EXIT = 5.0  # seconds without documents after which the catalog worker thread ends
_DRAIN_PAUSE = 0.05
"""Seconds the catalog worker sleeps, once it has woken, before it takes what has queued up
meanwhile. Woken per document, it would take the interpreter lock from the RunEngine's thread
at every callback (two thread switches each time: a fast run into the catalog went from
0.87x to 0.69x of a list without the pause); this way it wakes at most 20 times a second
and takes the documents in runs. A stop, a flush or the end marker cuts the pause short:
whoever waits for the catalog does not also wait for the pause."""

logger = redacting_logger(__name__)


class _Unfilled:
    """The router's per-run "filler": nothing is filled (the catalog stores references)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _same(self, doc: dict[str, Any]) -> dict[str, Any]:
        return doc

    descriptor = event_page = datum_page = resource = stream_resource = stream_datum = _same


class _RunCallback:
    """One run's path (made by the router at its start): journal first (moving to the next
    location when one fails), then the catalog worker's queue, which hands the documents to
    the run's own catalog writer."""

    def __init__(self, owner: JournaledWriter, uid: str) -> None:
        self._owner = owner
        self.uid = uid
        self.failed = False  # the catalog refused a document: the rest is not sent
        self.catalog: Callable[[str, dict[str, Any]], None] | None = None  # worker side
        self._lost = False
        self._journal: RunJournal | None = None
        self._place = 0  # index into owner.journal_directories
        self._left_behind: list[RunJournal] = []  # partial copies that could not be removed
        self._sync_error: OSError | None = None  # the journal syncer's failed fsync
        # the worker sets `stored` once it has handled the stop; `handed_off` says the stop
        # stopped waiting, so the worker closes the journal itself
        self._finish_guard = threading.Lock()
        self.stored = threading.Event()
        self._handed_off = False

    @property
    def journal_path(self) -> Path | None:
        """Where the run is journaled now (``None`` once no location could take it)."""
        return self._journal.path if self._journal is not None else None

    def __call__(self, routed_name: str, routed_doc: dict[str, Any]) -> None:
        # the router repacks an event (a datum) into a one-event page before it hands it on:
        # the journal and the catalog get the document as the RunEngine emitted it
        name, doc = self._owner._emitted
        if name == "stop":
            try:
                self._take(name, doc)
            finally:
                self._owner._runs.pop(self.uid, None)
            if not self._lost:
                self._await_catalog()
            return
        self._take(name, doc)

    def _take(self, name: str, doc: dict[str, Any]) -> None:
        if self._lost:
            self._owner._enqueue(self, name, doc)  # best effort: the catalog may still take it
            if name == "stop":
                logger.error(
                    "run %s ended (%s) with documents that no journal location could keep",
                    self.uid,
                    doc.get("exit_status"),
                )
            return
        try:
            self._to_journal(name, doc)
        except CatalogWriteError:
            self._lost = True
            self._owner.lost_runs.append(self.uid)
            self._owner._enqueue(self, name, doc)
            raise
        self._owner._enqueue(self, name, doc)

    # --- the journal ---------------------------------------------------------------------

    def _to_journal(self, name: str, doc: dict[str, Any]) -> None:
        if self._journal is None:
            self._open_journal(carried=[])
        assert self._journal is not None
        error, self._sync_error = self._sync_error, None
        if error is not None:  # the disk refused an fsync: this copy may not be durable
            self._move_journal(error, pending=None)
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
            path = directories[self._place] / f"{self.uid}.jsonl"
            journal: RunJournal | None = None
            try:
                # no fsync in the callback: the writer's journal syncer does it
                journal = RunJournal(path, fsync_interval=None)
                for name, doc in carried:
                    journal.append(name, doc)
                if carried:
                    journal.sync()
            except OSError as error:
                problems.append(f"{path.parent}: {error}")
                logger.error("run %s: the journal location %s failed: %s", self.uid, path, error)
                if journal is not None:
                    journal.abandon(remove=True)
                self._place += 1
                continue
            self._journal = journal
            if self._place > 0:
                logger.warning(
                    "run %s: journaling to the fallback location %s", self.uid, journal.path
                )
            return
        raise CatalogWriteError(
            f"run {self.uid}: no journal location can store its documents, so the run is "
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
            self.uid,
            failed.path,
            error,
        )
        try:
            carried = failed.documents()
        except OSError as read_error:
            raise CatalogWriteError(
                f"run {self.uid}: the journal {failed.path} failed ({error}) and cannot be "
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

    def sync_journal(self) -> None:
        """``fsync`` the journal (on the syncer thread, through a descriptor of its own, so
        the RunEngine's appends never wait for the disk); a failure moves the journal at the
        next append."""
        journal = self._journal
        if journal is None or journal.closed:
            return
        try:
            fd = os.open(journal.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # removed (the run is in the catalog) or moved meanwhile
            return
        except OSError as error:
            self._sync_error = error
            return
        try:
            os.fsync(fd)
        except OSError as error:
            if not journal.closed and journal is self._journal:
                logger.error(
                    "run %s: fsync of the journal %s failed: %s", self.uid, journal.path, error
                )
                self._sync_error = error
        finally:
            os.close(fd)

    # --- the end of the run --------------------------------------------------------------

    def _await_catalog(self) -> None:
        """At the stop (RunEngine side): wait, bounded, for the worker to store the run, then
        close the journal (deleted when the catalog has the whole run)."""
        timeout = self._owner.stop_timeout
        deadline = time.monotonic() + timeout
        logged = False
        while not self.stored.wait(min(0.05, timeout)):
            now = time.monotonic()
            if self._owner._worker.dead:  # it died: the journal is the only copy
                if not self.failed:
                    self.failed = True
                    self._owner.failed_runs.append(self.uid)
                break
            if now >= deadline:
                break
            if not logged and now >= deadline - timeout + _SLOW_STOP_LOG:
                logged = True
                logger.info(
                    "run %s: waiting up to %g s for the catalog to store its last %d queued "
                    "documents",
                    self.uid,
                    timeout,
                    self._owner.backlog,
                )
        with self._finish_guard:
            hand_off = self._handed_off = not self.stored.is_set() and not self.failed
        if hand_off:
            logger.error(
                "run %s: the catalog has not stored the run within %g s; the run ends now and "
                "the catalog worker finishes it in the background (its journal %s stays until "
                "then, and recover() replays it if this process stops first)",
                self.uid,
                timeout,
                self.journal_path,
            )
            return
        self.finish()

    def stored_by_worker(self) -> None:
        """Worker side, once the stop has been handled: wake the stop, or finish the run
        when the stop has stopped waiting."""
        with self._finish_guard:
            self.stored.set()
            handed_off = self._handed_off
        if handed_off:
            try:
                self.finish()
            except Exception:
                logger.exception("run %s: closing its journal failed", self.uid)
            else:
                logger.info("run %s: stored in the catalog after its stop", self.uid)

    def finish(self) -> None:
        """Close the journal: deleted when the catalog has the run, kept (synced) when not."""
        journal = self._journal
        if journal is None:
            return
        if self.failed:
            try:
                journal.close(remove=False)
            except OSError as error:  # the final fsync failed: move it once more
                self._journal = journal
                self._move_journal(error, pending=None)
                assert self._journal is not None
                self._journal.close(remove=False)
            return
        self._owner.written_runs.append(self.uid)
        journal.close(remove=True)
        for left in self._left_behind:
            left.path.unlink(missing_ok=True)


_Item = tuple[_RunCallback, str, dict[str, Any]] | threading.Event | None
_NOTHING = object()  # the queue was empty


class _CatalogWorker:
    """The daemon thread that hands journaled documents, in order, to the catalog writer.

    ``None`` on the queue stops it; a ``threading.Event`` is set once everything queued
    before it has been handled (a flush).
    """

    def __init__(self, owner: JournaledWriter) -> None:
        self._owner = owner
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_guard = threading.Lock()
        self.error: BaseException | None = None
        """What killed the worker (never a catalog error: those fail only their run)."""
        self._died = False  # the current thread died (reset when a new one starts)
        self._warned_backlog = False
        self._awaited = threading.Event()  # someone waits for what is queued: no pause

    @property
    def backlog(self) -> int:
        """Documents queued and not yet handled (approximately)."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def dead(self) -> bool:
        """True when the thread died of an error (and has not been started again)."""
        return self._died and not self.alive

    def put(self, item: _Item) -> None:
        """Queue ``item``; the thread starts when there is work (it ends after
        ``_IDLE_EXIT`` s without any, so a writer nobody closes leaves no thread behind)."""
        with self._start_guard:
            if self._thread is None or not self._thread.is_alive():
                self._died = False
                self._thread = threading.Thread(
                    target=self._run, name="ophyd-servomex-catalog-writer", daemon=True
                )
                self._thread.start()
            self._queue.put(item)
        if item is None or isinstance(item, threading.Event) or item[1] == "stop":
            self._awaited.set()
        size = self._queue.qsize()
        if size > BACKLOG_WARNING and not self._warned_backlog:
            self._warned_backlog = True
            logger.warning(
                "the catalog is %d documents behind the RunEngine (they are journaled; "
                "they wait in memory for the catalog)",
                size,
            )
        elif size < BACKLOG_WARNING // 2:
            self._warned_backlog = False

    def _next(self) -> object:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return _NOTHING

    def _handle(self, item: object) -> bool:
        """Handle one queue item; False for the end marker."""
        if item is None:
            return False
        if isinstance(item, threading.Event):
            item.set()
        elif isinstance(item, tuple):
            run, name, doc = item
            self._owner._write(run, name, doc)
        return True

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything queued so far is handled; False on timeout or a dead worker."""
        if not self.alive and self._queue.empty():
            return True
        done = threading.Event()
        self.put(done)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.05):
            if self.dead:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def stop(self, timeout: float | None) -> bool:
        """Flush, then end the thread; False when it did not end within ``timeout``."""
        flushed = self.flush(timeout)
        with self._start_guard:
            thread = self._thread
            if thread is None or not thread.is_alive():
                return flushed
            self._queue.put(None)
            self._awaited.set()
        thread.join(timeout if flushed else 0.1)
        return flushed and not thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                try:
                    item: object = self._queue.get(timeout=_IDLE_EXIT)
                except queue.Empty:
                    with self._start_guard:  # put() cannot queue while the thread exits
                        if self._queue.empty():
                            self._thread = None
                            return
                    continue
                # then in runs: take what is queued; when nothing is, pause (the RunEngine's
                # thread keeps the interpreter) and take again, until a pause brings nothing
                while item is not _NOTHING:
                    if not self._handle(item):
                        return
                    item = self._next()
                    if item is _NOTHING:
                        if self._awaited.wait(_DRAIN_PAUSE):
                            self._awaited.clear()  # before taking: a later stop sets it again
                        item = self._next()
        except BaseException as error:
            logger.critical(  # before the error is visible: the RunEngine side reports it next
                "the catalog worker died (%s: %s): the documents still queued reach the catalog "
                "only if a new worker starts; the journals keep every run (recover() replays "
                "them)",
                type(error).__name__,
                error,
                exc_info=True,
            )
            with self._start_guard:
                self.error = error
                self._died = True
                self._thread = None


class _JournalSyncer:
    """A daemon thread that ``fsync``s every open journal each ``interval`` s, apart from the
    RunEngine's thread (an ``fsync`` can take tens of milliseconds on a busy disk) and from the
    catalog worker (a hung catalog must not stop the syncs). It ends when no run is open."""

    def __init__(self, owner: JournaledWriter, interval: float) -> None:
        self._owner = owner
        self.interval = interval
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def ensure_running(self) -> None:
        """Start the thread unless it runs (called as a run starts)."""
        with self._guard:
            if self._thread is None or not self._thread.is_alive():
                self._wake.clear()
                self._thread = threading.Thread(
                    target=self._run, name="ophyd-servomex-journal-sync", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """End the thread after one last round of syncs."""
        with self._guard:
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            stopping = self._wake.wait(self.interval)
            for run in list(self._owner._runs.values()):
                try:
                    run.sync_journal()
                except Exception:
                    logger.exception("run %s: syncing its journal failed", run.uid)
            with self._guard:
                if stopping or not self._owner._runs:
                    self._thread = None
                    return


class JournaledWriter:
    """A RunEngine callback: journal every document, then write it to the catalog from a
    background thread, in order.

    One ``event_model.RunRouter`` sends each document to its run. ``writer_factory(client,
    batch_size=...)`` makes a run's catalog writer, on the worker thread as the run starts,
    and gets that run's documents in order (by default
    :func:`~ophyd_servomex.catalog.normalizer.tiled_run_writer`: ``TiledWriter``'s per-run
    writer; pass e.g. ``functools.partial(tiled_run_writer, normalizer=None)`` to skip
    normalizing). The journal and the writer get the documents as the RunEngine emitted
    them. Journals go to ``backup_directory`` and, when that cannot
    take a document, to ``fallback_directory``. A run's stop waits at
    most ``stop_timeout`` s for the catalog to store the run.

    ``failed_runs`` lists the uids whose documents stayed in a journal (the catalog failed);
    ``written_runs`` those that reached the catalog completely; ``lost_runs`` those stopped
    because no journal location could take a document (a :class:`CatalogWriteError` was
    raised into the RunEngine). Call :meth:`close` (or the subscription's ``unsubscribe``)
    to flush the catalog and end the worker thread.
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
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        if writer_factory is None:
            from .normalizer import tiled_run_writer

            writer_factory = tiled_run_writer
        from event_model import RunRouter, UnresolvableForeignKeyError

        self.backup_directory = Path(backup_directory)
        self.fallback_directory = (
            Path(fallback_directory) if fallback_directory is not None else None
        )
        self.journal_directories: list[Path] = [self.backup_directory]
        if self.fallback_directory is not None and self.fallback_directory != self.backup_directory:
            self.journal_directories.append(self.fallback_directory)
        self.batch_size = batch_size
        self.fsync_interval = fsync_interval
        self.stop_timeout = stop_timeout
        self.failed_runs: list[str] = []
        self.written_runs: list[str] = []
        self.lost_runs: list[str] = []
        self.scan_ids = scan_ids
        try:
            self.location_text: str | None = str(catalog_location(catalog))
        except Exception:
            self.location_text = None
        # fetched once, so the writers do not ask the server again
        self._client = catalog.include_data_sources()
        self._writer_factory = writer_factory
        self._runs: dict[str, _RunCallback] = {}  # the open runs
        self._emitted: Document = ("", {})  # the document being routed (RunEngine thread)
        self._router = RunRouter(
            [self._open_run],
            filler_class=_Unfilled,  # type: ignore[arg-type]  # any DocumentRouter-like
        )
        # what the router raises for a document that refers to no open run
        self._unrouted: tuple[type[Exception], ...] = (KeyError, UnresolvableForeignKeyError)
        # event-model blames a start that could not be journaled (or that a writer refused)
        # on an outdated factory: a misleading warning (the failure itself is raised or
        # logged). A process-wide filter: catch_warnings is not thread-safe.
        warnings.filterwarnings(
            "ignore", message=r".*when RunRouter passed it a 'start' document", category=UserWarning
        )
        self._worker = _CatalogWorker(self)
        self._syncer = _JournalSyncer(self, fsync_interval) if fsync_interval is not None else None
        self._scan_lock_guard = threading.Lock()
        self._scan_lock_run: str | None = None  # the run whose start holds the scan-id lock
        self._reported_death: BaseException | None = None

    @property
    def backlog(self) -> int:
        """Documents journaled but not yet handed to the catalog."""
        return self._worker.backlog

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Journal a document and queue it for the catalog (documents pass unchanged).

        Raises :class:`CatalogWriteError` when no journal location can store the document,
        or once when the catalog worker has died: the RunEngine then aborts the plan (its
        exit status becomes ``fail``).
        """
        self._check_worker()
        self._emitted = (name, doc)  # what the run's callback takes, whatever the router passes
        if name == "start":
            try:
                self._router(name, doc)
            except BaseException:
                self._runs.pop(str(doc["uid"]), None)
                self._release_scan_ids(str(doc["uid"]))  # never stored: others may pick ids
                raise
            return
        try:
            self._router(name, doc)
        except self._unrouted as error:
            logger.warning(
                "a %r document belongs to no open run (the router found no %s): not written",
                name,
                error,
            )

    def _open_run(self, name: str, start: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        """The router's factory: a run starts (its callback then gets the start)."""
        uid = str(start["uid"])
        run = self._runs[uid] = _RunCallback(self, uid)
        if self._syncer is not None:
            self._syncer.ensure_running()
        with self._scan_lock_guard:
            self._scan_lock_run = uid  # released by the worker once the start is stored
        return [run], []

    def journal_path(self, uid: str) -> Path:
        """Where the journal of run ``uid`` is now (or, for a closed run, first went)."""
        run = self._runs.get(uid)
        if run is not None and run.journal_path is not None:
            return run.journal_path
        return self.backup_directory / f"{uid}.jsonl"

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the catalog writer has been handed every document received so far
        (a batch still open inside it is written at its run's stop); False on timeout."""
        return self._worker.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush and end the worker thread (it starts again if documents come); returns
        False, with an error logged, when it did not finish within ``timeout`` s."""
        if timeout is None:
            timeout = self.stop_timeout
        if self._syncer is not None:
            self._syncer.stop()
        done = self._worker.stop(timeout)
        if not done:
            logger.error(
                "the catalog worker did not finish within %g s (%d documents queued); the "
                "journals keep what it has not written (recover() replays them)",
                timeout,
                self._worker.backlog,
            )
        return done

    # --- the RunEngine side --------------------------------------------------------------

    def _enqueue(self, run: _RunCallback, name: str, doc: dict[str, Any]) -> None:
        self._worker.put((run, name, doc))

    def _check_worker(self) -> None:
        error = self._worker.error
        if error is None or error is self._reported_death:
            return
        self._reported_death = error
        for run in self._runs.values():  # keep every open run's journal
            if not run.failed:
                run.failed = True
                self.failed_runs.append(run.uid)
        raise CatalogWriteError(
            f"the catalog writer thread died ({type(error).__name__}: {error}); no document "
            "reaches the catalog any more and the journals are the only copy of the runs "
            "since (recover() replays them)",
            location=self.location_text,
        ) from error

    def _release_scan_ids(self, uid: str) -> None:
        with self._scan_lock_guard:
            if self._scan_lock_run != uid:
                return
            self._scan_lock_run = None
        if self.scan_ids is not None:
            self.scan_ids.release()

    # --- the worker side -----------------------------------------------------------------

    def _write(self, run: _RunCallback, name: str, doc: dict[str, Any]) -> None:
        """Hand one document to the run's catalog writer (on the worker thread; the start
        makes the writer)."""
        try:
            if not run.failed:
                try:
                    if run.catalog is None:
                        run.catalog = self._writer_factory(self._client, batch_size=self.batch_size)
                    run.catalog(name, doc)
                except Exception as error:
                    self._catalog_failed(run, name, error)
        finally:
            if name == "start":
                self._release_scan_ids(run.uid)
            elif name == "stop":
                run.stored_by_worker()

    def _catalog_failed(self, run: _RunCallback, name: str, error: Exception) -> None:
        run.failed = True
        self.failed_runs.append(run.uid)
        where = run.journal_path or "nowhere (no journal location could take it)"
        logger.error(
            "run %s: writing a %r document to the catalog failed (%s: %s); the run goes on "
            "and its documents are kept in %s (replay them with recover())",
            run.uid,
            name,
            type(error).__name__,
            error,
            where,
        )


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

    def unsubscribe(self, timeout: float | None = None) -> bool:
        """Stop writing this RunEngine's documents: wait (at most ``timeout`` s, by default
        the writer's ``stop_timeout``) for the catalog worker to write what it holds, end it,
        and restore the RunEngine's scan id source. False when the worker did not finish in
        time (logged; the journals keep what it had not written)."""
        self.run_engine.unsubscribe(self.token)
        done = self.writer.close(timeout)
        self._restore_scan_ids()
        return done

    def _restore_scan_ids(self) -> None:
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
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
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
    not raised). ``writer_factory`` and ``stop_timeout`` (how long a run's stop waits for the
    catalog) are passed to :class:`JournaledWriter`. Returns a
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
        stop_timeout=stop_timeout,
    )
    token = RE.subscribe(writer)
    return CatalogSubscription(RE, token, writer, scan_id, recovered, previous)
