"""Every script in example_plans/ runs with ``--sim`` against a temporary catalog and exits 0.

The scripts run one after another in one separate interpreter (``run_examples.py``), each as
``__main__`` with its own arguments, so the seconds of imports are paid once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "example_plans"
RUNNER = Path(__file__).with_name("run_examples.py")

# name -> (script, arguments, what its output must contain); run in this order (replay last)
JOBS: dict[str, tuple[str, list[str], list[str]]] = {
    "count": (
        "count.py",
        ["--sim", "--num", "4"],
        [
            r"simulated SERVOPRO 4100 \(modbus-rtu, address 30\) on /dev/pts/\d+",
            r"scan 1 \([0-9a-f]{8}\): 4 events in the catalog",
            r"mean +20\.3\d+ +0\.08\d+ +0\.2\d+ +0\.0 +0\.0",
        ],
    ),
    "monitor_broadcast": (
        "monitor_broadcast.py",
        ["--sim", "--protocol", "continuous", "--seconds", "1"],
        [
            r"simulated SERVOPRO 4100 \(continuous, address 30\)",
            r"\d+ frames in stream 'gas_monitor' of run [0-9a-f]{8}",
            r"time between frames: mean 0\.[12]\d\d s",
        ],
    ),
    "calibrate-unconfirmed": (
        "calibrate.py",
        ["--sim"],
        [r"error: calibration flows calibration gas into the analyser: pass --confirm"],
    ),
    "calibrate": (
        "calibrate.py",
        ["--sim", "--confirm"],
        [
            r"analyser-calibration group 1: cal_gas_2",
            r"group 1: done after \d+\.\d s \(run [0-9a-f]{8}, exit status success\)",
        ],
    ),
    "rs485_bus": (
        "rs485_bus.py",
        ["--sim", "--num", "3"],
        [
            r"simulated SERVOPRO 4100 \(modbus-rtu, address 30, 31, 32\)",
            r"run [0-9a-f]{8}: 3 events, 3 analysers on /dev/pts/\d+",
            r"gas30 at address 30: I1 mean 20\.3\d\d",
            r"gas31 at address 31: I1 mean 20\.3\d\d",
            r"gas32 at address 32: I1 mean 20\.3\d\d",
        ],
    ),
    "ipython_startup": (
        "ipython_startup.py",
        ["--sim"],
        [
            r"gas: modbus-rtu analyser on /dev/pts/\d+, channels I1, I2, I3, E1, E2",
            r"ready: RE, bec, catalog, gas",
            r"\| +3 \| .* \| +20\.3\d\d \|",  # the BestEffortCallback table
            r"check: 3 events in the catalog",
        ],
    ),
    "replay": (
        "replay.py",
        ["--sim", "--plot", "{tmp}/replay.png"],
        [
            r"scan 6 +[0-9a-f]{8} +count",
            r"scan 5 +[0-9a-f]{8} +count",
            r"scan 4 +[0-9a-f]{8} +count",
            r"scan 3 +[0-9a-f]{8} +calibrate",
            r"scan 6: count, started .*, success; events per stream \{'primary': 5\}",
            r"gas-i1-value +mean +20\.3\d+ %",
            r"gas-e2-value +mean +0\.0000 mA",
            r"plot: .*replay\.png",
        ],
    ),
}
EXIT_STATUS = {"calibrate-unconfirmed": 2}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("examples")
    env = dict(os.environ)
    env["OPHYD_SERVOMEX_CATALOG"] = str(tmp / "catalog")
    env["MPLBACKEND"] = "Agg"
    command = [sys.executable, str(RUNNER), str(EXAMPLES)]
    for name, (script, args, _) in JOBS.items():
        command += [f"{name}={script}", *(a.replace("{tmp}", str(tmp)) for a in args), "--"]
    done = subprocess.run(
        command, cwd=tmp, env=env, capture_output=True, text=True, timeout=110, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    found["_tmp"] = tmp
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", list(JOBS))
def test_the_example_runs_with_sim(results: dict[str, Any], name: str) -> None:
    result = results[name]
    output = result["output"]
    assert result["status"] == EXIT_STATUS.get(name, 0), output
    assert "Traceback" not in output
    for pattern in JOBS[name][2]:
        assert re.search(pattern, output), f"{pattern!r} not in:\n{output}"


@pytest.mark.slow
def test_the_replay_example_wrote_its_plot(results: dict[str, Any]) -> None:
    assert (results["_tmp"] / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_example_script_is_exercised() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == {script for script, _, _ in JOBS.values()}
