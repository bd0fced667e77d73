"""Durability and secrets without tiled: journal fallback, loud failure, redaction, file modes."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from catalog_fs_helpers import Tmpfs

from ophyd_servomex.catalog import (
    CatalogError,
    CatalogWriteError,
    JournaledWriter,
    read_journal,
    redact,
    resolve_location,
    write_server_config,
)
from ophyd_servomex.catalog.location import FALLBACK_ENV
from ophyd_servomex.catalog.redact import RedactingFilter

PASSWORD = "pw4catalogTEST"
KEY = "apikey4catalogTEST0123"
URL = f"http://operator:{PASSWORD}@tiled.example:8000/api?api_key={KEY}&x=1"

# --- redaction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (URL, "http://***@tiled.example:8000/api?api_key=***&x=1"),
        ("postgresql://tiled:s3cret@db/runs", "postgresql://***@db/runs"),
        ("tiled serve config c.yml --api-key ABCDEF123", "tiled serve config c.yml --api-key ***"),
        ("Authorization: Apikey ABCDEF123", "Authorization: Apikey ***"),
        ("token=abc123&password=hunter2", "token=***&password=***"),
        ("data_key=analyser-i1-value", "data_key=analyser-i1-value"),  # not a secret
        ("/data/catalog/backup", "/data/catalog/backup"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_environment_keys_are_masked_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILED_API_KEY", "EnvKey0123456")
    assert redact("the header was EnvKey0123456.") == "the header was ***."


def test_errors_and_locations_never_show_credentials() -> None:
    location = resolve_location(URL)
    error = CatalogError(f"cannot reach {URL}", location=str(location))
    for text in (str(error), repr(error), str(location), repr(location), str(error.args)):
        assert PASSWORD not in text
        assert KEY not in text
    assert str(location) == "http://***@tiled.example:8000/api?api_key=***&x=1"
    assert location.uri == URL  # the client still connects with them


def test_log_lines_and_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("ophyd_servomex.catalog.test_redaction")
    logger.addFilter(RedactingFilter())
    try:
        raise RuntimeError(f"refused {URL}")
    except RuntimeError:
        logger.exception("opening %s failed", URL)
    (record,) = [r for r in caplog.records if r.name == logger.name]
    text = caplog.text + record.getMessage() + (record.exc_text or "")
    assert "refused http://***@" in text
    assert PASSWORD not in text
    assert KEY not in text


# --- secret-holding files -----------------------------------------------------------------


def test_server_config_is_private_even_over_a_world_readable_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("old")
    config.chmod(0o644)
    path = write_server_config(tmp_path, uri=f"postgresql://tiled:{PASSWORD}@db/runs")
    assert path == config
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD in path.read_text()  # the server needs it: only the owner may read it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    fresh = write_server_config(tmp_path / "new")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_a_rejected_server_uri_is_not_echoed_with_its_password(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as caught:
        write_server_config(tmp_path, uri=f"mysql://root:{PASSWORD}@db/x")
    assert PASSWORD not in str(caught.value)
    assert "mysql://***@db/x" in str(caught.value)


# --- the fallback journal location --------------------------------------------------------


def test_fallback_directory_is_per_catalog_and_overridable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FALLBACK_ENV, str(tmp_path / "fb"))
    one = resolve_location(tmp_path / "a" / "catalog").fallback_directory
    two = resolve_location(tmp_path / "b" / "catalog").fallback_directory
    assert one.parent == two.parent == tmp_path / "fb"
    assert one != two
    monkeypatch.delenv(FALLBACK_ENV)
    monkeypatch.setattr("platformdirs.user_state_dir", lambda name: str(tmp_path / "state" / name))
    default = resolve_location(tmp_path / "a" / "catalog").fallback_directory
    assert default.parent == tmp_path / "state" / "ophyd-servomex" / "journal-fallback"


class _StubCatalog:
    def include_data_sources(self) -> _StubCatalog:
        return self


def _recording_factory(sink: list[tuple[str, dict[str, Any]]]) -> Callable[..., Any]:
    def factory(client: object, *, batch_size: int) -> Callable[[str, dict[str, Any]], None]:
        return lambda name, doc: sink.append((name, doc))

    return factory


def _documents(uid: str, events: int) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = [
        ("start", {"uid": uid, "time": 1.0, "scan_id": 1}),
        ("descriptor", {"uid": f"{uid}-d", "run_start": uid, "name": "primary", "time": 1.0}),
    ]
    docs += [
        (
            "event",
            {
                "uid": f"{uid}-e{n}",
                "descriptor": f"{uid}-d",
                "seq_num": n,
                "time": 1.0 + n,
                "data": {"x": float(n), "pad": "p" * 200},
                "timestamps": {"x": 1.0 + n, "pad": 1.0 + n},
            },
        )
        for n in range(1, events + 1)
    ]
    docs.append(("stop", {"uid": f"{uid}-s", "run_start": uid, "exit_status": "success"}))
    return docs


class _FailingAt:
    """A catalog writer that fails from the ``n``-th document on (as a full disk does)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0

    def __call__(self, client: object, *, batch_size: int) -> Callable[..., None]:
        def write(name: str, doc: dict[str, Any]) -> None:
            self.seen += 1
            if self.seen >= self.n:
                raise OSError(28, "No space left on device")

        return write


