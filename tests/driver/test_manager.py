"""ServomexManager: four analysers on two simulated buses, serial within a bus, parallel
across buses, one shared port per line, and a silent analyser that spoils nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import pytest
from driverhelpers import bench_values, quiet_config

from ophyd_servomex.codec.errors import (
    ServomexConfigurationError,
    ServomexConnectionError,
    ServomexTimeoutError,
    ServomexValidationError,
)
from ophyd_servomex.codec.modbus_frames import encode_rtu
from ophyd_servomex.codec.models import ChannelId, Frame, ProtocolKind, Sample
from ophyd_servomex.driver import (
    Analyzer,
    DeviceErrors,
    DeviceResult,
    ErrorPolicy,
    ServomexManager,
)
from ophyd_servomex.sim import (
    Fault,
    SimConfig,
    SimHandle,
    WireEvent,
    WireKind,
    serve_memory,
    serve_pty,
)
from ophyd_servomex.transport import MemoryTransport, open_transport

pytestmark = pytest.mark.anyio

RTU = ProtocolKind.MODBUS_RTU
IDLE = 0.01
"""Line silence for these tests: short, but long enough that a bus poll takes ≥ 60 ms."""

# The three reads of one sweep (docs/protocol.md §5.9): FC04 0×70, FC02 0×80, FC02 1000×16.
SWEEP_PDUS = (
    bytes.fromhex("04 0000 0046"),
    bytes.fromhex("02 0000 0050"),
    bytes.fromhex("02 03E8 0010"),
)


def sweep_bytes(address: int) -> list[bytes]:
    """The exact RTU requests of one sweep of ``address``."""
    return [encode_rtu(address, pdu) for pdu in SWEEP_PDUS]


def test_sweep_bytes_match_the_worked_requests() -> None:
    assert sweep_bytes(30) == [
        bytes.fromhex("1E 04 00 00 00 46 73 97"),
        bytes.fromhex("1E 02 00 00 00 50 7A 59"),
        bytes.fromhex("1E 02 03 E8 00 10 FB D9"),
    ]


def transactions(sim: SimHandle) -> list[WireEvent]:
    """Requests and replies on one bus, in time order."""
    events = [e for e in sim.log.events() if e.kind in (WireKind.REQUEST, WireKind.REPLY)]
    return sorted(events, key=lambda e: e.time)


def assert_strictly_serial(events: list[WireEvent]) -> None:
    """Request, its reply, request, its reply …: never a second request in flight."""
    kinds = [e.kind for e in events]
    assert kinds == [WireKind.REQUEST, WireKind.REPLY] * (len(events) // 2)
    for request, reply in zip(events[::2], events[1::2], strict=True):
        assert reply.address == request.address
        assert reply.time >= request.time


@asynccontextmanager
async def pty_bus(config: SimConfig) -> AsyncIterator[SimHandle]:
    """``serve_pty``, but an exception raised in the block (a failed assert) reaches the
    test: serve_pty's own exit loses it (its cleanup awaits in its cancelled scope)."""
    error: Exception | None = None
    async with serve_pty(config) as sim:
        try:
            yield sim
        except Exception as exc:
            error = exc
    if error is not None:
        raise error


def test_pty_bus_keeps_a_failure_in_its_block() -> None:
    async def fail() -> None:
        async with pty_bus(quiet_config(RTU)):
            raise AssertionError("kept")

    with pytest.raises(AssertionError, match="kept"):
        anyio.run(fail)


@asynccontextmanager
async def two_buses(link: str) -> AsyncIterator[tuple[SimHandle, SimHandle]]:
    """Two simulated buses, two analysers each (30 and 31); on the second bus every
    analyser's O₂ set-point differs, so frames cannot be confused between buses."""
    server = pty_bus if link == "pty" else serve_memory
    async with (
        server(quiet_config(RTU, addresses=(30, 31))) as a,
        server(quiet_config(RTU, addresses=(30, 31))) as b,
    ):
        b.analyser_at(30).set_setpoint("I1", 18.5)
        b.analyser_at(31).set_setpoint("I1", 17.25)
        a.analyser_at(31).set_setpoint("I1", 19.75)
        yield a, b


def source_of(sim: SimHandle, link: str) -> object:
    """What the manager is given for a bus: the pty path, or the memory link's transport."""
    return sim.port if link == "pty" else sim.transport


