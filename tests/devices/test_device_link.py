"""A pulled cable against the simulator: fail fast and INVALID while it is gone, then the
next RE(count(...)) works with no manual step once the port is back under the same path.

The pseudo-terminal case reaches the simulator through a symlink, the way udev names a
USB adapter (``/dev/serial/by-id/…``): the adapter comes back as a new ``/dev/pts/N``
behind the same path. The TCP case restarts the serial server on the same port.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import FailedStatus
from devicehelpers import ADDRESS, disconnect, documents, sim_config
from ophyd_async.core import init_devices

from ophyd_servomex.codec.errors import ServomexConnectionError
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.devices import LinkState, ReconnectPolicy, ServomexAnalyser
from ophyd_servomex.devices.link import ALARM_INVALID
from ophyd_servomex.sim import SimulatorThread

RTU = ProtocolKind.MODBUS_RTU
CONTINUOUS = ProtocolKind.CONTINUOUS_ASCII
FAST = ReconnectPolicy(initial=0.05, factor=2.0, maximum=0.2)
CASES = [(RTU, "pty"), (CONTINUOUS, "pty"), (RTU, "tcp"), (CONTINUOUS, "tcp")]


def wait_for(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; a guard against hanging, not a timing claim."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {limit} s")
        time.sleep(0.01)


def fds_open_to(path: str) -> int:
    """How many of this process's file descriptors point at ``path``."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                found += 1
        except OSError:
            continue
    return found


class Cable:
    """A simulator that can be pulled and plugged back in under the same port string."""

    def __init__(self, mode: ProtocolKind, link: str, tmp_path: Path) -> None:
        self.mode = mode
        self.link = link
        self.symlink = tmp_path / "ttyUSB0"
        self.sim: SimulatorThread | None = None
        self.tcp_port = 0
        self.plug()
        assert self.sim is not None
        self.port = str(self.symlink) if link == "pty" else self.sim.port
        """What the device opens: the stable symlink, or socket://127.0.0.1:PORT."""

    def plug(self) -> None:
        config = sim_config(self.mode, period=0.05)
        if self.link == "tcp":
            self.sim = SimulatorThread(config, link="tcp", tcp_port=self.tcp_port)
            self.sim.start()
            self.tcp_port = int(self.sim.port.rsplit(":", 1)[1])
        else:
            self.sim = SimulatorThread(config)
            self.sim.start()
            staging = self.symlink.with_suffix(".new")
            staging.symlink_to(self.sim.port)
            staging.replace(self.symlink)  # the adapter is back under the same name

    def pull(self) -> str:
        assert self.sim is not None
        real = self.sim.port
        self.sim.stop()
        self.sim = None
        if self.link == "pty":
            self.symlink.unlink()
        return real

    def close(self) -> None:
        if self.sim is not None:
            self.sim.stop()


@contextmanager
def cable(mode: ProtocolKind, link: str, tmp_path: Path) -> Iterator[Cable]:
    made = Cable(mode, link, tmp_path)
    try:
        yield made
    finally:
        made.close()


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
