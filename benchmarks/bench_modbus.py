"""Modbus full-poll time against the simulated analyser with the bench unit's timing.

The simulator runs with ``realistic_timing``: wire time at 19200 baud 8-N-1, a 20–40 ms
turnaround per reply, and requests arriving < 50 ms after the previous transaction are
dropped. Two references, measured in the same run, polls interleaved round by round:

* the **wire limit** of one poll: the bytes of the three requests and replies at
  10 bits per byte, plus the 50 ms of silence each transaction needs (docs/protocol.md §5.10);
  the analyser's own turnaround is *not* in it, so ≈ 1.3–1.4 × is the floor here;
* **bare anymodbus** doing the same three reads on its own bus with the same 50 ms idle,
  so ``× bare anymodbus`` is what the driver's owner task, tap and decoding cost.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
from anymodbus import BusConfig, RetryPolicy, TimingConfig, open_modbus_rtu

from ophyd_servomex.codec.models import ProtocolKind, SerialSettings
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.sim import SimConfig, serve_pty

from ._harness import Result

ADDRESS = 30
SETTINGS = SerialSettings("")  # 19200 8-N-1
IDLE = 0.05
# RTU bytes of the sweep: three 8-byte requests; replies FC04 ×70 (5 + 140), FC02 ×80
# (5 + 10), FC02 ×16 (5 + 2)
SWEEP_BYTES = 3 * 8 + (5 + 140) + (5 + 10) + (5 + 2)
WIRE_LIMIT = SWEEP_BYTES * 10 / SETTINGS.baudrate + 3 * IDLE


def _config() -> SimConfig:
    return SimConfig(mode=ProtocolKind.MODBUS_RTU, realistic_timing=True, settings=SETTINGS, seed=7)


async def _time(poll: Callable[[], Awaitable[object]], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        await poll()
    return (time.perf_counter() - start) / count


async def _measure(rounds: int, polls: int) -> dict[str, float]:
    best = {"driver": float("inf"), "bare": float("inf")}
    async with (
        serve_pty(_config()) as sim_a,
        serve_pty(_config()) as sim_b,
        Analyzer(
            sim_a.port, protocol=ProtocolKind.MODBUS_RTU, address=ADDRESS, identify=False
        ) as analyser,
    ):
        bus = await open_modbus_rtu(
            sim_b.port,
            baudrate=SETTINGS.baudrate,
            parity="none",
            config=BusConfig(
                request_timeout=1.0,
                timing=TimingConfig(inter_frame_idle=IDLE),
                retries=RetryPolicy(retries=2),
            ),
        )
        async with bus:
            slave = bus.slave(ADDRESS)

            async def bare() -> None:
                await slave.read_input_registers(0, count=70)
                await slave.read_discrete_inputs(0, count=80)
                await slave.read_discrete_inputs(1000, count=16)

            await analyser.poll()  # warm up both, and leave the line idle
            await bare()
            for round_ in range(rounds):
                cases = [("driver", analyser.poll), ("bare", bare)]
                for name, poll in cases[round_ % 2 :] + cases[: round_ % 2]:
                    best[name] = min(best[name], await _time(poll, polls))
        dropped = [e for e in sim_a.log.events() if e.note.startswith("dropped")]
        if dropped:
            raise RuntimeError(f"the driver broke the 50 ms rule {len(dropped)} times")
    return best


def run(quick: bool) -> list[Result]:
    """Seconds per full poll as ratios to the wire limit and to bare anymodbus."""
    rounds, polls = (2, 1) if quick else (5, 10)
    best = anyio.run(_measure, rounds, polls)
    driver, bare = best["driver"], best["bare"]
    limit = f"wire limit {WIRE_LIMIT * 1000:.0f} ms: {SWEEP_BYTES} bytes at 19200 baud + 3 × 50 ms"
    return [
        Result("full poll (3 reads), driver", driver * 1000, "ms", "realistic simulator, RTU"),
        Result("full poll ÷ wire limit", driver / WIRE_LIMIT, "×", limit),
        Result("full poll ÷ bare anymodbus", driver / bare, "×", "same 3 reads, same idle"),
        Result("bare anymodbus ÷ wire limit", bare / WIRE_LIMIT, "×", "20–40 ms turnaround each"),
    ]
