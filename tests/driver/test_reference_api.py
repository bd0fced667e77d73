"""The reference driver's API page, walked name by name, and its usage snippets run as written.

Code written against the reference driver (``servomexlib``) must run unchanged with
``import ophyd_servomex as servomexlib``: every name the page documents is exported at the top
level with the page's base classes, async-ness, parameter names and defaults, and dataclass
fields. The snippets at the end are the page's own examples.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import typing
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import pytest

import ophyd_servomex as servomexlib
from ophyd_servomex.sim import SimConfig, serve_memory

pytestmark = pytest.mark.anyio

# --- the names and their kinds, as the page lists them ---------------------------------------

PAGE_NAMES = (
    "AcquisitionSummary",
    "AnalyserStatus",
    "Analyzer",
    "Availability",
    "CalGroupState",
    "CalPhase",
    "CalibrationProgress",
    "Capability",
    "ChannelId",
    "ChannelInfo",
    "ChannelKind",
    "ChannelStatus",
    "DeviceInfo",
    "ErrorContext",
    "ErrorPolicy",
    "FakeTransport",
    "Frame",
    "OverflowPolicy",
    "PollSource",
    "ProtocolKind",
    "Reading",
    "Recording",
    "SafetyTier",
    "Sample",
    "SerialSettings",
    "ServomexCapabilityError",
    "ServomexChecksumError",
    "ServomexConfigurationError",
    "ServomexConfirmationRequiredError",
    "ServomexConnectionError",
    "ServomexError",
    "ServomexFrameError",
    "ServomexManager",
    "ServomexModbusError",
    "ServomexParseError",
    "ServomexProtocolError",
    "ServomexProtocolUnsupportedError",
    "ServomexTimeoutError",
    "ServomexTransportError",
    "ServomexValidationError",
    "StreamMode",
    "StreamingSession",
    "Transport",
    "Unit",
    "UnitKind",
    "open_continuous",
    "open_device",
    "record",
)

STR_ENUMS = (
    "Availability",
    "CalPhase",
    "ChannelId",
    "ChannelKind",
    "ProtocolKind",
    "SafetyTier",
    "StreamMode",
    "Unit",
    "UnitKind",
)

BASES = {
    "Capability": enum.Flag,
    "ErrorPolicy": enum.Enum,
    "OverflowPolicy": enum.Enum,
    "ServomexError": Exception,
    "ServomexCapabilityError": "ServomexError",
    "ServomexConfigurationError": "ServomexError",
    "ServomexProtocolError": "ServomexError",
    "ServomexTransportError": "ServomexError",
    "ServomexChecksumError": "ServomexProtocolError",
    "ServomexFrameError": "ServomexProtocolError",
    "ServomexModbusError": "ServomexProtocolError",
    "ServomexParseError": "ServomexProtocolError",
    "ServomexProtocolUnsupportedError": "ServomexProtocolError",
    "ServomexConfirmationRequiredError": "ServomexConfigurationError",
    "ServomexValidationError": "ServomexConfigurationError",
    "ServomexConnectionError": "ServomexTransportError",
    "ServomexTimeoutError": "ServomexTransportError",
}

DATACLASSES = (
    "AcquisitionSummary",
    "AnalyserStatus",
    "CalGroupState",
    "CalibrationProgress",
    "ChannelInfo",
    "ChannelStatus",
    "DeviceInfo",
    "ErrorContext",
    "Frame",
    "Reading",
    "Recording",
    "Sample",
    "SerialSettings",
)

_EMPTY = inspect.Parameter.empty


def _signature(name: str, fn: Any) -> list[tuple[str, object]]:
    """(name, default) of each parameter, defaults resolved to values (enums by member)."""
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_every_page_name_is_exported_at_the_top_level(name: str) -> None:
    assert name in servomexlib.__all__
    assert getattr(servomexlib, name) is not None


@pytest.mark.parametrize("name", STR_ENUMS)
def test_the_page_str_enums_are_str_enums(name: str) -> None:
    assert issubclass(getattr(servomexlib, name), enum.StrEnum)


@pytest.mark.parametrize(("name", "base"), BASES.items())
def test_base_classes_follow_the_page(name: str, base: type | str) -> None:
    cls = getattr(servomexlib, name)
    expected = getattr(servomexlib, base) if isinstance(base, str) else base
    assert issubclass(cls, expected)


def test_the_structural_protocols_and_the_fake_transport_base() -> None:
    assert getattr(servomexlib.PollSource, "_is_protocol", False)
    assert getattr(servomexlib.Transport, "_is_protocol", False)
    assert typing.runtime_checkable  # both are runtime checkable:
    assert isinstance(servomexlib.FakeTransport(), servomexlib.Transport)
    assert servomexlib.FakeTransport.__mro__[1].__name__ == "ByteStreamTransport"
    assert isinstance(servomexlib.FakeTransport(), anyio.abc.ByteStream)


@pytest.mark.parametrize("name", DATACLASSES)
def test_the_page_models_are_dataclasses(name: str) -> None:
    assert dataclasses.is_dataclass(getattr(servomexlib, name))


def test_frozen_models_refuse_changes() -> None:
    settings = servomexlib.SerialSettings("/dev/ttyUSB0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.baudrate = 9600  # type: ignore[misc]
    context = servomexlib.ErrorContext(port="p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.port = "q"  # type: ignore[misc]


def test_dataclass_fields_and_defaults_as_the_page_shows_them() -> None:
    m = servomexlib
    assert _signature("AcquisitionSummary", m.AcquisitionSummary)[:8] == [
        ("started_at", _EMPTY),
        ("finished_at", None),
        ("samples_emitted", 0),
        ("samples_late", 0),
        ("max_drift_ms", 0.0),
        ("tick_duration_ms_p50", 0.0),
        ("tick_duration_ms_p99", 0.0),
        ("disconnects", 0),
    ]
    assert [p[0] for p in _signature("ErrorContext", m.ErrorContext)] == [
        "port",
        "protocol",
        "address",
        "channel",
        "register",
        "function_code",
        "request",
        "response",
        "elapsed_s",
        "extra",
    ]
    assert all(default is None for name, default in _signature("ErrorContext", m.ErrorContext)[:-1])
    sample = _signature("Sample", m.Sample)
    assert [p[0] for p in sample] == [
        "device",
        "channel",
        "reading",
        "protocol",
        "monotonic_ns",
        "received_at",
        "requested_at",
        "latency_s",
        "metadata",
        "error",
    ]
    assert [d for _, d in sample[:6]] == [_EMPTY] * 6
    assert dict(sample[6:8] + sample[9:]) == {
        "requested_at": None,
        "latency_s": None,
        "error": None,
    }
    assert _signature("SerialSettings", m.SerialSettings) == [
        ("port", _EMPTY),
        ("baudrate", 19200),
        ("bytesize", m.ByteSize.EIGHT),
        ("parity", m.Parity.NONE),
        ("stopbits", m.StopBits.ONE),
        ("rtscts", False),
        ("xonxoff", False),
        ("exclusive", True),
    ]
    assert [f.name for f in dataclasses.fields(m.Recording)][:3] == ["stream", "summary", "rate_hz"]


def test_function_signatures_and_async_ness() -> None:
    m = servomexlib
    assert inspect.iscoroutinefunction(m.open_device)
    assert _signature("open_device", m.open_device) == [
        ("port", _EMPTY),
        ("protocol", m.ProtocolKind.AUTO),
        ("address", 1),
        ("serial_settings", None),
        ("timeout", 1.0),
        ("identify", True),
    ]
    assert inspect.iscoroutinefunction(m.open_continuous)
    # record is an async generator behind an async context manager
    assert inspect.isasyncgenfunction(m.record.__wrapped__)
    assert _signature("record", m.record) == [
        ("source", _EMPTY),
        ("rate_hz", _EMPTY),
        ("duration", None),
        ("names", None),
        ("timeout", None),
        ("overflow", m.OverflowPolicy.BLOCK),
        ("buffer_size", 64),
        ("auto_reconnect", False),
        ("reconnect_factory", None),
    ]
    kinds = {p.name: p.kind for p in inspect.signature(m.record).parameters.values()}
    assert kinds["source"] is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert {k for n, k in kinds.items() if n != "source"} == {inspect.Parameter.KEYWORD_ONLY}
    assert _signature("add", m.ServomexManager.add) == [
        ("self", _EMPTY),
        ("name", _EMPTY),
        ("source", _EMPTY),
        ("protocol", m.ProtocolKind.MODBUS_RTU),
        ("address", 1),
        ("serial_settings", None),
        ("timeout", 1.0),
    ]
    poll_source = inspect.signature(m.PollSource.poll_samples).parameters
    assert list(poll_source) == ["self", "names", "timeout"]
    assert [p.default for p in list(poll_source.values())[1:]] == [None, None]


ASYNC_METHODS = {
    "Analyzer": (
        "analyser_status",
        "calibration_status",
        "identify",
        "poll",
        "poll_samples",
        "read_all",
        "read_channel",
        "start_calibration",
        "status",
        "stop_calibration",
    ),
    "ServomexManager": ("add", "close", "execute_each", "poll", "poll_samples", "remove"),
    "StreamingSession": ("aclose",),
    "FakeTransport": ("emit",),
    "PollSource": ("poll_samples",),
}
SYNC_METHODS = {
    "Analyzer": ("snapshot", "stream"),
    "ServomexManager": ("get",),
    "FakeTransport": ("add_script", "feed"),
    "Frame": ("as_samples", "channel"),
    "Reading": ("__format__", "as_dict"),
    "ErrorContext": ("merged",),
    "ServomexError": ("with_context",),
}


@pytest.mark.parametrize(
    ("owner", "method"), [(o, m) for o, ms in ASYNC_METHODS.items() for m in ms]
)
def test_async_methods(owner: str, method: str) -> None:
    assert inspect.iscoroutinefunction(getattr(getattr(servomexlib, owner), method))


@pytest.mark.parametrize(
    ("owner", "method"), [(o, m) for o, ms in SYNC_METHODS.items() for m in ms]
)
def test_sync_methods(owner: str, method: str) -> None:
    fn = getattr(getattr(servomexlib, owner), method)
    assert callable(fn)
    assert not inspect.iscoroutinefunction(fn)


def test_dropped_frames_is_a_property_and_capability_is_a_flag() -> None:
    assert isinstance(servomexlib.Analyzer.dropped_frames, property)
    cap = servomexlib.Capability
    assert cap.READ in cap.READ | cap.IDENTIFY
    assert servomexlib.SafetyTier.STATEFUL in servomexlib.SafetyTier
    assert {p.name for p in servomexlib.OverflowPolicy} == {"BLOCK", "DROP_NEWEST", "DROP_OLDEST"}
    assert {p.name for p in servomexlib.ErrorPolicy} == {"RAISE", "RETURN"}
    assert {p.name for p in servomexlib.StreamMode} == {"AUTOPRINT", "POLL"}
    assert servomexlib.ProtocolKind.CONTINUOUS_ASCII is servomexlib.ProtocolKind("continuous")


# --- the models' documented behaviour ------------------------------------------------------


def test_error_context_extra_is_frozen_and_merged_puts_unknown_keys_there() -> None:
    extra = {"attempt": 1}
    context = servomexlib.ErrorContext(port="/dev/ttyUSB0", extra=extra)
    extra["attempt"] = 2  # the caller's dict no longer reaches the context
    assert isinstance(context.extra, MappingProxyType)
    assert context.extra == {"attempt": 1}
    with pytest.raises(TypeError):
        context.extra["x"] = 1  # type: ignore[index]
    empty = servomexlib.ErrorContext()
    with pytest.raises(TypeError):
        empty.extra["x"] = 1  # type: ignore[index]
    merged = context.merged(address=30, elapsed_s=0.25, retry=True)
    assert merged is not context
    assert (merged.port, merged.address, merged.elapsed_s) == ("/dev/ttyUSB0", 30, 0.25)
    assert merged.extra == {"attempt": 1, "retry": True}
    assert context.address is None
    assert context.extra == {"attempt": 1}


def test_with_context_returns_a_copy_and_leaves_the_original() -> None:
    original = servomexlib.ServomexTimeoutError(
        "no reply", context=servomexlib.ErrorContext(address=30)
    )
    enriched = original.with_context(port="/dev/ttyUSB0", elapsed_s=1.5, attempt=3)
    assert enriched is not original
    assert type(enriched) is servomexlib.ServomexTimeoutError
    assert (enriched.context.port, enriched.context.address) == ("/dev/ttyUSB0", 30)
    assert enriched.context.extra == {"attempt": 3}
    assert original.context == servomexlib.ErrorContext(address=30)
    assert str(original) == "no reply (address=30)"
    assert "port=/dev/ttyUSB0" in str(enriched)
    assert isinstance(enriched, TimeoutError)
    checksum = servomexlib.ServomexChecksumError("bad", expected=1, actual=2, raw=b"x")
    copy = checksum.with_context(port="p")
    assert (copy.expected, copy.actual, copy.raw, copy.context.port) == (1, 2, b"x", "p")
    assert checksum.context.port is None


LIVE_CAPTURE = Path(__file__).parents[1] / "fixtures" / "continuous_4100_live_5ch.bin"


def test_frame_as_samples_reading_format_and_as_dict() -> None:
    frame = servomexlib.Frame(
        readings=(
            servomexlib.Reading(
                servomexlib.ChannelId.I1, 20.378, "Oxygen", servomexlib.Unit.PERCENT
            ),
            servomexlib.Reading(servomexlib.ChannelId.E1, None),
        ),
        timestamp=1_700_000_000.5,
        protocol=servomexlib.ProtocolKind.MODBUS_RTU,
        address=30,
    )
    samples = frame.as_samples("o2")
    assert [(s.device, s.channel, s.value) for s in samples] == [
        ("o2", servomexlib.ChannelId.I1, 20.378),
        ("o2", servomexlib.ChannelId.E1, None),
    ]
    first = samples[0]
    assert first.reading is frame.readings[0]
    assert first.protocol is servomexlib.ProtocolKind.MODBUS_RTU
    assert first.received_at == datetime.fromtimestamp(1_700_000_000.5, first.received_at.tzinfo)
    assert first.received_at.tzinfo is not None
    assert isinstance(first.monotonic_ns, int)
    assert (first.requested_at, first.latency_s, first.error) == (None, None, None)
    assert isinstance(first.metadata, Mapping)
    assert not first.metadata
    with pytest.raises(TypeError):
        first.metadata["k"] = "v"  # type: ignore[index]
    assert samples[0].monotonic_ns == samples[1].monotonic_ns  # one frame, one instant

    reading = frame.readings[0]
    assert f"{reading:.2f}" == "20.38"
    assert f"{reading}".startswith("Reading(channel=<ChannelId.I1")
    assert f"{frame.readings[1]:.2f}" == "None"
    row = reading.as_dict()
    assert row["channel"] == "I1"
    assert row["value"] == 20.378
    assert row["unit"] == "%"
    assert row["fault"] == 0
    assert row["alarm1"] == 0
    assert all(isinstance(row[k], int) for k in ("fault", "maintenance", "calibrating"))
    with pytest.raises(servomexlib.ServomexValidationError):
        frame.channel("I4")


def test_an_error_sample_has_no_reading_and_no_channel() -> None:
    error = servomexlib.ServomexChecksumError("bad", expected=1, actual=2, raw=b"")
    sample = servomexlib.Sample.failed("o2", error, servomexlib.ProtocolKind.CONTINUOUS_ASCII)
    assert (sample.reading, sample.channel, sample.value, sample.error) == (None, None, None, error)
    assert not sample.ok
    with pytest.raises(servomexlib.ServomexValidationError):
        servomexlib.Sample(
            device="o2",
            channel=None,
            reading=None,
            protocol=servomexlib.ProtocolKind.AUTO,
            monotonic_ns=0,
            received_at=datetime.now(),
        )


def test_serial_settings_are_validated_and_typed() -> None:
    settings = servomexlib.SerialSettings("COM3", 9600, parity="E", bytesize=7, stopbits=2)  # type: ignore[arg-type]
    assert settings.parity is servomexlib.Parity.EVEN
    assert settings.bytesize is servomexlib.ByteSize.SEVEN
    assert settings.stopbits is servomexlib.StopBits.TWO
    assert math.isclose(settings.wire_time(10), 10 * 11 / 9600)
    for bad in ({"baudrate": 115200}, {"parity": "X"}, {"bytesize": 5}, {"stopbits": 3}):
        with pytest.raises(servomexlib.ServomexValidationError):
            servomexlib.SerialSettings("COM3", **bad)  # type: ignore[arg-type]


# --- the page's usage snippets, as written ---------------------------------------------------


async def test_async_with_await_open_device() -> None:
    config = SimConfig(mode=servomexlib.ProtocolKind.MODBUS_RTU, addresses=(1,), noisy=False)
    async with serve_memory(config) as sim:
        pending = await servomexlib.open_device(sim.transport)
        assert isinstance(pending, servomexlib.Analyzer)
        assert not pending.is_open  # returned not yet entered
        async with pending as anz:
            assert anz.protocol is servomexlib.ProtocolKind.MODBUS_RTU  # found by AUTO
            assert anz.info is not None  # identify=True
            frame = await anz.poll()
            reading = await anz.read_channel("I1")
            assert reading.value == frame.channel("I1").value == pytest.approx(20.9, abs=1.0)


async def test_manager_usage_from_the_page() -> None:
    config = SimConfig(mode=servomexlib.ProtocolKind.MODBUS_RTU, addresses=(1, 2), noisy=False)
    async with serve_memory(config) as sim, servomexlib.ServomexManager() as mgr:
        await mgr.add("a1", sim.transport, address=1)  # no protocol named: Modbus RTU
        await mgr.add("a2", sim.transport, address=2)
        samples = await mgr.poll_samples()
        assert {s.device for s in samples} == {"a1", "a2"}
        assert [s.channel for s in samples if s.device == "a1"] == [
            s.channel for s in samples if s.device == "a2"
        ]
        assert all(s.ok and s.requested_at is not None for s in samples)
        results = await mgr.poll()
        assert set(results) == {"a1", "a2"}
        assert all(r.ok for r in results.values())
        assert mgr.get("a1").address == 1


async def test_manager_usage_from_the_page_with_a_port_string() -> None:
    from ophyd_servomex.sim import serve_pty

    config = SimConfig(mode=servomexlib.ProtocolKind.MODBUS_RTU, addresses=(1, 2), noisy=False)
    async with serve_pty(config) as sim:
        async with servomexlib.ServomexManager() as mgr:
            await mgr.add("a1", sim.port, address=1)  # the page's form: a port string
            await mgr.add("a2", sim.port, address=2)  # shares the one open port
            samples = await mgr.poll_samples()
        assert [s.device for s in samples if s.channel is servomexlib.ChannelId.I1] == [
            "a1",
            "a2",
        ]
        assert all(s.ok for s in samples)


async def test_record_batches_from_the_page() -> None:
    config = SimConfig(mode=servomexlib.ProtocolKind.MODBUS_RTU, addresses=(1,), noisy=False)
    seen: list[tuple[object, object]] = []
    async with serve_memory(config) as sim:
        analyzer = servomexlib.Analyzer(sim.transport, protocol="modbus-rtu", inter_frame_idle=0.0)
        async with analyzer, servomexlib.record(analyzer, rate_hz=20, duration=0.2) as rec:
            assert isinstance(rec, servomexlib.Recording)
            assert rec.rate_hz == 20
            async for batch in rec.stream:
                for sample in batch:
                    seen.append((sample.channel, sample.value))
    summary = rec.summary
    assert summary.samples_emitted == 4
    assert summary.finished_at is not None
    assert summary.finished_at >= summary.started_at
    assert summary.tick_duration_ms_p50 > 0
    channels = len(seen) // 4
    assert channels >= 3
    assert len(seen) == 4 * channels


async def test_fake_transport_emit_into_open_continuous() -> None:
    lines = [line + b"\n" for line in LIVE_CAPTURE.read_bytes().split(b"\n")[:3]]
    fake = servomexlib.FakeTransport()
    async with (
        anyio.create_task_group() as tg,
        await servomexlib.open_continuous(fake) as anz,
    ):
        assert anz.protocol is servomexlib.ProtocolKind.CONTINUOUS_ASCII
        tg.start_soon(lambda: fake.emit(lines, interval=0.01))
        frame = await anz.poll()
        assert frame.channel("I1").value == 20.379  # the capture's first frame
        assert frame.channel("I1").name == "Oxygen"
        samples = [sample async for sample in anz.stream(count=3)]
        assert [(s.channel, s.value) for s in samples] == [
            (servomexlib.ChannelId.I1, 20.378),
            (servomexlib.ChannelId.I2, 0.084),
            (servomexlib.ChannelId.I3, 0.247),
        ]
    assert fake.writes == []  # continuous mode never writes


async def test_fake_transport_scripts_a_modbus_exchange() -> None:
    from ophyd_servomex.codec.modbus_frames import ModbusRequest, decode_rtu, encode_rtu
    from ophyd_servomex.codec.registers import FULL_SWEEP
    from ophyd_servomex.sim import SimAnalyser
    from ophyd_servomex.sim.channels import bench_channels
    from ophyd_servomex.sim.dispatch import answer

    unit = SimAnalyser(bench_channels(noisy=False), address=30)

    def reply(request: bytes) -> bytes:  # a callable of the request: the simulator's answer
        address, pdu = decode_rtu(request)
        return encode_rtu(address, answer(unit, pdu))

    requests = [
        encode_rtu(30, ModbusRequest.read(r.function, r.start, r.count).encode())
        for r in FULL_SWEEP
    ]
    fake = servomexlib.FakeTransport()
    fake.add_script(requests[0], reply)
    fake.add_script(requests[1], [reply(requests[1])])  # a sequence of canned replies
    fake.add_script(requests[2], reply(requests[2]))  # fixed bytes
    async with await servomexlib.open_device(
        fake, protocol=servomexlib.ProtocolKind.MODBUS_RTU, address=30, identify=False
    ) as anz:
        frame = await anz.poll()
    assert frame.channel("I1").value == pytest.approx(20.378, abs=1e-4)
    assert frame.channel("I3").name == "CO₂"
    assert fake.writes == requests  # exactly the three block reads, in order, nothing else
