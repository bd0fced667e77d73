"""Separate processes, one after the other, share the embedded catalog: scan ids continue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("catalog_worker.py")
NUM = 3


def run_count_process(location: Path) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, str(WORKER), "count", str(location), str(NUM), "0"],
        capture_output=True,
        text=True,
        cwd=WORKER.parent,
        timeout=120,
        check=True,
    )
    (done,) = [line for line in out.stdout.splitlines() if line.startswith("DONE")]
    _, uid, scan_id, failed = done.split(" ", 3)
    assert failed == "[]"
    return uid, int(scan_id)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, int]]]:
    location = tmp_path_factory.mktemp("processes") / "catalog"
    return location, [run_count_process(location), run_count_process(location)]


def test_scan_ids_continue_across_processes(
    two_runs: tuple[Path, list[tuple[str, int]]],
) -> None:
    _, runs = two_runs
    assert [scan_id for _, scan_id in runs] == [1, 2]
    assert runs[0][0] != runs[1][0]
