"""Every Analyzer method, in all three modes, against the simulator over a real pty and TCP."""

from __future__ import annotations

import pytest
from driverhelpers import (
    ADDRESS,
    MODBUS_MODES,
    SERVERS,
    bench_labels,
    bench_values,
    f32,
    quiet_config,
)

from ophyd_servomex.codec.errors import (
    ServomexCapabilityError,
    ServomexProtocolUnsupportedError,
    ServomexValidationError,
)
from ophyd_servomex.codec.models import (
    Availability,
    CalPhase,
    Capability,
    ChannelId,
    ProtocolKind,
    StreamMode,
    Unit,
)
from ophyd_servomex.driver import Analyzer, StreamingSession

pytestmark = pytest.mark.anyio

LINKS = ("pty", "tcp")


def labels(analyser: Analyzer) -> list[tuple[ChannelId, str | None, Unit]]:
    assert analyser.info is not None
    return [(c.channel, c.name, c.unit) for c in analyser.info.channels]


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("mode", MODBUS_MODES, ids=lambda m: m.value)
async def test_every_method_in_modbus_mode(link: str, mode: ProtocolKind) -> None:
    async with (
        SERVERS[link](quiet_config(mode)) as sim,
        Analyzer(sim.port, protocol=mode, address=ADDRESS, timeout=0.5) as analyser,
    ):
        unit = sim.analyser
        # identity, without I/O
        assert analyser.protocol is mode
        assert analyser.address == ADDRESS
        assert analyser.port == sim.port
        assert analyser.name == sim.port
        assert analyser.capabilities == Capability.ALL
        assert Capability.CALIBRATE in analyser.capabilities
        assert analyser.availability(Capability.LOOPBACK) is Availability.AVAILABLE
        assert labels(analyser) == bench_labels(mode)  # identify() ran on opening
        assert analyser.snapshot() is None

        # poll / snapshot / subscribe
        subscription = analyser.subscribe()
        frame = await analyser.poll()
        assert frame.values == bench_values(mode)
        assert frame.protocol is mode
        assert frame.address == ADDRESS
        assert frame.channel("I3").name == "CO₂"
        assert analyser.snapshot() is frame
        assert await subscription.next_frame() is frame

        # read_channel / read_all
        reading = await analyser.read_channel("i3")
        assert (reading.channel, reading.value, reading.name, reading.unit) == (
            ChannelId.I3,
            f32(0.25),
            "CO₂",
            Unit.PERCENT,
        )
        unconfigured = await analyser.read_channel(ChannelId.I4)  # addressable over Modbus
        assert (unconfigured.value, unconfigured.name) == (0.0, None)
        every = await analyser.read_all()
        assert {c: r.value for c, r in every.items()} == bench_values(mode)

        # status / analyser_status
        unit.set_fault(True, "I2")
        unit.set_maintenance(True)
        status = await analyser.status("I2")
        assert status.fault
        assert not status.ok
        assert (await analyser.status("I1")).ok
        analyser_status = await analyser.analyser_status()
        assert analyser_status.maintenance
        assert not analyser_status.fault

        # calibration: coil pulse, status from the discretes
        assert (await analyser.calibration_status(1)).phase is CalPhase.IDLE
        await analyser.start_calibration(1, confirm=True)
        assert unit.calibrating_group == 1
        assert unit.coils[0] is False  # the pulse put the coil back to 0
        group = await analyser.calibration_status(1)
        assert (group.phase, group.calibrating) == (CalPhase.CAL_GAS_1, True)
        await analyser.stop_calibration(confirm=True)
        assert unit.calibrating_group is None
        assert unit.coils[8] is False
        assert (await analyser.calibration_status(1)).phase is CalPhase.IDLE

        # loopback
        assert await analyser.loopback(b"\xab\xcd") == b"\xab\xcd"
        assert await analyser.loopback() == b"\x00\x00"

        # stream: timed polls, one long-format sample per channel; poll_samples
        expected = bench_values(mode)
        async with analyser.stream(rate_hz=50, count=2 * len(expected)) as session:
            assert isinstance(session, StreamingSession)
            assert session.mode is StreamMode.POLL
            samples = [s async for s in session]
        assert [s.ok for s in samples] == [True] * (2 * len(expected))
        assert [(s.channel, s.value) for s in samples] == 2 * list(expected.items())
        assert {s.device for s in samples} == {sim.port}
        assert all(s.protocol is mode and s.requested_at is not None for s in samples)
        assert all(s.latency_s is not None and s.latency_s > 0 for s in samples)
        polled = await analyser.poll_samples()
        assert [(s.channel, s.value) for s in polled] == list(expected.items())
        latest = analyser.snapshot()
        assert latest is not None
        assert [s.reading for s in polled] == list(latest.readings)

        # identify again: same channels; nothing dropped
        info = await analyser.identify()
        assert info.protocol is mode
        assert info.address == ADDRESS
        assert [c.channel for c in info.populated] == [ChannelId.I1, ChannelId.I2, ChannelId.I3]
        assert analyser.dropped_frames == 0
        subscription.close()