async def add_four(manager: ServomexManager, a: SimHandle, b: SimHandle, link: str) -> None:
    for tag, sim in (("a", a), ("b", b)):
        for address in (30, 31):
            await manager.add(
                f"{tag}{address}",
                source_of(sim, link),  # type: ignore[arg-type]
                protocol=RTU,
                address=address,
                timeout=0.3,
            )


EXPECTED_O2 = {"a30": 20.378, "a31": 19.75, "b30": 18.5, "b31": 17.25}


def check_frame(name: str, frame: Frame) -> None:
    values = bench_values(RTU)
    assert frame.address == int(name[1:])
    assert frame.protocol is RTU
    assert frame.channels == (ChannelId.I1, ChannelId.I2, ChannelId.I3, ChannelId.E1, ChannelId.E2)
    assert frame.channel("I1").value == pytest.approx(EXPECTED_O2[name], abs=1e-5)
    for channel in (ChannelId.I2, ChannelId.I3, ChannelId.E1, ChannelId.E2):
        assert frame.channel(channel).value == values[channel]


def check_results(results: dict[str, DeviceResult[Frame]], names: Sequence[str]) -> None:
    """``poll()``'s mapping: every name, in order, each a good frame of its analyser."""
    assert list(results) == list(names)
    for name, result in results.items():
        assert isinstance(result, DeviceResult)
        assert (result.name, result.ok, result.error) == (name, True, None)
        check_frame(name, result.unwrap())


def check_samples(samples: Sequence[Sample], names: Sequence[str]) -> None:
    """``poll_samples()``: one row per channel of each named analyser, in add order, with
    that analyser's values (the bus-distinct O₂ shows no row went to the wrong name)."""
    values = bench_values(RTU)
    channels = list(values)
    assert [(s.device, s.channel) for s in samples] == [
        (name, channel) for name in names for channel in channels
    ]
    for sample in samples:
        assert sample.ok
        assert sample.protocol is RTU
        expected = EXPECTED_O2[sample.device] if sample.channel is ChannelId.I1 else None
        if expected is None:
            assert sample.channel is not None
            assert sample.value == values[sample.channel]
        else:
            assert sample.value == pytest.approx(expected, abs=1e-5)
        # a polled row: asked for, then received
        assert sample.requested_at is not None
        assert sample.latency_s is not None
        assert sample.latency_s >= 0
        assert sample.requested_at <= sample.received_at
    for name in names:  # one frame per analyser: its rows share one reception time
        assert len({s.received_at for s in samples if s.device == name}) == 1


@pytest.mark.parametrize("link", ["pty", "memory"])
async def test_one_poll_returns_all_four(link: str) -> None:
    async with two_buses(link) as (a, b), ServomexManager(inter_frame_idle=IDLE) as manager:
        await add_four(manager, a, b, link)
        assert manager.names == ("a30", "a31", "b30", "b31")
        assert len(manager.ports) == 2
        a.log.clear()
        b.log.clear()

        results = await manager.poll()

        check_results(results, ["a30", "a31", "b30", "b31"])
        samples = await manager.poll_samples()
        check_samples(samples, ["a30", "a31", "b30", "b31"])
        assert len(samples) == 4 * 5


@pytest.mark.parametrize("link", ["pty", "memory"])
async def test_serial_within_a_bus_and_overlapping_across_buses(link: str) -> None:
    async with two_buses(link) as (a, b), ServomexManager(inter_frame_idle=IDLE) as manager:
        await add_four(manager, a, b, link)
        a.log.clear()
        b.log.clear()

        await manager.poll()

        for sim in (a, b):
            events = transactions(sim)
            assert_strictly_serial(events)
            requests = [e.data for e in events if e.kind is WireKind.REQUEST]
            # one sweep per analyser, in the order they were added
            assert requests == sweep_bytes(30) + sweep_bytes(31)
        # the two buses worked at the same time: each bus started before the other ended
        span_a = (transactions(a)[0].time, transactions(a)[-1].time)
        span_b = (transactions(b)[0].time, transactions(b)[-1].time)
        assert span_a[0] < span_b[1]
        assert span_b[0] < span_a[1]


