"""AUTO detection finds each mode over a real pty, keeps the 50 ms gap, and reports silence."""

from __future__ import annotations

import pytest
from driverhelpers import ADDRESS, MODES, bench_values, quiet_config, requests

from ophyd_servomex.codec.errors import ServomexTimeoutError
from ophyd_servomex.codec.modbus_frames import encode_ascii, encode_rtu
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.driver import Analyzer, ProtocolDetectionError, listen_window
from ophyd_servomex.sim import WireKind, serve_pty
from ophyd_servomex.transport import open_pty_pair

pytestmark = pytest.mark.anyio

PROBE_PDU = bytes.fromhex("08 0000 ABCD")


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
async def test_auto_finds_each_mode(mode: ProtocolKind) -> None:
    async with (
        serve_pty(quiet_config(mode)) as sim,
        Analyzer(sim.port, address=ADDRESS, timeout=0.2, expected_period=0.05) as analyser,
    ):
        assert analyser.protocol is mode
        assert analyser.detection is not None
        assert analyser.detection.protocol is mode
        assert [a.detected for a in analyser.detection.attempts][-1] is True
        frame = await analyser.poll()
        assert frame.values == bench_values(mode)
        assert analyser.dropped_frames == 0
    if mode is ProtocolKind.MODBUS_RTU:
        # one probe, answered at once: the exact FC08 request of docs/protocol.md §5.8
        assert requests(sim)[0] == bytes.fromhex("1E 08 00 00 AB CD 5C C1")
    if mode is ProtocolKind.MODBUS_ASCII:
        assert requests(sim)[0] == b":1E080000ABCD62\r\n"
        assert encode_ascii(ADDRESS, PROBE_PDU) == requests(sim)[0]


async def test_the_session_keeps_50_ms_of_silence_after_the_probe() -> None:
    """With the bench unit's timing (requests < 50 ms after the last transaction are
    dropped) the first session request after AUTO's probe must still get through."""
    config = quiet_config(ProtocolKind.MODBUS_RTU, realistic_timing=True)
    async with serve_pty(config) as sim:
        async with Analyzer(sim.port, address=ADDRESS, timeout=0.5) as analyser:
            await analyser.poll()
            assert analyser.modbus is not None
            assert analyser.modbus.line.retried == 0
        events = sim.log.events()
    dropped = [e for e in events if e.note.startswith("dropped")]
    assert dropped == []
    assert requests(sim)[0] == encode_rtu(ADDRESS, PROBE_PDU)
    # every request starts ≥ 50 ms after the previous reply ended (the simulator's clock)
    last_reply = None
    for event in events:
        if event.kind is WireKind.REPLY:
            last_reply = event.time
        elif event.kind is WireKind.REQUEST and last_reply is not None:
            assert event.time - last_reply >= 0.05 - 0.001


async def test_a_silent_port_is_reported_with_everything_tried() -> None:
    async with open_pty_pair() as pair:
        with pytest.raises(ProtocolDetectionError) as info:
            async with Analyzer(pair.path, address=ADDRESS, timeout=0.2, expected_period=0.5):
                pass
    error = info.value
    assert isinstance(error, ServomexTimeoutError)
    assert error.context.port == pair.path
    assert error.context.address == ADDRESS
    assert [(a.protocol, a.address, a.outcome) for a in error.attempts] == [
        (ProtocolKind.MODBUS_RTU, ADDRESS, "no reply"),
        (ProtocolKind.MODBUS_ASCII, ADDRESS, "no reply"),
        (ProtocolKind.CONTINUOUS_ASCII, None, "0 bytes, 0 bad lines, no valid frame"),
    ]
    text = str(error)
    assert "Modbus RTU FC08 loopback (AB CD) to address 30" in text
    assert "Modbus ASCII FC08 loopback (AB CD) to address 30" in text
    assert "listened 2 s" in text
    assert "slave address" in text


async def test_a_wrong_address_looks_silent_and_says_so() -> None:
    async with serve_pty(quiet_config(ProtocolKind.MODBUS_RTU)) as sim:
        with pytest.raises(ProtocolDetectionError, match="to address 31") as info:
            async with Analyzer(sim.port, address=31, timeout=0.1, expected_period=0.2):
                pass
    assert info.value.context.address == 31
    # the unit saw both probes (RTU tries) and kept quiet, as the bench unit did
    rtu_probe = encode_rtu(31, PROBE_PDU)
    assert requests(sim).count(rtu_probe) == 2


def test_the_listen_window_spans_two_frame_periods() -> None:
    assert listen_window(2.0) == 4.0
    assert listen_window(0.1) == 2.0
    assert listen_window(0.1, floor=0.5) == 0.5
