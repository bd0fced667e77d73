"""The gap-free fallback: a unit that refuses a broad span (exception 02 or silence).

docs/protocol.md §5.9: the bench unit accepts the three broad reads; another unit may refuse a
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
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.sim import SimAnalyser, SimChannel, bench_channels
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
        async with Analyzer(pair.path, protocol=RTU, address=ADDRESS, **settings) as a:
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
            async with Analyzer(pair.path, protocol=RTU, address=ADDRESS, timeout=0.1):
                pass
        tg.cancel_scope.cancel()
    assert info.value.context.request == rtu(ReadRequest(4, 0, 70))
    # three tries of the broad read, then three of the narrow check (I1 only): no discovery
    assert slave.requests == [rtu(ReadRequest(4, 0, 70))] * 3 + [rtu(ReadRequest(4, 0, 7))] * 3


def short_spans(registers: int, bits: int) -> Policy:
    """A unit that refuses (exception 02) any FC04 read longer than ``registers`` and any
    channel-status FC02 read longer than ``bits``, wherever it starts."""

    def policy(request: ModbusRequest) -> int | None:
        if request.function == 4 and request.count > registers:
            return 2
        if request.function == 2 and request.address < 1000 and request.count > bits:
            return 2
        return None

    return policy


async def test_a_span_limit_splits_merged_spans_into_one_read_per_slot() -> None:
    """Every slot populated: the gap-free plan merges them back into the broad reads, so a
    unit with a span limit refuses those too — the driver then reads slot by slot."""
    channels = [SimChannel(c, f"Gas {c.value}", "%", 1.5 + c.slot) for c in ChannelId]
    slave = PickySlave(SimAnalyser(channels), policy=short_spans(registers=21, bits=24))
    async with open_pty_pair() as pair, anyio.create_task_group() as tg:
        tg.start_soon(slave.serve, pair.master)
        async with Analyzer(
            pair.path, protocol=RTU, address=ADDRESS, timeout=0.1, inter_frame_idle=0.002
        ) as analyser:
            assert analyser.info is not None
            assert [c.name for c in analyser.info.channels] == [f"Gas {c.value}" for c in ChannelId]
            for _ in range(2):
                slave.requests.clear()
                frame = await analyser.poll()
                assert frame.values == {c: 1.5 + c.slot for c in ChannelId}
            assert analyser.modbus is not None
            assert analyser.modbus.fallback_channels == tuple(ChannelId)
            per_slot = [ReadRequest(4, c.slot * 7, 7) for c in ChannelId]
            per_slot += [ReadRequest(2, c.slot * 8, 8) for c in ChannelId]
            per_slot += [ReadRequest(2, 1000, 16)]
            assert analyser.modbus.plan == tuple(per_slot)
            # the second poll sends exactly the per-slot plan, nothing refused
            assert slave.requests == [rtu(r) for r in per_slot]
        tg.cancel_scope.cancel()


async def test_only_the_refused_merged_span_is_split() -> None:
    """The bench topology at a 14-register limit: FC04 (0, 21) splits into its three
    slots (at identify, on opening); (56, 14) and the status spans stay as they are."""
    slave = PickySlave(
        SimAnalyser(bench_channels(noisy=False)), policy=short_spans(registers=14, bits=80)
    )
    async with open_pty_pair() as pair, anyio.create_task_group() as tg:
        tg.start_soon(slave.serve, pair.master)
        async with Analyzer(
            pair.path, protocol=RTU, address=ADDRESS, timeout=0.1, inter_frame_idle=0.002
        ) as analyser:
            slave.requests.clear()
            assert (await analyser.poll()).values == bench_values(RTU)
            assert (await analyser.poll()).values == bench_values(RTU)
        tg.cancel_scope.cancel()
    plan = [
        ReadRequest(4, 0, 7),
        ReadRequest(4, 7, 7),
        ReadRequest(4, 14, 7),
        ReadRequest(4, 56, 14),
        ReadRequest(2, 0, 24),
        ReadRequest(2, 64, 16),
        ReadRequest(2, 1000, 16),
    ]
    assert slave.requests == [rtu(r) for r in plan] * 2
