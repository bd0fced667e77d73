"""AUTO detection at the edges: the extreme addresses, a real 2 s broadcast period, a port
that only sends garbage, and a unit at another address than asked (docs/protocol.md §10)."""

from __future__ import annotations

import random

import anyio
import pytest
from driverhelpers import bench_values, quiet_config, requests

from ophyd_servomex.codec.modbus_frames import encode_ascii, encode_rtu
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.driver import Analyzer, ProtocolDetectionError
from ophyd_servomex.sim import WireKind, serve_pty
from ophyd_servomex.transport import open_pty_pair

pytestmark = pytest.mark.anyio

RTU, ASCII = ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII
PROBE_PDU = bytes.fromhex("08 0000 ABCD")


@pytest.mark.parametrize("address", [1, 30, 247])
@pytest.mark.parametrize("mode", [RTU, ASCII], ids=lambda m: m.value)
async def test_auto_finds_a_modbus_unit_at_any_address(mode: ProtocolKind, address: int) -> None:
    async with (
        serve_pty(quiet_config(mode, addresses=(address,))) as sim,
        Analyzer(sim.port, address=address, timeout=0.2) as analyser,
    ):
        assert (analyser.protocol, analyser.address) == (mode, address)
        frame = await analyser.poll()
        assert (frame.address, frame.values) == (address, bench_values(mode))
    encode = encode_rtu if mode is RTU else encode_ascii
    # the unit saw its own probe first (an ASCII unit ignores the RTU probes as noise)
    assert requests(sim)[0] == encode(address, PROBE_PDU)
    assert [e.address for e in sim.log.events(WireKind.REQUEST)] == [address] * 3 + [address] * (
        len(requests(sim)) - 3
    )


async def test_auto_hears_a_two_second_broadcast_with_the_default_expected_period() -> None:
    """The bench's cadence: a frame every 2 s, paced at the baud rate. With the defaults
    (``expected_period=2.0``, ``timeout=1.0``) the probes take ~2 s and the listen window
    is 4 s — two periods — so the unit is found whatever the phase."""
    config = quiet_config(ProtocolKind.CONTINUOUS_ASCII, period=2.0, realistic_timing=True)
    async with serve_pty(config) as sim:
        with anyio.fail_after(10):
            async with Analyzer(sim.port, address=30) as analyser:
                assert analyser.protocol is ProtocolKind.CONTINUOUS_ASCII
                assert analyser.detection is not None
                listen = analyser.detection.attempts[-1]
                assert listen.description == "continuous: listened 4 s for a broadcast frame"
                assert listen.detected
                frame = analyser.snapshot()
                assert frame is not None
                assert frame.values == bench_values(ProtocolKind.CONTINUOUS_ASCII)
        assert sim.log.events(WireKind.BROADCAST)


async def test_a_port_that_only_sends_garbage_is_no_protocol() -> None:
    """Random bytes (CR/LF among them) without pause: both probes fail, the listen hears
    only bad lines, and detection ends after its window with everything it tried."""
    rng = random.Random(7)
    async with open_pty_pair() as pair, anyio.create_task_group() as tg:

        async def babble() -> None:
            await pair.master.wait_for_client()
            while True:
                await pair.master.send(bytes(rng.randrange(256) for _ in range(48)))
                await anyio.sleep(0.01)

        tg.start_soon(babble)
        with anyio.fail_after(15), pytest.raises(ProtocolDetectionError) as info:
            async with Analyzer(pair.path, address=30, timeout=0.3, expected_period=0.5):
                pass
        tg.cancel_scope.cancel()
    error = info.value
    assert (error.context.port, error.context.address) == (pair.path, 30)
    rtu, ascii_, listen = error.attempts
    assert (rtu.protocol, rtu.address, rtu.detected) == (RTU, 30, False)
    assert (ascii_.protocol, ascii_.address, ascii_.detected) == (ASCII, 30, False)
    assert listen.protocol is ProtocolKind.CONTINUOUS_ASCII
    assert not listen.detected
    assert listen.description == "continuous: listened 2 s for a broadcast frame"
    assert listen.outcome.endswith("no valid frame")
    assert int(listen.outcome.split()[0]) > 1000  # bytes heard
    text = str(error)
    assert "Modbus RTU FC08 loopback (AB CD) to address 30" in text
    assert "Modbus ASCII FC08 loopback (AB CD) to address 30" in text
    assert "listened 2 s" in text


@pytest.mark.parametrize("mode", [RTU, ASCII], ids=lambda m: m.value)
async def test_a_unit_at_another_address_is_reported_as_silence_at_the_asked_one(
    mode: ProtocolKind,
) -> None:
    async with serve_pty(quiet_config(mode, addresses=(247,))) as sim:
        with pytest.raises(ProtocolDetectionError) as info:
            async with Analyzer(sim.port, address=1, timeout=0.1, expected_period=0.2):
                pass
        asked = [e.address for e in sim.log.events(WireKind.REQUEST)]
    error = info.value
    assert error.context.address == 1
    assert [(a.address, a.outcome) for a in error.attempts[:2]] == [(1, "no reply")] * 2
    text = str(error)
    assert "to address 1," in text
    assert "a unit at another address looks exactly like a silent one" in text
    assert asked == [1, 1]  # the unit heard both tries of its own framing's probe, kept quiet
