"""A pulled cable against the simulator: fail fast and INVALID while it is gone, then the
next RE(count(...)) works with no manual step once the port is back under the same path.

The pseudo-terminal case reaches the simulator through a symlink, the way udev names a
USB adapter (``/dev/serial/by-id/…``): the adapter comes back as a new ``/dev/pts/N``
behind the same path. The TCP case restarts the serial server on the same port.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import FailedStatus
from devicehelpers import ADDRESS, cable, disconnect, documents, fds_open_to, wait_for
from ophyd_async.core import init_devices

from ophyd_servomex.codec.errors import ServomexConnectionError
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.devices import LinkState, ReconnectPolicy, ServomexAnalyser
from ophyd_servomex.devices.link import ALARM_INVALID
from ophyd_servomex.plans import monitor_broadcast

RTU = ProtocolKind.MODBUS_RTU
CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII
FAST = ReconnectPolicy(initial=0.05, factor=2.0, maximum=0.2)
CASES = [(RTU, "pty"), (CONTINUOUS, "pty"), (RTU, "tcp"), (CONTINUOUS, "tcp")]


def link_reading(analyser: ServomexAnalyser) -> dict[str, Any]:
    reading = call_in_bluesky_event_loop(analyser.link_state.read())
    return dict(reading["analyser-link_state"])


@pytest.mark.parametrize(("mode", "link"), CASES, ids=[f"{m.value}-{k}" for m, k in CASES])
def test_a_pulled_cable_fails_fast_and_the_next_count_works_once_it_is_back(
    RE: RunEngine, tmp_path: Path, mode: ProtocolKind, link: str
) -> None:
    with cable(mode, link, tmp_path) as wire:
        with init_devices(set_name=False):
            analyser = ServomexAnalyser(
                wire.port,
                protocol=mode,
                address=ADDRESS,
                inter_frame_idle=0.0,
                expected_period=0.05,
                reconnect=FAST,
                name="analyser",
            )
        values: list[dict[str, Any]] = []
        try:
            RE(count([analyser], num=3))
            assert link_reading(analyser)["value"] is LinkState.CONNECTED
            assert link_reading(analyser)["alarm_severity"] == 0
            if not mode.is_modbus:
                call_in_bluesky_event_loop(_subscribe(analyser, values))
            real = wire.pull()

            if mode.is_modbus:
                # nothing talks to a Modbus unit between plans: the next plan finds out,
                # fails with the typed error (not a timeout) and the device lets go
                with pytest.raises(FailedStatus) as caught:
                    RE(count([analyser], num=3))
                error = caught.value.__cause__
                assert isinstance(error, ServomexConnectionError)
                assert str(error).startswith(f"analyser: the link to {wire.port} is lost (")
            # continuous: the receive loop sees the end of the stream by itself
            wait_for(lambda: analyser.link is LinkState.RECONNECTING)
            if link == "pty":
                wait_for(lambda: fds_open_to(real) == 0)  # the dead port is released
            state = link_reading(analyser)
            assert (state["value"], state["alarm_severity"]) == (
                LinkState.RECONNECTING,
                ALARM_INVALID,
            )
            if not mode.is_modbus:
                assert values[-1]["analyser-i1-value"]["alarm_severity"] == ALARM_INVALID
                assert values[-2]["analyser-i1-value"]["alarm_severity"] == 0

            # while it is gone every plan fails fast, saying what happens
            with pytest.raises(FailedStatus) as caught:
                RE(count([analyser], num=3))
            error = caught.value.__cause__
            assert isinstance(error, ServomexConnectionError)
            assert f"the link to {wire.port} is lost" in str(error)
            assert "reconnecting by itself" in str(error)
            with pytest.raises(ServomexConnectionError, match="reconnecting by itself"):
                call_in_bluesky_event_loop(analyser.read())

            wire.plug()  # the adapter comes back under the same path
            wait_for(lambda: analyser.link is LinkState.CONNECTED)
            docs = documents(RE)
            RE(count([analyser], num=3))  # no connect(), no force_reconnect
            assert link_reading(analyser)["alarm_severity"] == 0
            if not mode.is_modbus:
                assert values[-1]["analyser-i1-value"]["alarm_severity"] == 0
        finally:
            disconnect(analyser)
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success"
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 3
    assert all(e["data"]["analyser-i1-value"] == pytest.approx(20.378, abs=1e-5) for e in events)


async def _subscribe(analyser: ServomexAnalyser, values: list[dict[str, Any]]) -> None:
    analyser.i1.value.subscribe(values.append)


def test_a_monitored_run_survives_a_pulled_cable_and_records_again_after_it(
    RE: RunEngine, tmp_path: Path
) -> None:
    with cable(CONTINUOUS, "pty", tmp_path) as wire:
        with init_devices(set_name=False):
            analyser = ServomexAnalyser(
                wire.port, protocol=CONTINUOUS, expected_period=0.05, reconnect=FAST, name="bc"
            )
        marks: dict[str, float] = {}

        def pull_and_plug() -> None:
            time.sleep(0.8)
            marks["pulled"] = time.time()
            wire.pull()
            time.sleep(0.7)
            wire.plug()
            marks["plugged"] = time.time()

        cutter = threading.Thread(target=pull_and_plug)
        try:
            docs = documents(RE)
            cutter.start()
            RE(monitor_broadcast([analyser], 3.0, progress=False))
            cutter.join()
        finally:
            disconnect(analyser)
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "success"
    descriptor = next(d["uid"] for n, d in docs if n == "descriptor")
    stamps = [d["time"] for n, d in docs if n == "event" and d["descriptor"] == descriptor]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)  # every event is a frame that arrived, once
    before = [t for t in stamps if t <= marks["pulled"]]
    after = [t for t in stamps if t > marks["plugged"]]
    assert before
    assert after  # it records again without any manual step
    # none made up while it was gone (frames already on the wire may still come in late)
    assert not [t for t in stamps if marks["pulled"] + 0.3 < t <= marks["plugged"]]
