"""Runs through the embedded catalog: write with the journaled writer, replay them exactly.

One catalog, one RunEngine and one analyser-shaped soft device serve the whole module
(opening tiled costs seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bluesky import RunEngine
from catalog_helpers import (
    CHANNEL_UNITS,
    DATA_KEYS,
    MONITOR_VALUES,
    FakeAnalyser,
    channel_value,
    collect_documents,
    connected_analyser,
    counting,
    monitoring,
)

from ophyd_servomex.catalog import (
    CatalogError,
    CatalogKind,
    CatalogSubscription,
    RunNotFoundError,
    catalog_location,
    close_catalog,
    get_run,
    latest_scan_id,
    legacy_broker,
    list_runs,
    open_catalog,
    run_summary,
    run_table,
    seed_scan_id,
    subscribe_writer,
)
from ophyd_servomex.codec.errors import ServomexError

NUM = 100


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded") / "catalog"


@pytest.fixture(scope="module")
def catalog(catalog_dir: Path) -> Iterator[Any]:
    cat = open_catalog(catalog_dir)
    yield cat
    close_catalog(cat)


@pytest.fixture(scope="module")
def RE() -> RunEngine:
    return RunEngine({})


@pytest.fixture(scope="module")
def analyser(RE: RunEngine) -> FakeAnalyser:
    return connected_analyser()


@pytest.fixture(scope="module")
def subscription(RE: RunEngine, catalog: Any) -> CatalogSubscription:
    return subscribe_writer(RE, catalog)


@pytest.fixture(scope="module")
def emitted(RE: RunEngine) -> list[tuple[str, dict[str, Any]]]:
    documents: list[tuple[str, dict[str, Any]]] = []
    RE.subscribe(collect_documents(documents))
    return documents


@pytest.fixture(scope="module")
def count_uid(
    RE: RunEngine,
    analyser: FakeAnalyser,
    subscription: CatalogSubscription,
    emitted: list[tuple[str, dict[str, Any]]],
) -> str:
    (uid,) = RE(counting(analyser, NUM, md={"sample": "bench gas"}))
    return str(uid)


@pytest.fixture(scope="module")
def monitor_uid(
    RE: RunEngine,
    analyser: FakeAnalyser,
    subscription: CatalogSubscription,
    count_uid: str,
) -> str:
    (uid,) = RE(monitoring(analyser))
    return str(uid)


def test_embedded_catalog_files_and_root_spec(catalog: Any, catalog_dir: Path) -> None:
    assert (catalog_dir / "catalog.db").is_file()
    assert (catalog_dir / "data").is_dir()
    assert [spec.name for spec in catalog.specs] == ["CatalogOfBlueskyRuns"]
    location = catalog_location(catalog)
    assert location.kind is CatalogKind.EMBEDDED
    assert location.directory == catalog_dir


def test_count_of_100_events_round_trips_exactly(catalog: Any, count_uid: str) -> None:
    run = catalog[count_uid]
    table = run_table(run)
    assert len(table) == NUM
    assert list(table.index) == list(range(1, NUM + 1))
    assert list(table.columns) == ["time", *sorted(DATA_KEYS)]
    for index, key in enumerate(DATA_KEYS):
        expected = [channel_value(index, shot) for shot in range(1, NUM + 1)]
        assert table[key].tolist() == expected
    assert table["time"].is_monotonic_increasing
    # local date-times, the same instants as the epoch seconds in the event documents
    epoch = run_table(run, epoch_time=True)["time"]
    assert str(table["time"].dt.tz) == "tzlocal()"
    assert [t.timestamp() for t in table["time"]] == pytest.approx(epoch.tolist(), abs=1e-6)
    assert table.attrs["units"] == {
        f"analyser-{channel}-value": units for channel, units in CHANNEL_UNITS.items()
    }
    assert table.attrs["hinted"] == sorted(DATA_KEYS)


def test_table_with_reading_timestamps(catalog: Any, count_uid: str) -> None:
    table = run_table(catalog[count_uid], timestamps=True, epoch_time=True)
    assert list(table.columns) == [
        "time",
        *sorted(DATA_KEYS),
        *(f"ts_{key}" for key in sorted(DATA_KEYS)),
    ]
    assert (table[f"ts_{DATA_KEYS[0]}"] <= table["time"]).all()


def test_start_stop_metadata_and_units(catalog: Any, count_uid: str) -> None:
    run = catalog[count_uid]
    start, stop = run.metadata["start"], run.metadata["stop"]
    assert start["uid"] == count_uid
    assert start["plan_name"] == "count"
    assert start["num_points"] == NUM
    assert start["detectors"] == ["analyser"]
    assert start["sample"] == "bench gas"
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"primary": NUM}
    data_keys = run["primary"].metadata["data_keys"]
    assert {key: data_keys[key]["units"] for key in DATA_KEYS} == {
        f"analyser-{channel}-value": units for channel, units in CHANNEL_UNITS.items()
    }
    assert all(data_keys[key]["dtype"] == "number" for key in DATA_KEYS)


def test_run_summary(catalog: Any, count_uid: str) -> None:
    summary = run_summary(catalog[count_uid])
    start = catalog[count_uid].metadata["start"]
    assert summary["uid"] == count_uid
    assert summary["scan_id"] == start["scan_id"]
    assert summary["plan_name"] == "count"
    assert summary["start_time"] == start["time"]
    assert summary["stop_time"] > summary["start_time"]
    assert summary["duration"] == summary["stop_time"] - summary["start_time"]
    assert summary["exit_status"] == "success"
    assert summary["reason"] is None
    assert summary["streams"] == ["primary"]
    assert summary["num_events"] == {"primary": NUM}
    assert summary["data_keys"] == {
        "primary": {f"analyser-{c}-value": units for c, units in CHANNEL_UNITS.items()}
    }


def test_documents_replay_what_the_run_engine_emitted(
    catalog: Any, count_uid: str, emitted: list[tuple[str, dict[str, Any]]]
) -> None:
    stored = list(catalog[count_uid].documents())
    names = [name for name, _ in stored]
    assert names[0] == "start"
    assert names[-1] == "stop"
    assert names.count("descriptor") == 1
    values = []
    for name, doc in stored:
        if name == "event":
            values.append(doc["data"][DATA_KEYS[0]])
        elif name == "event_page":
            values.extend(doc["data"][DATA_KEYS[0]])
    assert values == [channel_value(0, shot) for shot in range(1, NUM + 1)]
    sent_start = next(doc for name, doc in emitted if name == "start" and doc["uid"] == count_uid)
    assert stored[0][1]["uid"] == sent_start["uid"]
    assert stored[0][1]["scan_id"] == sent_start["scan_id"]


def test_journal_is_removed_once_the_run_is_in_the_catalog(
    subscription: CatalogSubscription, count_uid: str, monitor_uid: str
) -> None:
    assert subscription.backup_directory == catalog_location_dir(subscription) / "backup"
    assert list(subscription.backup_directory.glob("*.jsonl")) == []
    assert subscription.writer.failed_runs == []
    assert subscription.writer.written_runs[:2] == [count_uid, monitor_uid]


def catalog_location_dir(subscription: CatalogSubscription) -> Path:
    return subscription.backup_directory.parent


def test_monitor_stream_is_stored_and_readable(catalog: Any, monitor_uid: str) -> None:
    run = catalog[monitor_uid]
    assert sorted(run) == ["i1_monitor", "primary"]
    monitor = run_table(run, "i1_monitor")
    # the first monitor event is the value when monitoring began: the count's last shot
    assert monitor[DATA_KEYS[0]].tolist() == [channel_value(0, NUM), *MONITOR_VALUES]
    assert list(monitor.columns) == ["time", DATA_KEYS[0]]
    primary = run_table(run)
    assert len(primary) == 1
    assert primary[DATA_KEYS[0]].tolist() == [MONITOR_VALUES[-1]]
    summary = run_summary(run)
    assert summary["num_events"] == {"i1_monitor": 1 + len(MONITOR_VALUES), "primary": 1}
    assert summary["data_keys"]["i1_monitor"] == {DATA_KEYS[0]: "%"}
    # and through tiled's own reader
    dataset = run["i1_monitor"].read()
    assert np.asarray(dataset[DATA_KEYS[0]]).tolist() == [channel_value(0, NUM), *MONITOR_VALUES]


def test_missing_stream_is_a_catalog_error(catalog: Any, count_uid: str) -> None:
    with pytest.raises(CatalogError, match="no stream 'baseline'"):
        run_table(catalog[count_uid], "baseline")


# --- finding runs -------------------------------------------------------------------------


def test_get_run_by_uid_partial_uid_scan_id_and_index(
    catalog: Any, count_uid: str, monitor_uid: str
) -> None:
    scan_id = catalog[count_uid].metadata["start"]["scan_id"]
    uid_of = lambda run: run.metadata["start"]["uid"]  # noqa: E731
    assert uid_of(get_run(catalog, count_uid)) == count_uid
    assert uid_of(get_run(catalog, count_uid[:8])) == count_uid
    assert uid_of(get_run(catalog, count_uid[:5])) == count_uid
    assert uid_of(get_run(catalog, scan_id)) == count_uid
    assert uid_of(get_run(catalog, str(scan_id))) == count_uid
    assert uid_of(get_run(catalog, f" {scan_id} ")) == count_uid
    assert uid_of(get_run(catalog, -1)) == monitor_uid
    assert uid_of(get_run(catalog, "-1")) == monitor_uid
    assert uid_of(get_run(catalog, -2)) == count_uid
    # tiled's own spellings agree
    assert uid_of(catalog[scan_id]) == count_uid
    assert uid_of(catalog[-1]) == monitor_uid
    assert uid_of(catalog[count_uid[:8]]) == count_uid


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (999, "no run has scan_id 999"),
        ("999", "no run has scan_id 999"),
        ("ffffffff", "no run uid starts with 'ffffffff'"),
        ("00000000-0000-4000-8000-000000000000", "no run uid starts with"),
        (-99, "fewer than 99 run"),
    ],
)
def test_missing_runs_raise_run_not_found(
    catalog: Any, monitor_uid: str, key: str | int, message: str
) -> None:
    with pytest.raises(RunNotFoundError, match=message) as caught:
        get_run(catalog, key)
    assert isinstance(caught.value, ServomexError)
    assert isinstance(caught.value, LookupError)
    assert caught.value.key == key
    assert caught.value.location == str(catalog_location(catalog))
    assert str(catalog_location(catalog)) in str(caught.value)


@pytest.mark.parametrize(
    ("key", "message"),
    [(0, "scan ids start at 1"), ("abc", "at least 5 characters"), (1.5, "not 1.5")],
)
def test_unusable_keys_raise_catalog_error(catalog: Any, key: Any, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        get_run(catalog, key)


def test_list_runs_newest_first(catalog: Any, count_uid: str, monitor_uid: str) -> None:
    rows = list_runs(catalog, limit=2)
    assert [row["uid"] for row in rows] == [monitor_uid, count_uid]
    assert rows[0]["plan_name"] == "monitoring"
    assert rows[0]["num_events"] == 1 + len(MONITOR_VALUES) + 1
    assert rows[1]["num_events"] == NUM
    assert rows[1]["exit_status"] == "success"
    assert list_runs(catalog, limit=0) == []
    assert len(list_runs(catalog, limit=None)) == len(catalog)


# --- scan ids -----------------------------------------------------------------------------


def test_scan_ids_continue_in_a_new_run_engine(
    catalog: Any, analyser: FakeAnalyser, monitor_uid: str
) -> None:
    last = catalog[monitor_uid].metadata["start"]["scan_id"]
    assert latest_scan_id(catalog) == last
    fresh = RunEngine({})
    assert seed_scan_id(fresh, catalog) == last
    assert fresh.md["scan_id"] == last
    subscription = subscribe_writer(fresh, catalog, recover_pending=False)
    try:
        assert subscription.scan_id == last
        (uid,) = fresh(counting(analyser, 3))
    finally:
        subscription.unsubscribe()
    assert catalog[uid].metadata["start"]["scan_id"] == last + 1
    assert len(run_table(catalog[uid])) == 3


def test_seed_never_moves_a_run_engine_backwards(catalog: Any, monitor_uid: str) -> None:
    ahead = RunEngine({"scan_id": 1000})
    assert seed_scan_id(ahead, catalog) == 1000
    assert ahead.md["scan_id"] == 1000


# --- legacy -------------------------------------------------------------------------------


def _has_legacy_dependencies() -> bool:
    try:
        import databroker.v1  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    _has_legacy_dependencies(), reason="databroker[back-compat] installed: Broker works"
)
def test_legacy_broker_without_back_compat_says_what_to_install(catalog: Any) -> None:
    with pytest.raises(CatalogError, match=r"databroker\[back-compat\]"):
        legacy_broker(catalog)


@pytest.mark.skipif(
    not _has_legacy_dependencies(), reason="needs databroker[back-compat] (humanize, doct)"
)
def test_legacy_broker_replays_the_same_runs(catalog: Any, count_uid: str) -> None:
    db = legacy_broker(catalog)
    header = db[count_uid]
    assert header.start["uid"] == count_uid
    assert header.stop["exit_status"] == "success"
    table = header.table()
    assert len(table) == NUM
    assert table[DATA_KEYS[0]].tolist() == [channel_value(0, s) for s in range(1, NUM + 1)]
    scan_id = header.start["scan_id"]
    assert [h.start["uid"] for h in db(scan_id=scan_id)] == [count_uid]
