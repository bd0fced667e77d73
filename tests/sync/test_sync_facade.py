"""The blocking facade: a plain script, every twin, the manager, and the refusal inside
a thread that runs an event loop."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import anyio
import pytest

from ophyd_servomex.codec.errors import (
    ServomexCapabilityError,
    ServomexConfigurationError,
    ServomexConfirmationRequiredError,
    ServomexConnectionError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ophyd_servomex.codec.modbus_frames import encode_rtu
from ophyd_servomex.codec.models import ChannelId, ProtocolKind
from ophyd_servomex.driver import Analyzer, DeviceErrors, ErrorPolicy, ServomexManager
from ophyd_servomex.sim import SimConfig, SimulatorThread, WireKind
from ophyd_servomex.sync import Servomex, SyncAnalyzer, SyncManager

RTU = ProtocolKind.MODBUS_RTU
O2 = 20.378000259399414  # the bench unit's 20.378 as it travels in float32


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    """Two quiet Modbus RTU analysers (30 and 31) on one simulated pty bus."""
    config = SimConfig(mode=RTU, addresses=(30, 31), noisy=False, seed=1)
    with SimulatorThread(config) as thread:
        thread.handle.analyser_at(31).set_setpoint("I1", 18.5)
        yield thread


def servomex_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("servomex-sync")]


def test_a_plain_script_polls_through_the_facade(tmp_path: object) -> None:
    script = textwrap.dedent(
        """
        import json
        from ophyd_servomex.codec.models import ProtocolKind
        from ophyd_servomex.sim import SimConfig, SimulatorThread
        from ophyd_servomex.sync import Servomex

        config = SimConfig(mode=ProtocolKind.MODBUS_RTU, addresses=(30, 31), noisy=False)
        with SimulatorThread(config) as sim:
            with Servomex.open(sim.port, address=30) as analyser:  # AUTO finds RTU
                frame = analyser.poll()
                out = {
                    "protocol": analyser.protocol.value,
                    "o2": frame.channel("I1").value,
                    "echo": analyser.loopback(b"\\xa5\\x5a").hex(),
                    "names": [c.name for c in analyser.info.populated],
                }
            with Servomex.manager(inter_frame_idle=0.0) as manager:
                manager.add("a", sim.port, protocol="modbus-rtu", address=30)
                manager.add("b", sim.port, protocol="modbus-rtu", address=31)
                out["manager"] = sorted(manager.poll())
            left_open = Servomex.open(sim.port, protocol="modbus-rtu", address=31)
            out["left_open"] = left_open.poll().address
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {
        "protocol": "modbus-rtu",
        "o2": O2,
        "echo": "a55a",
        "names": ["Oxygen", "CO", "CO₂"],
        "manager": ["a", "b"],
        "left_open": 31,
    }


def test_every_async_method_has_a_blocking_twin() -> None:
    def coroutines(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(fn)
            for name, fn in inspect.getmembers(cls, inspect.iscoroutinefunction)
            if not name.startswith("_") and name != "aclose"
        }

    for async_cls, sync_cls in ((Analyzer, SyncAnalyzer), (ServomexManager, SyncManager)):
        for name, signature in coroutines(async_cls).items():
            twin = getattr(sync_cls, name, None)
            assert twin is not None, f"{sync_cls.__name__} lacks {name}"
            assert not inspect.iscoroutinefunction(twin)
            if name == "add":  # the sync manager takes port strings only
                continue
            theirs = [(p.name, p.kind, p.default) for p in signature.parameters.values()]
            ours = [
                (p.name, p.kind, p.default) for p in inspect.signature(twin).parameters.values()
            ]
            assert ours == theirs, name
    for name in ("subscribe", "stream", "snapshot"):
        assert callable(getattr(SyncAnalyzer, name))


def test_the_twins_talk_to_the_analyser(sim: SimulatorThread) -> None:
    with Servomex.open(sim.port, protocol=RTU, address=30, inter_frame_idle=0) as analyser:
        assert analyser.protocol is RTU
        assert analyser.address == 30
        assert analyser.port == sim.port
        assert analyser.is_open
        info = analyser.identify()
        assert [c.name for c in info.populated] == ["Oxygen", "CO", "CO₂"]
        assert analyser.info == info
        frame = analyser.poll()
        assert frame.channel("I1").value == O2
        assert analyser.snapshot() == frame
        assert [s.frame.address for s in analyser.poll_samples() if s.frame] == [30]
        assert analyser.read_all()[ChannelId.I1].value == O2
        assert analyser.read_channel("I1").name == "Oxygen"
        assert analyser.status("I2").ok
        assert not analyser.analyser_status().fault
        assert not analyser.calibration_status(1).calibrating
        sim.log.clear()
        assert analyser.loopback(b"\x12\x34") == b"\x12\x34"
        assert [e.data for e in sim.log.events(WireKind.REQUEST)] == [
            encode_rtu(30, bytes.fromhex("08 0000 1234"))
        ]
        with pytest.raises(ServomexConfirmationRequiredError):
            analyser.start_calibration(1)
        with pytest.raises(ServomexConfirmationRequiredError):
            analyser.stop_calibration()
        with pytest.raises(ServomexValidationError):
            analyser.loopback(b"\x01")
        samples = list(analyser.stream(50, count=3))
        assert [s.frame.address for s in samples if s.frame] == [30, 30, 30]
        frames = analyser.subscribe()
        analyser.poll()
        assert next(frames).address == 30
        frames.close()  # type: ignore[attr-defined]
        with analyser.record(rate_hz=50, ticks=4) as rec:
            batches = list(rec)
        assert [len(b) for b in batches] == [1, 1, 1, 1]
        assert rec.summary.ticks == 4
        assert rec.summary.tick_p50 is not None
    assert not analyser.is_open
    with pytest.raises(ServomexConnectionError, match="closed"):
        analyser.poll()
    analyser.close()  # idempotent


