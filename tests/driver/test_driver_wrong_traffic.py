"""Replies that are not what was asked for are reported as what they are.

A unit left in continuous mode while the driver polls Modbus, a reply echoing another
function code, a byte count that disagrees with the request, a reply cut off: each gets a
message that names the problem (not "CRC mismatch" or "no reply"), with the bytes in the
context. anymodbus's per-attempt retry warnings stay off the console.
"""

from __future__ import annotations

import logging

import pytest

from ophyd_servomex import FakeTransport, ProtocolKind, open_device
from ophyd_servomex.codec.errors import (
    ServomexError,
    ServomexFrameError,
    ServomexProtocolError,
    ServomexTimeoutError,
)
from ophyd_servomex.codec.modbus_frames import ModbusRequest, encode_rtu
from ophyd_servomex.codec.registers import FULL_SWEEP
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.driver.retry_log import RetryLogFilter
from ophyd_servomex.sim import SimConfig, serve_pty

pytestmark = pytest.mark.anyio

FIRST = FULL_SWEEP[0]  # FC04, 70 input registers from 0
REQUEST = encode_rtu(30, ModbusRequest.read(FIRST.function, FIRST.start, FIRST.count).encode())
HINT = "the line carries continuous-mode frames; try protocol continuous"


@pytest.mark.parametrize("mode", [ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII])
async def test_polling_a_unit_in_continuous_mode_says_so(mode: ProtocolKind) -> None:
    config = SimConfig(mode=ProtocolKind.CONTINUOUS_ASCII, period=0.1, noisy=False)
    async with serve_pty(config) as sim:
        with pytest.raises(ServomexError) as info:
            async with Analyzer(sim.port, protocol=mode, address=30, timeout=0.5) as analyser:
                await analyser.poll()
    error = info.value
    assert isinstance(error, (ServomexTimeoutError, ServomexFrameError))
    assert str(error).startswith(HINT)
    assert error.context.response  # the frames' bytes are kept for the log
    assert error.context.port == sim.port


async def test_silence_is_not_mistaken_for_continuous_traffic() -> None:
    fake = FakeTransport()
    with pytest.raises(ServomexTimeoutError) as info:
        async with await open_device(
            fake, protocol=ProtocolKind.MODBUS_RTU, address=30, identify=False, timeout=0.2
        ) as analyser:
            await analyser.poll()
    assert HINT not in str(info.value)
    assert str(info.value).startswith("no reply from address 30 to FC04")


@pytest.mark.parametrize(
    ("pdu", "kind", "message"),
    [
        (bytes([3, 2, 0, 1]), ServomexProtocolError, "slave returned fc 0x03, expected 0x04"),
        (
            bytes([4, 4, 0, 1, 0, 2]),
            ServomexProtocolError,
            "carries 2 register(s); the request asked for 70",
        ),
        (
            bytes([4, 140]) + bytes(10),
            ServomexTimeoutError,
            "an incomplete reply from address 30 to FC04 read input registers at 0: 15 bytes",
        ),
    ],
    ids=["wrong function echo", "wrong byte count", "cut-off reply"],
)
async def test_a_reply_that_does_not_answer_is_reported_as_such(
    pdu: bytes, kind: type[ServomexError], message: str
) -> None:
    fake = FakeTransport()
    reply = encode_rtu(30, pdu)
    fake.add_script(REQUEST, reply)
    with pytest.raises(kind) as info:
        async with await open_device(
            fake, protocol=ProtocolKind.MODBUS_RTU, address=30, identify=False, timeout=0.2
        ) as analyser:
            await analyser.poll()
    text = str(info.value)
    assert message in text
    assert "CRC" not in text
    assert HINT not in text
    assert info.value.context.response == reply
    assert info.value.context.function_code == 4


def test_retry_records_become_debug_and_frequent_retries_one_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    retry_filter = RetryLogFilter(threshold=3, window=60.0, clock=lambda: now[0])
    logger = logging.getLogger("anymodbus.bus.test-retry")
    logger.addFilter(retry_filter)
    logger.setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                logger.warning("Transient error on attempt %d/%d", 1, 3)
            assert caplog.records == []  # a retry that then succeeds is no warning
            logger.warning("something else entirely")
            assert [r.getMessage() for r in caplog.records] == ["something else entirely"]
            caplog.clear()
            logger.warning("Transient error on attempt %d/%d", 2, 3)  # the third in a minute
            assert [r.levelno for r in caplog.records] == [logging.WARNING]
            assert (
                caplog.records[0]
                .getMessage()
                .startswith("Modbus retries are frequent: 3 in the last 60 s")
            )
            caplog.clear()
            logger.warning("Transient error on attempt %d/%d", 1, 3)
            assert caplog.records == []  # one summary per window
            now[0] = 200.0
            for _ in range(3):
                logger.warning("Transient error on attempt %d/%d", 1, 3)
            assert len(caplog.records) == 1  # a new window, a new summary
        assert retry_filter.retries == 7
    finally:
        logger.removeFilter(retry_filter)


async def test_polling_through_retries_prints_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ophyd_servomex.sim.faults import Fault

    config = SimConfig(mode=ProtocolKind.MODBUS_RTU, addresses=(30,), noisy=False)
    async with (
        serve_pty(config) as sim,
        Analyzer(sim.port, protocol=ProtocolKind.MODBUS_RTU, address=30, timeout=0.3) as analyser,
    ):
        sim.faults.inject(Fault.CORRUPT_CHECKSUM, count=1)  # one bad reply, then good
        with caplog.at_level(logging.WARNING):
            frame = await analyser.poll()
    assert frame.channel("I1").value == pytest.approx(20.378, abs=1e-4)
    assert [r for r in caplog.records if r.name.startswith("anymodbus")] == []
