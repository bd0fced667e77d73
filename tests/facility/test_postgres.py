"""tiled on PostgreSQL with three RunEngine processes writing at once.

One throw-away PostgreSQL cluster (Debian's, loopback, private port), one ``tiled serve
config`` over it (``write_server_config(uri="postgresql://…")``, the API key in
``TILED_SINGLE_USER_API_KEY``), Redis for the shared metadata. Three writer processes
(``services.py writer``) open runs at the same moment: every run must be stored, readable by
uid and by scan id, and no scan id may be handed out twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import (
    FAST_FAIL_ENV,
    PostgresServer,
    TiledServer,
    skip_unless_installed,
    stop_group,
)

WRITERS = 3
RUNS_PER_WRITER = 4
EVENTS_PER_RUN = 5  # services.py: count([analyser], num=5)
SERVICES = Path(__file__).with_name("services.py")

# services and three interpreters importing tiled + bluesky: minutes on a loaded 2-core box
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def tiled_on_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TiledServer]:
    skip_unless_installed("postgresql", "psql")
    database = PostgresServer()
    try:
        server = TiledServer(Path(tmp_path_factory.mktemp("tiled-pg")), uri=database.uri)
        try:
            yield server
        finally:
            server.stop()
    finally:
        database.stop()


@pytest.fixture
def catalog(tiled_on_postgres: TiledServer) -> Iterator[Any]:
    from ophyd_servomex.catalog import close_catalog, open_catalog

    opened = open_catalog(tiled_on_postgres.uri, api_key=tiled_on_postgres.api_key)
    yield opened
    close_catalog(opened)


def _write_seed_run(catalog: Any, scan_id: int) -> str:
    """One run with scan id ``scan_id`` written from this process, before the writers start."""
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd_async.core import init_devices

    from ophyd_servomex import ServomexAnalyser
    from ophyd_servomex.catalog import subscribe_writer

    RE = RunEngine({"scan_id": scan_id - 1})
    subscription = subscribe_writer(RE, catalog, seed_scan_id=False)
    try:
        with init_devices(mock=True):
            analyser = ServomexAnalyser("mock", name="analyser")
        (uid,) = RE(count([analyser], num=1))
    finally:
        subscription.unsubscribe()
    return str(uid)


def test_three_writers_share_one_sequence_of_scan_ids(
    tiled_on_postgres: TiledServer, catalog: Any, redis_server: Any, tmp_path: Path
) -> None:
    seed_uid = _write_seed_run(catalog, 41)  # the catalog's highest: writers continue at 42
    prefix = f"pg-{uuid.uuid4().hex[:8]}-"
    env = {
        **os.environ,
        **FAST_FAIL_ENV,
        "TILED_API_KEY": tiled_on_postgres.api_key,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SERVICES.parent), *sys.path])),
    }
    writers: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(WRITERS):
            backup = tmp_path / f"backup-{index}"
            writers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(SERVICES),
                        "writer",
                        tiled_on_postgres.uri,
                        redis_server.url,
                        prefix,
                        str(RUNS_PER_WRITER),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=(tmp_path / f"writer-{index}.log").open("wb"),
                    env={**env, "WRITER_BACKUP": str(backup)},
                    start_new_session=True,
                )
            )
        for writer in writers:  # all subscribed, devices connected
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == b"READY", _logs(tmp_path)
        for writer in writers:  # go
            assert writer.stdin is not None
            writer.stdin.write(b"\n")
            writer.stdin.flush()
        reports: list[list[dict[str, Any]]] = []
        for writer in writers:
            out, _ = writer.communicate(timeout=600)
            assert writer.returncode == 0, _logs(tmp_path)
            done = [line for line in out.decode().splitlines() if line.startswith("DONE ")]
            assert len(done) == 1, out
            reports.append(json.loads(done[0].removeprefix("DONE ")))
    finally:
        for writer in writers:
            stop_group(writer)

    runs = [run for report in reports for run in report]
    scan_ids = sorted(run["scan_id"] for run in runs)
    total = WRITERS * RUNS_PER_WRITER
    assert scan_ids == list(range(42, 42 + total))  # unique, and none skipped
    assert len({run["uid"] for run in runs}) == total
    for report in reports:  # each process's own numbers rise
        own = [run["scan_id"] for run in report]
        assert own == sorted(own)
    for index in range(WRITERS):  # nothing was left behind for recovery
        assert list((tmp_path / f"backup-{index}").glob("*.jsonl")) == []

    for run in runs:
        by_uid = catalog[run["uid"]]
        assert by_uid.metadata["start"]["scan_id"] == run["scan_id"]
        assert by_uid.metadata["stop"]["exit_status"] == "success"
        assert by_uid.metadata["stop"]["num_events"] == {"primary": EVENTS_PER_RUN}
        by_scan_id = catalog[run["scan_id"]]
        assert by_scan_id.metadata["start"]["uid"] == run["uid"]
        table = by_uid["primary"].read()
        assert len(table["time"]) == EVENTS_PER_RUN
    assert catalog[41].metadata["start"]["uid"] == seed_uid
    assert len(catalog) == total + 1


def test_the_api_key_stays_off_the_command_line_and_out_of_the_log(
    tiled_on_postgres: TiledServer,
) -> None:
    assert tiled_on_postgres.process is not None
    cmdline = Path(f"/proc/{tiled_on_postgres.process.pid}/cmdline").read_bytes()
    assert tiled_on_postgres.api_key.encode() not in cmdline
    assert b"serve\x00config" in cmdline
    # tiled prints "connect to http://…?api_key=KEY" when the key came from the environment:
    # the server's output is filtered (services.TiledServer) before it reaches the log
    log = tiled_on_postgres.log.read_text()
    assert "Uvicorn running" in log
    assert "api_key=***" in log
    assert tiled_on_postgres.api_key not in log


def test_a_client_without_the_key_is_refused(
    tiled_on_postgres: TiledServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ophyd_servomex.catalog import open_catalog
    from ophyd_servomex.catalog.errors import CatalogAccessError

    monkeypatch.delenv("TILED_API_KEY", raising=False)
    with pytest.raises(CatalogAccessError):
        open_catalog(tiled_on_postgres.uri)
    with pytest.raises(CatalogAccessError, match="refused"):
        open_catalog(tiled_on_postgres.uri, api_key="wrongkey0123456789")


def _logs(directory: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
        for path in sorted(directory.glob("writer-*.log"))
    )
