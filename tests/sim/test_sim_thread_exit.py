"""A SimulatorThread's loop thread: named for its port, a daemon, stopped from its own thread
or when collected, and a script that forgets its simulators exits at once with their ports
released and their threads gone."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from ophyd_servomex.sim import SimConfig, SimulatorThread

# The forgetting script hangs for ever without the fix: its subprocess timeout (generous, for
# a loaded machine) must fire before pytest's.
SCRIPT_TIMEOUT = 150.0
pytestmark = pytest.mark.timeout(SCRIPT_TIMEOUT + 60)


def loop_thread(port: str) -> threading.Thread:
    """The simulator's loop thread, found by its name."""
    (thread,) = [t for t in threading.enumerate() if t.name == f"servomex-sim {port}"]
    return thread


def tcp_refused(port: str) -> bool:
    """Whether ``socket://HOST:PORT`` refuses a connection (nothing listens there)."""
    host, number = port.removeprefix("socket://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(number)), timeout=10).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_loop_runs_in_a_daemon_thread_named_for_the_port_that_stop_joins() -> None:
    sim = SimulatorThread(SimConfig(noisy=False), link="tcp")
    handle = sim.start()
    thread = loop_thread(handle.port)
    assert thread.daemon  # cannot hold the interpreter's exit by itself
    assert not tcp_refused(handle.port)
    sim.stop()
    assert not thread.is_alive()
    assert tcp_refused(handle.port)
    sim.stop()  # idempotent
    handle2 = sim.start()  # and it starts again, with a new thread
    thread2 = loop_thread(handle2.port)
    assert thread2 is not thread
    sim.stop()
    assert not thread2.is_alive()


def test_a_stop_from_the_loops_own_thread_stops_it_without_joining_itself() -> None:
    sim = SimulatorThread(SimConfig(noisy=False))
    handle = sim.start()
    thread = loop_thread(handle.port)
    assert os.path.exists(handle.port)
    sim.portal.call(sim.stop)  # e.g. a callback the simulator's loop ran
    thread.join(timeout=SCRIPT_TIMEOUT)
    assert not thread.is_alive()
    assert not os.path.exists(handle.port)  # the pty is gone with its master


def test_a_simulator_thread_nobody_holds_is_stopped_when_collected() -> None:
    handle = SimulatorThread(SimConfig(noisy=False)).start()  # the SimulatorThread is dropped
    gc.collect()
    thread = next(
        (t for t in threading.enumerate() if t.name == f"servomex-sim {handle.port}"), None
    )
    if thread is not None:  # still finishing in the short-lived thread: wait for it
        thread.join(timeout=SCRIPT_TIMEOUT)
        assert not thread.is_alive()
    assert not os.path.exists(handle.port)


FORGETTING_SCRIPT = """
    import json, os, socket, threading, weakref

    seen = {}

    class Marker:
        pass

    def report() -> None:
        seen["alive_after_exit"] = [t.is_alive() for t in loop_threads]
        seen["pty_after_exit"] = os.path.exists(pty_sim.port)
        host, number = tcp_handle.port.removeprefix("socket://").rsplit(":", 1)
        try:
            socket.create_connection((host, int(number)), timeout=10).close()
            seen["tcp_after_exit"] = "accepted"
        except ConnectionRefusedError:
            seen["tcp_after_exit"] = "refused"
        print(json.dumps(seen), flush=True)

    # Finalisers run at exit newest first: this one, made before the simulators', runs last.
    marker = Marker()
    weakref.finalize(marker, report)

    from ophyd_servomex.codec.models import ProtocolKind
    from ophyd_servomex.sim import SimConfig, SimulatorThread

    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, addresses=(30, 31), noisy=False)
    pty_sim = SimulatorThread(config).__enter__()
    tcp_sim = SimulatorThread(config, link="tcp")
    tcp_handle = tcp_sim.start()  # tcp_sim is kept, so only exit can stop it
    loop_threads = [
        t for t in threading.enumerate() if t.name.startswith("servomex-sim ")
    ]
    seen["loop_threads"] = sorted(t.name for t in loop_threads)
    seen["daemon"] = [t.daemon for t in loop_threads]
    seen["pty"] = os.path.exists(pty_sim.port)
    seen["ports"] = [pty_sim.port, tcp_handle.port]
    # the script ends without leaving either simulator
"""


def test_a_script_that_forgets_its_simulators_exits_with_their_ports_released() -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORGETTING_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,  # an exit that waits for a frozen loop waits for ever
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    pty_port, tcp_port = out.pop("ports")
    assert pty_port.startswith("/dev/pts/")
    assert tcp_port.startswith("socket://127.0.0.1:")
    assert out == {
        "loop_threads": sorted([f"servomex-sim {pty_port}", f"servomex-sim {tcp_port}"]),
        "daemon": [True, True],
        "pty": True,
        "alive_after_exit": [False, False],
        "pty_after_exit": False,
        "tcp_after_exit": "refused",
    }
