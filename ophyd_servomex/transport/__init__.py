"""Byte links to an analyser: serial devices, ``socket://``, ``rfc2217://``, ptys, memory.

Every link is a :class:`Transport` (an anyio ``ByteStream`` with ``port``, ``settings``,
``reset_input_buffer()`` and ``drain()``), opened with :func:`open_transport`. Failures are
``ServomexConnectionError`` subclasses naming the port.
"""

from .base import (
    DEFAULT_RECEIVE_SIZE,
    ByteStreamTransport,
    Transport,
    TransportAttribute,
    serial_config,
)
from .discovery import PortInfo, list_ports
from .errors import LinkLostError, TransportClosedError
from .fake import FakeTransport
from .memory import MemoryTransport, memory_transport_pair
from .opening import open_transport
from .pseudo_terminal import PEER_POLL_INTERVAL, PtyMasterTransport, PtyPair, open_pty_pair
from .rfc2217 import Rfc2217Transport, open_rfc2217
from .serial_port import SerialTransport, hold_exclusively, open_serial
from .tcp import TcpTransport, open_tcp
from .urls import PortKind, parse_host_port, port_kind
from .wrappers import NonClosing

__all__ = [
    "DEFAULT_RECEIVE_SIZE",
    "PEER_POLL_INTERVAL",
    "ByteStreamTransport",
    "FakeTransport",
    "LinkLostError",
    "MemoryTransport",
    "NonClosing",
    "PortInfo",
    "PortKind",
    "PtyMasterTransport",
    "PtyPair",
    "Rfc2217Transport",
    "SerialTransport",
    "TcpTransport",
    "Transport",
    "TransportAttribute",
    "TransportClosedError",
    "hold_exclusively",
    "list_ports",
    "memory_transport_pair",
    "open_pty_pair",
    "open_rfc2217",
    "open_serial",
    "open_tcp",
    "open_transport",
    "parse_host_port",
    "port_kind",
    "serial_config",
]
