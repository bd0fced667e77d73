"""Port strings: which kind of link a port names, and the host and port inside a URL."""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit

from ..codec.errors import ErrorContext, ServomexValidationError

__all__ = ["PortKind", "parse_host_port", "port_kind"]


class PortKind(StrEnum):
    """The kinds of port string :func:`~ophyd_servomex.transport.open_transport` accepts."""

    DEVICE = "device"  #: a serial device path: /dev/ttyUSB0, /dev/pts/5, COM3
    SOCKET = "socket"  #: socket://host:port, a raw TCP serial device server
    RFC2217 = "rfc2217"  #: rfc2217://host:port, a Telnet COM-port-control server


def port_kind(port: str) -> PortKind:
    """Which kind of link ``port`` names.

    Raises:
        ServomexValidationError: the string is empty or uses an unknown URL scheme.
    """
    if not port or not port.strip():
        raise ServomexValidationError("the port is empty", context=ErrorContext(port=port))
    scheme, sep, _ = port.partition("://")
    if not sep:
        return PortKind.DEVICE
    try:
        kind = PortKind(scheme.lower())
    except ValueError:
        kind = PortKind.DEVICE
    if kind is PortKind.DEVICE:
        raise ServomexValidationError(
            f"unsupported port URL {port!r}: use a device path, socket://host:port"
            " or rfc2217://host:port",
            context=ErrorContext(port=port),
        )
    return kind


def parse_host_port(port: str) -> tuple[str, int]:
    """The host and TCP port in ``scheme://host:port`` (IPv6 hosts in brackets).

    Raises:
        ServomexValidationError: the host or the port number is missing or invalid.
    """
    parts = urlsplit(port)
    try:
        number = parts.port
    except ValueError as exc:
        raise ServomexValidationError(
            f"invalid TCP port number in {port!r}", context=ErrorContext(port=port)
        ) from exc
    host = parts.hostname
    if not host or number is None or number == 0:
        raise ServomexValidationError(
            f"{port!r} needs a host and a port number: {parts.scheme}://host:port",
            context=ErrorContext(port=port),
        )
    if parts.path not in ("", "/"):
        raise ServomexValidationError(
            f"unexpected path {parts.path!r} in {port!r}", context=ErrorContext(port=port)
        )
    return host, number
