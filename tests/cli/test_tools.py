"""``read``, ``stream``, ``discover``, ``capture`` and ``diag`` end to end against the
simulator: a Modbus RTU bus on a pseudo-terminal (analysers 30 and 31) and a continuous
analyser on a TCP port, in a simulator thread; Ctrl-C is tested on real subprocesses."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ophyd_servomex.cli import main
from ophyd_servomex.codec.modbus_frames import encode_rtu
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.sim import Fault, SimConfig, SimulatorThread, WireKind
from ophyd_servomex.transport import PortInfo

TOOLS = ("read", "stream", "discover", "capture", "diag")
FAST = ("--protocol", "modbus-rtu", "--idle", "0")
"""Options for a zero-latency Modbus simulator: no AUTO, no idle gap."""
ROW_31 = [
    "I1  Oxygen     18.500 %    ok",
    "I2  CO          0.084 %    ok",
    "I3  CO₂         0.250 %    ok",
    "E1  -             0.0 mA   ok",
    "E2  -             0.0 mA   ok",
]


def sample_line(name: str, o2: str = "20.378") -> str:
    """The regular expression of one ``stream`` line of the quiet bench unit."""
    return r"\d\d:\d\d:\d\d\.\d{3} " + re.escape(
        f"{name} I1={o2}% I2=0.084% I3=0.250% E1=0.0mA E2=0.0mA"
    )


@pytest.fixture(scope="module")
def bus() -> Iterator[SimulatorThread]:
    """Two quiet Modbus RTU analysers on one pty: 30 (O₂ 20.378 %) and 31 (O₂ 18.5 %)."""
    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, addresses=(30, 31), noisy=False, seed=1)
    with SimulatorThread(config) as sim:
        sim.handle.analyser_at(31).set_setpoint("I1", 18.5)
        yield sim


@pytest.fixture(scope="module")
def broadcaster() -> Iterator[SimulatorThread]:
    """A quiet continuous-mode analyser on a TCP port, 20 frames a second."""
    config = SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, noisy=False, period=0.05)
    with SimulatorThread(config, link="tcp") as sim:
        yield sim


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def cli_process(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ophyd_servomex.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([tool, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ophyd-servomex {tool}")
    for option in ("--protocol", "--address", "--baud", "--timeout", "--period", "--idle"):
        assert option in out
    assert "socket://HOST:PORT" in out


def test_help_from_the_console_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ophyd_servomex.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    for tool in TOOLS:
        assert re.search(rf"^    {tool} ", result.stdout, re.MULTILINE)


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["read", "/dev/x", "--address", "300"],
        ["read", "/dev/x", "--address", "30,31"],
        ["stream", "/dev/x", "--rate", "0"],
        ["diag", "/dev/x", "--data", "A5"],
        ["read", "/dev/x", "--protocol", "smoke"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err


# --- read -----------------------------------------------------------------------------------


def test_read_modbus(bus: SimulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "read", bus.port, "--address", "31", *FAST)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        f"{bus.port}: modbus-rtu, address 31",
        "channels: I1 Oxygen, I2 CO, I3 CO₂",
        "analyser: ok; calibrating: none",
        "id  name        value unit status",
        *ROW_31,
    ]


def test_read_auto_finds_modbus_on_the_pty(
    bus: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "read", bus.port, "--address", "30", "--idle", "0")
    assert status == 0
    assert out.splitlines()[0] == f"{bus.port}: modbus-rtu, address 30"
    assert "I1  Oxygen     20.378 %    ok" in out.splitlines()


def test_read_auto_finds_continuous_over_tcp(
    broadcaster: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    # --period 0.5 (frames come every 0.05 s): AUTO listens 1 s, enough on a loaded machine
    status, out, err = run(capsys, "read", broadcaster.port, "--timeout", "0.2", "--period", "0.5")
    assert status == 0, err
    assert out.splitlines() == [
        f"{broadcaster.port}: continuous",
        "channels: I1 Oxygen, I2 CO, I3 CO2",
        "analyser: ok; calibrating: none",
        "id  name        value unit status",
        "I1  Oxygen     20.378 %    ok",
        "I2  CO          0.084 %    ok",
        "I3  CO2         0.250 %    ok",
        "E1  -             0.0 mA   ok",
        "E2  -             0.0 mA   ok",
    ]


def test_read_json(bus: SimulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "read", bus.port, "--address", "30", *FAST, "--json")
    assert status == 0
    data = json.loads(out)
    assert (data["port"], data["protocol"], data["address"]) == (bus.port, "modbus-rtu", 30)
    assert data["channels"][2] == {"id": "I3", "name": "CO₂", "unit": "%"}
    channels = data["frame"]["channels"]
    assert channels["I1"] == {
        "name": "Oxygen",
        "value": 20.378000259399414,
        "unit": "%",
        "ok": True,
        "flags": [],
    }
    assert channels["E1"]["name"] is None
    assert data["frame"]["analyser"] == {"fault": False, "maintenance": False, "calibrating": []}


def test_read_reports_flags(bus: SimulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    analyser = bus.handle.analyser_at(31)
    analyser.set_fault(True, "I2")
    try:
        status, out, _ = run(capsys, "read", bus.port, "--address", "31", *FAST)
    finally:
        analyser.set_fault(False, "I2")
    assert status == 0
    assert "I2  CO          0.084 %    fault" in out.splitlines()


def test_read_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "read", "/dev/no-such-servomex", *FAST)
    assert status == 1
    assert out == ""
    assert err.startswith("ophyd-servomex read: error: ")
    assert "/dev/no-such-servomex" in err
    assert err.count("\n") == 1


def test_read_silent_address_times_out(
    bus: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "read", bus.port, "--address", "77", *FAST, "--timeout", "0.1")
    assert status == 1
    assert err.startswith("ophyd-servomex read: error: no reply from address 77")


# --- stream ---------------------------------------------------------------------------------


def test_stream_modbus_count(bus: SimulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys, "stream", bus.port, "--address", "30", *FAST, "--rate", "20", "--count", "3"
    )
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(sample_line(bus.port), line)
    assert f"{bus.port}: modbus-rtu, polling at 20 Hz; Ctrl-C stops" in err
    assert "done: 3 frames (0 errors)" in err


def test_stream_several_addresses(bus: SimulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys,
        "stream",
        bus.port,
        "--address",
        "30,31",
        *FAST,
        "--rate",
        "20",
        "--count",
        "4",
    )
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 4
    for line, pattern in zip(
        lines, [sample_line("a30"), sample_line("a31", "18.500")] * 2, strict=True
    ):
        assert re.fullmatch(pattern, line)
    assert "2 analysers, polling at 20 Hz" in err


def test_stream_several_addresses_need_a_modbus_protocol(
    bus: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "stream", bus.port, "--address", "30,31", "--count", "1")
    assert (status, out) == (1, "")
    assert "Modbus RTU or ASCII analysers only, not auto" in err


def test_stream_continuous_json(
    broadcaster: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys, "stream", broadcaster.port, "--protocol", "continuous", "--count", "2", "--json"
    )
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]  # long format: one per channel
    assert [r["channel"] for r in records] == ["I1", "I2", "I3", "E1", "E2"] * 2
    for record in records:
        assert record["protocol"] == "continuous"
        assert record["device"] == broadcaster.port
        assert record["requested_at"] is None  # a broadcast: nobody asked
        assert record["error"] is None
    assert [r["value"] for r in records if r["channel"] == "I1"] == [20.378, 20.378]
    assert records[0]["name"] == "Oxygen"
    assert records[0]["unit"] == "%"
    assert len({r["monotonic_ns"] for r in records}) == 2  # two frames
    assert "following broadcasts" in err


def test_stream_stops_cleanly_on_ctrl_c(bus: SimulatorThread) -> None:
    process = cli_process("stream", bus.port, "--address", "30", *FAST, "--rate", "20")
    assert process.stdout is not None
    first = process.stdout.readline()
    assert re.fullmatch(sample_line(bus.port), first.rstrip("\n"))
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert re.search(r"^interrupted: \d+ frames \(0 errors\) in [\d.]+ s$", err, re.MULTILINE)
    for line in out.splitlines():
        assert re.fullmatch(sample_line(bus.port), line)


# --- discover -------------------------------------------------------------------------------


def test_discover_explicit_ports(
    bus: SimulatorThread, broadcaster: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys,
        "discover",
        bus.port,
        broadcaster.port,
        "/dev/no-such-servomex",
        "--address",
        "30,31,32",
        "--timeout",
        "0.2",
        "--period",
        "0.05",
        "--idle",
        "0",
    )
    assert status == 0
    blocks = {block.splitlines()[0]: block for block in re.split(r"\n(?=\S)", out.strip())}
    assert blocks[f"{bus.port}: modbus-rtu"].splitlines()[1:] == [
        "  address 30: I1 Oxygen (%), I2 CO (%), I3 CO₂ (%)",
        "  address 31: I1 Oxygen (%), I2 CO (%), I3 CO₂ (%)",
    ]
    assert blocks[f"{broadcaster.port}: continuous"].splitlines()[1:] == [
        "  broadcasting: I1 Oxygen (%), I2 CO (%), I3 CO2 (%)"
    ]
    missing = [line for line in blocks if line.startswith("/dev/no-such-servomex")]
    assert missing == [
        "/dev/no-such-servomex: nothing found — cannot open /dev/no-such-servomex: "
        "no such serial port"
    ]
    assert "probing 3 ports: Modbus RTU and ASCII at address 30" in err
    assert "3 analysers found on 2 of 3 ports" in err


def test_discover_lists_serial_ports_and_probes_them(
    bus: SimulatorThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ophyd_servomex.transport as transport

    ports = [PortInfo(bus.port, "USB-RS485 Cable", "USB VID:PID=0403:6001 SER=FT1")]
    monkeypatch.setattr(transport, "list_ports", lambda: ports)
    status, out, _ = run(capsys, "discover", "--list-only")
    assert (status, out) == (
        0,
        f"1 serial port:\n  {bus.port}  (USB-RS485 Cable; USB VID:PID=0403:6001 SER=FT1)\n",
    )
    status, out, err = run(capsys, "discover", "--address", "31", *FAST)
    assert status == 0
    assert out.splitlines()[-2:] == [
        f"{bus.port}: modbus-rtu",
        "  address 31: I1 Oxygen (%), I2 CO (%), I3 CO₂ (%)",
    ]
    assert "probing 1 port in modbus-rtu at address 31" in err


def test_discover_without_ports_or_analysers(
    bus: SimulatorThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ophyd_servomex.transport as transport

    monkeypatch.setattr(transport, "list_ports", list)
    status, out, _ = run(capsys, "discover")
    assert status == 1
    assert out.startswith("no serial ports found")
    status, out, err = run(
        capsys, "discover", bus.port, "--address", "77", *FAST, "--timeout", "0.1"
    )
    assert status == 1
    assert out.startswith(f"{bus.port}: nothing found — no reply from address 77")
    assert "0 analysers found on 0 of 1 port" in err


# --- capture --------------------------------------------------------------------------------


def test_capture_poll_to_csv(
    bus: SimulatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "o2.csv"
    status, out, err = run(
        capsys,
        "capture",
        bus.port,
        "--address",
        "31",
        *FAST,
        "--rate",
        "20",
        "--duration",
        "0.25",
        "-o",
        str(target),
    )
    assert (status, out) == (0, "")
    with target.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 5 * 5  # five ticks, five channels each: the long format
    assert [r["channel"] for r in rows[:5]] == ["I1", "I2", "I3", "E1", "E2"]
    first = rows[0]
    assert (first["device"], first["protocol"]) == (bus.port, "modbus-rtu")
    assert (first["name"], first["value"], first["unit"], first["ok"]) == (
        "Oxygen",
        "18.5",
        "%",
        "1",
    )
    assert rows[2]["name"] == "CO₂"
    assert rows[2]["value"] == "0.25"
    assert rows[3]["name"] == ""
    assert {r["error"] for r in rows} == {""}
    assert len({r["received_at"] for r in rows}) == 5
    assert len({r["monotonic_ns"] for r in rows}) == 5
    assert all(r["requested_at"] and float(r["latency_s"]) > 0 for r in rows)
    assert "tick" in err  # the progress bar
    assert "schedule: 5 batches at 20 Hz (25 samples, 0 errors)" in err
    assert "done: 25 samples (0 errors) in" in err
    assert f"written to {target} as csv" in err


def test_capture_several_addresses_to_jsonl_on_stdout(
    bus: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys,
        "capture",
        bus.port,
        "--address",
        "30,31",
        *FAST,
        "--rate",
        "20",
        "--duration",
        "0.15",
        "--format",
        "jsonl",
        "--no-progress",
    )
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["device"], r["channel"]) for r in records] == [
        (device, channel)
        for _tick in range(3)
        for device in ("a30", "a31")
        for channel in ("I1", "I2", "I3", "E1", "E2")
    ]
    o2 = [r["value"] for r in records if r["channel"] == "I1"]
    assert o2[:2] == [20.378000259399414, 18.5]
    assert "tick/s" not in err  # no progress bar


def test_capture_subscribes_to_a_broadcaster(
    broadcaster: SimulatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "frames.jsonl"
    status, _, err = run(
        capsys,
        "capture",
        broadcaster.port,
        "--protocol",
        "continuous",
        "--duration",
        "0.5",
        "-o",
        str(target),
    )
    assert status == 0
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    frames = len({r["monotonic_ns"] for r in records})
    assert 3 <= frames <= 12  # a frame every 0.05 s for half a second
    assert len(records) == 5 * frames
    assert all(r["name"] == "CO2" for r in records if r["channel"] == "I3")
    assert "capturing by subscribe" in err
    assert "frame" in err  # the progress counter


def test_capture_records_errors_as_rows(bus: SimulatorThread, tmp_path: Path) -> None:
    target = tmp_path / "bad-crc.csv"
    process = cli_process(
        "capture",
        bus.port,
        "--address",
        "30",
        *FAST,
        "--rate",
        "5",
        "--duration",
        "1.2",
        "-o",
        str(target),
        "--no-progress",
    )
    assert process.stderr is not None
    for line in process.stderr:  # identified and capturing: now spoil one read
        if "capturing by poll" in line:
            break
    bus.faults.inject(Fault.CORRUPT_CHECKSUM, count=3)  # one read and both its retries
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    rows = list(csv.DictReader(target.open(newline="", encoding="utf-8")))
    errors = [r for r in rows if r["error"]]
    assert len(errors) == 1
    assert errors[0]["error"].startswith(
        "ServomexChecksumError: CRC mismatch in the reply from address 30"
    )
    assert errors[0]["channel"] == ""
    schedule = re.search(r"schedule: (\d+) batches at 5 Hz .*\((\d+) missed", err)
    assert schedule is not None
    ticks, missed = int(schedule[1]), int(schedule[2])
    assert ticks + missed == 6  # 1.2 s at 5 Hz; the failed tick's retries may cost a slot
    assert len(rows) == 1 + 5 * (ticks - 1)  # one failed tick, then five channels per tick
    assert f"{len(rows)} samples (1 errors)" in err


def test_capture_stops_cleanly_on_ctrl_c(bus: SimulatorThread, tmp_path: Path) -> None:
    target = tmp_path / "ctrl-c.jsonl"
    process = cli_process(
        "capture", bus.port, "--address", "30", *FAST, "--rate", "20", "-o", str(target)
    )
    assert process.stderr is not None
    for line in process.stderr:  # wait until it captures
        if "capturing by poll" in line:
            break
    deadline = time.monotonic() + 20
    while not target.exists() or target.stat().st_size == 0:  # some samples written
        assert time.monotonic() < deadline, "capture wrote nothing"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert re.search(r"interrupted: (\d+) samples \(0 errors\)", err)
    assert "schedule: " in err
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert records
    assert all(r["device"] == bus.port and r["error"] is None for r in records)
    assert len(records) % 5 == 0  # whole frames only: nothing half-written on Ctrl-C


def test_capture_wide_for_spreadsheets(
    bus: SimulatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "wide.csv"
    status, _, _ = run(
        capsys,
        "capture",
        bus.port,
        "--address",
        "30,31",
        *FAST,
        "--rate",
        "20",
        "--duration",
        "0.15",
        "--wide",
        "--no-progress",
        "-o",
        str(target),
    )
    assert status == 0
    with target.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    header = rows[0]
    assert header[0] == "received_at"
    assert header[1:4] == ["a30 I1 Oxygen [%]", "a30 I2 CO [%]", "a30 I3 CO₂ [%]"]
    assert header[4:6] == ["a30 E1 [mA]", "a30 E2 [mA]"]
    assert header[6] == "a31 I1 Oxygen [%]"
    assert header[-1] == "errors"
    assert len(rows) == 1 + 3  # three ticks, one row each
    assert [row[1] for row in rows[1:]] == ["20.378000259399414"] * 3
    assert [row[6] for row in rows[1:]] == ["18.5"] * 3
    assert {row[-1] for row in rows[1:]} == {""}


# --- diag -----------------------------------------------------------------------------------


def test_diag_loopback(bus: SimulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    bus.log.clear()
    status, out, _ = run(capsys, "diag", bus.port, "--address", "30", *FAST, "--count", "5")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == (
        f"{bus.port}: modbus-rtu, address 30; 5 loopback round trips, "
        "with no line idle before the requests (--idle 0)"
    )
    for index, line in enumerate(lines[1:6], start=1):
        assert re.fullmatch(rf"  {index}/5  echo a5 5a  \d+\.\d\d ms", line)
    assert re.fullmatch(
        r"round trip: min [\d.]+ ms, p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms, "
        r"mean [\d.]+ ms, jitter \(stdev\) [\d.]+ ms",
        lines[6],
    )
    assert lines[7:] == ["5 good, 0 failed", "line: 5 attempts, 0 retried, failures: none"]
    loopbacks = [e.data for e in bus.log.events(WireKind.REQUEST) if e.data[1] == 8]
    assert loopbacks == [encode_rtu(30, bytes.fromhex("08 0000 A55A"))] * 5


def test_diag_says_its_round_trips_include_the_line_idle(
    bus: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "diag", bus.port, "--address", "30", "--protocol", "rtu", "--count", "3"
    )
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == (
        f"{bus.port}: modbus-rtu, address 30; 3 loopback round trips, "
        "each including the 50 ms line idle before its request"
    )
    # back to back, every round trip really waits out the 50 ms gap (a lower bound only)
    times = [float(line.split()[-2]) for line in lines[1:4]]
    assert all(t >= 50.0 for t in times), times
    status, out, _ = run(
        capsys, "diag", bus.port, "--address", "30", "--idle", "0.02", "--interval", "0.01",
        "--count", "2",
    )  # fmt: skip
    assert status == 0
    assert out.splitlines()[0] == (
        f"{bus.port}: modbus-rtu, address 30; 2 loopback round trips, "
        "each including the 20 ms line idle before its request, less the --interval pause"
    )


def test_diag_continuous_has_no_idle_note(
    broadcaster: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "diag", broadcaster.port, "--protocol", "Continuous", "--count", "1"
    )
    assert status == 0
    assert out.splitlines()[0] == f"{broadcaster.port}: continuous; 1 frame intervals"


def test_diag_counts_retries(bus: SimulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "diag", bus.port, "--address", "31", *FAST, "--count", "3", "--data", "1234"
    )
    assert status == 0
    bus.faults.inject(Fault.DROP)
    status, out, _ = run(
        capsys,
        "diag",
        bus.port,
        "--address",
        "31",
        *FAST,
        "--count",
        "3",
        "--data",
        "1234",
        "--timeout",
        "0.1",
        "--interval",
        "0.01",
    )
    assert status == 0
    assert "  1/3  echo 12 34  " in out
    lines = out.splitlines()
    assert lines[-2:] == [
        "3 good, 0 failed",
        "line: 4 attempts, 1 retried, failures: timeout 1",
    ]


def test_diag_fails_when_nothing_echoes(
    bus: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "diag", bus.port, "--address", "77", *FAST, "--count", "2", "--timeout", "0.05"
    )
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == (
        f"{bus.port}: modbus-rtu, address 77; 2 loopback round trips, "
        "with no line idle before the requests (--idle 0)"
    )
    assert lines[1].startswith("  1/2  error: no reply from address 77 to FC08 loopback")
    assert lines[2].startswith("  2/2  error: no reply from address 77 to FC08 loopback")
    assert lines[3:] == ["0 good, 2 failed", "line: 6 attempts, 4 retried, failures: timeout 6"]


def test_diag_frame_intervals(
    broadcaster: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "diag", broadcaster.port, "--protocol", "continuous", "--count", "3"
    )
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"{broadcaster.port}: continuous; 3 frame intervals"
    for index, line in enumerate(lines[1:4], start=1):
        assert re.fullmatch(rf"  {index}/3  frame after \d+\.\d ms", line)
    assert lines[4].startswith("interval: min ")
    assert lines[5:] == ["3 good, 0 failed", "bad lines skipped: 0"]