@pytest.mark.parametrize("link", LINKS)
async def test_every_method_in_continuous_mode(link: str) -> None:
    mode = ProtocolKind.CONTINUOUS_ASCII
    async with (
        SERVERS[link](quiet_config(mode)) as sim,
        Analyzer(
            sim.port, protocol=mode, address=ADDRESS, timeout=0.5, expected_period=0.05
        ) as analyser,
    ):
        unit = sim.analyser
        assert analyser.protocol is mode
        assert analyser.address is None
        assert analyser.port == sim.port
        assert analyser.capabilities == Capability.READ | Capability.STREAM | Capability.IDENTIFY
        assert analyser.availability(Capability.CALIBRATE) is Availability.UNSUPPORTED
        assert analyser.availability(Capability.READ) is Availability.AVAILABLE
        assert labels(analyser) == bench_labels(mode)

        subscription = analyser.subscribe()
        frame = await analyser.poll()
        assert frame.values == bench_values(mode)
        assert frame.protocol is mode
        assert analyser.snapshot() is frame
        assert await subscription.next_frame() is frame  # the broadcast a poll waited for
        assert await analyser.poll(wait_fresh=False) is analyser.snapshot()

        reading = await analyser.read_channel("I1")
        assert (reading.value, reading.name, reading.unit) == (20.378, "Oxygen", Unit.PERCENT)
        with pytest.raises(ServomexValidationError, match="I4"):
            await analyser.read_channel("I4")  # not in this unit's frames
        assert {c: r.value for c, r in (await analyser.read_all()).items()} == bench_values(mode)

        unit.set_fault(True, "I2")
        unit.set_maintenance(True)
        status = await analyser.status("I2")
        assert status.fault
        assert (await analyser.analyser_status()).maintenance

        # calibration state comes from the header's autocal field
        assert (await analyser.calibration_status(1)).phase is CalPhase.IDLE
        unit.write_coil(0, True)  # started on the analyser itself
        assert (await analyser.calibration_status(1)).phase is CalPhase.CAL_GAS_1
        with pytest.raises(ServomexProtocolUnsupportedError):
            await analyser.start_calibration(1, confirm=True)
        with pytest.raises(ServomexCapabilityError):  # the wider family still catches it
            await analyser.stop_calibration(confirm=True)
        with pytest.raises(ServomexProtocolUnsupportedError):
            await analyser.loopback()

        expected = bench_values(mode)
        session = analyser.stream(count=2 * len(expected))  # passive: no 'async with' needed
        assert session.passive
        assert session.mode is StreamMode.AUTOPRINT
        samples = [s async for s in session]
        assert [(s.channel, s.value) for s in samples] == 2 * list(expected.items())
        assert all(s.requested_at is None and s.latency_s is None for s in samples)
        stamps = [s.monotonic_ns for s in samples]
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == 2  # two frames, each channel of one frame one instant
        polled = await analyser.poll_samples()
        assert [(s.channel, s.value) for s in polled] == list(expected.items())

        info = await analyser.identify()
        assert info.protocol is mode
        assert info.address is None
        assert analyser.dropped_frames == 0
        subscription.close()