async def test_one_port_is_opened_once_and_closed_with_its_last_analyser() -> None:
    async with two_buses("pty") as (a, b), ServomexManager(inter_frame_idle=IDLE) as manager:
        await add_four(manager, a, b, "pty")
        assert list(manager.ports) == [a.port, b.port]
        # the manager holds the port exclusively: nobody else can open it meanwhile
        with pytest.raises(ServomexConnectionError):
            await open_transport(a.port)

        await manager.remove("a30")
        assert list(manager.ports) == [a.port, b.port]  # a31 still uses it
        assert (await manager.poll(["a31"]))["a31"].unwrap().address == 31
        await manager.remove("a31")
        assert list(manager.ports) == [b.port]

        transport = await open_transport(a.port)  # released: the lock is gone
        await transport.aclose()
        assert set(await manager.poll()) == {"b30", "b31"}


async def test_a_given_transport_is_shared_and_never_closed() -> None:
    async with serve_memory(quiet_config(RTU, addresses=(30, 31))) as sim:
        assert sim.transport is not None
        async with ServomexManager(inter_frame_idle=IDLE) as manager:
            await manager.add("x", sim.transport, address=30)  # Modbus RTU by default
            await manager.add("y", sim.transport, protocol=RTU, address=31)
            assert manager.get("x").protocol is RTU
            assert list(manager.ports) == [
                "memory://sim",
            ]
            results = await manager.poll()
            assert [(n, r.ok, r.unwrap().address) for n, r in results.items()] == [
                ("x", True, 30),
                ("y", True, 31),
            ]
        assert isinstance(sim.transport, MemoryTransport)
        assert not sim.transport.closed
        async with Analyzer(sim.transport, protocol=RTU, address=30, inter_frame_idle=0) as one:
            assert (await one.poll()).address == 30


@asynccontextmanager
async def with_silent_analyser(
    link: str,
) -> AsyncIterator[tuple[ServomexManager, SimHandle, SimHandle]]:
    """The four analysers plus "ghost" at address 99 on bus a, where nobody answers (the
    manager does not identify, so the silent one can be added at all)."""
    async with (
        two_buses(link) as (a, b),
        ServomexManager(inter_frame_idle=IDLE, retries=0, identify=False) as manager,
    ):
        await add_four(manager, a, b, link)
        await manager.add(
            "ghost",
            source_of(a, link),  # type: ignore[arg-type]
            protocol=RTU,
            address=99,
        )
        yield manager, a, b


@pytest.mark.parametrize("link", ["pty", "memory"])
async def test_a_silent_analyser_does_not_spoil_the_others_poll(link: str) -> None:
    async with with_silent_analyser(link) as (manager, _a, _b):
        results = await manager.poll()  # always the whole mapping, failures included

        assert list(results) == ["a30", "a31", "b30", "b31", "ghost"]
        check_results({n: results[n] for n in EXPECTED_O2}, list(EXPECTED_O2))
        ghost = results["ghost"]
        assert not ghost.ok
        assert ghost.value is None
        assert isinstance(ghost.error, ServomexTimeoutError)
        assert ghost.error.context.address == 99
        assert ghost.error.context.protocol == "modbus-rtu"
        assert "analyser 'ghost'" in ghost.error.__notes__
        with pytest.raises(ServomexTimeoutError):
            ghost.unwrap()

        # execute_each under RETURN gives the same mapping
        returned = await manager.execute_each(lambda a: a.poll(), policy=ErrorPolicy.RETURN)
        assert [(n, r.ok) for n, r in returned.items()] == [
            ("a30", True),
            ("a31", True),
            ("b30", True),
            ("b31", True),
            ("ghost", False),
        ]
        assert isinstance(returned["ghost"].error, ServomexTimeoutError)