def test_closing_stops_the_event_loop_thread(sim: SimulatorThread) -> None:
    before = len(servomex_threads())
    analyser = Servomex.open(sim.port, protocol=RTU, address=30, identify=False)
    assert len(servomex_threads()) == before + 1
    analyser.close()
    assert len(servomex_threads()) == before


def test_a_failed_open_raises_and_leaves_no_thread(sim: SimulatorThread) -> None:
    before = len(servomex_threads())
    with pytest.raises(ServomexTimeoutError):
        Servomex.open(sim.port, protocol=RTU, address=99, timeout=0.2, retries=0)
    with pytest.raises(ServomexConnectionError):
        Servomex.open("/dev/no-such-servomex-port", protocol=RTU)
    assert len(servomex_threads()) == before


def test_continuous_mode_through_the_facade() -> None:
    config = SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, noisy=False, period=0.05)
    with (
        SimulatorThread(config) as continuous,
        Servomex.open(continuous.port, protocol="continuous", expected_period=0.05) as analyser,
    ):
        assert analyser.protocol is ProtocolKind.CONTINUOUS_ASCII
        assert analyser.address is None
        assert analyser.poll().channel("I1").value == 20.378
        with pytest.raises(ServomexCapabilityError):
            analyser.loopback()


def test_the_sync_manager(sim: SimulatorThread) -> None:
    with Servomex.manager(inter_frame_idle=0.0, retries=0) as manager:
        assert isinstance(manager, SyncManager)
        first = manager.add("a", sim.port, protocol=RTU, address=30, timeout=0.2)
        manager.add("b", sim.port, protocol=RTU, address=31)
        assert isinstance(first, SyncAnalyzer)
        assert manager.names == ("a", "b")
        assert manager.ports == (sim.port,)
        assert "a" in manager
        assert len(manager) == 2
        frames = manager.poll()
        assert {name: f.channel("I1").value for name, f in frames.items()} == {
            "a": O2,
            "b": 18.5,
        }
        assert [s.name for s in manager.poll_samples()] == ["a", "b"]
        assert manager.execute_each(lambda a: a.loopback(b"\xa5\x5a")) == {
            "a": b"\xa5\x5a",
            "b": b"\xa5\x5a",
        }
        assert manager.get("b").poll().address == 31
        with manager.record(rate_hz=50, ticks=3, names=["b"]) as rec:
            assert [[s.name for s in batch] for batch in rec] == [["b"]] * 3

        manager.add("ghost", sim.port, protocol=RTU, address=99, identify=False)
        results = manager.poll(policy=ErrorPolicy.RETURN)
        assert [name for name, r in results.items() if r.ok] == ["a", "b"]
        with pytest.raises(DeviceErrors) as caught:
            manager.poll()
        assert caught.value.failed == ("ghost",)
        manager.remove("ghost")

        first.close()  # a manager's analyser closes by leaving the manager
        assert list(manager.names) == ["b"]
        with pytest.raises(ServomexConfigurationError, match="port string"):
            manager.add("t", object(), protocol=RTU, address=32)  # type: ignore[arg-type]
    with pytest.raises(ServomexConnectionError, match="closed"):
        manager.poll()


def test_refused_in_a_thread_that_runs_an_event_loop(sim: SimulatorThread) -> None:
    analyser = Servomex.open(sim.port, protocol=RTU, address=30, inter_frame_idle=0)

    async def inside_a_loop() -> list[str]:
        messages = []
        for attempt in (
            lambda: Servomex.open(sim.port, protocol=RTU, address=30),
            lambda: Servomex.manager(),
            analyser.poll,
            analyser.close,
        ):
            with pytest.raises(ServomexConfigurationError) as caught:
                attempt()
            messages.append(str(caught.value))
        return messages

    try:
        messages = anyio.run(inside_a_loop)
        assert len(messages) == 4
        for message in messages:
            assert "runs an event loop" in message
            assert "use the async API" in message
        assert analyser.poll().address == 30  # still fine from a plain thread
    finally:
        analyser.close()


@pytest.mark.anyio
async def test_refused_from_async_code_even_in_a_worker_loop(sim: SimulatorThread) -> None:
    with pytest.raises(ServomexConfigurationError, match="open_device"):
        Servomex.open(sim.port, protocol=RTU, address=30)
    # from a worker thread (no loop there) it works
    analyser = await anyio.to_thread.run_sync(
        lambda: Servomex.open(sim.port, protocol=RTU, address=30, inter_frame_idle=0)
    )
    try:
        frame = await anyio.to_thread.run_sync(analyser.poll)
        assert frame.address == 30
    finally:
        await anyio.to_thread.run_sync(analyser.close)
