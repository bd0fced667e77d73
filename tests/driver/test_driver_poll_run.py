"""Back-to-back polls against the bench unit's timing: none dropped, none retried.

With ``realistic_timing`` the simulated analyser ignores any request that starts less than
50 ms after the previous transaction ended, answers after 20–40 ms and spends the bytes'
wire time at 19200 baud (docs/protocol.md §5.10). Polling as fast as the driver can, every
request must still get through on its first attempt: the wire log carries no "dropped"
note and the line counts no retry and no failure.
"""

from __future__ import annotations

import pytest
from driverhelpers import ADDRESS, bench_values

from ophyd_servomex.codec.models import ProtocolKind, SerialSettings
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.sim import SimConfig, WireKind, serve_pty

pytestmark = pytest.mark.anyio

RTU, ASCII = ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII


async def poll_run(mode: ProtocolKind, polls: int) -> None:
    config = SimConfig(
        mode=mode,
        noisy=False,
        seed=3,
        realistic_timing=True,
        settings=SerialSettings("", baudrate=19200),
    )
    async with serve_pty(config) as sim:
        async with Analyzer(sim.port, protocol=mode, address=ADDRESS) as analyser:
            for _ in range(polls):
                frame = await analyser.poll()
                assert frame.values == bench_values(mode)
            assert analyser.modbus is not None
            line = analyser.modbus.line
            assert (line.attempts, line.retried, line.failures) == (1 + 3 * polls, 0, {})
            assert analyser.dropped_frames == 0
        events = sim.log.events(WireKind.REQUEST)
        assert [e.note for e in events if e.note] == []
        assert len(events) == 1 + 3 * polls
        assert len(sim.log.events(WireKind.REPLY)) == 1 + 3 * polls


@pytest.mark.parametrize("mode", [RTU, ASCII], ids=lambda m: m.value)
async def test_20_polls_in_a_row_lose_nothing(mode: ProtocolKind) -> None:
    await poll_run(mode, 20)


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~70 s: 600 transactions at ~0.12 s each
async def test_200_polls_in_a_row_lose_nothing() -> None:
    await poll_run(RTU, 200)
