"""A server that dies mid-session loses nothing: the run stays in the backup directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import stamina
from bluesky import RunEngine
from catalog_helpers import DATA_KEYS, channel_value, connected_analyser, counting
from catalog_server_helpers import API_KEY, TiledServer

from ophyd_servomex.catalog import (
    close_catalog,
    open_catalog,
    read_journal,
    recover,
    run_table,
    subscribe_writer,
)

pytestmark = pytest.mark.slow

NUM = 20


def test_dead_server_run_is_kept_in_the_backup_and_replays_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = TiledServer(tmp_path / "server")
    backup = tmp_path / "backup"
    try:
        catalog = open_catalog(server.uri, api_key=API_KEY)
        RE = RunEngine({})
        subscription = subscribe_writer(RE, catalog, backup_directory=backup)
        analyser = connected_analyser()
        server.kill()

        with stamina.set_testing(True, attempts=1):  # no minute of retries against a corpse
            (uid,) = RE(counting(analyser, NUM))

        assert subscription.writer.failed_runs == [uid]
        assert "the run goes on" in caplog.text
        documents = read_journal(backup / f"{uid}.jsonl")
        assert [name for name, _ in documents] == ["start", "descriptor", *["event"] * NUM, "stop"]
        events = [doc for name, doc in documents if name == "event"]
        assert [doc["data"][DATA_KEYS[0]] for doc in events] == [
            channel_value(0, s) for s in range(1, NUM + 1)
        ]
        assert documents[-1][1]["exit_status"] == "success"
    finally:
        server.stop()

    # the server's directory has the embedded layout: with the server down, the backup can be
    # replayed straight into its files (a restarted server then serves the run)
    catalog = open_catalog(tmp_path / "server")
    try:
        assert recover(catalog, backup) == [uid]
        table = run_table(catalog[uid])
        assert table.index.tolist() == list(range(1, NUM + 1))
        assert table[DATA_KEYS[4]].tolist() == [channel_value(4, s) for s in range(1, NUM + 1)]
        assert catalog[uid].metadata["stop"]["exit_status"] == "success"
        assert list(backup.glob("*.jsonl")) == []
    finally:
        close_catalog(catalog)
