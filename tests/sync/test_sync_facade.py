"""The blocking facade: a plain script, every twin, the manager, and the refusal inside
a thread that runs an event loop."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence

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
from ophyd_servomex.codec.models import (
    Availability,
    Capability,
    ChannelId,
    ProtocolKind,
    Sample,
)
from ophyd_servomex.driver import Analyzer, DeviceErrors, ErrorPolicy, ServomexManager
from ophyd_servomex.sim import SimConfig, SimulatorThread, WireKind
from ophyd_servomex.sync import Servomex, SyncAnalyzer, SyncManager

RTU = ProtocolKind.MODBUS_RTU
O2 = 20.378000259399414  # the bench unit's 20.378 as it travels in float32
CHANNELS = [ChannelId.I1, ChannelId.I2, ChannelId.I3, ChannelId.E1, ChannelId.E2]
"""The bench unit's channels: a poll is five long-format rows."""


def rows(samples: Sequence[Sample]) -> list[tuple[str, ChannelId | None, float | None]]:
    """(device, channel, O₂ value or None) of each row: the O₂ row tells the analysers apart."""
    return [(s.device, s.channel, s.value if s.channel is ChannelId.I1 else None) for s in samples]


def sweep(device: str, o2: float) -> list[tuple[str, ChannelId | None, float | None]]:
    """What :func:`rows` gives for one good poll of ``device``."""
    return [(device, c, o2 if c is ChannelId.I1 else None) for c in CHANNELS]


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
                out["manager"] = sorted(n for n, r in manager.poll().items() if r.ok)
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
        assert analyser.capabilities == Capability.ALL
        assert analyser.availability(Capability.CALIBRATE) is Availability.AVAILABLE
        info = analyser.identify()
        assert [c.name for c in info.populated] == ["Oxygen", "CO", "CO₂"]
        assert analyser.info == info
        frame = analyser.poll()
        assert frame.channel("I1").value == O2
        assert analyser.snapshot() == frame
        samples = analyser.poll_samples()
        assert rows(samples) == sweep(sim.port, O2)  # address 30's O₂ (31 reads 18.5)
        assert all(s.ok and s.protocol is RTU for s in samples)
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
        samples = list(analyser.stream(50, count=3 * 5))  # three polls' rows
        assert rows(samples) == sweep(sim.port, O2) * 3
        assert len({s.received_at for s in samples}) == 3  # three distinct sweeps
        frames = analyser.subscribe()
        analyser.poll()
        assert next(frames).address == 30
        frames.close()  # type: ignore[attr-defined]
        with analyser.record(rate_hz=10, ticks=4) as rec:  # a slow rate: no slot missed
            batches = list(rec)
        assert [rows(b) for b in batches] == [sweep(sim.port, O2)] * 4
        summary = rec.summary
        assert (summary.ticks, summary.samples_emitted, summary.acquired) == (4, 4, 20)
        assert summary.finished_at is not None
        assert summary.tick_max_ms is not None  # the tick times were summed up on exit
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
        assert analyser.capabilities == Capability.READ | Capability.STREAM | Capability.IDENTIFY
        assert analyser.availability(Capability.CALIBRATE) is Availability.UNSUPPORTED
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
        results = manager.poll()
        assert {name: r.unwrap().channel("I1").value for name, r in results.items()} == {
            "a": O2,
            "b": 18.5,
        }
        assert rows(manager.poll_samples()) == sweep("a", O2) + sweep("b", 18.5)
        assert rows(manager.poll_samples(["b"])) == sweep("b", 18.5)
        assert manager.execute_each(lambda a: a.loopback(b"\xa5\x5a")) == {
            "a": b"\xa5\x5a",
            "b": b"\xa5\x5a",
        }
        assert manager.get("b").poll().address == 31
        with manager.record(rate_hz=10, ticks=3, names=["b"]) as rec:
            assert [rows(batch) for batch in rec] == [sweep("b", 18.5)] * 3

        # the manager identifies what it adds: a silent analyser is not added
        with pytest.raises(ServomexTimeoutError):
            manager.add("ghost", sim.port, protocol=RTU, address=99)
        assert manager.names == ("a", "b")

        first.close()  # a manager's analyser closes by leaving the manager
        assert list(manager.names) == ["b"]
        with pytest.raises(ServomexConfigurationError, match="port string"):
            manager.add("t", object(), protocol=RTU, address=32)  # type: ignore[arg-type]
    with pytest.raises(ServomexConnectionError, match="closed"):
        manager.poll()


def test_a_sync_manager_that_does_not_identify_keeps_a_silent_analyser(
    sim: SimulatorThread,
) -> None:
    with Servomex.manager(inter_frame_idle=0.0, retries=0, identify=False) as manager:
        assert isinstance(manager, SyncManager)
        manager.add("a", sim.port, address=30, timeout=0.2)  # Modbus RTU by default
        manager.add("ghost", sim.port, protocol=RTU, address=99)
        results = manager.poll()  # every device's result, the failure included
        assert [(name, r.ok) for name, r in results.items()] == [("a", True), ("ghost", False)]
        assert isinstance(results["ghost"].error, ServomexTimeoutError)
        assert rows(manager.poll_samples()) == sweep("a", O2)  # the ghost is left out
        returned = manager.execute_each(lambda a: a.poll(), policy=ErrorPolicy.RETURN)
        assert [name for name, r in returned.items() if r.ok] == ["a"]
        with pytest.raises(DeviceErrors) as caught:
            manager.execute_each(lambda a: a.poll())
        assert caught.value.failed == ("ghost",)
        manager.remove("ghost")
        assert manager.names == ("a",)


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
