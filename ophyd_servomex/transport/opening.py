"""``open_transport``: one entry point for every kind of port string."""

from __future__ import annotations

from ..codec.models import SerialSettings
from .base import ByteStreamTransport
from .rfc2217 import open_rfc2217
from .serial_port import open_serial
from .tcp import open_tcp
from .urls import PortKind, port_kind

__all__ = ["open_transport"]


async def open_transport(
    port: str, settings: SerialSettings | None = None, *, exclusive: bool = True
) -> ByteStreamTransport:
    """Open the link named by ``port``.

    Args:
        port: a serial device path (``/dev/ttyUSB0``, ``/dev/pts/5``, ``COM3``),
            ``socket://host:port`` (raw TCP, as serial device servers offer) or
            ``rfc2217://host:port`` (Telnet COM port control).
        settings: serial settings; default 19200 8-N-1 for a device path and RFC 2217
            (where they are applied), ``None`` for ``socket://`` (where the server's own
            serial side applies them; given settings are recorded for frame timing).
        exclusive: lock a serial device so no one else can open it (device paths only).

    Raises:
        ServomexValidationError: the port string is empty or malformed.
        ServomexConnectionError: the port is missing or busy, or the connection is
            refused; the message and ``ErrorContext.port`` name the port.
    """
    kind = port_kind(port)
    if kind is PortKind.SOCKET:
        return await open_tcp(port, settings)
    if kind is PortKind.RFC2217:
        return await open_rfc2217(port, settings)
    return await open_serial(port, settings, exclusive=exclusive)
