"""What a scientist types in the first hour: ``--version``, the short protocol names
(``rtu``, ``ascii``, any case) in every command that takes ``--protocol``, and what the
simulator announces when it starts."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata

import pytest

import ophyd_servomex
from ophyd_servomex.cli import build_parser, main
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.sim import SimConfig, SimulatorThread

CHOICES = "auto, continuous, modbus-rtu (rtu), modbus-ascii (ascii)"
"""How the choices are listed in ``--help`` and in the error for an unknown name."""

# every command that talks to an analyser, with what it needs besides --protocol
COMMANDS: dict[str, list[str]] = {
    "read": ["read", "/dev/x"],
    "stream": ["stream", "/dev/x"],
    "capture": ["capture", "/dev/x", "--duration", "1"],
    "discover": ["discover"],
    "diag": ["diag", "/dev/x"],
}
NAMES = [
    ("rtu", "modbus-rtu"),
    ("RTU", "modbus-rtu"),
    ("Modbus-RTU", "modbus-rtu"),
    ("modbus_rtu", "modbus-rtu"),
    ("ascii", "modbus-ascii"),
    ("ASCII", "modbus-ascii"),
    ("modbus-ascii", "modbus-ascii"),
    ("continuous", "continuous"),
    ("Continuous", "continuous"),
    ("auto", "auto"),
    ("AUTO", "auto"),
]


# --- --version --------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert metadata.version("ophyd-servomex") == ophyd_servomex.__version__
    assert capsys.readouterr().out == f"ophyd-servomex {ophyd_servomex.__version__}\n"


def test_version_from_the_console_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ophyd_servomex.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"ophyd-servomex {ophyd_servomex.__version__}\n")


# --- --protocol -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("typed", "meant"), NAMES)
def test_protocol_takes_short_names_in_any_case(command: str, typed: str, meant: str) -> None:
    args = build_parser().parse_args([*COMMANDS[command], "--protocol", typed])
    assert args.protocol == meant
    assert ProtocolKind(args.protocol).value == meant


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unknown_protocol_is_a_usage_error_listing_the_choices(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*COMMANDS[command], "--protocol", "modbus-tcp"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: ophyd-servomex {command} ")
    assert err.endswith(
        f"ophyd-servomex {command}: error: argument --protocol: invalid choice: "
        f"'modbus-tcp' (choose from {CHOICES})\n"
    )


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_the_short_names(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"--protocol PROTOCOL the analyser's front-panel mode: {CHOICES}, any case" in help_text


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("rtu", "modbus-rtu"), ("ASCII", "modbus-ascii"), ("Continuous", "continuous")],
)
@pytest.mark.parametrize("option", ["--mode", "--protocol"])
def test_sim_takes_the_same_names(option: str, typed: str, meant: str) -> None:
    assert build_parser().parse_args(["sim", option, typed]).mode == meant


def test_sim_has_no_auto_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["sim", "--mode", "auto"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith(
        "ophyd-servomex sim: error: argument --mode/--protocol: invalid choice: 'auto' "
        "(choose from continuous, modbus-rtu (rtu), modbus-ascii (ascii))\n"
    )


@pytest.fixture(scope="module")
def analyser() -> Iterator[SimulatorThread]:
    """A quiet Modbus RTU analyser at address 30 on a pseudo-terminal."""
    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, noisy=False, seed=1)
    with SimulatorThread(config) as sim:
        yield sim


def test_read_with_a_short_protocol_name(
    analyser: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["read", analyser.port, "--protocol", "RTU", "--address", "30", "--idle", "0"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.splitlines()[0] == f"{analyser.port}: modbus-rtu, address 30"


# --- sim: what it announces -------------------------------------------------------------------


def _start_sim(*args: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start ``ophyd-servomex sim``; return it, its port line and its announcement on stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ophyd_servomex.cli", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    lines: dict[int, bytes] = {process.stdout.fileno(): b"", process.stderr.fileno(): b""}
    selector = selectors.DefaultSelector()
    for stream in (process.stdout, process.stderr):
        selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + 30
    while not all(line.endswith(b"\n") for line in lines.values()):
        events = selector.select(timeout=max(0.0, deadline - time.monotonic()))
        if not events:
            process.kill()
            pytest.fail(f"sim printed only {lines!r}")
        for key, _ in events:
            fd = key.fd
            if lines[fd].endswith(b"\n"):
                continue
            chunk = os.read(fd, 1)
            if not chunk:
                process.kill()
                pytest.fail(f"sim exited early after {lines!r}")
            lines[fd] += chunk
    port = lines[process.stdout.fileno()].decode().strip()
    return process, port, lines[process.stderr.fileno()].decode().strip()


def _stop_sim(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    return process.returncode


def test_sim_continuous_announces_no_address() -> None:
    process, port, said = _start_sim("--mode", "continuous", "--period", "0.5", "--tcp", "0")
    try:
        assert said == (
            f"simulating continuous (a frame every 0.5 s) on {port}; Ctrl-C or SIGTERM stops"
        )
        assert "address" not in said
    finally:
        assert _stop_sim(process) == 0


def test_sim_modbus_announces_its_addresses() -> None:
    process, port, said = _start_sim("--protocol", "rtu", "--address", "30,31", "--tcp", "0")
    try:
        assert said == (
            f"simulating modbus-rtu at address 30,31 on {port}; Ctrl-C or SIGTERM stops"
        )
    finally:
        assert _stop_sim(process) == 0
