"""The facade's event-loop thread (anyio's blocking portal): a named daemon thread that stop()
joins, cancelling what still runs there; a stop from the loop's own thread; and a script
that forgets to close its facades exits at once and still closes them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import anyio
import pytest

from ophyd_servomex._loop_thread import LoopThread

pytestmark = pytest.mark.timeout(120)


def test_the_loop_runs_in_a_named_daemon_thread_that_stop_joins() -> None:
    thread = LoopThread("servomex-sync test")
    try:
        assert thread.thread.name == "servomex-sync test"
        assert thread.thread.daemon  # cannot hold the interpreter's exit
        assert thread.thread.is_alive()
        assert thread.portal.call(anyio.sleep, 0) is None
    finally:
        thread.stop()
    assert not thread.thread.is_alive()
    thread.stop()  # idempotent
    with pytest.raises(RuntimeError):
        thread.portal.call(anyio.sleep, 0)


def test_stop_cancels_what_still_runs_in_the_loop() -> None:
    thread = LoopThread("servomex-sync test")
    pending = thread.portal.start_task_soon(anyio.sleep_forever)
    thread.stop()
    assert pending.cancelled()
    assert not thread.thread.is_alive()


def test_a_stop_from_the_loops_own_thread_stops_the_loop_without_joining_itself() -> None:
    thread = LoopThread("servomex-sync test")
    thread.portal.call(thread.stop)  # e.g. a finaliser the garbage collector ran there
    thread.thread.join(timeout=60)
    assert not thread.thread.is_alive()


def run_script(script: str) -> dict[str, object]:
    """Run ``script`` in a fresh interpreter; its last stdout line, as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=100,  # an exit that waits for the loop thread would wait for ever
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(out, dict)
    return out


def test_a_loop_thread_nobody_stopped_is_stopped_at_exit() -> None:
    out = run_script(
        """
        import atexit, json

        def report() -> None:  # registered first, so it runs after the finalisers
            print(json.dumps({"alive_after_exit": thread.thread.is_alive()}), flush=True)

        atexit.register(report)

        from ophyd_servomex._loop_thread import LoopThread

        thread = LoopThread("servomex-sync forgotten")
        """
    )
    assert out == {"alive_after_exit": False}


def test_a_forgotten_facade_neither_hangs_exit_nor_stays_open() -> None:
    out = run_script(
        """
        import atexit, json, threading

        seen = {}

        def report() -> None:  # registered first, so it runs after the finalisers
            seen["open_after_exit"] = [inner.is_open, inner_b.is_open]
            seen["alive_after_exit"] = [t.is_alive() for t in loop_threads]
            print(json.dumps(seen), flush=True)

        atexit.register(report)

        from ophyd_servomex.codec.models import ProtocolKind
        from ophyd_servomex.sim import SimConfig, SimulatorThread
        from ophyd_servomex.sync import Servomex

        config = SimConfig(mode=ProtocolKind.MODBUS_RTU, addresses=(30, 31), noisy=False)
        with SimulatorThread(config) as sim, SimulatorThread(config) as sim2:
            analyser = Servomex.open(sim.port, protocol="modbus-rtu", address=30)
            manager = Servomex.manager(inter_frame_idle=0.0)
            manager.add("a", sim2.port, protocol="modbus-rtu", address=31)
            inner, inner_b = analyser.analyzer, manager.manager.get("a")
            seen["polled"] = [analyser.poll().address, manager.poll()["a"].ok]
            seen["open"] = [inner.is_open, inner_b.is_open]
            loop_threads = sorted(
                (t for t in threading.enumerate() if t.name.startswith("servomex-sync")),
                key=lambda t: t.name,
            )
            seen["loop_threads"] = [(t.name, t.daemon) for t in loop_threads]
        # the script ends without closing either facade
        """
    )
    loop_threads = out.pop("loop_threads")
    assert out == {
        "polled": [30, True],
        "open": [True, True],
        "open_after_exit": [False, False],  # closed at exit by the facades' finalisers
        "alive_after_exit": [False, False],
    }
    assert isinstance(loop_threads, list)
    assert [daemon for _, daemon in loop_threads] == [True, True]
    assert loop_threads[0][0].startswith("servomex-sync /dev/")
    assert loop_threads[1][0] == "servomex-sync-manager"
