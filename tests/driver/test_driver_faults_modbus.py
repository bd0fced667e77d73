"""Modbus faults, each with its named outcome, and no good frame lost afterwards.

The simulator (RTU/ASCII over a real pty) spoils its next reply(s) on request; the
:class:`PickySlave` peer refuses chosen requests with an exception code.
"""

from __future__ import annotations

import anyio
import pytest
from driverhelpers import ADDRESS, bench_values, quiet_config, requests
from driverpeers import PickySlave

from ophyd_servomex.codec.errors import (
    ServomexChecksumError,
    ServomexConnectionError,
    ServomexIllegalDataAddressError,
    ServomexIllegalFunctionError,
    ServomexTimeoutError,
)
from ophyd_servomex.codec.modbus_frames import crc16, encode_ascii, encode_rtu, lrc
from ophyd_servomex.codec.models import ProtocolKind
from ophyd_servomex.driver import Analyzer
from ophyd_servomex.sim import Fault, SimAnalyser, SimHandle, bench_channels, serve_pty
from ophyd_servomex.transport import open_pty_pair

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU
ASCII = ProtocolKind.MODBUS_ASCII
SWEEP_RTU = [
    bytes.fromhex("1E 04 00 00 00 46 73 97"),
    bytes.fromhex("1E 02 00 00 00 50 7A 59"),
    bytes.fromhex("1E 02 03 E8 00 10 FB D9"),
]
FAST = {"timeout": 0.2, "inter_frame_idle": 0.005, "identify": False}


def device(sim: SimHandle, mode: ProtocolKind = RTU, **options: object) -> Analyzer:
    settings = {**FAST, **options}
    return Analyzer(sim.port, protocol=mode, address=ADDRESS, **settings)


async def assert_polls_clean(analyser: Analyzer, mode: ProtocolKind = RTU) -> None:
    for _ in range(2):
        assert (await analyser.poll()).values == bench_values(mode)


@pytest.mark.parametrize("mode", [RTU, ASCII], ids=lambda m: m.value)
async def test_one_bad_crc_or_lrc_costs_one_retry(mode: ProtocolKind) -> None:
    async with serve_pty(quiet_config(mode)) as sim, device(sim, mode) as analyser:
        sim.faults.inject(Fault.CORRUPT_CHECKSUM)
        frame = await analyser.poll()
        assert frame.values == bench_values(mode)
        assert analyser.modbus is not None
        assert analyser.modbus.line.retried == 1
        assert len(requests(sim)) == 4  # the first read went out twice
        assert requests(sim)[0] == requests(sim)[1]
        await assert_polls_clean(analyser, mode)


@pytest.mark.parametrize("mode", [RTU, ASCII], ids=lambda m: m.value)
async def test_bad_checksums_on_every_attempt_raise_a_checksum_error(mode: ProtocolKind) -> None:
    async with serve_pty(quiet_config(mode)) as sim, device(sim, mode) as analyser:
        sim.faults.inject(Fault.CORRUPT_CHECKSUM, count=3)
        with pytest.raises(ServomexChecksumError) as info:
            await analyser.poll()
        error = info.value
        reply = error.raw
        if mode is RTU:
            assert error.expected == int.from_bytes(reply[-2:], "little")
            assert error.actual == crc16(reply[:-2])
            assert error.context.request == SWEEP_RTU[0]
        else:
            body = bytes.fromhex(reply.strip(b":\r\n").decode())
            assert (error.expected, error.actual) == (body[-1], lrc(body[:-1]))
            assert error.context.request == b":1E040000004698\r\n"
        assert error.expected != error.actual
        assert (error.context.function_code, error.context.register) == (4, 0)
        assert (error.context.address, error.context.port) == (ADDRESS, sim.port)
        assert error.context.protocol == mode.value
        assert analyser.dropped_frames == 1
        assert len(requests(sim)) == 3  # three attempts of the first read, no more
        await assert_polls_clean(analyser, mode)


@pytest.mark.parametrize("mode", [RTU, ASCII], ids=lambda m: m.value)
async def test_garbage_before_a_reply_is_survived(mode: ProtocolKind) -> None:
    async with serve_pty(quiet_config(mode)) as sim, device(sim, mode) as analyser:
        sim.faults.inject(Fault.GARBAGE)
        assert (await analyser.poll()).values == bench_values(mode)
        await assert_polls_clean(analyser, mode)


async def test_a_truncated_reply_times_out_and_is_retried() -> None:
    async with serve_pty(quiet_config(RTU)) as sim, device(sim) as analyser:
        sim.faults.inject(Fault.TRUNCATE)
        assert (await analyser.poll()).values == bench_values(RTU)
        assert analyser.modbus is not None
        assert analyser.modbus.line.failures == {"timeout": 1}
        await assert_polls_clean(analyser)


async def test_a_dropped_read_reply_is_retried() -> None:
    async with serve_pty(quiet_config(RTU)) as sim, device(sim) as analyser:
        sim.faults.inject(Fault.DROP)
        assert (await analyser.poll()).values == bench_values(RTU)
        assert requests(sim) == [SWEEP_RTU[0], *SWEEP_RTU]
        await assert_polls_clean(analyser)


async def test_reads_give_up_after_two_retries_with_a_timeout() -> None:
    async with serve_pty(quiet_config(RTU)) as sim, device(sim) as analyser:
        await analyser.poll()  # the unit answers the broad sweep: later silence is lost replies
        sim.log.clear()
        sim.faults.inject(Fault.DROP, count=3)
        with pytest.raises(ServomexTimeoutError, match="3 attempts") as info:
            await analyser.poll()
        assert info.value.context.request == SWEEP_RTU[0]
        assert requests(sim) == [SWEEP_RTU[0]] * 3
        sim.log.clear()
        await analyser.poll()
        assert requests(sim) == list(SWEEP_RTU)  # still the broad sweep: no fallback
        await assert_polls_clean(analyser)


