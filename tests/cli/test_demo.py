"""``ophyd-servomex demo`` end to end, and a second process reading what it left in the catalog."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ophyd_servomex.cli import main
from ophyd_servomex.cli._demo_plot import _spans
from ophyd_servomex.cli._demo_replay import ChannelMean, StreamData, format_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Run in a fresh interpreter, started with the demo so that its imports overlap the demo's
# runs: on "go" it opens the catalog the demo wrote and reports what it holds as JSON.
READER = r"""
import json, math, sys
import tiled.catalog, tiled.client, tiled.server.app  # import while the demo runs
from ophyd_servomex.catalog import open_catalog, run_summary, run_table

if sys.stdin.readline().strip() != "go":
    sys.exit(3)
cat = open_catalog(sys.argv[1])
out = []
for run in cat.values():
    summary = run_summary(run)
    streams = {}
    for stream in summary["streams"]:
        table = run_table(run, stream)
        node = run[stream]
        config = {}
        for device, values in node.metadata.get("configuration", {}).items():
            config.update(values.get("data", {}))
        streams[stream] = {
            "rows": len(table),
            "units": {k: v for k, v in summary["data_keys"][stream].items() if v},
            "finite": {
                c: sum(1 for v in table[c] if isinstance(v, float) and not math.isnan(v))
                for c in table.columns if c.endswith("-value")
            },
            "means": {c: float(table[c].mean()) for c in table.columns if c.endswith("-value")},
            "phases": sorted({str(v) for c in table.columns if c.endswith("cal_group1")
                              for v in table[c]}),
            "config": config,
        }
    out.append({
        "plan": summary["plan_name"],
        "scan_id": summary["scan_id"],
        "exit_status": summary["exit_status"],
        "num_events": summary["num_events"],
        "start": {k: run.metadata["start"].get(k) for k in ("purpose", "calibration_group")},
        "streams": streams,
    })
