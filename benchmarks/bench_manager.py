"""The manager's poll time: N analysers on N buses, as a ratio to one analyser on one bus.

Each bus is a simulated SERVOPRO 4100 on an in-memory link. The manager polls lines at the
same time and the analysers of one line one after the other, so N analysers on N buses
should cost about what one costs (ratio ≈ 1), and N analysers sharing one bus about N
times as much (shown for contrast). All three cases are timed in interleaved rounds in the
same run; the best round of each is kept.

* full: the bench unit's timing — the 50 ms line silence before every request, 20–40 ms
  replies and the wire time at 19200 baud (a sweep is three transactions, ~0.3 s) — and
  N = 4;
* quick: a zero-latency simulator with a 10 ms line silence, N = 2, a few rounds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import anyio

from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.driver import ServomexManager
from ophyd_servomex.sim import SimConfig, SimHandle, serve_memory

from ._harness import Result

RTU = ProtocolKind.MODBUS_RTU


async def _bus(stack: AsyncExitStack, addresses: tuple[int, ...], realistic: bool) -> SimHandle:
    config = SimConfig(mode=RTU, addresses=addresses, noisy=False, realistic_timing=realistic)
    return await stack.enter_async_context(serve_memory(config))


async def _manager(
    stack: AsyncExitStack, layout: list[tuple[int, ...]], realistic: bool, idle: float
) -> ServomexManager:
    """A manager with one simulated bus per entry of ``layout`` (its addresses)."""
    manager = await stack.enter_async_context(ServomexManager(inter_frame_idle=idle))
    for index, addresses in enumerate(layout):
        sim = await _bus(stack, addresses, realistic)
        assert sim.transport is not None
        for address in addresses:
            await manager.add(f"bus{index}-{address}", sim.transport, protocol=RTU, address=address)
    return manager


async def _measure(quick: bool) -> tuple[int, dict[str, float]]:
    n = 2 if quick else 4
    rounds = 3 if quick else 5
    realistic = not quick
    idle = 0.01 if quick else 0.05
    layouts = {
        "1 on 1": [(1,)],
        f"{n} on {n}": [(1,)] * n,
        f"{n} on 1": [tuple(range(1, n + 1))],
    }
    best = dict.fromkeys(layouts, float("inf"))
    async with AsyncExitStack() as stack:
        polls: dict[str, Callable[[], Awaitable[object]]] = {}
        for name, layout in layouts.items():
            manager = await _manager(stack, layout, realistic, idle)
            await manager.poll()  # warm up: the first request waits its line's settle time
            polls[name] = manager.poll
        names = list(layouts)
        for round_ in range(rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                started = time.perf_counter()
                await polls[name]()
                best[name] = min(best[name], time.perf_counter() - started)
    return n, best


def run(quick: bool) -> list[Result]:
    """Poll time of one analyser, and the ratios of N on N buses and N on one bus to it."""
    n, best = anyio.run(_measure, quick)
    one = best["1 on 1"]
    timing = "zero-latency sim, 10 ms idle" if quick else "bench timing, 50 ms idle"
    return [
        Result("poll: 1 analyser on 1 bus", one * 1000, "ms", timing),
        Result(
            f"poll: {n} analysers on {n} buses ÷ 1 on 1",
            best[f"{n} on {n}"] / one,
            "×",
            "lines polled at once (≈1 expected)",
        ),
        Result(
            f"poll: {n} analysers on 1 bus ÷ 1 on 1",
            best[f"{n} on 1"] / one,
            "×",
            f"one line, one transaction at a time (≈{n} expected)",
        ),
    ]
