"""Plans through bluesky-queueserver: the profile in example_plans/queueserver, end to end.

Redis and ``start-re-manager`` on loopback with private ports, the manager's start-up
directory the repository's profile, a simulated SERVOPRO (``ophyd-servomex sim --pty``,
Modbus RTU at address 30, 100× simulated time so a calibration takes seconds) reached
through ``SERVOMEX_PORT``. The worker writes runs into an embedded catalog in a temporary
directory, with its metadata and scan ids in Redis; the test reads the catalog after the
environment has closed.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import free_port, simulator, spawn, stop_group

pytestmark = pytest.mark.timeout(900)

PROFILE = Path(__file__).resolve().parents[2] / "example_plans" / "queueserver"
ANALYSER = "gas"
FIRST_SCAN_ID = 100  # the shared counter is raised to this before the environment opens
OPEN_TIMEOUT = 300  # the worker imports bluesky, ophyd-async, tiled and connects: slow on CI


class QueueServer:
    """A running RE Manager and an API client for it."""

    def __init__(self, process: Any, api: Any, directory: Path) -> None:
        self.process = process
        self.api = api
        self.directory = directory

    def log(self) -> str:
        path = self.directory / "manager.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def queue_server(
    redis_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QueueServer]:
    from bluesky_queueserver_api.zmq import REManagerAPI

    from ophyd_servomex.catalog.shared_md import SharedMetadata

    directory = Path(tmp_path_factory.mktemp("queueserver"))
    token = uuid.uuid4().hex[:8]
    # two prefixes that do not overlap: the metadata takes every key under its prefix
    queue_prefix, md_prefix = f"qs-{token}", f"md-{token}-"
    shared = SharedMetadata(redis_server.client(), md_prefix)
    shared.raise_scan_id(FIRST_SCAN_ID - 1)
    control, info = free_port(), free_port()
    manager = str(Path(sys.executable).with_name("start-re-manager"))
    with simulator(
        "--mode", "modbus-rtu", "--address", "30", "--time-scale", "100", "--no-noise",
        log=directory / "sim.log",
    ) as port:  # fmt: skip
        env = {
            **os.environ,
            "SERVOMEX_PORT": port,
            "SERVOMEX_PROTOCOL": "modbus-rtu",
            "SERVOMEX_ADDRESS": "30",
            "SERVOMEX_CALIBRATION_POLL": "0.1",
            "OPHYD_SERVOMEX_CATALOG": str(directory / "catalog"),
            "OPHYD_SERVOMEX_REDIS": redis_server.url,
            "OPHYD_SERVOMEX_REDIS_PREFIX": md_prefix,
        }
        process = spawn(
            [
                manager,
                "--startup-dir", str(PROFILE),
                "--existing-plans-devices", str(directory / "existing_plans_and_devices.yaml"),
                "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
                "--redis-addr", redis_server.address,
                "--redis-name-prefix", queue_prefix,
                "--zmq-control-addr", f"tcp://127.0.0.1:{control}",
                "--zmq-info-addr", f"tcp://127.0.0.1:{info}",
                "--zmq-publish-console", "OFF",
            ],
            env=env,
            log=directory / "manager.log",
        )  # fmt: skip
        api = REManagerAPI(
            zmq_control_addr=f"tcp://127.0.0.1:{control}",
            zmq_info_addr=f"tcp://127.0.0.1:{info}",
            timeout_recv=30,
        )
        server = QueueServer(process, api, directory)
        try:
            _wait_for_manager(server)
            api.environment_open()
            api.wait_for_idle(timeout=OPEN_TIMEOUT)
            assert api.status()["worker_environment_exists"], server.log()
            yield server
        finally:
            try:
                if process.poll() is None:
                    api.environment_close()
                    api.wait_for_idle(timeout=60)
            except Exception:  # the manager is stopped below in any case
                pass
            api.close()
            stop_group(process)


def _wait_for_manager(server: QueueServer) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"start-re-manager exited: {server.log()}")
        try:
            server.api.status()
            return
        except Exception:
            time.sleep(0.5)
    pytest.fail(f"start-re-manager did not answer: {server.log()}")


def test_the_environment_lists_the_analyser_and_the_annotated_plans(
    queue_server: QueueServer,
) -> None:
    api = queue_server.api
    plans = api.plans_allowed()["plans_allowed"]
    assert set(plans) == {"count", "monitor_broadcast", "calibration_run"}
    detectors = plans["count"]["parameters"][0]
    assert detectors["name"] == "detectors"
    assert detectors["annotation"] == {
        "type": "typing.List[Analyser]",
        "devices": {"Analyser": [ANALYSER]},
    }
    devices = api.devices_allowed()["devices_allowed"]
    assert ANALYSER in devices
    assert devices[ANALYSER]["is_readable"]


def test_a_mistyped_device_is_refused_when_queued(queue_server: QueueServer) -> None:
    from bluesky_queueserver_api import BPlan

    api = queue_server.api
    before = api.queue_get()["items"]
    for plan in (
        BPlan("count", ["gsa"], num=1),
        BPlan("monitor_broadcast", [ANALYSER, "gas2"], 1.0),
        BPlan("calibration_run", "gsa", 1, confirm=True),
    ):
        with pytest.raises(api.RequestFailedError, match=r"gsa|gas2"):
            api.item_add(plan)
    assert api.queue_get()["items"] == before


def test_a_calibration_without_confirm_is_refused_when_queued(queue_server: QueueServer) -> None:
    """Calibration gas flows only on request: the queue takes calibration_run with
    confirm=True only, so a forgotten or false confirm never reaches the worker."""
    from bluesky_queueserver_api import BPlan

    api = queue_server.api
    before = api.queue_get()["items"]
    for plan in (
        BPlan("calibration_run", ANALYSER, 1),
        BPlan("calibration_run", ANALYSER, 1, confirm=False),
        BPlan("calibration_run", ANALYSER, 1, confirm="yes"),
    ):
        with pytest.raises(api.RequestFailedError, match="confirm"):
            api.item_add(plan)
    assert api.queue_get()["items"] == before


def test_count_monitor_and_calibration_run_through_the_queue(
    queue_server: QueueServer,
) -> None:
    from bluesky_queueserver_api import BPlan

    api = queue_server.api
    api.history_clear()
    api.item_add(BPlan("count", [ANALYSER], num=3, md={"sample": "N2 purge"}))
    api.item_add(BPlan("monitor_broadcast", [ANALYSER], 1.5))
    api.item_add(BPlan("calibration_run", ANALYSER, 1, confirm=True, timeout=120))
    api.queue_start()
    api.wait_for_idle(timeout=300)

    history = api.history_get()["items"]
    assert len(history) == 3, (history, queue_server.log())
    assert [item["name"] for item in history] == ["count", "monitor_broadcast", "calibration_run"]
    results = [item["result"] for item in history]
    assert [r["exit_status"] for r in results] == ["completed"] * 3, queue_server.log()
    uids = [r["run_uids"] for r in results]
    assert all(len(u) == 1 for u in uids), uids
    queue_server.uids = [u[0] for u in uids]  # type: ignore[attr-defined]


def test_each_run_is_in_the_catalog_with_a_shared_scan_id(
    queue_server: QueueServer, redis_server: Any
) -> None:
    from ophyd_servomex.catalog import close_catalog, open_catalog

    uids: list[str] | None = getattr(queue_server, "uids", None)
    if uids is None:
        pytest.skip("the queued plans did not run (see the test before)")
    api = queue_server.api
    api.environment_close()  # the worker process ends: the embedded catalog is ours to read
    api.wait_for_idle(timeout=60)
    assert not api.status()["worker_environment_exists"]

    catalog = open_catalog(queue_server.directory / "catalog")
    try:
        starts = [catalog[uid].metadata["start"] for uid in uids]
        stops = [catalog[uid].metadata["stop"] for uid in uids]
        assert [s["plan_name"] for s in starts] == ["count", "monitor_broadcast", "calibrate"]
        # scan ids from the Redis counter, raised before the environment opened
        assert [s["scan_id"] for s in starts] == [
            FIRST_SCAN_ID,
            FIRST_SCAN_ID + 1,
            FIRST_SCAN_ID + 2,
        ]
        assert catalog[FIRST_SCAN_ID + 2].metadata["start"]["uid"] == uids[2]
        assert [s["exit_status"] for s in stops] == ["success"] * 3
        assert starts[0]["sample"] == "N2 purge"
        assert starts[0]["detectors"] == [ANALYSER]
        assert stops[0]["num_events"]["primary"] == 3
        assert stops[1]["num_events"][f"{ANALYSER}_monitor"] >= 2
        assert starts[2]["calibration_group"] == 1
        assert stops[2]["num_events"]["primary"] == 2  # one reading before, one after
        assert stops[2]["num_events"][f"{ANALYSER}_monitor"] >= 1
        table = catalog[uids[0]]["primary"].read()
        assert len(table["time"]) == 3
    finally:
        close_catalog(catalog)