print(json.dumps(out))
"""

CHANNELS = ("i1", "i2", "i3", "e1", "e2")
BENCH = {"i1": (20.378, "%"), "i2": (0.084, "%"), "i3": (0.250, "%")}


def _env(catalog: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["OPHYD_SERVOMEX_CATALOG"] = str(catalog)
    env["MPLBACKEND"] = "Agg"
    return env


def _start_reader(catalog: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", READER, str(catalog)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the demo once in a subprocess, then read its catalog from another subprocess.

    The reader starts when the demo reports its catalog open (so its imports overlap the
    runs, not the demo's own start-up) and opens the catalog once the demo has exited.
    """
    root = tmp_path_factory.mktemp("demo")
    catalog, output = root / "catalog", root / "out"
    env = _env(catalog)
    command = [sys.executable, "-m", "ophyd_servomex.cli", "demo", "--output", str(output)]
    demo = subprocess.Popen(
        [*command, "--monitor-seconds", "1.5"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reader: subprocess.Popen[str] | None = None
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if reader is None and line.startswith("catalog:"):
                reader = _start_reader(catalog, env)
        demo.wait(timeout=110)
        if reader is None:
            reader = _start_reader(catalog, env)
        stdout, stderr = reader.communicate("go\n", timeout=60)
    finally:
        for process in (demo, reader):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    return {
        "status": demo.returncode,
        "out": "".join(lines),
        "read": (reader.returncode, stdout, stderr),
        "output": output,
        "catalog": catalog,
    }


def _runs(demo: dict[str, Any]) -> list[dict[str, Any]]:
    status, stdout, stderr = demo["read"]
    assert status == 0, stderr
    runs: list[dict[str, Any]] = json.loads(stdout)
    return runs


@pytest.mark.slow
def test_the_demo_exits_0_and_says_what_it_did(demo: dict[str, Any]) -> None:
    out = demo["out"]
    assert demo["status"] == 0, out
    assert "detected modbus-rtu at address 30" in out
    assert "detected continuous;" in out
    assert "channels I1 Oxygen [%], I2 CO [%], I3 CO₂ [%], E1 [mA], E2 [mA]" in out
    assert "run 1: count([modbus], num=100)" in out
    assert "100 events in" in out
    assert "run 2: monitor_broadcast([broadcast], 1.5 s)" in out
    assert "the simulated analyser went through: cal_gas_1 → cal_gas_2 → cal_gas_1 → done" in out
    assert "modbus-calibration group 1: cal_gas_2" in out  # the progress bar drew the phase
    assert f"opened {demo['catalog']} and holds 3 run(s)" in out
    table = out[out.index("scan  run") :].splitlines()
    assert table[0].split() == [
        *("scan", "run", "plan", "stream", "events"),
        *("I1", "Oxygen", "I2", "CO", "I3", "CO₂", "E1", "E2"),
    ]
    rows = [line.split() for line in table[2:6]]
    assert [(r[0], r[2], r[3], r[4]) for r in rows[:1]] == [("1", "count", "primary", "100")]
    assert [(r[0], r[2], r[3]) for r in rows[1:]] == [
        ("2", "monitor_broadcast", "broadcast_monitor"),
        ("3", "calibrate", "primary"),
        ("3", "calibrate", "modbus_monitor"),
    ]
    assert rows[2][4] == "2"
    assert rows[0][-4:] == ["0.0", "mA", "0.0", "mA"]
    assert "Traceback" not in out
    assert "WARNING" not in out
    assert "ERROR" not in out


@pytest.mark.slow
def test_the_demo_writes_a_png_of_the_gas_channels(demo: dict[str, Any]) -> None:
    path = demo["output"] / "gas_channels.png"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1000, 880)  # 10 × 8.8 inches at 100 dpi: three panels
    # three channels × (count, broadcast monitor, calibration before/after, its monitor)
    assert f"plot of the gas channels (12 series): {path}" in demo["out"]


@pytest.mark.slow
def test_a_separate_process_finds_the_count_with_every_channel(demo: dict[str, Any]) -> None:
    runs = _runs(demo)
    assert [(r["scan_id"], r["plan"], r["exit_status"]) for r in runs] == [
        (1, "count", "success"),
        (2, "monitor_broadcast", "success"),
        (3, "calibrate", "success"),
    ]
    count = runs[0]
    assert count["num_events"] == {"primary": 100}
    assert count["start"]["purpose"] == "ophyd-servomex demo"
    primary = count["streams"]["primary"]
    assert primary["rows"] == 100
    assert primary["finite"] == {f"modbus-{c}-value": 100 for c in CHANNELS}
    for channel, (setpoint, unit) in BENCH.items():
        assert primary["units"][f"modbus-{channel}-value"] == unit
        assert math.isclose(primary["means"][f"modbus-{channel}-value"], setpoint, abs_tol=0.005)
    assert primary["units"]["modbus-e1-value"] == "mA"
    assert primary["means"]["modbus-e1-value"] == 0.0
    assert primary["means"]["modbus-e2-value"] == 0.0
    names = {k: v for k, v in primary["config"].items() if k.endswith("display_name")}
    assert names == {
        "modbus-i1-display_name": "Oxygen",
        "modbus-i2-display_name": "CO",
        "modbus-i3-display_name": "CO₂",
        "modbus-e1-display_name": "",
        "modbus-e2-display_name": "",
    }
    assert primary["config"]["modbus-protocol"] == "modbus-rtu"
    assert primary["config"]["modbus-address"] == 30


@pytest.mark.slow
def test_a_separate_process_finds_the_broadcast_monitor_stream(demo: dict[str, Any]) -> None:
    monitor = _runs(demo)[1]
    assert list(monitor["streams"]) == ["broadcast_monitor"]
    stream = monitor["streams"]["broadcast_monitor"]
    # 1.5 s at one frame per 0.1 s, plus the frame current when monitoring began
    assert 8 <= stream["rows"] <= 20
    assert monitor["num_events"] == {"broadcast_monitor": stream["rows"]}
    assert stream["finite"] == {f"broadcast-{c}-value": stream["rows"] for c in CHANNELS}
    assert stream["config"]["broadcast-protocol"] == "continuous"
    assert stream["config"]["broadcast-i3-display_name"] == "CO2"  # ASCII in continuous mode


@pytest.mark.slow
def test_a_separate_process_finds_the_calibration_run(demo: dict[str, Any]) -> None:
    calibration = _runs(demo)[2]
    assert calibration["start"]["calibration_group"] == 1
    assert sorted(calibration["streams"]) == ["modbus_monitor", "primary"]
    assert calibration["streams"]["primary"]["rows"] == 2
    monitor = calibration["streams"]["modbus_monitor"]
    assert monitor["rows"] >= 5
    assert {"cal_gas_1", "cal_gas_2"} <= set(monitor["phases"])


def test_bad_arguments_are_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--events", "0"], ["--events", "x"], ["--monitor-seconds", "-1"]):
        with pytest.raises(SystemExit) as stopped:
            main(["demo", *argv])
        assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "must be ≥ 1: '0'" in err
    assert "not a whole number: 'x'" in err
    assert "must be > 0: '-1'" in err


def test_the_summary_table_aligns_means_with_their_units() -> None:
    oxygen = ChannelMean("I1", "Oxygen", 20.3776, "%", 3)
    current = ChannelMean("E1", "", 0.0, "mA", 1)
    streams = [
        StreamData("a" * 36, 1, "count", "primary", 100, [oxygen, current]),
        StreamData("b" * 36, 2, "monitor_broadcast", "broadcast_monitor", 31, [oxygen]),
        StreamData("c" * 36, None, "calibrate", "primary", 0, []),
    ]
    assert format_table(streams).splitlines() == [
        "scan  run       plan               stream             events  I1 Oxygen      E1",
        "----  --------  -----------------  -----------------  ------  ---------  ------",
        "   1  aaaaaaaa  count              primary               100   20.378 %  0.0 mA",
        "   2  bbbbbbbb  monitor_broadcast  broadcast_monitor      31   20.378 %       -",
        "   -  cccccccc  calibrate          primary                 0          -       -",
    ]


def test_nan_means_print_as_nan() -> None:
    assert ChannelMean("I2", "CO", math.nan, "%", 3).text == "nan %"
    assert ChannelMean("E2", "", 1.25, "", 1).text == "1.2"


def test_calibration_shading_spans_each_run_of_flags() -> None:
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert _spans(times, [False, True, True, False, True, True]) == [(1.0, 2.0), (4.0, 5.0)]
    assert _spans(times, [False] * 6) == []
    assert _spans([], []) == []


def test_an_unusable_catalog_location_fails_with_status_1_before_anything_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the demo shortens tiled's retries through the environment: keep that out of this process
    monkeypatch.setenv("TILED_RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("TILED_RETRY_TIMEOUT", "2")
    assert main(["demo", "--catalog", "ftp://example.org/runs"]) == 1
    captured = capsys.readouterr()
    assert "simulated 4100" not in captured.out
    assert captured.err.startswith("error: unsupported catalog location scheme 'ftp'")