async def test_a_silent_analyser_raises_a_group_after_the_others_finished() -> None:
    async with with_silent_analyser("pty") as (manager, a, b):
        a.log.clear()
        b.log.clear()
        with pytest.raises(DeviceErrors) as caught:
            await manager.execute_each(lambda analyser: analyser.poll())  # RAISE by default

        group = caught.value
        assert isinstance(group, ExceptionGroup)
        assert group.failed == ("ghost",)
        assert len(group.exceptions) == 1
        assert isinstance(group.exceptions[0], ServomexTimeoutError)
        assert "ghost" in str(group)
        # every other analyser finished and its frame is kept in the group
        assert [n for n, r in group.results.items() if r.ok] == ["a30", "a31", "b30", "b31"]
        for name in ("a30", "a31", "b30", "b31"):
            check_frame(name, group.results[name].unwrap())
        # the wire shows the four sweeps answered, and the ghost's request unanswered
        replies = [e for sim in (a, b) for e in sim.log.events(WireKind.REPLY)]
        assert len(replies) == 12
        silent = a.log.events(WireKind.REQUEST, address=99)
        assert silent
        assert all(e.note == "no analyser at address 99: silent" for e in silent)
        # split keeps the results (derive)
        timeouts, rest = group.split(ServomexTimeoutError)
        assert rest is None
        assert isinstance(timeouts, DeviceErrors)
        assert timeouts.results == group.results


async def test_poll_samples_leaves_a_failed_analyser_out_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with with_silent_analyser("memory") as (manager, _a, _b):
        caplog.clear()  # (adding the ghost warned about the line's timeout)
        with caplog.at_level(logging.WARNING, logger="ophyd_servomex.driver.manager"):
            samples = await manager.poll_samples()
        check_samples(samples, ["a30", "a31", "b30", "b31"])  # no row for the ghost
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "'ghost'" in warnings[0].getMessage()
        assert "address=99" in warnings[0].getMessage()  # the timeout's context


