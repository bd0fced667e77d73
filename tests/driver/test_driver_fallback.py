"""The gap-free fallback: a unit that refuses a broad span (exception 02 or silence).

PROTOCOL.md §5.9: the bench unit accepts the three broad reads; another unit may refuse a
long span. The driver then reads only the populated slots and remembers that per session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from driverhelpers import ADDRESS, bench_values
from driverpeers import SILENT, PickySlave, Policy

from ophyd_servomex.codec.errors import ServomexTimeoutError
from ophyd_servomex.codec.modbus_frames import ModbusRequest, encode_rtu
from ophyd_servomex.codec.models import ChannelId, ProtocolKind
from ophyd_servomex.codec.registers import ReadRequest, gap_free_plan
from ophyd_servomex.driver import Analyzer, open_device
from ophyd_servomex.sim import SimAnalyser, bench_channels
from ophyd_servomex.transport import open_pty_pair

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU
BENCH = (ChannelId.I1, ChannelId.I2, ChannelId.I3, ChannelId.E1, ChannelId.E2)


def rtu(request: ReadRequest) -> bytes:
    return encode_rtu(
        ADDRESS,
        bytes([request.function])
        + request.start.to_bytes(2, "big")
        + request.count.to_bytes(2, "big"),
    )


@asynccontextmanager
async def picky(policy: Policy, **options: object) -> AsyncIterator[tuple[PickySlave, Analyzer]]:
    slave = PickySlave(SimAnalyser(bench_channels(noisy=False)), policy=policy)
    settings: dict[str, object] = {"timeout": 0.1, "inter_frame_idle": 0.002, **options}
    async with open_pty_pair() as pair, anyio.create_task_group() as tg:
        tg.start_soon(slave.serve, pair.master)
        async with open_device(pair.path, protocol=RTU, address=ADDRESS, **settings) as a:
            yield slave, a
        tg.cancel_scope.cancel()


def broad_registers(code: int) -> Policy:
    def policy(request: ModbusRequest) -> int | None:
        return code if request.function == 4 and request.count > 21 else None

    return policy


@pytest.mark.parametrize(("how", "code"), [("exception 02", 2), ("silence", SILENT)])
async def test_a_refused_register_span_falls_back_to_gap_free_reads(how: str, code: int) -> None:
    async with picky(broad_registers(code)) as (slave, analyser):
        # identify() on opening hit the refusal and found the populated slots one by one
        assert analyser.modbus is not None
        assert analyser.modbus.fallback_channels == BENCH
        plan = gap_free_plan(BENCH)
        assert analyser.modbus.plan == plan
        assert [(r.function, r.start, r.count) for r in plan] == [
            (4, 0, 21),
            (4, 56, 14),
            (2, 0, 24),
            (2, 64, 16),
            (2, 1000, 16),
        ]
        assert analyser.info is not None
        assert [c.channel for c in analyser.info.channels] == list(BENCH)
        slave.requests.clear()
        for _ in range(2):  # remembered: no broad read is tried again
            frame = await analyser.poll()
            assert frame.values == bench_values(RTU)
            assert frame.channel("I3").name == "CO₂"
        assert slave.requests == [rtu(r) for r in plan] * 2


async def test_a_refused_status_span_keeps_the_register_data() -> None:
    def policy(request: ModbusRequest) -> int | None:
        return 2 if (request.function, request.address, request.count) == (2, 0, 80) else None

    async with picky(policy, identify=False) as (slave, analyser):
        frame = await analyser.poll()
        assert frame.values == bench_values(RTU)
        assert analyser.modbus is not None
        assert analyser.modbus.fallback_channels == BENCH
        full = [ReadRequest(4, 0, 70), ReadRequest(2, 0, 80)]
        assert slave.requests == [rtu(r) for r in full] + [rtu(r) for r in gap_free_plan(BENCH)]


async def test_a_silent_unit_is_a_timeout_not_a_fallback() -> None:
    slave = PickySlave(SimAnalyser(bench_channels(noisy=False)), policy=lambda r: SILENT)
    async with open_pty_pair() as pair, anyio.create_task_group() as tg:
        tg.start_soon(slave.serve, pair.master)
        with pytest.raises(ServomexTimeoutError, match="no reply from address 30") as info:
            async with open_device(pair.path, protocol=RTU, address=ADDRESS, timeout=0.1):
                pass
        tg.cancel_scope.cancel()
    assert info.value.context.request == rtu(ReadRequest(4, 0, 70))
    # three tries of the broad read, then three of the narrow check (I1 only): no discovery
    assert slave.requests == [rtu(ReadRequest(4, 0, 70))] * 3 + [rtu(ReadRequest(4, 0, 7))] * 3