async def test_a_coil_write_whose_reply_is_lost_is_never_retried() -> None:
    coil_on = bytes.fromhex("1E 05 00 00 FF 00 8E 55")
    coil_off = bytes.fromhex("1E 05 00 00 00 00 CF A5")
    async with serve_pty(quiet_config(RTU)) as sim, device(sim) as analyser:
        sim.faults.inject(Fault.DROP)  # the reply to FC05 ON
        with pytest.raises(ServomexTimeoutError, match="1 attempt") as info:
            await analyser.start_calibration(1, confirm=True)
        assert info.value.context.function_code == 5
        # ON once (it arrived: the group started), then OFF so the coil is not left at 1
        assert requests(sim) == [coil_on, coil_off]
        assert sim.analyser.calibrating_group == 1
        assert sim.analyser.coils[0] is False
        await assert_polls_clean(analyser)


async def test_a_late_reply_is_discarded_and_the_retry_answered() -> None:
    async with serve_pty(quiet_config(RTU)) as sim, device(sim) as analyser:
        sim.faults.inject(Fault.DELAY, seconds=0.3)  # after the 0.2 s timeout
        assert (await analyser.poll()).values == bench_values(RTU)
        assert requests(sim) == [SWEEP_RTU[0], *SWEEP_RTU]
        assert analyser.modbus is not None
        assert analyser.modbus.line.failures == {"timeout": 1}
        await assert_polls_clean(analyser)


@pytest.mark.parametrize("mode", [RTU, ASCII], ids=lambda m: m.value)
async def test_a_reply_from_the_wrong_address_is_ignored(mode: ProtocolKind) -> None:
    async with serve_pty(quiet_config(mode)) as sim, device(sim, mode) as analyser:
        sim.faults.inject(Fault.WRONG_ADDRESS)
        assert (await analyser.poll()).values == bench_values(mode)
        assert len(requests(sim)) == 4
        await assert_polls_clean(analyser, mode)


async def test_a_pulled_cable_ends_subscriptions_after_the_frames_received() -> None:
    async with serve_pty(quiet_config(RTU)) as sim, device(sim) as analyser:
        subscription = analyser.subscribe()
        first = await analyser.poll()
        sim.faults.inject(Fault.DISCONNECT)
        with pytest.raises(ServomexConnectionError) as info:
            await analyser.poll()
        assert info.value.context.port == sim.port
        assert await subscription.next_frame() is first
        with pytest.raises(ServomexConnectionError):
            await subscription.next_frame()
        with pytest.raises(ServomexConnectionError):
            await analyser.poll()


async def test_a_busy_port_is_refused_with_a_connection_error_naming_it() -> None:
    async with serve_pty(quiet_config(RTU)) as sim, device(sim):
        with pytest.raises(ServomexConnectionError) as info:
            async with device(sim):
                pass
        assert info.value.context.port == sim.port
        assert sim.port in str(info.value)


async def test_a_missing_port_is_refused_with_a_connection_error_naming_it() -> None:
    with pytest.raises(ServomexConnectionError) as info:
        async with Analyzer("/dev/does-not-exist-servomex", protocol=RTU):
            pass
    assert info.value.context.port == "/dev/does-not-exist-servomex"


# --- exception responses, from a peer that refuses on purpose ---------------------------------


async def test_exception_01_is_an_illegal_function_error_with_its_context() -> None:
    slave = PickySlave(
        SimAnalyser(bench_channels(noisy=False)), policy=lambda r: 1 if r.function == 4 else None
    )
    async with open_pty_pair() as pair, anyio.create_task_group() as tg:
        tg.start_soon(slave.serve, pair.master)
        async with Analyzer(pair.path, protocol=RTU, address=ADDRESS, **FAST) as analyser:
            with pytest.raises(ServomexIllegalFunctionError) as info:
                await analyser.poll()
            error = info.value
            assert error.exception_code == 1
            ctx = error.context
            assert (ctx.port, ctx.protocol, ctx.address) == (pair.path, "modbus-rtu", ADDRESS)
            assert (ctx.function_code, ctx.register) == (4, 0)
            assert ctx.request == SWEEP_RTU[0]
            assert ctx.response == encode_rtu(ADDRESS, b"\x84\x01")
            assert slave.requests == [SWEEP_RTU[0]]  # an exception is an answer: no retry
            with pytest.raises(ServomexIllegalFunctionError) as info:
                await analyser.read_channel("I2")
            ctx = info.value.context
            assert (ctx.channel, ctx.function_code, ctx.register) == ("I2", 4, 7)
            # other functions still work
            assert (await analyser.analyser_status()).fault is False
        tg.cancel_scope.cancel()


async def test_exception_02_is_an_illegal_data_address_error() -> None:
    slave = PickySlave(
        SimAnalyser(bench_channels(noisy=False)),
        policy=lambda r: 2 if (r.function, r.address) == (2, 1000) else None,
    )
    async with open_pty_pair() as pair, anyio.create_task_group() as tg:
        tg.start_soon(slave.serve, pair.master)
        async with Analyzer(pair.path, protocol=RTU, address=ADDRESS, **FAST) as analyser:
            with pytest.raises(ServomexIllegalDataAddressError) as info:
                await analyser.analyser_status()
            assert info.value.exception_code == 2
            assert (info.value.context.function_code, info.value.context.register) == (2, 1000)
        tg.cancel_scope.cancel()


def test_the_ascii_worked_example_agrees_with_the_codec() -> None:
    assert encode_ascii(ADDRESS, bytes.fromhex("04 0000 0046")) == b":1E040000004698\r\n"
