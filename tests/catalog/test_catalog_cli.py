"""``ophyd-servomex runs`` and ``ophyd-servomex replay`` on an embedded catalog."""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Generator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky import RunEngine
from catalog_helpers import CHANNEL_UNITS, DATA_KEYS, channel_value, connected_analyser, counting

from ophyd_servomex.catalog import (
    CATALOG_ENV,
    close_catalog,
    open_catalog,
    run_table,
    subscribe_writer,
)
from ophyd_servomex.cli import catalog as catalog_cli

NUM = 3


EVENT_TIMES: dict[str, list[float]] = {}
"""Each run's event times (epoch seconds), read while the fixture has the catalog open."""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    location = tmp_path_factory.mktemp("cli") / "catalog"
    catalog = open_catalog(location)
    RE = RunEngine({})
    subscription = subscribe_writer(RE, catalog)
    analyser = connected_analyser()
    uids = [RE(counting(analyser, NUM))[0], RE(counting(analyser, NUM))[0]]
    subscription.unsubscribe()
    for uid in uids:
        EVENT_TIMES[uid] = run_table(catalog[uid], epoch_time=True)["time"].tolist()
    close_catalog(catalog)
    return location, uids


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZoneInfo]:
    """Local time is Europe/Berlin for the test (restored afterwards)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield ZoneInfo("Europe/Berlin")
    monkeypatch.undo()
    time.tzset()


def local(stamp: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(stamp, zone).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


HEADER = (
    "seq_num  time                     analyser-e1-value [mA]  analyser-e2-value [mA]"
    "  analyser-i1-value [%]  analyser-i2-value [%]  analyser-i3-value [%]"
)


def row(seq: int, stamp: str) -> str:
    values = [channel_value(index, seq) for index in (3, 4, 0, 1, 2)]  # e1 e2 i1 i2 i3
    widths = [22, 22, 21, 21, 21]
    cells = "  ".join(f"{v:.3f}".rjust(w) for v, w in zip(values, widths, strict=True))
    return f"{seq:>7}  {stamp}  {cells}"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ophyd-servomex")
    catalog_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def test_runs_lists_newest_first(
    two_runs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    location, uids = two_runs
    assert cli("runs", "--catalog", str(location)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["scan_id", "uid", "plan", "started", "status", "events"]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == ["2", "1"]
    assert [row[1] for row in rows] == [uids[1][:8], uids[0][:8]]
    assert all(row[2] == "count" and row[-2] == "success" and row[-1] == str(NUM) for row in rows)
    assert cli("runs", "--catalog", str(location), "--limit", "1") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_format_runs_columns_line_up() -> None:
    rows = [
        {
            "scan_id": 12,
            "uid": "0123456789abcdef",
            "plan_name": "count",
            "start_time": None,
            "exit_status": None,
            "num_events": None,
        },
    ]
    assert catalog_cli.format_runs(rows).splitlines() == [
        "scan_id  uid       plan   started  status    events",
        "12       01234567  count  -        running?  -",
    ]


def test_replay_prints_summary_and_table_and_writes_csv(
    two_runs: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    location, uids = two_runs
    monkeypatch.setenv(CATALOG_ENV, str(location))  # no --catalog: the environment names it
    target = tmp_path / "run.csv"
    assert cli("replay", "-1", "--csv", str(target)) == 0
    out = capsys.readouterr().out
    assert f"uid:         {uids[1]}" in out
    assert "scan_id:     2" in out
    assert "plan:        count" in out
    assert "exit_status: success" in out
    units = ", ".join(f"{key} [{CHANNEL_UNITS[key.split('-')[1]]}]" for key in sorted(DATA_KEYS))
    assert f"stream primary: {NUM} event(s); {units}" in out
    assert f"wrote {NUM} row(s) to {target}" in out
    with target.open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["seq_num", "time", *sorted(DATA_KEYS)]
    assert [int(row["seq_num"]) for row in rows] == [1, 2, 3]
    for index, key in enumerate(DATA_KEYS):
        assert [float(row[key]) for row in rows] == [channel_value(index, s) for s in (1, 2, 3)]


def test_replay_by_scan_id_and_partial_uid(
    two_runs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    location, uids = two_runs
    assert cli("replay", "1", "--catalog", str(location)) == 0
    assert f"uid:         {uids[0]}" in capsys.readouterr().out
    assert cli("replay", uids[1][:6], "--catalog", str(location), "--rows", "2") == 0
    out = capsys.readouterr().out
    assert f"uid:         {uids[1]}" in out
    assert "... 1 more row(s) ..." in out


def test_replay_of_a_missing_run_fails_cleanly(
    two_runs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    location, _ = two_runs
    assert cli("replay", "77", "--catalog", str(location)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: no run has scan_id 77")
    assert cli("replay", "-1", "--catalog", str(location), "--stream", "baseline") == 1
    assert "no stream 'baseline'" in capsys.readouterr().err
    assert cli("runs", "--catalog", "mongodb://nowhere/x") == 1
    assert "unsupported catalog location scheme" in capsys.readouterr().err


def test_runs_with_nothing_to_show(
    two_runs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    location, _ = two_runs
    assert cli("runs", "--catalog", str(location), "--limit", "0") == 0
    assert capsys.readouterr().out.strip() == "no runs"


def test_the_commands_are_registered_with_the_main_cli(
    two_runs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from ophyd_servomex.cli import main

    location, _ = two_runs
    assert main(["runs", "--catalog", str(location), "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "2"


def test_replay_of_a_monitor_only_run_shows_its_monitor_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # monitor_broadcast records only "<name>_monitor": replay with no --stream must show it
    # instead of failing with "has no stream 'primary'"
    location = tmp_path / "catalog"
    catalog = open_catalog(location)
    RE = RunEngine({})
    subscribe_writer(RE, catalog)
    analyser = connected_analyser()

    @bpp.run_decorator(md={"plan_name": "monitor_broadcast"})
    def monitor_only() -> Generator[Any, Any, Any]:
        yield from bps.monitor(analyser.i1.value, name="analyser_monitor")
        for value in (1.5, 2.5):
            analyser.i1.put(value)
            yield from bps.sleep(0.02)
        yield from bps.unmonitor(analyser.i1.value)

    RE(monitor_only())
    close_catalog(catalog)
    capsys.readouterr()
    assert cli("replay", "-1", "--catalog", str(location)) == 0
    out = capsys.readouterr().out
    assert "stream analyser_monitor: 3 event(s); analyser-i1-value [%]" in out
    rows = [line.split() for line in out.split("\n\n", 1)[1].splitlines()[1:]]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert [float(row[-1]) for row in rows] == [0.0, 1.5, 2.5]
    assert cli("replay", "-1", "--catalog", str(location), "--stream", "primary") == 1
    assert "has no stream 'primary' (streams: analyser_monitor)" in capsys.readouterr().err


def test_replay_table_shows_local_times_and_units_in_aligned_columns(
    two_runs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str], berlin: ZoneInfo
) -> None:
    location, uids = two_runs
    assert cli("replay", uids[0], "--catalog", str(location)) == 0
    table = capsys.readouterr().out.split("\n\n", 1)[1]
    times = EVENT_TIMES[uids[0]]
    assert table.splitlines() == [HEADER, *(row(n, local(times[n - 1], berlin)) for n in (1, 2, 3))]


def test_replay_rows_keeps_the_header_and_the_alignment(
    two_runs: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str], berlin: ZoneInfo
) -> None:
    location, uids = two_runs
    assert cli("replay", uids[1], "--catalog", str(location), "--rows", "2") == 0
    table = capsys.readouterr().out.split("\n\n", 1)[1]
    times = EVENT_TIMES[uids[1]]
    assert table.splitlines() == [
        HEADER,
        row(1, local(times[0], berlin)),
        "... 1 more row(s) ...",
        row(3, local(times[2], berlin)),
    ]


def test_replay_checks_the_csv_path_before_printing_anything(
    two_runs: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    location, _ = two_runs
    target = tmp_path / "no-such-folder" / "run.csv"
    assert cli("replay", "-1", "--catalog", str(location), "--csv", str(target)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: cannot write {target}: No such file or directory\n"


class _Stream:
    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata


def test_hinted_keys_come_first_then_the_rest() -> None:
    from ophyd_servomex.catalog.replay import _data_key_order

    stream = _Stream(
        {
            "data_keys": {k: {} for k in ("b-fault", "z-value", "a-value", "a-fault")},
            "hints": {"dev": {"fields": ["z-value", "a-value", "not-a-key"]}},
        }
    )
    assert _data_key_order(stream) == ["a-value", "z-value", "a-fault", "b-fault"]


def test_format_table_without_units_or_rows_limit() -> None:
    import pandas

    table = pandas.DataFrame(
        {"time": ["t1", "t2"], "x": [1.5, float("nan")], "name": ["a", "bb"]},
        index=pandas.Index([1, 2], name="seq_num"),
    )
    table.attrs["units"] = {"x": "V", "name": None}
    assert catalog_cli.format_table(table, 0).splitlines() == [
        "seq_num  time  x [V]  name",
        "      1  t1      1.5  a",
        "      2  t2      nan  bb",
    ]