async def test_poll_samples_bounds_each_poll_by_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        serve_memory(quiet_config(RTU, addresses=(30,))) as sim,
        ServomexManager(inter_frame_idle=IDLE, retries=0, identify=False) as manager,
    ):
        assert sim.transport is not None
        await manager.add("x", sim.transport, address=30, timeout=1.0)  # the line's timeout
        await manager.add("ghost", sim.transport, address=99)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ophyd_servomex.driver.manager"):
            samples = await manager.poll_samples(timeout=0.5)
        assert [(s.device, s.ok) for s in samples] == [("x", True)] * 5
        (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
        # the ghost's poll was cut at 0.5 s, not left to the line's 1 s timeout
        assert "'ghost'" in warning.getMessage()
        assert "longer than 0.5 s" in warning.getMessage()
        results = await manager.poll(["x"])  # and the line works on after the cut poll
        check_frame("a30", results["x"].unwrap())  # address 30, its O₂


async def test_poll_samples_goes_on_while_one_line_is_lost() -> None:
    async with two_buses("memory") as (a, b), ServomexManager(inter_frame_idle=IDLE) as manager:
        await add_four(manager, a, b, "memory")
        a.faults.inject(Fault.DISCONNECT)
        samples = await manager.poll_samples()  # not every device lost its link: no raise
        check_samples(samples, ["b30", "b31"])
        results = await manager.poll(["a30", "a31"])
        assert all(isinstance(r.error, ServomexConnectionError) for r in results.values())


async def test_poll_samples_raises_when_every_link_is_lost() -> None:
    async with (
        serve_memory(quiet_config(RTU, addresses=(30, 31))) as sim,
        ServomexManager(inter_frame_idle=0, retries=0) as manager,
    ):
        assert sim.transport is not None
        await manager.add("x", sim.transport, protocol=RTU, address=30, timeout=0.3)
        await manager.add("y", sim.transport, protocol=RTU, address=31)
        sim.faults.inject(Fault.DISCONNECT)
        with pytest.raises(ServomexConnectionError):
            await manager.poll_samples()
        results = await manager.poll()
        assert list(results) == ["x", "y"]
        assert all(isinstance(r.error, ServomexConnectionError) for r in results.values())


async def test_execute_each_runs_a_function_on_every_analyser() -> None:
    async with two_buses("memory") as (a, b), ServomexManager(inter_frame_idle=IDLE) as manager:
        await add_four(manager, a, b, "memory")
        a.log.clear()

        echoes = await manager.execute_each(lambda analyser: analyser.loopback(b"\xa5\x5a"))

        assert echoes == dict.fromkeys(("a30", "a31", "b30", "b31"), b"\xa5\x5a")
        assert [e.data for e in a.log.events(WireKind.REQUEST)] == [
            encode_rtu(30, bytes.fromhex("08 0000 A55A")),
            encode_rtu(31, bytes.fromhex("08 0000 A55A")),
        ]

        async def address_or_fail(analyser: object) -> int | None:
            address = getattr(analyser, "address", None)
            if address == 31:
                raise ValueError("not this one")
            return address

        results = await manager.execute_each(
            address_or_fail, ["a30", "a31"], policy=ErrorPolicy.RETURN
        )
        assert results["a30"] == DeviceResult("a30", 30)
        assert isinstance(results["a31"].error, ValueError)
        with pytest.raises(DeviceErrors) as caught:
            await manager.execute_each(address_or_fail)
        assert caught.value.failed == ("a31", "b31")
        assert caught.value.results["b30"].value == 30


async def test_a_tracked_analyzer_is_polled_but_not_closed() -> None:
    async with serve_memory(quiet_config(RTU, addresses=(30,))) as sim:
        assert sim.transport is not None
        async with Analyzer(
            sim.transport, protocol=RTU, address=30, inter_frame_idle=0
        ) as analyzer:
            async with ServomexManager() as manager:
                assert await manager.add("own", analyzer) is analyzer
                assert manager.get("own") is analyzer
                assert list(manager.ports) == []
                results = await manager.poll()
                assert list(results) == ["own"]
                check_frame("a30", results["own"].unwrap())
                await manager.remove("own")
                assert "own" not in manager
                await manager.add("again", analyzer)
                assert manager.names == ("again",)
            assert analyzer.is_open
            assert (await analyzer.poll()).address == 30


async def test_a_tracked_analyzers_samples_carry_its_manager_name() -> None:
    async with serve_memory(quiet_config(RTU, addresses=(30,))) as sim:
        assert sim.transport is not None
        async with (
            Analyzer(sim.transport, protocol=RTU, address=30, inter_frame_idle=0) as analyzer,
            ServomexManager() as manager,
        ):
            await manager.add("own", analyzer)
            samples = await manager.poll_samples()
            assert [s.device for s in samples] == ["own"] * 5


async def test_names_select_analysers_and_unknown_names_are_refused() -> None:
    async with two_buses("memory") as (a, b), ServomexManager(inter_frame_idle=IDLE) as manager:
        await add_four(manager, a, b, "memory")
        a.log.clear()
        b.log.clear()
        results = await manager.poll(["b31", "a30"])
        check_results(results, ["b31", "a30"])
        assert len(a.log.events(WireKind.REQUEST)) == 3
        assert len(b.log.events(WireKind.REQUEST)) == 3
        with pytest.raises(ServomexValidationError, match="no analyser named 'zz'"):
            await manager.poll(["zz"])
        with pytest.raises(ServomexValidationError, match="no analyser named 'zz'"):
            manager.get("zz")
        with pytest.raises(ServomexValidationError):
            await manager.remove("zz")


@pytest.mark.parametrize(
    ("protocol", "words"),
    [
        (ProtocolKind.CONTINUOUS_ASCII, "only talker on its line"),
        (ProtocolKind.AUTO, "AUTO detection"),
        ("morse", "unknown protocol 'morse'"),
    ],
)
async def test_continuous_and_auto_are_refused(protocol: ProtocolKind | str, words: str) -> None:
    async with ServomexManager() as manager:
        with pytest.raises(ServomexConfigurationError, match=words) as caught:
            await manager.add("x", "/dev/null-not-opened", protocol=protocol, address=30)  # type: ignore[arg-type]
        assert caught.value.context.port == "/dev/null-not-opened"
        assert list(manager.ports) == []
        assert len(manager) == 0


async def test_a_continuous_analyzer_is_refused() -> None:
    config = quiet_config(ProtocolKind.CONTINUOUS_ASCII)
    async with serve_memory(config) as sim, ServomexManager() as manager:
        assert sim.transport is not None
        async with Analyzer(sim.transport, protocol=ProtocolKind.CONTINUOUS_ASCII) as one:
            with pytest.raises(ServomexConfigurationError, match="Modbus analysers only"):
                await manager.add("c", one)
        unopened = Analyzer("/dev/whatever", protocol=ProtocolKind.AUTO)
        with pytest.raises(ServomexConfigurationError, match="not open yet"):
            await manager.add("u", unopened)


async def test_clashes_on_one_line_are_refused() -> None:
    async with (
        pty_bus(quiet_config(RTU, addresses=(30, 31))) as sim,
        ServomexManager(inter_frame_idle=IDLE) as manager,
    ):
        await manager.add("x", sim.port, protocol=RTU, address=30)
        with pytest.raises(ServomexValidationError, match="already managed"):
            await manager.add("x", sim.port, protocol=RTU, address=31)
        with pytest.raises(ServomexConfigurationError, match="address 30 is already used"):
            await manager.add("y", sim.port, protocol=RTU, address=30)
        with pytest.raises(ServomexConfigurationError, match="cannot use modbus-ascii"):
            await manager.add("y", sim.port, protocol=ProtocolKind.MODBUS_ASCII, address=31)
        with pytest.raises(ServomexValidationError, match="1–247"):
            await manager.add("y", sim.port, protocol=RTU, address=0)
        with pytest.raises(ServomexValidationError, match="non-empty"):
            await manager.add("", sim.port, protocol=RTU, address=31)
        assert list(manager.names) == ["x"]
        await manager.add("y", sim.port, protocol=RTU, address=31)
        assert manager.names == ("x", "y")


async def test_a_failed_add_leaves_nothing_open() -> None:
    async with (
        pty_bus(quiet_config(RTU, addresses=(30,))) as sim,
        ServomexManager(inter_frame_idle=IDLE, retries=0) as manager,
    ):
        with pytest.raises(ServomexTimeoutError) as caught:
            await manager.add("nobody", sim.port, protocol=RTU, address=77, timeout=0.2)
        assert any("'nobody'" in note for note in caught.value.__notes__)
        assert list(manager.ports) == []
        assert "nobody" not in manager
        with pytest.raises(ServomexConnectionError):
            await manager.add("gone", "/dev/does-not-exist-servomex", protocol=RTU, address=1)
        assert list(manager.ports) == []
        await manager.add("ok", sim.port, protocol=RTU, address=30)
        assert list(manager.ports) == [
            sim.port,
        ]


async def test_add_before_entering_and_after_closing_is_refused() -> None:
    manager = ServomexManager()
    with pytest.raises(ServomexConfigurationError, match="enter the manager first"):
        await manager.add("x", "/dev/x", protocol=RTU, address=1)
    async with manager:
        pass
    with pytest.raises(ServomexConnectionError, match="closed"):
        await manager.add("x", "/dev/x", protocol=RTU, address=1)
    await manager.close()  # idempotent


async def test_add_and_remove_from_other_tasks_like_a_device_connector() -> None:
    """ophyd-async devices add themselves from their own owner tasks."""
    async with (
        pty_bus(quiet_config(RTU, addresses=(30, 31, 32))) as sim,
        ServomexManager(inter_frame_idle=IDLE) as manager,
    ):

        async def attach(address: int) -> None:
            await manager.add(f"d{address}", sim.port, protocol=RTU, address=address)

        async with anyio.create_task_group() as tg:  # three concurrent adds, one port
            for address in (30, 31, 32):
                tg.start_soon(attach, address)
        assert sorted(manager.names) == ["d30", "d31", "d32"]
        assert list(manager.ports) == [
            sim.port,
        ]

        async with anyio.create_task_group() as tg:
            for name in ("d30", "d31", "d32"):
                tg.start_soon(manager.remove, name)
        assert list(manager.ports) == []
        assert len(manager) == 0


async def test_closing_the_manager_closes_its_analysers_and_ports() -> None:
    async with two_buses("pty") as (a, b):
        async with ServomexManager(inter_frame_idle=IDLE) as manager:
            await add_four(manager, a, b, "pty")
            analysers = [manager.get(name) for name in manager.names]
        assert all(not analyser.is_open for analyser in analysers)
        assert list(manager.ports) == []
        for port in (a.port, b.port):
            transport = await open_transport(port)
            await transport.aclose()


async def test_an_error_in_the_block_leaves_unwrapped() -> None:
    async with pty_bus(quiet_config(RTU, addresses=(30,))) as sim:

        async def fail_in_the_block() -> None:
            async with ServomexManager(inter_frame_idle=IDLE) as manager:
                await manager.add("x", sim.port, protocol=RTU, address=30)
                raise KeyError("from the body")

        with pytest.raises(KeyError, match="from the body"):
            await fail_in_the_block()
        transport = await open_transport(sim.port)  # and the port was closed
        await transport.aclose()
