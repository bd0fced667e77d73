"""Catalog pieces that need no tiled: locations, the journal, stop synthesis, server config."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ophyd_servomex.catalog import (
    CATALOG_ENV,
    CatalogError,
    CatalogKind,
    CatalogRecoveryError,
    RunJournal,
    complete_run,
    journal_is_locked,
    read_journal,
    resolve_location,
    serve_command,
    serve_environment,
    write_server_config,
)
from ophyd_servomex.catalog.location import default_catalog_directory
from ophyd_servomex.catalog.recovery import RECOVERED_REASON
from ophyd_servomex.codec.errors import ServomexError

# --- locations ----------------------------------------------------------------------------


def test_explicit_directory_is_embedded(tmp_path: Path) -> None:
    location = resolve_location(tmp_path / "cat")
    assert location.kind is CatalogKind.EMBEDDED
    assert location.directory == tmp_path / "cat"
    assert location.catalog_file == tmp_path / "cat" / "catalog.db"
    assert location.tables_file == tmp_path / "cat" / "tables.db"
    assert location.data_directory == tmp_path / "cat" / "data"
    assert location.backup_directory == tmp_path / "cat" / "backup"
    assert str(location) == str(tmp_path / "cat")


def test_sqlite_and_file_uris_and_catalog_file_name_the_directory(tmp_path: Path) -> None:
    assert resolve_location(f"sqlite:///{tmp_path}/catalog.db").directory == tmp_path
    assert resolve_location(f"sqlite+aiosqlite:///{tmp_path}/catalog.db").directory == tmp_path
    assert resolve_location(tmp_path.as_uri()).directory == tmp_path
    (tmp_path / "catalog.db").write_bytes(b"")
    assert resolve_location(tmp_path / "catalog.db").directory == tmp_path


def test_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_location("runs").directory == tmp_path / "runs"


def test_server_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("platformdirs.user_data_dir", lambda name: str(tmp_path / name))
    location = resolve_location("http://127.0.0.1:8000/")
    assert location.kind is CatalogKind.SERVER
    assert location.uri == "http://127.0.0.1:8000"
    assert location.directory is None
    assert location.backup_directory == tmp_path / "ophyd-servomex" / "backup" / "127.0.0.1_8000"
    assert resolve_location("HTTPS://tiled.example:443/api").uri == "HTTPS://tiled.example:443/api"
    with pytest.raises(CatalogError, match="no local files"):
        _ = location.catalog_file


def test_environment_then_user_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("platformdirs.user_data_dir", lambda name: str(tmp_path / name))
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    assert default_catalog_directory() == tmp_path / "ophyd-servomex" / "catalog"
    assert resolve_location(None).directory == tmp_path / "ophyd-servomex" / "catalog"
    monkeypatch.setenv(CATALOG_ENV, str(tmp_path / "from-env"))
    assert resolve_location(None).directory == tmp_path / "from-env"
    monkeypatch.setenv(CATALOG_ENV, "http://10.0.0.5:8000")
    assert resolve_location(None).uri == "http://10.0.0.5:8000"
    # an explicit argument wins over the environment
    assert resolve_location(tmp_path / "arg").directory == tmp_path / "arg"


@pytest.mark.parametrize("bad", ["", "   ", "postgresql://u:p@db/runs", "mongodb://x/y"])
def test_bad_locations_raise_catalog_error(bad: str) -> None:
    with pytest.raises(CatalogError) as caught:
        resolve_location(bad)
    assert isinstance(caught.value, ServomexError)


# --- journal ------------------------------------------------------------------------------


def test_journal_lines_are_tiledwriter_backup_format(tmp_path: Path) -> None:
    journal = RunJournal(tmp_path / "run.jsonl")
    journal.append("start", {"uid": "u1", "time": 1.0, "scan_id": 7})
    journal.append(
        "event",
        {"data": {"a": np.float64(1.5), "b": np.arange(3), "c": np.int32(4)}, "seq_num": 1},
    )
    # flushed per document: readable by another reader before close
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {
        "name": "start",
        "doc": {"uid": "u1", "time": 1.0, "scan_id": 7},
    }
    assert json.loads(lines[1]) == {
        "name": "event",
        "doc": {"data": {"a": 1.5, "b": [0, 1, 2], "c": 4}, "seq_num": 1},
    }
    assert journal.count == 2
    journal.close()
    assert journal.closed
    assert read_journal(tmp_path / "run.jsonl") == [
        ("start", {"uid": "u1", "time": 1.0, "scan_id": 7}),
        ("event", {"data": {"a": 1.5, "b": [0, 1, 2], "c": 4}, "seq_num": 1}),
    ]


def test_journal_close_with_remove_deletes_the_file(tmp_path: Path) -> None:
    journal = RunJournal(tmp_path / "run.jsonl")
    journal.append("start", {"uid": "u1"})
    journal.close(remove=True)
    assert not (tmp_path / "run.jsonl").exists()
    with pytest.raises(ValueError, match="closed"):
        journal.append("stop", {})


def test_journal_is_locked_while_open_even_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    journal = RunJournal(path)
    assert journal_is_locked(path)
    probe = (
        "import fcntl,sys\n"
        f"f=open({str(path)!r},'rb')\n"
        "try:\n fcntl.flock(f.fileno(), fcntl.LOCK_EX|fcntl.LOCK_NB); print('free')\n"
        "except OSError: print('locked')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "locked"
    with pytest.raises(BlockingIOError):
        RunJournal(path)  # a second writer is refused
    journal.close()
    assert not journal_is_locked(path)
    assert not journal_is_locked(tmp_path / "missing.jsonl")


def test_truncated_and_garbage_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text(
        '{"name":"start","doc":{"uid":"u"}}\n'
        "not json\n"
        '{"name":"x"}\n'
        '["list"]\n'
        '{"name":"descriptor","doc":{"uid":"d"}}\n'
        '{"name":"event","doc":{"seq_num":1,"da'  # cut by kill -9
    )
    assert read_journal(path) == [("start", {"uid": "u"}), ("descriptor", {"uid": "d"})]


# --- stop synthesis -----------------------------------------------------------------------


def _docs() -> list[tuple[str, dict[str, object]]]:
    return [
        ("start", {"uid": "run-1", "time": 100.0}),
        ("descriptor", {"uid": "d1", "name": "primary", "time": 100.5}),
        ("descriptor", {"uid": "d2", "name": "i1_monitor", "time": 100.6}),
        ("event", {"descriptor": "d1", "seq_num": 1, "time": 101.0}),
        ("event", {"descriptor": "d1", "seq_num": 2, "time": 102.0}),
        ("event_page", {"descriptor": "d2", "seq_num": [1, 2, 3], "time": [101.5, 102.5, 103.5]}),
    ]


def test_complete_run_synthesizes_a_failed_stop_with_counts() -> None:
    docs = complete_run(_docs())
    assert [name for name, _ in docs] == [name for name, _ in _docs()] + ["stop"]
    stop = docs[-1][1]
    assert stop["run_start"] == "run-1"
    assert stop["time"] == 103.5
    assert stop["exit_status"] == "fail"
    assert stop["reason"] == RECOVERED_REASON
    assert stop["num_events"] == {"primary": 2, "i1_monitor": 3}
    assert isinstance(stop["uid"], str)
    assert len(stop["uid"]) == 36


def test_complete_run_keeps_a_real_stop_and_drops_what_follows() -> None:
    real_stop = ("stop", {"uid": "s", "run_start": "run-1", "exit_status": "success"})
    docs = complete_run([*_docs(), real_stop, ("start", {"uid": "run-2"})])
    assert docs[-1] == real_stop
    assert len(docs) == len(_docs()) + 1


def test_complete_run_needs_a_start() -> None:
    with pytest.raises(CatalogRecoveryError, match="no start"):
        complete_run([("event", {"seq_num": 1})])


# --- server config ------------------------------------------------------------------------


def test_server_config_sqlite(tmp_path: Path) -> None:
    import yaml

    path = write_server_config(tmp_path / "srv", port=8123)
    assert path == tmp_path / "srv" / "config.yml"
    config = yaml.safe_load(path.read_text())
    root = tmp_path / "srv"
    assert config == {
        "catalog": {
            "uri": f"sqlite:///{root / 'catalog.db'}",
            "writable_storage": [(root / "data").as_uri(), f"sqlite:///{root / 'tables.db'}"],
            "init_if_not_exists": True,
            "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}],
        },
        "media_types": {
            "BlueskyRun": {
                "application/json-seq": "bluesky_tiled_plugins.exporters:json_seq_exporter"
            }
        },
        "uvicorn": {"host": "127.0.0.1", "port": 8123},
    }
    assert (root / "data").is_dir()


def test_server_config_postgresql_keeps_tables_in_the_database(tmp_path: Path) -> None:
    import yaml

    uri = "postgresql://tiled:secret@db.local:5432/runs"
    config = yaml.safe_load(write_server_config(tmp_path, uri=uri).read_text())
    assert config["catalog"]["uri"] == uri
    assert config["catalog"]["writable_storage"] == [(tmp_path / "data").as_uri(), uri]


def test_server_config_rejects_other_databases(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"sqlite:///… or postgresql://"):
        write_server_config(tmp_path, uri="mysql://x/y")


def test_server_config_is_accepted_by_tiled(tmp_path: Path) -> None:
    from tiled.config import parse_configs

    config = parse_configs(str(write_server_config(tmp_path)))
    (tree,) = config.trees or []  # tiled turns the `catalog` section into one tree at /
    assert tree.path == "/"
    assert tree.args is not None
    assert tree.args["uri"] == f"sqlite:///{tmp_path / 'catalog.db'}"
    assert tree.args["init_if_not_exists"] is True
    assert tree.args["specs"] == [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}]
    assert set(config.media_types["BlueskyRun"]) == {"application/json-seq"}
    assert config.uvicorn == {"host": "127.0.0.1", "port": 8000}


def test_serve_command_holds_no_key_and_the_environment_does() -> None:
    argv = serve_command("/srv/config.yml", host="127.0.0.1", port=9000)
    assert argv == [
        *("tiled", "serve", "config", "/srv/config.yml"),
        *("--host", "127.0.0.1", "--port", "9000"),
    ]
    env = serve_environment("KEY0123456789", {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "TILED_SINGLE_USER_API_KEY": "KEY0123456789"}
    with pytest.raises(CatalogError, match="letters and digits") as caught:
        serve_environment("not-alnum-key!")
    assert "not-alnum-key" not in str(caught.value)


# --- import cost --------------------------------------------------------------------------


def test_importing_the_package_and_catalog_does_not_import_tiled() -> None:
    code = (
        "import sys, ophyd_servomex, ophyd_servomex.catalog, ophyd_servomex.cli.catalog\n"
        "heavy = ['tiled', 'bluesky', 'bluesky_tiled_plugins', 'databroker', 'pandas']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- routing documents to runs ------------------------------------------------------------


class _StubCatalog:
    def include_data_sources(self) -> _StubCatalog:
        return self


class _Recorder:
    """A writer_factory whose writers record what they get (one list per run)."""

    def __init__(self) -> None:
        self.runs: list[list[tuple[str, dict[str, object]]]] = []

    def __call__(
        self, client: object, *, batch_size: int
    ) -> Callable[[str, dict[str, object]], None]:
        received: list[tuple[str, dict[str, object]]] = []
        self.runs.append(received)
        return lambda name, doc: received.append((name, doc))


def _event(uid: str, descriptor: str, seq_num: int) -> dict[str, object]:
    return {
        "uid": uid,
        "descriptor": descriptor,
        "seq_num": seq_num,
        "time": 1.5,
        "data": {"x": float(seq_num)},
        "timestamps": {"x": 1.5},
        "filled": {},
    }


def test_interleaved_runs_get_their_own_journal_and_their_own_ordered_writer(
    tmp_path: Path,
) -> None:
    from event_model import pack_event_page

    from ophyd_servomex.catalog import JournaledWriter

    recorder = _Recorder()
    writer = JournaledWriter(_StubCatalog(), tmp_path, writer_factory=recorder, batch_size=7)
    a = [
        ("start", {"uid": "run-a", "time": 1.0}),
        ("descriptor", {"uid": "da", "run_start": "run-a", "name": "primary"}),
        ("event", _event("ea1", "da", 1)),
        ("stop", {"uid": "sa", "run_start": "run-a", "exit_status": "success"}),
    ]
    b = [
        ("start", {"uid": "run-b", "time": 2.0}),
        ("descriptor", {"uid": "db", "run_start": "run-b", "name": "primary"}),
        ("resource", {"uid": "rb", "run_start": "run-b", "spec": "X"}),
        ("datum", {"datum_id": "rb/0", "resource": "rb", "datum_kwargs": {}}),
        ("event", _event("eb1", "db", 1)),
        ("event_page", dict(pack_event_page(_event("eb2", "db", 2), _event("eb3", "db", 3)))),  # type: ignore[arg-type]
    ]
    order = [a[0], b[0], a[1], b[1], b[2], a[2], b[3], b[4], a[3], b[5]]
    for name, doc in order:
        writer(name, doc)
    assert writer.flush(timeout=30)
    # one router: each run's writer, made as the run starts, gets that run's documents in
    # emission order, as emitted (the router's one-event pages are not passed on)
    assert recorder.runs == [a, b]
    assert writer.written_runs == ["run-a"]
    assert not (tmp_path / "run-a.jsonl").exists()  # written: its journal is gone
    assert read_journal(tmp_path / "run-b.jsonl") == b  # still open, locked, complete so far
    assert journal_is_locked(tmp_path / "run-b.jsonl")
    writer("stop", {"uid": "sb", "run_start": "run-b", "exit_status": "abort"})
    assert writer.written_runs == ["run-a", "run-b"]
    assert list(tmp_path.glob("*.jsonl")) == []
    assert writer.close(timeout=30)


def test_a_document_of_no_open_run_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ophyd_servomex.catalog import JournaledWriter

    recorder = _Recorder()
    writer = JournaledWriter(_StubCatalog(), tmp_path, writer_factory=recorder)
    writer("event", {"descriptor": "nowhere", "seq_num": 1})
    assert writer.flush(timeout=30)
    assert recorder.runs == []  # no run started: no writer was made
    assert "belongs to no open run" in caplog.text


def _normalized(normalizer_class: Any, docs: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    out: list[tuple[str, dict[str, Any]]] = []
    normalizer = normalizer_class()
    normalizer.subscribe(lambda name, doc: out.append((name, doc)))
    for name, doc in docs:
        normalizer(name, doc)
    return out


def test_the_lean_normalizer_emits_what_the_stock_one_does() -> None:
    from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer

    from ophyd_servomex.catalog.normalizer import LeanRunNormalizer

    key = {"dtype": "number", "shape": [], "source": "sim"}
    start = {"uid": "s", "time": 1.0}
    descriptor = {
        "uid": "d",
        "run_start": "s",
        "name": "primary",
        "time": 1.0,
        "data_keys": {"x": dict(key), "seq_num": dict(key)},  # a reserved name: renamed
        "configuration": {},
        "object_keys": {},
        "hints": {},
    }
    plain = _event("e1", "d", 1)  # only "x": the cheap path
    reserved = {**_event("e2", "d", 2), "data": {"seq_num": 7.0}, "timestamps": {"seq_num": 1.5}}
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", start),
        ("descriptor", descriptor),
        ("event", plain),
        ("event", reserved),
    ]
    stock = _normalized(RunNormalizer, docs)
    lean = _normalized(LeanRunNormalizer, docs)
    assert lean == stock
    assert lean[2] == ("event", {k: v for k, v in plain.items() if k != "filled"})
    assert lean[2][1]["data"] is plain["data"]  # passed on, not deep-copied
    assert lean[3][1]["data"] == {"seq_num_": 7.0}  # the stock path renamed it
    assert stock[2][1]["data"] is not plain["data"]
