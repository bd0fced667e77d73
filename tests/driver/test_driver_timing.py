"""Line timing against the simulator with the bench unit's timing (docs/protocol.md §5.10).

With ``realistic_timing`` the simulated analyser drops every request that starts less
than 50 ms after the previous transaction ended (as the bench 4100D did) and spends the
bytes' wire time at the configured baud rate. A request it drops carries a
``"dropped: …"`` note in the wire log, so "no note" proves the silence before *every*
request: the first one after AUTO's probes, each retry after a timeout, and the
transactions of two analysers sharing one line through the manager.
"""

from __future__ import annotations

import anyio
import pytest
from driverhelpers import ADDRESS

from ophyd_servomex.codec.models import ProtocolKind, SerialSettings
from ophyd_servomex.driver import Analyzer, ServomexManager
from ophyd_servomex.driver.modbus import wire_allowance
from ophyd_servomex.sim import Fault, SimConfig, SimHandle, WireKind, serve_pty

pytestmark = pytest.mark.anyio

RTU, ASCII = ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII


def realistic(mode: ProtocolKind, baud: int = 19200, **changes: object) -> SimConfig:
    options: dict[str, object] = {
        "mode": mode,
        "noisy": False,
        "seed": 1,
        "realistic_timing": True,
        "settings": SerialSettings("", baudrate=baud),
    }
    options.update(changes)
    return SimConfig(**options)  # type: ignore[arg-type]


def dropped(sim: SimHandle) -> list[str]:
    """Notes of requests the simulator ignored because they came too soon."""
    return [e.note for e in sim.log.events(WireKind.REQUEST) if e.note.startswith("dropped")]


@pytest.mark.parametrize("mode", [RTU, ASCII])
async def test_auto_then_polls_keep_50_ms_before_every_request(mode: ProtocolKind) -> None:
    async with serve_pty(realistic(mode)) as sim:
        async with Analyzer(sim.port, address=ADDRESS) as analyser:
            assert analyser.protocol is mode
            for _ in range(5):
                await analyser.poll()
            assert analyser.modbus is not None
            line = analyser.modbus.line
            assert (line.retried, line.failures) == (0, {})
            assert line.attempts == 1 + 3 * 5  # identify, then three reads per poll
        assert dropped(sim) == []
        answered = [e for e in sim.log.events(WireKind.REQUEST) if not e.note]
        assert len(answered) == 1 + 1 + 15  # the probe that found the mode, identify, polls


async def test_retry_after_a_timeout_keeps_the_silence() -> None:
    async with serve_pty(realistic(RTU)) as sim:
        async with Analyzer(sim.port, protocol=RTU, address=ADDRESS, timeout=0.2) as analyser:
            sim.faults.inject(Fault.DROP, count=2)
            await analyser.poll()  # the first read is answered on its third attempt
            await analyser.poll()
            assert analyser.modbus is not None
            assert analyser.modbus.line.retried == 2
        assert dropped(sim) == []
        assert len(sim.log.events(WireKind.SUPPRESSED)) == 2


async def test_two_analysers_on_one_line_through_the_manager() -> None:
    async with serve_pty(realistic(RTU, addresses=(30, 31))) as sim:
        async with ServomexManager() as manager:
            await manager.add("a", sim.port, protocol=RTU, address=30)
            await manager.add("b", sim.port, protocol=RTU, address=31)
            for _ in range(4):
                frames = await manager.poll()
                assert sorted(frames) == ["a", "b"]
        assert dropped(sim) == []
        addresses = [e.address for e in sim.log.events(WireKind.REQUEST)]
        assert sorted(set(addresses)) == [30, 31]
        assert len(addresses) == 2 + 4 * 2 * 3


@pytest.mark.parametrize(("mode", "baud"), [(RTU, 9600), (RTU, 2400), (ASCII, 2400)])
async def test_slow_lines_work_with_the_default_timeout(mode: ProtocolKind, baud: int) -> None:
    """At 2400 baud the ASCII reply to the full FC04 read takes 1.2 s on the wire alone."""
    settings = SerialSettings("", baudrate=baud)
    async with serve_pty(realistic(mode, baud)) as sim:
        with anyio.fail_after(20):
            async with Analyzer(
                sim.port, protocol=mode, address=ADDRESS, serial_settings=settings
            ) as analyser:
                frame = await analyser.poll()
                assert analyser.modbus is not None
                line = analyser.modbus.line
                assert (line.retried, analyser.modbus.fallback_channels) == (0, None)
                assert line.wire_allowance == wire_allowance(mode, baud)
        assert [r.channel.value for r in frame.readings] == ["I1", "I2", "I3", "E1", "E2"]
        assert dropped(sim) == []


def test_wire_allowance_is_the_longest_exchange_on_the_wire() -> None:
    # RTU: 8-byte request + 145-byte reply; ASCII: 17 + 291 characters; 10 bits each
    assert wire_allowance(RTU, 19200) == pytest.approx(153 * 10 / 19200)
    assert wire_allowance(ASCII, 2400) == pytest.approx(308 * 10 / 2400)
    assert wire_allowance(RTU, 2400, (8, 8)) == pytest.approx(16 * 10 / 2400)
