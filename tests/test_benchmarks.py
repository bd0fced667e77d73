"""The benchmarks' own machinery: interleaving, the table's figures, the count bench's
soft-signal mirror and its simulator process. Nothing here times anything."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky.plans import count
from bluesky.run_engine import call_in_bluesky_event_loop
from event_model import DataKey
from ophyd_async.core import StandardReadable, init_devices, soft_signal_rw

from benchmarks import bench_count
from benchmarks._harness import _figure, interleaved
from ophyd_servomex.devices import ServomexAnalyser


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_interleaved_rotates_and_reverses_the_order_and_keeps_each_best() -> None:
    calls: list[str] = []
    times = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 6.0, 4.0]), "c": iter([7.0] * 3)}

    def case(name: str) -> Any:
        def once() -> float:
            calls.append(name)
            return next(times[name])

        return once

    best = interleaved({"a": case("a"), "b": case("b"), "c": case("c")}, rounds=3)

    assert best == {"a": 1.0, "b": 4.0, "c": 7.0}
    # rotated each round, every other round backwards: "a" follows "c", then "b"
    assert calls == ["a", "b", "c", "a", "c", "b", "c", "a", "b"]


def test_a_count_has_no_decimals_and_a_ratio_keeps_them() -> None:
    assert _figure(18) == "18"
    assert _figure(12345) == "12,345"
    assert _figure(18.0) == "18.0"
    assert _figure(0.8) == "0.80"


@pytest.mark.anyio
async def test_the_soft_mirror_has_the_mock_analysers_keys_hints_and_values() -> None:
    async with init_devices(mock=True):
        gas = ServomexAnalyser()

    soft = await bench_count.mirror_of(gas)

    describe, mirrored = await gas.describe(), await soft.describe()
    assert sorted(mirrored) == sorted(describe)
    assert bench_count._shape(mirrored) == bench_count._shape(describe)
    assert bench_count._shape(await soft.describe_configuration()) == bench_count._shape(
        await gas.describe_configuration()
    )
    assert soft.hints == gas.hints == {"fields": ["gas-i1-value", "gas-i2-value", "gas-i3-value"]}
    values = {k: r["value"] for k, r in (await soft.read()).items()}
    assert values == {k: r["value"] for k, r in (await gas.read()).items()}
    assert len(values) == 18
    assert "gas-i1-status" in values
    assert "gas-i1-ok" not in values
    status = soft.trigger()
    await status
    assert status.success


class _Odd(StandardReadable):
    """Claims a data key no child signal has."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.x = soft_signal_rw(float, 1.0)
        super().__init__(name=name)

    async def describe(self) -> dict[str, DataKey]:
        described = dict(await super().describe())
        described["odd-y"] = DataKey(dtype="number", shape=[], source="soft://y")
        return described


@pytest.mark.anyio
async def test_the_mirror_refuses_a_device_whose_keys_it_cannot_copy() -> None:
    async with init_devices():
        odd = _Odd()

    with pytest.raises(RuntimeError, match="read keys differ"):
        await bench_count.mirror_of(odd)


def test_the_simulator_process_serves_a_pty_the_driver_polls() -> None:
    with bench_count.simulator_process() as port:
        assert port.startswith("/dev/pts/")
        assert os.path.exists(port)
        seconds = asyncio.run(bench_count.bare_polls(port, 3))
    assert seconds > 0


def test_the_measured_floors_soft_device_polls_the_held_analyzer_in_its_trigger() -> None:
    engine = RunEngine({}, call_returns_result=True, loop=asyncio.new_event_loop())
    polls: list[int] = []
    try:
        with bench_count.simulator_process() as port:
            with init_devices(mock=True):
                gas = ServomexAnalyser(name="gas")
            soft = call_in_bluesky_event_loop(bench_count.mirror_of(gas))
            with bench_count.held_analyzer(port) as analyzer:

                async def poll() -> object:
                    frame = await analyzer.poll()
                    polls.append(1)
                    return frame

                soft.poll = poll
                engine(count([soft], num=3))
                assert call_in_bluesky_event_loop(bench_count.poll_loop(analyzer, 2)) > 0
            assert not analyzer.is_open  # left by its holding task
    finally:
        bench_count._stop(engine)
    assert len(polls) == 3


def test_a_simulator_that_does_not_start_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_count, "SIM_ARGS", ("sim", "--address", "0"))

    with (
        pytest.raises(
            RuntimeError, match=r"did not start \(exit status 2; it said: .*argument --address"
        ),
        bench_count.simulator_process(),
    ):
        pass
