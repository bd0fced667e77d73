"""No silent loss: a full or read-only catalog filesystem, through a real RunEngine and tiled.

The catalog lives on a small tmpfs (mounted here; the tests run as root and are skipped when
mounting is refused). Its journals fall back to a directory on another filesystem; when no
location can take a document the run fails with CatalogWriteError. Every event the RunEngine
emitted is found by recover() once room is back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from catalog_fs_helpers import Tmpfs
from catalog_helpers import DATA_KEYS, channel_value, collect_documents, connected_analyser
from catalog_helpers import counting as counting_plan

from ophyd_servomex.catalog import (
    CatalogWriteError,
    close_catalog,
    open_catalog,
    recover,
    run_table,
    subscribe_writer,
)

FULL_DISK_EVENTS = 3000

pytestmark = pytest.mark.timeout(900)  # thousands of events on a shared, loaded machine


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tmpfs]:
    fs = Tmpfs(tmp_path_factory.mktemp("durability") / "disk", "3m")
    yield fs
    fs.unmount()


@pytest.fixture(scope="module")
def catalog(disk: Tmpfs) -> Iterator[Any]:
    cat = open_catalog(disk.path / "catalog")
    yield cat
    close_catalog(cat)


@pytest.fixture
def room(disk: Tmpfs) -> Iterator[None]:
    """Each test starts (and leaves) the disk writable and 3 MB large."""
    disk.remount("rw,size=3m")
    yield
    disk.remount("rw,size=64m")
    for ballast in disk.path.glob("ballast*"):
        ballast.unlink()
    disk.remount("rw,size=3m", check=False)  # refused once the catalog outgrew 3 MB


def fill(disk: Tmpfs, leave: int) -> None:
    """Write ballast until about ``leave`` bytes are free on the disk."""
    free = os.statvfs(disk.path).f_bavail * os.statvfs(disk.path).f_frsize
    with (disk.path / "ballast").open("wb") as file:
        file.write(b"\0" * max(free - leave, 0))


def events_of(documents: list[tuple[str, dict[str, Any]]]) -> list[int]:
    return [doc["seq_num"] for name, doc in documents if name == "event"]


def test_a_full_disk_journals_in_the_fallback_and_recover_finds_every_event(
    catalog: Any, disk: Tmpfs, room: None, tmp_path: Path
) -> None:
    fallback = tmp_path / "fallback"
    RE = RunEngine({})
    subscription = subscribe_writer(RE, catalog, fallback_directory=fallback)
    seen: list[tuple[str, dict[str, Any]]] = []
    RE.subscribe(collect_documents(seen))
    analyser = connected_analyser()
    fill(disk, leave=600_000)  # the journal alone needs 1.6 MB
    (uid,) = RE(counting_plan(analyser, FULL_DISK_EVENTS))

    assert events_of(seen) == list(range(1, FULL_DISK_EVENTS + 1))
    assert seen[-1][1]["exit_status"] == "success"  # every document is durable somewhere
    assert subscription.writer.failed_runs == [uid]  # the catalog's disk did fill up
    assert list((disk.path / "catalog" / "backup").glob("*.jsonl")) == []
    assert [p.name for p in fallback.iterdir()] == [f"{uid}.jsonl"]

    (disk.path / "ballast").unlink()  # room is back
    assert recover(catalog, fallback_directory=fallback) == [uid]
    table = run_table(catalog[uid])
    assert table.index.tolist() == list(range(1, FULL_DISK_EVENTS + 1))
    assert table[DATA_KEYS[1]].tolist() == [
        channel_value(1, shot) for shot in range(1, FULL_DISK_EVENTS + 1)
    ]
    assert catalog[uid].metadata["stop"]["exit_status"] == "success"
    assert list(fallback.glob("*.jsonl")) == []
    subscription.unsubscribe()


def test_no_room_anywhere_fails_the_run_loudly_and_keeps_what_was_emitted(
    catalog: Any, disk: Tmpfs, room: None
) -> None:
    RE = RunEngine({})
    # the fallback on the same full disk: no location can take the documents
    subscription = subscribe_writer(RE, catalog, fallback_directory=disk.path / "fallback")
    seen: list[tuple[str, dict[str, Any]]] = []
    RE.subscribe(collect_documents(seen))  # after the writer: sees what the writer accepted
    analyser = connected_analyser()
    fill(disk, leave=150_000)
    with pytest.raises(CatalogWriteError, match="no journal location can store"):
        RE(counting_plan(analyser, FULL_DISK_EVENTS))
    subscription.unsubscribe()
    emitted = events_of(seen)
    assert 0 < len(emitted) < FULL_DISK_EVENTS
    stop = seen[-1]
    assert stop[0] == "stop"
    assert stop[1]["exit_status"] == "fail"  # the RunEngine's own verdict: not "success"
    uid = stop[1]["run_start"]
    assert subscription.writer.lost_runs == [uid]

    (disk.path / "ballast").unlink()
    disk.remount("size=64m")
    recover(catalog, fallback_directory=disk.path / "fallback")
    table = run_table(catalog[uid])
    assert table.index.tolist() == emitted  # every accepted event, none twice
    assert catalog[uid].metadata["stop"]["exit_status"] == "fail"


def test_a_read_only_catalog_is_refused_before_any_run(
    catalog: Any, disk: Tmpfs, room: None, tmp_path: Path
) -> None:
    view = disk.read_only_view(tmp_path / "read-only")
    read_only = open_catalog(view / "catalog", create=False)  # reading it is fine
    try:
        assert len(read_only) == len(catalog)
        RE = RunEngine({})
        with pytest.raises(CatalogWriteError, match="the catalog cannot be written") as caught:
            subscribe_writer(RE, read_only, fallback_directory=tmp_path / "fallback")
        assert "Read-only file system" in str(caught.value)
        assert RE.scan_id_source.__name__ == "default_scan_id_source"  # nothing installed
    finally:
        close_catalog(read_only)


def test_a_run_engine_that_ignores_callback_exceptions_is_refused(
    catalog: Any, room: None, tmp_path: Path
) -> None:
    RE = RunEngine({})
    RE.ignore_callback_exceptions = True
    with pytest.raises(CatalogWriteError, match="ignore_callback_exceptions"):
        subscribe_writer(RE, catalog, fallback_directory=tmp_path / "fallback")
