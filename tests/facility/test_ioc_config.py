"""The IOC's configuration and pure helpers (no EPICS, no process)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from ophyd_servomex.codec.errors import ServomexConfigurationError
from ophyd_servomex.codec.models import ChannelId, ChannelStatus, ProtocolKind, Reading, Unit
from ophyd_servomex.ioc import AnalyserConfig, IocConfig, Severity, channel_alarm, load_config
from ophyd_servomex.ioc.controller import flags_text

TOML = """\
[[analyser]]
prefix = "SMX1:"
port = "/dev/ttyUSB0"
protocol = "modbus-rtu"
address = 30
channels = ["i1", "E1"]
poll_period = 0.5

[[analyser]]
prefix = "SMX2:"
port = "/dev/ttyUSB0"
protocol = "modbus-rtu"
address = 31
"""


def test_toml_with_a_shared_bus(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text(TOML)
    config = load_config(file)
    first, second = config.analysers
    assert (first.prefix, first.port, first.protocol, first.address) == (
        "SMX1:", "/dev/ttyUSB0", ProtocolKind.MODBUS_RTU, 30,
    )  # fmt: skip
    assert first.channels == (ChannelId.I1, ChannelId.E1)
    assert first.poll_period == 0.5
    assert second.channels is None
    assert second.poll_period == 1.0
    assert first.controller_id == "SMX1"
    assert list(config.buses) == ["/dev/ttyUSB0"]
    assert config.buses["/dev/ttyUSB0"] == (first, second)
    assert config.allow_calibration is False
    assert load_config(file, allow_calibration=True).allow_calibration is True


def test_yaml(tmp_path: Path) -> None:
    file = tmp_path / "a.yaml"
    file.write_text("analysers:\n  - prefix: 'O2:'\n    port: socket://127.0.0.1:9\n")
    (only,) = load_config(file).analysers
    assert (only.prefix, only.port, only.protocol) == ("O2:", "socket://127.0.0.1:9", "auto")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow_calibration = true\n" + TOML, "only by --allow-calibration"),
        ('[[analyser]]\nprefix = "A:"\n', "'prefix' and 'port' are required"),
        ('[[analyser]]\nprefix = "A:"\nport = "p"\nspeed = 3\n', "unknown key"),
        ('[[analyser]]\nprefix = "A"\nport = "p"\n', "ending in ':'"),
        ('[[analyser]]\nprefix = "A:"\nport = "p"\nprotocol = "x"\n', "unknown protocol"),
        ('[[analyser]]\nprefix = "A:"\nport = "p"\nchannels = ["Z9"]\n', "unknown channel"),
        ('[[analyser]]\nprefix = "A:"\nport = "p"\naddress = 0\n', "1–247"),
        ('[[analyser]]\nprefix = "A:"\nport = "p"\npoll_period = 0.001\n', "poll_period"),
        (TOML.replace("SMX2:", "SMX1:"), "distinct"),
        (TOML.replace('"modbus-rtu"\naddress = 31', '"continuous"\naddress = 31'), "RS485 bus"),
        (TOML.replace("address = 31", "address = 30"), "share an address"),
        ("", "no analysers"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(ServomexConfigurationError, match=message):
        load_config(file)


def test_prefixes_must_not_nest() -> None:
    with pytest.raises(ServomexConfigurationError, match="prefixes of each other"):
        IocConfig((AnalyserConfig("SMX:", "a"), AnalyserConfig("SMX:1:", "b")))


def _reading(value: float | None, **status: object) -> Reading:
    return Reading(ChannelId.I1, value, "Oxygen", Unit.PERCENT, ChannelStatus(**status), "%")  # type: ignore[arg-type]


def test_channel_alarm_severities() -> None:
    assert channel_alarm(_reading(20.9)).severity is Severity.NO_ALARM
    assert channel_alarm(_reading(20.9, alarms=(False, True, False, False))).severity is (
        Severity.MINOR
    )
    fault = channel_alarm(_reading(20.9, fault=True, alarms=(True, False, False, False)))
    assert (fault.severity, fault.message) == (Severity.MAJOR, "channel fault")
    assert channel_alarm(_reading(None)).severity is Severity.INVALID
    assert channel_alarm(_reading(math.nan)).severity is Severity.INVALID


def test_flags_text() -> None:
    assert flags_text(ChannelStatus()) == "ok"
    status = ChannelStatus(fault=True, warming_up=True, alarms=(True, False, False, True))
    assert flags_text(status) == "fault warm-up A1 A4"


def test_cli_needs_a_prefix_and_port_or_a_config(capsys: pytest.CaptureFixture[str]) -> None:
    from ophyd_servomex.cli import main

    with pytest.raises(SystemExit, match="--prefix and PORT are required"):
        main(["ioc", "/dev/ttyUSB0"])
    with pytest.raises(SystemExit, match="not both"):
        main(["ioc", "--config", "x.toml", "--prefix", "A:", "/dev/ttyUSB0"])
    assert main(["ioc", "--prefix", "no-colon", "/dev/ttyUSB0"]) == 2
    assert "ending in ':'" in capsys.readouterr().err


def test_severity_reaches_the_pva_value_and_the_ca_record() -> None:
    """A channel fault publishes MAJOR, an alarm MINOR, no number INVALID — in the NTScalar
    the PVA transport posts and in the CA record's ``set``, with the frame's timestamp."""
    import asyncio

    from fastcs.transports.epics.ca import ioc as ca_ioc
    from fastcs.transports.epics.pva import _pv_handlers as pva

    from ophyd_servomex.codec.models import ChannelInfo
    from ophyd_servomex.ioc import ChannelController, hooks

    hooks.install()
    channel = ChannelController(ChannelInfo(ChannelId.I1, "Oxygen", Unit.PERCENT, "%"))
    posted: list[float] = []

    async def on_update(value: float) -> None:
        posted.append(value)

    channel.value.add_on_update_callback(on_update)

    async def publish(reading: Reading, stamp: float) -> Any:
        await channel.publish(reading, stamp)
        return pva.cast_to_p4p_value(channel.value, channel.value.get())

    fault = asyncio.run(publish(_reading(20.5, fault=True), 1_000_000_000.25))
    assert (fault["value"], fault["alarm.severity"], fault["alarm.status"]) == (20.5, 2, 1)
    assert fault["alarm.message"] == "channel fault"
    assert (fault["timeStamp.secondsPastEpoch"], fault["timeStamp.nanoseconds"]) == (
        1_000_000_000, 250_000_000,
    )  # fmt: skip
    assert fault["display.units"] == "%"
    assert fault["display.precision"] == 3
    # the same value with only the alarm changed still reaches the clients
    minor = asyncio.run(publish(_reading(20.5, alarms=(False, False, True, False)), 2e9))
    assert (minor["alarm.severity"], minor["alarm.message"]) == (1, "alarm A3")
    assert posted == [20.5, 20.5]
    invalid = asyncio.run(publish(_reading(None), 3e9))
    assert math.isnan(invalid["value"])
    assert invalid["alarm.severity"] == 3

    class FakeRecord:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, dict[str, Any]]] = []

        def get(self) -> float:
            return 0.0

        def set(self, value: Any, **kwargs: Any) -> None:
            self.calls.append((value, kwargs))

    fake = FakeRecord()
    record = hooks._AlarmedRecord(fake, channel.value)
    record.set(21.0)
    assert fake.calls[-1] == (21.0, {"severity": 3, "alarm": 7, "timestamp": 3e9})
    assert ca_ioc._make_in_record.__name__ == "in_record_with_alarm"


@pytest.mark.parametrize("truthy", ["true", "yes", 1, 1.0, [True], None, False])
def test_only_an_explicit_true_enables_calibration_through_the_ioc(truthy: object) -> None:
    from ophyd_servomex.codec.errors import ServomexConfirmationRequiredError
    from ophyd_servomex.ioc.controller import AnalyserController

    controller = AnalyserController(
        AnalyserConfig("SMXT:", "/dev/null"),
        allow_calibration=truthy,  # type: ignore[arg-type]
    )
    with pytest.raises(ServomexConfirmationRequiredError, match="--allow-calibration"):
        controller._calibration_target("start calibration of group 1")
