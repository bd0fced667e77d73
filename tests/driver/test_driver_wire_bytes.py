"""Exact request bytes on the wire (docs/protocol.md §5.11), and gates that raise before any
byte."""

from __future__ import annotations

import pytest
from driverhelpers import ADDRESS, MODES, quiet_config, requests

from ophyd_servomex.codec.errors import (
    ServomexCapabilityError,
    ServomexConfirmationRequiredError,
    ServomexValidationError,
)
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.sim import serve_pty

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU
ASCII = ProtocolKind.MODBUS_ASCII

# docs/protocol.md §5.11, slave 30
WORKED = {
    "sweep": {
        RTU: ["1E 04 00 00 00 46 73 97", "1E 02 00 00 00 50 7A 59", "1E 02 03 E8 00 10 FB D9"],
        ASCII: [":1E040000004698", ":1E020000005090", ":1E0203E80010E5"],
    },
    "start group 1": {
        RTU: ["1E 05 00 00 FF 00 8E 55", "1E 01 00 00 00 01 FF A5", "1E 05 00 00 00 00 CF A5"],
        ASCII: [":1E050000FF00DE", ":1E0100000001E0", ":1E0500000000DD"],
    },
    "stop all": {
        RTU: ["1E 05 00 08 FF 00 0F 97"],
        ASCII: [":1E050008FF00D6"],
    },
    "calibration status": {
        RTU: ["1E 02 03 F0 00 08 7B D4"],
        ASCII: [":1E0203F00008E5"],
    },
    "loopback": {
        RTU: ["1E 08 00 00 AB CD 5C C1"],
        ASCII: [":1E080000ABCD62"],
    },
}


def wire(mode: ProtocolKind, texts: list[str]) -> list[bytes]:
    if mode is RTU:
        return [bytes.fromhex(t) for t in texts]
    return [t.encode("ascii") + b"\r\n" for t in texts]


@pytest.mark.parametrize("mode", [RTU, ASCII], ids=lambda m: m.value)
async def test_requests_match_the_worked_examples(mode: ProtocolKind) -> None:
    config = quiet_config(mode)
    async with (
        serve_pty(config) as sim,
        Analyzer(
            sim.port, protocol=mode, address=ADDRESS, identify=False, inter_frame_idle=0.005
        ) as analyser,
    ):
        await analyser.poll()
        assert requests(sim) == wire(mode, WORKED["sweep"][mode])
        sim.log.clear()
        await analyser.start_calibration(1, confirm=True)
        assert requests(sim) == wire(mode, WORKED["start group 1"][mode])
        sim.log.clear()
        await analyser.calibration_status(1)
        assert requests(sim) == wire(mode, WORKED["calibration status"][mode])
        sim.log.clear()
        await analyser.stop_calibration(confirm=True)
        # the stop pulse: ON, read back, OFF at coil 8
        stop = requests(sim)
        assert stop[0] == wire(mode, WORKED["stop all"][mode])[0]
        assert len(stop) == 3
        sim.log.clear()
        await analyser.loopback(b"\xab\xcd")
        assert requests(sim) == wire(mode, WORKED["loopback"][mode])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
async def test_gates_raise_in_order_before_any_byte(mode: ProtocolKind) -> None:
    async with serve_pty(quiet_config(mode, period=0.0)) as sim:  # period 0: output off
        async with Analyzer(sim.port, protocol=mode, address=ADDRESS, identify=False) as a:
            # safety first: no confirm, even with a bad group, in any mode
            for call in (
                a.start_calibration(1),
                a.start_calibration(9),
                a.start_calibration(1, confirm=False),
                a.stop_calibration(),
            ):
                with pytest.raises(ServomexConfirmationRequiredError):
                    await call
            if mode is ProtocolKind.CONTINUOUS_ASCII:
                # then capability, even with a bad group
                for call in (
                    a.start_calibration(9, confirm=True),
                    a.stop_calibration(confirm=True),
                    a.loopback(b"\x00"),
                ):
                    with pytest.raises(ServomexCapabilityError):
                        await call
            else:
                # then validation
                for call in (
                    a.start_calibration(0, confirm=True),
                    a.start_calibration(5, confirm=True),
                    a.start_calibration(True, confirm=True),
                    a.loopback(b"\x00"),
                    a.loopback(b"\x00\x01\x02"),
                ):
                    with pytest.raises(ServomexValidationError):
                        await call
            for call in (  # validation of reads, any mode
                a.calibration_status(0),
                a.calibration_status(5),
                a.read_channel("X9"),
                a.status("Q1"),
            ):
                with pytest.raises(ServomexValidationError):
                    await call
        assert sim.log.events() == []  # not one byte reached the analyser
