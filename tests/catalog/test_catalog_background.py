"""The catalog worker: the RunEngine's callback journals, a background thread writes tiled.

A blocked catalog never blocks the RunEngine (shown with Events, not clocks), the catalog
gets every document in order, the stop and close() wait for it, a dead worker fails the
next callback loudly, and a crash while the catalog lags loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from catalog_helpers import (
    DATA_KEYS,
    channel_value,
    collect_documents,
    connected_analyser,
    counting,
)

from ophyd_servomex.catalog import (
    CatalogError,
    CatalogWriteError,
    JournaledWriter,
    catalog_location,
    close_catalog,
    journal_is_locked,
    open_catalog,
    read_journal,
    recover,
    run_table,
    subscribe_writer,
)
from ophyd_servomex.catalog.lock import FileLock

WAIT = 60.0  # a generous bound for an Event that must come (never reached when correct)
LAGGING = Path(__file__).with_name("catalog_lagging_worker.py")

Doc = tuple[str, dict[str, Any]]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cat = open_catalog(tmp_path_factory.mktemp("background") / "catalog")
    yield cat
    close_catalog(cat)


class _StubCatalog:
    def include_data_sources(self) -> _StubCatalog:
        return self


class Gate:
    """A writer_factory whose writer records documents and blocks (once) on a chosen one,
    until :attr:`release` is set."""

    def __init__(self, block: Callable[[str, dict[str, Any]], bool], inner: Any = None) -> None:
        self.block = block
        self.inner = inner
        self.received: list[Doc] = []
        self.entered = threading.Event()  # the worker is inside the writer, blocked
        self.release = threading.Event()
        self.blocked_once = False

    def __call__(self, client: Any, **kwargs: Any) -> Callable[[str, dict[str, Any]], None]:
        inner = self.inner(client, **kwargs) if self.inner is not None else None

        def write(name: str, doc: dict[str, Any]) -> None:
            if not self.blocked_once and self.block(name, doc):
                self.blocked_once = True
                self.entered.set()
                assert self.release.wait(WAIT), "the test never released the writer"
            self.received.append((name, doc))
            if inner is not None:
                inner(name, doc)

        return write


def _run_docs(uid: str, events: int) -> list[Doc]:
    docs: list[Doc] = [
        ("start", {"uid": uid, "time": 1.0}),
        ("descriptor", {"uid": f"{uid}-d", "run_start": uid, "name": "primary"}),
    ]
    docs += [
        (
            "event",
            {
                "uid": f"{uid}-e{n}",
                "descriptor": f"{uid}-d",
                "seq_num": n,
                "time": 1.0 + n,
                "data": {},
                "timestamps": {},
            },
        )
        for n in range(1, events + 1)
    ]
    docs.append(("stop", {"uid": f"{uid}-s", "run_start": uid, "exit_status": "success"}))
    return docs


# --- the RunEngine is never held up by the catalog ----------------------------------------


def test_callbacks_return_while_the_catalog_writer_is_blocked(tmp_path: Path) -> None:
    gate = Gate(lambda name, doc: name == "event")
    writer = JournaledWriter(_StubCatalog(), tmp_path, writer_factory=gate)
    docs = _run_docs("run-x", 500)
    for name, doc in docs[:-1]:  # all but the stop: each call returns at once
        writer(name, doc)
    assert gate.entered.wait(WAIT)  # the worker is stuck inside the first event ...
    assert not gate.release.is_set()
    assert gate.received == docs[:2]  # ... and has written nothing after it
    # ... yet every document was journaled and every callback has returned
    assert read_journal(tmp_path / "run-x.jsonl") == docs[:-1]
    gate.release.set()
    writer(*docs[-1])  # the stop waits for the catalog
    assert gate.received == docs  # every document, once, in the order emitted
    assert writer.written_runs == ["run-x"]
    assert not (tmp_path / "run-x.jsonl").exists()
    assert writer.close(timeout=WAIT)


def test_a_run_engine_runs_to_its_stop_while_the_catalog_is_blocked(
    catalog: Any, tmp_path: Path
) -> None:
    RE = RunEngine({})
    gate = Gate(lambda name, doc: name == "event", inner=TiledWriter)
    seen_at_stop: dict[str, Any] = {}

    def at_stop(name: str, doc: dict[str, Any]) -> None:
        # subscribed before the writer: runs before the writer's stop waits for the catalog
        if name == "stop":
            seen_at_stop["blocked"] = gate.entered.is_set() and not gate.release.is_set()
            seen_at_stop["catalog_events"] = sum(1 for n, _ in gate.received if n == "event")
            gate.release.set()

    RE.subscribe(at_stop)
    subscription = subscribe_writer(
        RE, catalog, backup_directory=tmp_path / "backup", writer_factory=gate
    )
    emitted: list[Doc] = []
    RE.subscribe(collect_documents(emitted))
    (uid,) = RE(counting(connected_analyser(), 300))

    # every event callback returned while the worker sat blocked on the first event
    assert seen_at_stop == {"blocked": True, "catalog_events": 0}
    assert gate.received == emitted  # then the worker wrote them all, in order
    assert subscription.writer.written_runs == [uid]
    table = run_table(catalog[uid])
    assert table.index.tolist() == list(range(1, 301))
    assert table[DATA_KEYS[3]].tolist() == [channel_value(3, s) for s in range(1, 301)]
    assert subscription.unsubscribe() is True


# --- exact documents -----------------------------------------------------------------------


def test_the_catalog_holds_exactly_the_documents_emitted(catalog: Any, tmp_path: Path) -> None:
    RE = RunEngine({})
    subscription = subscribe_writer(RE, catalog, backup_directory=tmp_path / "backup")
    emitted: list[Doc] = []
    RE.subscribe(collect_documents(emitted))
    analyser = connected_analyser()
    num = 257  # two whole batches of 100 and a partial one written at the stop
    (uid,) = RE(counting(analyser, num))  # no flush: the stop waited for the catalog
    assert subscription.writer.written_runs == [uid]
    assert list((tmp_path / "backup").glob("*.jsonl")) == []

    stored = list(catalog[uid].documents())
    emitted_events = [doc for name, doc in emitted if name == "event"]
    rows: list[tuple[int, float, dict[str, float]]] = []
    for name, doc in stored:
        if name == "event":
            rows.append((doc["seq_num"], doc["time"], doc["data"]))
        elif name == "event_page":
            for i, seq in enumerate(doc["seq_num"]):
                data = {key: values[i] for key, values in doc["data"].items()}
                rows.append((seq, doc["time"][i], data))
    assert [seq for seq, _, _ in rows] == list(range(1, num + 1))  # every row, in order
    assert [t for _, t, _ in rows] == [doc["time"] for doc in emitted_events]
    assert [data for _, _, data in rows] == [doc["data"] for doc in emitted_events]
    names = [name for name, _ in stored]
    assert (names[0], names[-1], names.count("descriptor")) == ("start", "stop", 1)
    sent = {name: doc for name, doc in emitted if name in ("start", "stop")}
    got = {name: doc for name, doc in stored if name in ("start", "stop")}
    assert got["start"]["uid"] == sent["start"]["uid"] == uid
    assert got["start"]["scan_id"] == sent["start"]["scan_id"]
    assert got["stop"]["exit_status"] == sent["stop"]["exit_status"] == "success"
    assert got["stop"]["num_events"] == {"primary": num}
    assert subscription.unsubscribe() is True


# --- the scan-id lock ----------------------------------------------------------------------


def test_the_scan_id_lock_is_held_until_the_start_is_in_the_catalog(
    catalog: Any, tmp_path: Path
) -> None:
    RE = RunEngine({})
    gate = Gate(lambda name, doc: name == "start", inner=TiledWriter)
    lock_file = catalog_location(catalog).lock_file
    held: list[bool] = []

    def lock_is_held() -> bool:
        other = FileLock(lock_file, timeout=0)
        try:
            other.acquire()
        except CatalogError:
            return True
        other.release()
        return False

    def probe(name: str, doc: dict[str, Any]) -> None:
        # after the writer: the start is journaled, its catalog write blocked
        if name == "descriptor":
            assert gate.entered.wait(WAIT)
            held.append(lock_is_held())
            gate.release.set()

    subscription = subscribe_writer(
        RE, catalog, backup_directory=tmp_path / "backup", writer_factory=gate
    )
    RE.subscribe(probe)
    (uid,) = RE(counting(connected_analyser(), 3))
    assert held == [True]  # another process could not pick a scan id meanwhile
    assert not lock_is_held()  # released once the start was stored
    assert catalog[uid].metadata["start"]["scan_id"] == RE.md["scan_id"]
    subscription.unsubscribe()


# --- close and unsubscribe flush -----------------------------------------------------------


def test_close_waits_for_every_queued_document(tmp_path: Path) -> None:
    gate = Gate(lambda name, doc: name == "event")
    writer = JournaledWriter(_StubCatalog(), tmp_path, writer_factory=gate)
    docs = _run_docs("run-open", 200)[:-1]  # a run still open
    for name, doc in docs:
        writer(name, doc)
    assert gate.entered.wait(WAIT)
    assert gate.received == docs[:2]
    gate.release.set()
    assert writer.close(timeout=WAIT) is True
    assert gate.received == docs  # close returned only once the writer had them all
    assert writer.backlog == 0
    assert journal_is_locked(tmp_path / "run-open.jsonl")  # the run is still open


def test_unsubscribe_flushes_and_ends_the_worker(catalog: Any, tmp_path: Path) -> None:
    RE = RunEngine({})
    subscription = subscribe_writer(RE, catalog, backup_directory=tmp_path / "backup")
    (uid,) = RE(counting(connected_analyser(), 5))
    assert subscription.unsubscribe() is True
    workers = [t for t in threading.enumerate() if t.name == "ophyd-servomex-catalog-writer"]
    assert subscription.writer._worker.alive is False
    assert all(t is not subscription.writer._worker._thread for t in workers)
    assert len(run_table(catalog[uid])) == 5


# --- a dead worker -------------------------------------------------------------------------


def test_a_dead_worker_fails_the_next_callback_and_keeps_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    died = threading.Event()

    def dying(client: Any, **kwargs: Any) -> Callable[[str, dict[str, Any]], None]:
        def write(name: str, doc: dict[str, Any]) -> None:
            if name == "event" and doc["seq_num"] == 3:
                died.set()
                raise SystemExit("the worker is gone")  # not an Exception: kills the thread

        return write

    writer = JournaledWriter(_StubCatalog(), tmp_path, writer_factory=dying)
    docs = _run_docs("run-d", 10)
    for name, doc in docs[:6]:
        writer(name, doc)
    assert died.wait(WAIT)
    writer.flush(timeout=WAIT)  # the death is recorded before the flush marker is handled
    with pytest.raises(CatalogWriteError, match="catalog writer thread died"):
        writer(*docs[6])
    assert "the catalog worker died" in caplog.text
    assert writer.failed_runs == ["run-d"]
    for name, doc in docs[6:]:  # the RunEngine's stop after the abort: raised only once
        writer(name, doc)
    assert read_journal(tmp_path / "run-d.jsonl") == docs  # the journal keeps the whole run
    assert writer.written_runs == []
    assert writer.close(timeout=WAIT)


# --- a crash while the catalog lags --------------------------------------------------------


@pytest.mark.timeout(600)  # a child process that creates a catalog: slow on a loaded machine
def test_kill_9_while_the_catalog_lags_then_recover_finds_every_event(tmp_path: Path) -> None:
    location = tmp_path / "catalog"
    num, stuck_at = 120, 15
    process = subprocess.Popen(
        [sys.executable, str(LAGGING), str(location), str(num), str(stuck_at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=LAGGING.parent,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # every event journaled and the worker stuck (either first)
            lines.append(line.strip())
            if "ALL" in lines and "STUCK" in lines:
                break
        os.kill(process.pid, signal.SIGKILL)  # the stop is waiting for the stuck catalog
        process.wait(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "STUCK" in lines
    assert [int(line.split()[1]) for line in lines if line.startswith("EVENT")] == list(
        range(1, num + 1)
    )
    catalog = open_catalog(location)
    try:
        (journal,) = (location / "backup").glob("*.jsonl")
        uid = journal.stem
        # the catalog has at most the batch before the stuck event, the journal all of it
        assert len(run_table(catalog[uid])) < stuck_at
        assert [d["seq_num"] for n, d in read_journal(journal) if n == "event"] == list(
            range(1, num + 1)
        )
        assert recover(catalog) == [uid]
        table = run_table(catalog[uid])
        assert table.index.tolist() == list(range(1, num + 1))
        assert table[DATA_KEYS[0]].tolist() == [channel_value(0, s) for s in range(1, num + 1)]
        assert catalog[uid].metadata["stop"]["exit_status"] == "fail"  # synthesized
    finally:
        close_catalog(catalog)


def test_a_failed_journal_fsync_moves_the_journal_to_the_fallback(tmp_path: Path) -> None:
    def refusing(client: Any, **kwargs: Any) -> Callable[[str, dict[str, Any]], None]:
        def write(name: str, doc: dict[str, Any]) -> None:
            raise OSError(28, "No space left on device")  # the catalog is gone too

        return write

    backup, fallback = tmp_path / "backup", tmp_path / "fallback"
    writer = JournaledWriter(
        _StubCatalog(), backup, fallback_directory=fallback, writer_factory=refusing
    )
    docs = _run_docs("run-f", 4)
    for name, doc in docs[:3]:
        writer(name, doc)
    # what the journal syncer records when the disk refuses an fsync
    writer._runs["run-f"]._sync_error = OSError(5, "Input/output error")
    for name, doc in docs[3:]:
        writer(name, doc)
    assert list(backup.glob("*.jsonl")) == []  # the copy that may not be durable is gone
    assert read_journal(fallback / "run-f.jsonl") == docs  # every document, once, in order
    assert writer.failed_runs == ["run-f"]
    assert writer.close(timeout=WAIT)


def test_a_start_the_catalog_refuses_is_logged_without_event_models_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import warnings

    class Refusing:
        def include_data_sources(self) -> Refusing:
            return self

        def create_container(self, **kwargs: Any) -> None:
            raise RuntimeError("the catalog refused the run")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer = JournaledWriter(Refusing(), tmp_path)  # the real TiledWriter
        docs = _run_docs("run-r", 2)
        for name, doc in docs:
            writer(name, doc)
        assert writer.close(timeout=WAIT)
    assert [str(w.message) for w in caught if "RunRouter" in str(w.message)] == []
    assert writer.failed_runs == ["run-r"]
    assert "the catalog refused the run" in caplog.text
    assert read_journal(tmp_path / "run-r.jsonl") == docs


# --- whoever waits for the catalog does not wait for the worker's pause -------------------


def test_a_stop_and_a_flush_cut_the_workers_pause_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a pause far longer than WAIT, a run's stop and a flush still return: the stop
    (and the flush marker) wake the worker instead of waiting out its pause."""
    import ophyd_servomex.catalog.writer as writer_module

    monkeypatch.setattr(writer_module, "_DRAIN_PAUSE", 10 * WAIT)
    gate = Gate(lambda name, doc: False)
    writer = JournaledWriter(_StubCatalog(), tmp_path, writer_factory=gate, stop_timeout=3 * WAIT)
    docs = _run_docs("run-paused", 3)
    done = threading.Event()

    def emit() -> None:
        for name, doc in docs:
            writer(name, doc)  # the stop returns once the worker has stored the run
        done.set()

    threading.Thread(target=emit, daemon=True).start()
    assert done.wait(WAIT), "the stop waited out the worker's pause"
    assert gate.received == docs
    assert writer.written_runs == ["run-paused"]
    writer("start", {"uid": "run-open", "time": 1.0})
    assert writer.flush(timeout=WAIT) is True
    assert gate.received[-1] == ("start", {"uid": "run-open", "time": 1.0})
    assert writer.close(timeout=WAIT) is True
