"""open_transport's dispatch on the port string, URL parsing and port discovery."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ophyd_servomex.codec.errors import ServomexValidationError
from ophyd_servomex.codec.models import SerialSettings
from ophyd_servomex.transport import (
    PortInfo,
    PortKind,
    Transport,
    list_ports,
    memory_transport_pair,
    open_transport,
    parse_host_port,
    port_kind,
)
from ophyd_servomex.transport import opening as opening_module

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("port", "kind"),
    [
        ("/dev/ttyUSB0", PortKind.DEVICE),
        ("/dev/pts/5", PortKind.DEVICE),
        ("COM3", PortKind.DEVICE),
        ("socket://10.0.0.5:4001", PortKind.SOCKET),
        ("SOCKET://host:1", PortKind.SOCKET),
        ("rfc2217://host:2217", PortKind.RFC2217),
    ],
)
def test_port_kind(port: str, kind: PortKind) -> None:
    assert port_kind(port) is kind


@pytest.mark.parametrize("port", ["", "   ", "loop://", "spy://x", "memory://"])
def test_unknown_or_empty_ports_are_validation_errors(port: str) -> None:
    with pytest.raises(ServomexValidationError) as info:
        port_kind(port)
    assert info.value.context.port == port


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("socket://127.0.0.1:4001", ("127.0.0.1", 4001)),
        ("socket://moxa.lab:950/", ("moxa.lab", 950)),
        ("socket://[::1]:4001", ("::1", 4001)),
        ("rfc2217://host:2217?ign_set_control", ("host", 2217)),
    ],
)
def test_parse_host_port(url: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(url) == expected


@pytest.mark.parametrize(
    "url",
    ["socket://host", "socket://:4001", "socket://host:0", "socket://host:x", "socket://h:1/p"],
)
def test_parse_host_port_rejects(url: str) -> None:
    with pytest.raises(ServomexValidationError) as info:
        parse_host_port(url)
    assert info.value.context.port == url


async def test_dispatch_by_port_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, Any, Any]] = []
    transport, _ = memory_transport_pair()

    def fake(name: str) -> Any:
        async def opener(port: str, settings: Any = None, **kwargs: Any) -> Transport:
            calls.append((name, port, settings, kwargs))
            return transport

        return opener

    monkeypatch.setattr(opening_module, "open_tcp", fake("tcp"))
    monkeypatch.setattr(opening_module, "open_rfc2217", fake("rfc2217"))
    monkeypatch.setattr(opening_module, "open_serial", fake("serial"))
    settings = SerialSettings("", baudrate=9600)
    assert await open_transport("socket://h:1", settings) is transport
    assert await open_transport("rfc2217://h:2") is transport
    assert await open_transport("/dev/ttyUSB0", exclusive=False) is transport
    assert calls == [
        ("tcp", "socket://h:1", settings, {}),
        ("rfc2217", "rfc2217://h:2", None, {}),
        ("serial", "/dev/ttyUSB0", None, {"exclusive": False}),
    ]


def test_list_ports_maps_and_sorts_pyserial_results(monkeypatch: pytest.MonkeyPatch) -> None:
    import serial.tools.list_ports

    found = [
        SimpleNamespace(
            device="/dev/ttyUSB1",
            description="USB-RS485 Cable",
            hwid="USB VID:PID=0403:6001 SER=FT1234",
            vid=0x0403,
            pid=0x6001,
            serial_number="FT1234",
            manufacturer="FTDI",
        ),
        SimpleNamespace(
            device="/dev/ttyS0",
            description="n/a",
            hwid="n/a",
            vid=None,
            pid=None,
            serial_number=None,
            manufacturer=None,
        ),
    ]
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: found)
    assert list_ports() == [
        PortInfo(device="/dev/ttyS0"),
        PortInfo(
            device="/dev/ttyUSB1",
            description="USB-RS485 Cable",
            hwid="USB VID:PID=0403:6001 SER=FT1234",
            vid=0x0403,
            pid=0x6001,
            serial_number="FT1234",
            manufacturer="FTDI",
        ),
    ]


def test_list_ports_on_this_machine_returns_port_infos() -> None:
    ports = list_ports()
    assert all(isinstance(p, PortInfo) for p in ports)
    assert [p.device for p in ports] == sorted(p.device for p in ports)
