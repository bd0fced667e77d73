"""Nothing ever writes to the analyser except the calibration coils, and only when confirmed.

Every public reading, streaming and diagnostic method of :class:`Analyzer`, of its
:class:`ModbusClient` and of :class:`ServomexManager` runs against the simulator; its wire
log then holds no write request at all (FC05, FC06, FC15, FC16). Confirmed calibration
sends FC05 to coils 0–3 and 8 only, and ``pulse_coil`` refuses any other coil before a byte.
"""

from __future__ import annotations

import pytest
from confirm_values import NOT_TRUE
from driverhelpers import ADDRESS, quiet_config

from ophyd_servomex.codec.errors import (
    ServomexConfirmationRequiredError,
    ServomexValidationError,
)
from ophyd_servomex.codec.models import ChannelId, ProtocolKind
from ophyd_servomex.driver import Analyzer, ServomexManager
from ophyd_servomex.sim import SimHandle, WireKind, serve_pty

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU
WRITES = {5, 6, 15, 16}
FAST = {"inter_frame_idle": 0.002, "timeout": 0.5}


def written(sim: SimHandle) -> list[tuple[int, int]]:
    """(function code, first address) of every write request the analyser received."""
    return [
        (e.data[1], int.from_bytes(e.data[2:4], "big"))
        for e in sim.log.events(WireKind.REQUEST)
        if e.data[1] in WRITES
    ]


async def test_no_public_method_writes_without_confirmation() -> None:
    async with serve_pty(quiet_config(RTU)) as sim:
        async with Analyzer(sim.port, protocol=RTU, address=ADDRESS, **FAST) as a:
            await a.identify()
            await a.poll()
            await a.poll_samples()
            await a.read_all()
            for channel in ChannelId:
                await a.read_channel(channel)
                await a.status(channel)
            await a.analyser_status()
            for group in (1, 2, 3, 4):
                await a.calibration_status(group)
            await a.loopback(b"\x12\x34")
            async with a.stream(rate_hz=50, count=3) as session:
                assert len([s async for s in session]) == 3
            for group in (1, 2, 3, 4):
                with pytest.raises(ServomexConfirmationRequiredError):
                    await a.start_calibration(group)
            # only confirm=True itself: strings, numbers, containers, numpy scalars refused
            for not_true in NOT_TRUE:
                with pytest.raises(ServomexConfirmationRequiredError):
                    await a.start_calibration(1, confirm=not_true)
                with pytest.raises(ServomexConfirmationRequiredError):
                    await a.stop_calibration(confirm=not_true)
            with pytest.raises(ServomexConfirmationRequiredError):
                await a.stop_calibration()
            client = a.modbus
            assert client is not None
            await client.sweep()
            await client.identify()
            for coil in (-1, 4, 5, 7, 9, 10, 100, True):
                with pytest.raises(ServomexValidationError, match="not a calibration coil"):
                    await client.pulse_coil(coil)
        async with ServomexManager(inter_frame_idle=FAST["inter_frame_idle"]) as manager:
            await manager.add("a", sim.port, protocol=RTU, address=ADDRESS, timeout=FAST["timeout"])
            await manager.poll()
            await manager.poll_samples()
        assert len(sim.log.events(WireKind.REQUEST)) > 60
        assert written(sim) == []


async def test_confirmed_calibration_writes_only_its_coil() -> None:
    async with serve_pty(quiet_config(RTU)) as sim:
        async with Analyzer(sim.port, protocol=RTU, address=ADDRESS, **FAST) as a:
            for group in (1, 2, 3, 4):
                await a.start_calibration(group, confirm=True)
            await a.stop_calibration(confirm=True)
        on_off = [(5, c) for c in (0, 1, 2, 3, 8) for _ in ("on", "off")]
        assert written(sim) == on_off


@pytest.mark.parametrize("port", [None, 5, b"/dev/ttyUSB0", 3.0])
def test_a_port_of_the_wrong_type_is_refused_before_any_byte(port: object) -> None:
    with pytest.raises(ServomexValidationError, match="port must be a port string"):
        Analyzer(port, protocol=RTU)  # type: ignore[arg-type]