def feed(writer: JournaledWriter, docs: list[tuple[str, dict[str, Any]]]) -> None:
    for name, doc in docs:
        writer(name, doc)


def test_a_full_journal_disk_moves_the_journal_to_the_fallback(
    tmpfs: Callable[[str, str], Tmpfs], tmp_path: Path
) -> None:
    small = tmpfs("small", "64k")
    fallback = tmp_path / "fallback"
    writer = JournaledWriter(
        _StubCatalog(),
        small.path / "backup",
        fallback_directory=fallback,
        writer_factory=_FailingAt(10),
        fsync_interval=None,
    )
    docs = _documents("run-full", 600)  # ~170 kB of journal: the 64 kB disk fills mid-run
    for name, doc in docs:
        writer(name, doc)
    assert writer.failed_runs == ["run-full"]
    assert writer.lost_runs == []
    assert list((small.path / "backup").glob("*.jsonl")) == []  # the partial copy is gone
    assert read_journal(fallback / "run-full.jsonl") == docs  # every document, once, in order


def test_a_read_only_journal_disk_journals_in_the_fallback_from_the_start(
    tmpfs: Callable[[str, str], Tmpfs], tmp_path: Path
) -> None:
    disk = tmpfs("ro", "1m")
    disk.remount("ro")
    fallback = tmp_path / "fallback"
    writer = JournaledWriter(
        _StubCatalog(),
        disk.path / "backup",
        fallback_directory=fallback,
        writer_factory=_FailingAt(1),
    )
    docs = _documents("run-ro", 5)
    for name, doc in docs:
        writer(name, doc)
    assert read_journal(fallback / "run-ro.jsonl") == docs


def test_no_journal_location_left_raises_and_keeps_what_was_written(
    tmpfs: Callable[[str, str], Tmpfs],
) -> None:
    small = tmpfs("both", "64k")
    writer = JournaledWriter(
        _StubCatalog(),
        small.path / "backup",
        fallback_directory=small.path / "fallback",  # the same full disk: no way out
        writer_factory=_FailingAt(10),
        fsync_interval=None,
    )
    docs = _documents("run-lost", 600)
    with pytest.raises(CatalogWriteError, match="no journal location can store") as caught:
        feed(writer, docs)
    assert "run-lost" in str(caught.value)
    assert writer.lost_runs == ["run-lost"]
    kept = read_journal(small.path / "backup" / "run-lost.jsonl")
    assert 2 < len(kept) < len(docs)
    assert kept == docs[: len(kept)]  # a prefix: nothing torn, nothing out of order
    writer(*docs[-1])  # the stop of a lost run is logged, not raised again
    assert not os.path.exists(small.path / "fallback" / "run-lost.jsonl")
