"""A shared tiled server: the RunEngine writes over HTTP, another process replays, no key no entry.

Starts ``tiled serve config`` (the config from ``write_server_config``) on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from catalog_helpers import CHANNEL_UNITS, DATA_KEYS, channel_value, connected_analyser, counting
from catalog_server_helpers import API_KEY, FAST_FAIL_ENV, TiledServer

from ophyd_servomex.catalog import (
    API_KEY_ENV,
    CatalogAccessError,
    CatalogKind,
    catalog_location,
    close_catalog,
    open_catalog,
    run_table,
    subscribe_writer,
)

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("catalog_worker.py")
NUM = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TiledServer]:
    server = TiledServer(tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def written(server: TiledServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    catalog = open_catalog(server.uri, api_key=API_KEY)
    backup = tmp_path_factory.mktemp("client-backup")
    RE = RunEngine({})
    subscription = subscribe_writer(RE, catalog, backup_directory=backup)
    analyser = connected_analyser()
    (uid,) = RE(counting(analyser, NUM, md={"operator": "server test"}))
    result = {"uid": uid, "subscription": subscription, "catalog": catalog, "backup": backup}
    return result


def test_the_run_engine_writes_over_http(server: TiledServer, written: dict[str, Any]) -> None:
    catalog = written["catalog"]
    location = catalog_location(catalog)
    assert location.kind is CatalogKind.SERVER
    assert location.uri == server.uri
    assert [spec.name for spec in catalog.specs] == ["CatalogOfBlueskyRuns"]
    assert written["subscription"].writer.written_runs == [written["uid"]]
    assert list(Path(written["backup"]).glob("*.jsonl")) == []
    table = run_table(catalog[written["uid"]])
    assert len(table) == NUM
    # the config registers the json-seq exporter: documents stream back over HTTP
    documents = list(catalog[written["uid"]].documents())
    names = [name for name, _ in documents]
    assert names[:2] == ["start", "descriptor"]
    assert names[-1] == "stop"
    events = [doc for name, doc in documents if name in ("event", "event_page")]
    assert (
        sum(len(doc["seq_num"]) if isinstance(doc["seq_num"], list) else 1 for doc in events) == NUM
    )
    # the server stored the files where the config said
    assert (server.directory / "catalog.db").is_file()


def test_a_second_process_replays_the_run(server: TiledServer, written: dict[str, Any]) -> None:
    env = {**os.environ, **FAST_FAIL_ENV, API_KEY_ENV: API_KEY}
    out = subprocess.run(
        [sys.executable, str(WORKER), "replay", server.uri, written["uid"][:8]],
        capture_output=True,
        text=True,
        cwd=WORKER.parent,
        env=env,
        timeout=120,
        check=True,
    )
    replayed = json.loads(out.stdout.strip().splitlines()[-1])
    assert replayed["seq_num"] == list(range(1, NUM + 1))
    for index, key in enumerate(DATA_KEYS):
        assert replayed["columns"][key] == [channel_value(index, s) for s in range(1, NUM + 1)]
    summary = replayed["summary"]
    assert summary["uid"] == written["uid"]
    assert summary["exit_status"] == "success"
    assert summary["num_events"] == {"primary": NUM}
    assert summary["data_keys"] == {
        "primary": {f"analyser-{c}-value": units for c, units in CHANNEL_UNITS.items()}
    }


def test_the_server_key_is_in_no_command_line_and_no_log(
    server: TiledServer, written: dict[str, Any]
) -> None:
    assert server.process is not None
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    assert b"\0serve\0config\0" in cmdline  # the server itself (its shebang's python)
    assert API_KEY.encode() not in cmdline
    assert b"--api-key" not in cmdline
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes()
    assert f"TILED_SINGLE_USER_API_KEY={API_KEY}".encode() in environ.split(b"\0")
    assert API_KEY not in server.log.read_text()
    assert oct(server.log.stat().st_mode & 0o777) == oct(0o600)
    assert oct(server.config.stat().st_mode & 0o777) == oct(0o600)


def test_a_client_without_the_key_is_refused(
    server: TiledServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(CatalogAccessError, match="requires an API key") as caught:
        open_catalog(server.uri)
    assert caught.value.location == server.uri
    with pytest.raises(CatalogAccessError, match=r"refused the API key \(HTTP 401\)"):
        open_catalog(server.uri, api_key="wrongkey")


def test_the_key_comes_from_the_environment(
    server: TiledServer, written: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    catalog = open_catalog(server.uri)
    try:
        assert catalog[written["uid"]].metadata["start"]["operator"] == "server test"
    finally:
        close_catalog(catalog)


def test_a_port_taken_before_the_server_binds_it_is_retried_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import catalog_server_helpers

    with socket.socket() as squatter:  # holds the first "free" port, as a racing process would
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        ports = iter([taken, catalog_server_helpers.free_port()])
        monkeypatch.setattr(catalog_server_helpers, "free_port", lambda: next(ports))
        server = TiledServer(tmp_path)
        try:
            assert server.port != taken
            catalog = open_catalog(server.uri, api_key=API_KEY)
            close_catalog(catalog)
        finally:
            server.stop()
    assert server.process is not None
    assert server.process.poll() is not None  # stopped: no server left behind
