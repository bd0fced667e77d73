"""``ophyd-servomex decode`` end to end: files, hex, stdin, bad lines and exit status."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from ophyd_servomex.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IDLE = FIXTURES / "continuous_4100_idle_5ch.bin"
LIVE = FIXTURES / "continuous_4100_live_5ch.bin"
FLAG_HEX = (
    "20 30 36 2d 31 30 2d 32 30 3b 30 32 3a 35 34 3a 31 32 3b 46 4d 3b 43 32 53 31 53 31 53 31 3b\n"
    "30 31 3b 49 31 3b 4f 78 79 67 65 6e 3b 32 30 2e 33 37 36 3b 20 25 20 3b 31 20 33 20 3b 46 4d\n"
    "3b 43 3b 57 3b 30 46 37 33 3b 0d 0a"
)

IDLE_FRAME_0_TABLE = """\
frame 1, line 1 (offset 0): clock 2020-10-06 02:54:12, analyser ok, checksum 2A1D
  cal groups: 1:S1 sampling, 2:S1 sampling, 3:S1 sampling, 4:S1 sampling
  id  name        value unit  flags
  I1  Oxygen     20.376 %     -
  I2  CO          0.084 %     -
  I3  CO2         0.250 %     -
  E1  (none)        0.0 mA    -
  E2  (none)        0.0 mA    -
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["decode", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_capture_file_prints_every_frame(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, str(IDLE))
    assert status == 0
    assert err == ""
    assert out.startswith(IDLE_FRAME_0_TABLE)
    headers = [line for line in out.splitlines() if line.startswith("frame ")]
    assert [h.split(": clock ")[1][:19] for h in headers] == [
        "2020-10-06 02:54:12",
        "2020-10-06 02:54:14",
        "2020-10-06 02:54:16",
        "2020-10-06 02:54:18",
        "2020-10-06 02:54:21",
        "2020-10-06 02:54:23",
    ]
    assert [h.split("(offset ")[1].split(")")[0] for h in headers] == [
        "0",
        "205",
        "410",
        "615",
        "820",
        "1025",
    ]
    assert out.endswith("6 frames, 0 bad, 0 fragments skipped\n")


def test_hex_flag_vector(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--hex", FLAG_HEX)
    assert status == 0
    assert out == (
        "frame 1, line 1 (offset 0): clock 2020-10-06 02:54:12, analyser FAULT MAINTENANCE,"
        " checksum 0F73\n"
        "  cal groups: 1:C2 calibrating, 2:S1 sampling, 3:S1 sampling, 4:S1 sampling\n"
        "  id  name        value unit  flags\n"
        "  I1  Oxygen     20.376 %     fault maint cal warm-up A1 A3\n"
        "1 frame, 0 bad, 0 fragments skipped\n"
    )


def test_bad_lines_are_reported_with_position_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = LIVE.read_bytes()
    frame0 = live[:205]
    broken = frame0[:-6] + b"2A37;\n"  # wrong checksum
    data = b"4;  ; ; ;2A1D;\n" + frame0 + broken + b"\r\n" + live[205:410] + live[410:500]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    status, out, _ = run(capsys, "-")
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == ("line 1 (offset 0): skipped 15 bytes: the tail of a frame (join fragment)")
    assert lines[1].startswith("frame 1, line 2 (offset 15): clock 2020-10-06 09:17:58")
    assert (
        "line 3 (offset 220): bad frame: ServomexChecksumError: checksum mismatch: "
        "frame carries 2A37, its content sums to 2A36"
    ) in lines
    assert lines[-10].startswith("frame 2, line 5 (offset 427): clock 2020-10-06 09:18:00")
    assert lines[-2] == (
        "line 6 (offset 632): bad frame: ServomexFrameError: "
        "frame is 90 bytes, expected 204 for 5 channels (39 + 33·5)"
    )
    assert lines[-1] == "2 frames, 2 bad, 1 fragment skipped"


def test_empty_input_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--hex", "") == (
        1,
        "0 frames, 0 bad, 0 fragments skipped\n",
        "ophyd-servomex decode: error: no continuous-mode frame: the input is empty\n",
    )


def test_an_empty_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    status, _, err = run(capsys, str(empty))
    assert status == 1
    assert err == "ophyd-servomex decode: error: no continuous-mode frame: the input is empty\n"


@pytest.mark.parametrize(
    ("garbage", "out"),
    [
        (  # no line end at all: the decoder takes it for the tail of a frame
            b"hello",
            "line 1 (offset 0): skipped 5 bytes: the tail of a frame (join fragment)\n"
            "0 frames, 0 bad, 1 fragment skipped\n",
        ),
        (
            b"\x00\xff garbage\r\nmore garbage\n",
            "line 1 (offset 0): skipped 12 bytes: the tail of a frame (join fragment)\n"
            "line 2 (offset 12): bad frame: ServomexFrameError: line of 12 bytes is too short "
            "for a frame (at least 72)\n"
            "0 frames, 1 bad, 1 fragment skipped\n",
        ),
    ],
)
def test_only_garbage_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, garbage: bytes, out: str
) -> None:
    capture = tmp_path / "garbage.bin"
    capture.write_bytes(garbage)
    assert run(capsys, str(capture)) == (
        1,
        out,
        f"ophyd-servomex decode: error: no continuous-mode frame: in {len(garbage)} bytes "
        "of input\n",
    )


def test_the_help_promises_exit_1_for_no_frame(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["decode", "--help"])
    assert "Exit status 1 when any line is bad or there is no frame at all" in " ".join(
        capsys.readouterr().out.split()
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hex", "2g"], "--hex is not hexadecimal text"),
        (["/no/such/capture.bin"], "No such file"),
    ],
)
def test_unreadable_input_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert message in err


def test_file_and_hex_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["decode", str(IDLE), "--hex", "20"])
    assert info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_console_script() -> None:
    script = Path(sys.executable).with_name("ophyd-servomex")
    result = subprocess.run(
        [str(script), "decode", str(LIVE)], capture_output=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "frame 6, line 6 (offset 1025): clock 2020-10-06 09:18:09" in out
    assert "  I1  Oxygen     20.378 %     -" in out
    assert out.endswith("6 frames, 0 bad, 0 fragments skipped\n")


def test_a_reader_that_goes_away_ends_quietly(tmp_path: Path) -> None:
    """``ophyd-servomex decode BIG | head -1`` must not print a BrokenPipeError traceback."""
    big = tmp_path / "big.bin"
    big.write_bytes((FIXTURES / "continuous_4100_idle_5ch.bin").read_bytes() * 300)
    script = Path(sys.executable).with_name("ophyd-servomex")
    result = subprocess.run(
        f"'{script}' decode '{big}' | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.startswith("frame 1, line 1 (offset 0)")
    assert "Traceback" not in result.stderr
    assert "BrokenPipe" not in result.stderr


def test_main_turns_a_broken_pipe_into_a_quiet_exit(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Any sub-command whose reader goes away ends with 141 (128 + SIGPIPE), no traceback."""
    import argparse

    import ophyd_servomex.cli as cli

    def broken(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=broken)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 141
    assert "Traceback" not in capfd.readouterr().err
