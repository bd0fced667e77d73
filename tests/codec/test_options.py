"""The shared argument checks and ``ConnectionOptions``: exact messages, boundaries, and the
same bad argument refused the same way by every public entry point."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

from ophyd_servomex.codec import (
    ConnectionOptions,
    ErrorContext,
    ProtocolKind,
    SerialSettings,
    ServomexConfigurationError,
    ServomexValidationError,
    check_address,
    check_count,
    check_group,
    check_non_negative,
    check_positive,
    parse_protocol,
)
from ophyd_servomex.codec.models import AnalyserStatus

# --- check_address ---------------------------------------------------------------------------


@pytest.mark.parametrize("address", [1, 30, 247])
def test_addresses_1_to_247_pass(address: int) -> None:
    assert check_address(address) == address
    assert type(check_address(address)) is int


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (0, "0"),
        (248, "248"),
        (-1, "-1"),
        (True, "True"),
        (1.0, "1.0"),
        ("30", "'30'"),
        (None, "None"),
    ],
)
def test_bad_addresses_are_refused_with_one_message(address: object, shown: str) -> None:
    with pytest.raises(ServomexValidationError) as caught:
        check_address(address)
    assert caught.value.message == f"Modbus slave address must be 1–247, not {shown}"
    assert caught.value.context == ErrorContext()


def test_a_check_carries_the_context_it_is_given() -> None:
    context = ErrorContext(port="/dev/ttyUSB0", protocol="modbus-rtu")
    with pytest.raises(ServomexValidationError) as caught:
        check_address(0, context=context)
    assert caught.value.context is context
    assert str(caught.value) == (
        "Modbus slave address must be 1–247, not 0 (port=/dev/ttyUSB0, protocol=modbus-rtu)"
    )


# --- check_group -----------------------------------------------------------------------------


@pytest.mark.parametrize("group", [1, 2, 3, 4])
def test_groups_1_to_4_pass(group: int) -> None:
    assert check_group(group) == group


@pytest.mark.parametrize(
    ("group", "shown"), [(0, "0"), (5, "5"), (True, "True"), (1.0, "1.0"), ("1", "'1'")]
)
def test_bad_groups_are_refused_with_one_message(group: object, shown: str) -> None:
    with pytest.raises(ServomexValidationError) as caught:
        check_group(group)
    assert caught.value.message == f"calibration group must be 1–4, not {shown}"


def test_the_analyser_status_uses_the_same_group_check() -> None:
    assert AnalyserStatus().group(4).group == 4
    with pytest.raises(ServomexValidationError, match=r"^calibration group must be 1–4, not 0$"):
        AnalyserStatus().group(0)
    with pytest.raises(ServomexValidationError, match="not True"):
        AnalyserStatus().group(True)  # was cal_groups[0]: group 1


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (0.001, 0.001), (Fraction(1, 2), 0.5)])
def test_positive_numbers_pass_as_floats(value: object, expected: float) -> None:
    result = check_positive("timeout", value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (0.0, "0.0"),
        (-1, "-1"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (True, "True"),
        ("1", "'1'"),
        (None, "None"),
    ],
)
def test_non_positive_numbers_are_refused(value: object, shown: str) -> None:
    with pytest.raises(ServomexValidationError) as caught:
        check_positive("timeout", value)
    assert caught.value.message == f"timeout must be a positive number, not {shown}"


def test_allow_none_lets_none_through_only() -> None:
    assert check_positive("timeout", None, allow_none=True) is None
    assert check_positive("timeout", 2, allow_none=True) == 2.0
    with pytest.raises(ServomexValidationError, match=r"not 0$"):
        check_positive("timeout", 0, allow_none=True)


@pytest.mark.parametrize("value", [0, 0.0, 0.05, 3])
def test_non_negative_numbers_pass(value: float) -> None:
    assert check_non_negative("inter_frame_idle", value) == float(value)


@pytest.mark.parametrize(
    ("value", "shown"), [(-0.01, "-0.01"), (math.nan, "nan"), (math.inf, "inf"), (False, "False")]
)
def test_negative_or_infinite_idles_are_refused(value: object, shown: str) -> None:
    with pytest.raises(ServomexValidationError) as caught:
        check_non_negative("inter_frame_idle", value)
    assert caught.value.message == f"inter_frame_idle must be a finite number ≥ 0, not {shown}"


@pytest.mark.parametrize(("value", "ok"), [(0, True), (5, True), (-1, False), (1.0, False)])
def test_counts_are_whole_numbers_from_0(value: object, ok: bool) -> None:
    if ok:
        assert check_count("retries", value) == value
    else:
        with pytest.raises(ServomexValidationError) as caught:
            check_count("retries", value)
        assert caught.value.message == f"retries must be a whole number ≥ 0, not {value!r}"


# --- protocol --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("rtu", ProtocolKind.MODBUS_RTU),
        ("RTU", ProtocolKind.MODBUS_RTU),
        ("modbus_rtu", ProtocolKind.MODBUS_RTU),
        ("ascii", ProtocolKind.MODBUS_ASCII),
        ("modbus-ascii", ProtocolKind.MODBUS_ASCII),
        ("continuous", ProtocolKind.CONTINUOUS_ASCII),
        ("continuous-ascii", ProtocolKind.CONTINUOUS_ASCII),
        (" Auto ", ProtocolKind.AUTO),
        (ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_RTU),
    ],
)
def test_protocols_by_long_and_short_names(text: str, kind: ProtocolKind) -> None:
    assert parse_protocol(text) is kind


@pytest.mark.parametrize(("value", "shown"), [("modbus-tcp", "'modbus-tcp'"), (2, "2")])
def test_unknown_protocols_list_the_choices(value: object, shown: str) -> None:
    with pytest.raises(ServomexValidationError) as caught:
        parse_protocol(value, context=ErrorContext(port="p"))
    assert caught.value.message == (
        f"unknown protocol {shown}; expected one of "
        "auto, continuous, rtu (modbus-rtu), ascii (modbus-ascii)"
    )
    assert caught.value.context.port == "p"


# --- ConnectionOptions -----------------------------------------------------------------------


def test_options_defaults_are_the_public_signatures_defaults() -> None:
    options = ConnectionOptions("/dev/ttyUSB0")
    assert dataclasses.astuple(options) == (
        "/dev/ttyUSB0",
        ProtocolKind.AUTO,
        1,
        None,
        1.0,
        0.05,
        2,
        True,
        2.0,
    )
    assert options.context == ErrorContext(port="/dev/ttyUSB0", protocol="auto", address=1)


def test_options_are_frozen_slotted_and_normalised() -> None:
    options = ConnectionOptions("p", protocol="rtu", address=30, timeout=2)  # type: ignore[arg-type]
    assert options.protocol is ProtocolKind.MODBUS_RTU
    assert type(options.timeout) is float
    assert not hasattr(options, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.address = 31  # type: ignore[misc]


def test_replace_checks_again() -> None:
    options = ConnectionOptions("p", protocol=ProtocolKind.MODBUS_RTU, address=30)
    assert dataclasses.replace(options, address=31).address == 31
    with pytest.raises(ServomexValidationError) as caught:
        dataclasses.replace(options, address=248)
    assert caught.value.message == "Modbus slave address must be 1–247, not 248"
    assert caught.value.context == ErrorContext(port="p", protocol="modbus-rtu")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"protocol": "morse"}, "unknown protocol 'morse'"),
        ({"address": 0}, "Modbus slave address must be 1–247, not 0"),
        ({"timeout": 0}, "timeout must be a positive number, not 0"),
        ({"timeout": math.nan}, "timeout must be a positive number, not nan"),
        ({"expected_period": -2}, "expected_period must be a positive number, not -2"),
        ({"inter_frame_idle": -1}, "inter_frame_idle must be a finite number ≥ 0, not -1"),
        ({"retries": -1}, "retries must be a whole number ≥ 0, not -1"),
        ({"identify": "yes"}, "identify must be True or False, not 'yes'"),
        ({"serial_settings": {"baudrate": 9600}}, "serial_settings must be a SerialSettings"),
    ],
)
def test_each_bad_field_is_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ServomexValidationError, match=f"^{message}") as caught:
        ConnectionOptions("/dev/ttyS0", **changes)
    assert caught.value.context.port == "/dev/ttyS0"


def test_the_port_must_be_a_string() -> None:
    with pytest.raises(ServomexValidationError, match="port must be a port string, not 3"):
        ConnectionOptions(3)  # type: ignore[arg-type]


def test_serial_settings_are_kept() -> None:
    settings = SerialSettings("/dev/ttyS0", baudrate=9600)
    assert ConnectionOptions("/dev/ttyS0", serial_settings=settings).serial_settings is settings


# --- the same bad argument, the same error, from every entry point ---------------------------

BAD_ARGUMENTS = [
    ({"address": 0}, "Modbus slave address must be 1–247, not 0"),
    ({"address": 248}, "Modbus slave address must be 1–247, not 248"),
    ({"address": True}, "Modbus slave address must be 1–247, not True"),
    ({"address": 1.0}, "Modbus slave address must be 1–247, not 1.0"),
    ({"address": "30"}, "Modbus slave address must be 1–247, not '30'"),
    ({"timeout": 0}, "timeout must be a positive number, not 0"),
    ({"timeout": -1.0}, "timeout must be a positive number, not -1.0"),
    ({"timeout": math.nan}, "timeout must be a positive number, not nan"),
    ({"timeout": math.inf}, "timeout must be a positive number, not inf"),
    ({"protocol": "morse"}, "unknown protocol 'morse'"),
]

PORT = "/dev/servomex-never-opened"


def _open_device(**kwargs: Any) -> None:
    import anyio

    from ophyd_servomex.driver import open_device

    anyio.run(lambda: open_device(PORT, **{"protocol": ProtocolKind.MODBUS_RTU, **kwargs}))


def _analyzer(**kwargs: Any) -> None:
    from ophyd_servomex.driver import Analyzer

    Analyzer(PORT, **{"protocol": ProtocolKind.MODBUS_RTU, **kwargs})


def _manager_add(**kwargs: Any) -> None:
    import anyio

    from ophyd_servomex.driver import ServomexManager

    async def add() -> None:
        async with ServomexManager() as manager:
            await manager.add("a", PORT, **{"protocol": ProtocolKind.MODBUS_RTU, **kwargs})

    anyio.run(add)


def _sync_open(**kwargs: Any) -> None:
    from ophyd_servomex.sync import Servomex

    Servomex.open(PORT, **{"protocol": ProtocolKind.MODBUS_RTU, **kwargs})


def _sync_manager_add(**kwargs: Any) -> None:
    from ophyd_servomex.sync import Servomex

    with Servomex.manager() as manager:
        manager.add("a", PORT, **{"protocol": ProtocolKind.MODBUS_RTU, **kwargs})


def _device(**kwargs: Any) -> None:
    from ophyd_servomex.devices import ServomexAnalyser

    ServomexAnalyser(PORT, **{"protocol": ProtocolKind.MODBUS_RTU, **kwargs})


def _device_on_a_bus(**kwargs: Any) -> None:
    from ophyd_servomex.devices import ServomexAnalyser, ServomexBus

    address = kwargs.pop("address", 1)
    bus = ServomexBus(PORT, **{"protocol": ProtocolKind.MODBUS_RTU, **kwargs})
    ServomexAnalyser(bus=bus, address=address)


ENTRY_POINTS: dict[str, Callable[..., None]] = {
    "open_device": _open_device,
    "Analyzer": _analyzer,
    "ServomexManager.add": _manager_add,
    "Servomex.open": _sync_open,
    "SyncManager.add": _sync_manager_add,
    "ServomexAnalyser": _device,
    "ServomexAnalyser(bus=)": _device_on_a_bus,
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(("kwargs", "message"), BAD_ARGUMENTS)
def test_every_entry_point_refuses_a_bad_argument_alike(
    entry: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ServomexValidationError) as caught:
        ENTRY_POINTS[entry](**kwargs)
    assert type(caught.value) is ServomexValidationError
    assert caught.value.message.startswith(message)
    assert caught.value.context.port == PORT


def test_a_shared_line_still_refuses_auto_and_continuous_as_a_configuration_error() -> None:
    with pytest.raises(ServomexConfigurationError, match="AUTO detection") as caught:
        _manager_add(protocol=ProtocolKind.AUTO)
    assert type(caught.value) is ServomexConfigurationError
