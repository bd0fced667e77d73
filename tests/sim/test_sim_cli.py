"""``ophyd-servomex sim``: the port comes first on stdout, SIGINT/SIGTERM exit cleanly."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from simhelpers import receive_exactly, receive_line

from ophyd_servomex.cli import build_parser, main
from ophyd_servomex.codec.continuous import parse_frame
from ophyd_servomex.codec.modbus_frames import encode_rtu
from ophyd_servomex.transport import open_transport

ROOT = Path(__file__).parents[2]


def start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    """Run the CLI and return it with the first stdout line (read with a deadline)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ophyd_servomex.cli", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + 20
    while not line.endswith(b"\n"):
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            process.kill()
            pytest.fail(f"no port printed; stderr: {process.communicate()[1]!r}")
        chunk = os.read(process.stdout.fileno(), 1)
        if not chunk:
            pytest.fail(f"exited early; stderr: {process.communicate()[1]!r}")
        line += chunk
    return process, line.decode().strip()


def stop(process: subprocess.Popen[bytes], signum: int) -> tuple[int, bytes, bytes]:
    process.send_signal(signum)
    out, err = process.communicate(timeout=20)
    return process.returncode, out, err


def test_modbus_on_a_pty_then_sigterm() -> None:
    process, port = start("--mode", "modbus-rtu", "--address", "30,31", "--no-noise")
    try:
        assert port.startswith("/dev/")

        async def ask() -> bytes:
            async with await open_transport(port) as t:
                await t.send(encode_rtu(31, bytes.fromhex("0400000002")))
                return await receive_exactly(t, 9)

        assert anyio.run(ask) == encode_rtu(31, bytes.fromhex("040441A30625"))
    finally:
        code, out, err = stop(process, signal.SIGTERM)
    assert code == 0, err
    assert out == b""  # nothing after the port line
    assert b"stopping on SIGTERM" in err


def test_continuous_on_tcp_then_sigint() -> None:
    process, port = start("--mode", "continuous", "--period", "0.05", "--tcp", "0")
    try:
        assert port.startswith("socket://127.0.0.1:")

        async def listen() -> bytes:
            async with await open_transport(port) as t:
                await receive_line(t)
                return await receive_line(t)

        frame = parse_frame(anyio.run(listen))
        assert frame.channel("I2").name == "CO"
    finally:
        code, _, err = stop(process, signal.SIGINT)
    assert code == 0, err


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--mode", "continuous", "--address", "30,31"]) == 2
    assert "one analyser" in capsys.readouterr().err
    parser = build_parser()
    for bad in (
        ["--address", "0"],
        ["--address", "30,30"],
        ["--period", "-1"],
        ["--time-scale", "0"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["sim", *bad])
    args = parser.parse_args(["sim", "--address", "30,31", "--tcp", "0", "--realistic-timing"])
    assert (args.address, args.tcp, args.realistic_timing) == ((30, 31), 0, True)
