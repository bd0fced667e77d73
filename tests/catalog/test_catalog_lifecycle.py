"""Creating catalogs (atomically, never by a reader) and numbering runs (scan ids)."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from catalog_helpers import connected_analyser, counting

from ophyd_servomex.catalog import (
    AmbiguousRunError,
    CatalogError,
    CatalogNotFoundError,
    close_catalog,
    get_run,
    latest_scan_id,
    open_catalog,
    subscribe_writer,
)
from ophyd_servomex.cli import catalog as catalog_cli

WORKER = Path(__file__).with_name("catalog_worker.py")
SESSIONS = 12
FAST_FAIL_ENV = {"TILED_RETRY_ATTEMPTS": "1", "TILED_RETRY_TIMEOUT": "2"}


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ophyd-servomex")
    catalog_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


# --- read-only commands never create ------------------------------------------------------


@pytest.mark.parametrize("command", [("runs",), ("replay", "1")])
def test_read_only_commands_report_a_missing_catalog_and_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    typo = tmp_path / "typo" / "catalgo"
    assert cli(*command, "--catalog", str(typo)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: no catalog here (nothing was created): check the path, or write a run first "
        f"[catalog: {typo}]\n"
    )
    assert not (tmp_path / "typo").exists()


def test_open_catalog_without_create_raises_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogNotFoundError) as caught:
        open_catalog(tmp_path / "missing", create=False)
    assert isinstance(caught.value, LookupError)
    assert caught.value.location == str(tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []


# --- atomic creation ----------------------------------------------------------------------


def test_a_half_created_catalog_is_set_aside_and_created_again(tmp_path: Path) -> None:
    directory = tmp_path / "catalog"
    directory.mkdir()
    # what an interrupted `tiled catalog init` leaves: tables, but no alembic stamp
    with sqlite3.connect(directory / "catalog.db") as db:
        db.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY)")
    with pytest.raises(CatalogError, match="never fully created"):
        open_catalog(directory, create=False)
    catalog = open_catalog(directory)
    try:
        assert len(catalog) == 0
        assert [p.name for p in directory.glob("catalog.db.uninitialised-*")] != []
    finally:
        close_catalog(catalog)


def test_a_creation_killed_midway_leaves_a_catalog_that_opens(tmp_path: Path) -> None:
    directory = tmp_path / "catalog"
    code = f"from ophyd_servomex.catalog import open_catalog; open_catalog({str(directory)!r})"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,  # its `tiled catalog init` child dies with it, as on Ctrl-C
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            names = [p.name for p in directory.iterdir()] if directory.is_dir() else []
            if any(name.startswith((".catalog.db.creating-", "catalog.db")) for name in names):
                break
            time.sleep(0.005)
        assert process.poll() is None, "the creation finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert not (directory / "catalog.db").exists() or (directory / "catalog.db").stat().st_size
    catalog = open_catalog(directory)
    try:
        assert len(catalog) == 0
    finally:
        close_catalog(catalog)
    assert list(directory.glob(".catalog.db.creating-*")) == []


# --- scan ids -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any, list[str]]]:
    """Twelve sessions (a new RunEngine each) of one run each, on one catalog."""
    location = tmp_path_factory.mktemp("sessions") / "catalog"
    catalog = open_catalog(location)
    uids: list[str] = []
    RE = RunEngine({})
    analyser = connected_analyser()
    for _ in range(SESSIONS):
        RE = RunEngine({})
        subscription = subscribe_writer(RE, catalog)
        (uid,) = RE(counting(analyser, 1))
        subscription.unsubscribe()
        uids.append(uid)
    yield location, catalog, uids
    close_catalog(catalog)


def test_twelve_sessions_number_their_runs_1_to_12(
    sessions: tuple[Path, Any, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    location, catalog, uids = sessions
    assert [catalog[uid].metadata["start"]["scan_id"] for uid in uids] == list(range(1, 13))
    assert latest_scan_id(catalog) == SESSIONS
    assert cli("runs", "--catalog", str(location)) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [row[0] for row in rows] == [str(n) for n in range(12, 0, -1)]  # each once
    assert [row[1] for row in rows] == [uid[:8] for uid in reversed(uids)]
    assert get_run(catalog, 10).metadata["start"]["uid"] == uids[9]
    assert cli("replay", "10", "--catalog", str(location), "--rows", "1") == 0
    assert f"uid:         {uids[9]}" in capsys.readouterr().out


def test_a_scan_id_given_twice_by_an_old_writer_is_reported_ambiguous(
    sessions: tuple[Path, Any, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    location, catalog, _ = sessions
    analyser = connected_analyser()
    twice = []
    for _ in range(2):  # what catalogs written before scan ids were kept unique hold
        old = RunEngine({"scan_id": 49})
        old.subscribe(TiledWriter(catalog))
        twice += old(counting(analyser, 1))
    with pytest.raises(AmbiguousRunError) as caught:
        get_run(catalog, "50")
    assert caught.value.uids == twice
    assert isinstance(caught.value, LookupError)
    assert str(caught.value).startswith(f"2 runs have scan_id 50: {twice[0]}, {twice[1]}; ")
    assert cli("replay", "50", "--catalog", str(location)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"2 runs have scan_id 50: {twice[0]}, {twice[1]}" in captured.err
    # the next session continues after the highest, numerically
    RE = RunEngine({})
    subscription = subscribe_writer(RE, catalog)
    (uid,) = RE(counting(analyser, 1))
    subscription.unsubscribe()
    assert catalog[uid].metadata["start"]["scan_id"] == 51


def test_two_processes_writing_one_catalog_at_once_never_share_a_scan_id(
    tmp_path: Path,
) -> None:
    location = tmp_path / "catalog"
    go = tmp_path / "go"
    runs = 4
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "runs", str(location), str(runs), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=WORKER.parent,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:  # both subscribed (and seeded) before either runs
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "READY", process.stderr
        go.touch()
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    scan_ids: list[int] = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
        mine = [int(line.split()[1]) for line in out.splitlines() if line.startswith("SCAN")]
        assert len(mine) == runs
        assert mine == sorted(mine)  # increasing within a process
        scan_ids += mine
    assert sorted(scan_ids) == list(range(1, 2 * runs + 1))  # unique across both


# --- secrets in errors --------------------------------------------------------------------


def test_a_refused_server_url_is_reported_without_its_credentials(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    password, key = "pw4catalogTEST", "apikey4catalogTEST0123"
    url = f"http://operator:{password}@127.0.0.1:{port}/?api_key={key}"
    result = subprocess.run(
        [sys.executable, "-m", "ophyd_servomex.cli", "runs", "--catalog", url],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **FAST_FAIL_ENV},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert f"http://***@127.0.0.1:{port}/?api_key=***" in result.stderr
    assert password not in result.stderr + result.stdout
    assert key not in result.stderr + result.stdout
