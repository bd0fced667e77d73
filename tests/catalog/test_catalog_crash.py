"""Nothing emitted is lost: kill -9 mid-run, or a catalog that fails mid-run, then recover()."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from catalog_helpers import DATA_KEYS, channel_value, connected_analyser, counting

from ophyd_servomex.catalog import (
    CatalogRecoveryError,
    close_catalog,
    journal_is_locked,
    open_catalog,
    read_journal,
    recover,
    run_summary,
    run_table,
    subscribe_writer,
)
from ophyd_servomex.catalog.recovery import RECOVERED_REASON

WORKER = Path(__file__).with_name("catalog_worker.py")
DELAY = 0.02  # 50 events/s
KILL_AFTER_SEQ = 150  # one 100-event batch is in the catalog, 50 only in the journal
STARTUP_TIMEOUT = 90.0


class LineReader:
    """Lines of a child's stdout with the time each arrived, read on a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self.lines.put((time.time(), line.rstrip("\n")))

        threading.Thread(target=pump, daemon=True).start()

    def next(self, deadline: float) -> str:
        try:
            return self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))[1]
        except queue.Empty:
            raise AssertionError("the worker went quiet") from None


def test_kill_9_mid_run_loses_no_emitted_event(tmp_path: Path) -> None:
    location = tmp_path / "catalog"
    process = subprocess.Popen(
        [sys.executable, str(WORKER), "count", str(location), "100000", str(DELAY)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=WORKER.parent,
    )
    printed: dict[int, float] = {}
    try:
        reader = LineReader(process)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            line = reader.next(deadline)
            if line.startswith("EVENT"):
                _, seq, stamp = line.split()
                printed[int(seq)] = float(stamp)
                if int(seq) >= KILL_AFTER_SEQ:
                    break
        kill_time = time.time()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL

    (journal,) = (location / "backup").glob("*.jsonl")
    assert not journal_is_locked(journal)  # the lock died with the process
    uid = journal.stem
    journaled = read_journal(journal)
    assert journaled[0][0] == "start"
    assert "stop" not in [name for name, _ in journaled]

    catalog = open_catalog(location)
    try:
        partial = catalog[uid]
        assert "stop" not in partial.metadata or not partial.metadata["stop"]
        written = len(run_table(partial))  # the whole batches written before the kill
        assert written >= 100
        assert written % 100 == 0

        assert recover(catalog) == [uid]
        assert list((location / "backup").glob("*.jsonl")) == []

        run = catalog[uid]
        table = run_table(run, epoch_time=True)
        seqs = table.index.tolist()
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
        # every event printed (so emitted) before the kill is there, let alone those >1 s old
        old = [seq for seq, stamp in printed.items() if stamp < kill_time - 1.0]
        assert old
        assert set(old) <= set(seqs)
        assert set(printed) <= set(seqs)
        for index, key in enumerate(DATA_KEYS):
            assert table[key].tolist() == [channel_value(index, seq) for seq in seqs]
        assert table["time"].tolist()[: len(printed)] == [printed[s] for s in sorted(printed)]

        stop = run.metadata["stop"]
        assert stop["exit_status"] == "fail"
        assert stop["reason"] == RECOVERED_REASON
        assert stop["num_events"] == {"primary": len(seqs)}
        assert run_summary(run)["num_events"] == {"primary": len(seqs)}
        # a second pass has nothing left to do
        assert recover(catalog) == []
    finally:
        close_catalog(catalog)


# --- the catalog fails while the run goes on ----------------------------------------------


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cat = open_catalog(tmp_path_factory.mktemp("failing") / "catalog")
    yield cat
    close_catalog(cat)


class FailingWriter:
    """A TiledWriter that breaks (as a dying server would) at the ``fail_at``-th event."""

    fail_at = 50

    def __init__(self, client: Any, **kwargs: Any) -> None:
        self.inner = TiledWriter(client, **kwargs)
        self.events = 0

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "event":
            self.events += 1
            if self.events >= self.fail_at:
                raise RuntimeError("the catalog went away")
        self.inner(name, doc)


def test_a_failing_catalog_keeps_the_run_in_the_backup_directory(
    catalog: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    RE = RunEngine({})
    backup = tmp_path / "backup"
    subscription = subscribe_writer(
        RE, catalog, backup_directory=backup, batch_size=10, writer_factory=FailingWriter
    )
    analyser = connected_analyser()
    (uid,) = RE(counting(analyser, 80))  # the run itself is not disturbed

    assert subscription.writer.failed_runs == [uid]
    assert subscription.writer.written_runs == []
    assert "the catalog went away" in caplog.text
    journal = backup / f"{uid}.jsonl"
    documents = read_journal(journal)
    names = [name for name, _ in documents]
    assert names == ["start", "descriptor", *["event"] * 80, "stop"]
    assert documents[-1][1]["exit_status"] == "success"
    # the catalog holds only what was written before the failure (4 batches of 10), no stop
    assert len(run_table(catalog[uid])) == 40
    assert not catalog[uid].metadata.get("stop")

    assert recover(catalog, backup) == [uid]
    run = catalog[uid]
    table = run_table(run)
    assert table.index.tolist() == list(range(1, 81))
    assert table[DATA_KEYS[2]].tolist() == [channel_value(2, s) for s in range(1, 81)]
    assert run.metadata["stop"]["exit_status"] == "success"  # the real stop, not a synthesized one
    assert not journal.exists()


def test_recover_leaves_files_of_live_writers_and_reports_bad_ones(
    catalog: Any, tmp_path: Path
) -> None:
    from ophyd_servomex.catalog import RunJournal

    live = RunJournal(tmp_path / "live.jsonl")
    live.append("start", {"uid": "live-run", "time": 1.0})
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text(
        '{"name":"start","doc":{"uid":"bad-run","time":1.0}}\n'
        '{"name":"descriptor","doc":{"uid":"d","run_start":"bad-run","time":1.0}}\n'
    )
    try:
        with pytest.raises(CatalogRecoveryError, match=r"1 backup file\(s\).*bad\.jsonl"):
            recover(catalog, tmp_path)
        assert (tmp_path / "live.jsonl").exists()  # locked: a live writer owns it
        assert not (tmp_path / "empty.jsonl").exists()  # nothing to replay: removed
        assert (tmp_path / "bad.jsonl").exists()  # kept for a human
    finally:
        live.close()
    assert recover(catalog, tmp_path / "missing") == []
