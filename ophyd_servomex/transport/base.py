"""The one face every byte link shows its clients: :class:`Transport`.

:class:`Transport` is the structural protocol the rest of the package depends on;
:class:`ByteStreamTransport` is the base class every concrete link derives from. A transport
is an anyio :class:`~anyio.abc.ByteStream` (``send``, ``receive``, ``send_eof``,
``aclose``), so it can be handed straight to anymodbus's ``Bus``, with the extras that
serial clients need:

* ``port`` — the string the user gave (``/dev/ttyUSB0``, ``socket://host:4001`` …);
* ``settings`` — the serial settings in force, or ``None`` when the link has none;
* ``await reset_input_buffer()`` — discard whatever arrived and was not read yet;
* ``await drain()`` — wait until sent bytes have left (a no-op where there is no queue).

Both optional methods are ``async def`` so that anymodbus's ``Bus`` finds and uses them.
When ``settings`` is known, the stream also publishes anyserial's
``SerialStreamAttribute.config`` typed attribute, from which anymodbus derives its timing.

Failures are typed: ``receive``/``send`` raise
:class:`~ophyd_servomex.transport.errors.LinkLostError` when the link broke and
:class:`~ophyd_servomex.transport.errors.TransportClosedError` after ``aclose()``; both are
``ServomexConnectionError`` subclasses. ``receive`` never returns ``b""``. Timeouts are the
caller's business (``anyio.fail_after``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import anyio.abc
import anyio.lowlevel
from anyio import TypedAttributeSet, typed_attribute
from anyserial import ByteSize, FlowControl, Parity, SerialConfig, SerialStreamAttribute, StopBits

from ..codec import models
from ..codec.models import SerialSettings

__all__ = [
    "DEFAULT_RECEIVE_SIZE",
    "ByteStreamTransport",
    "Transport",
    "TransportAttribute",
    "serial_config",
]

#: The ``max_bytes`` a ``receive()`` without an argument asks for.
DEFAULT_RECEIVE_SIZE = 65536

_PARITY = {
    models.Parity.NONE: Parity.NONE,
    models.Parity.EVEN: Parity.EVEN,
    models.Parity.ODD: Parity.ODD,
}
_STOP_BITS = {models.StopBits.ONE: StopBits.ONE, models.StopBits.TWO: StopBits.TWO}
_BYTE_SIZE = {models.ByteSize.SEVEN: ByteSize.SEVEN, models.ByteSize.EIGHT: ByteSize.EIGHT}


class TransportAttribute(TypedAttributeSet):
    """Typed attributes every :class:`Transport` publishes (``transport.extra(...)``)."""

    #: the port string the user gave
    port: str = typed_attribute()
    #: the serial settings in force, or None
    settings: SerialSettings | None = typed_attribute()


def serial_config(settings: SerialSettings, **changes: Any) -> SerialConfig:
    """The anyserial :class:`~anyserial.SerialConfig` for ``settings`` (plus ``changes``)."""
    return SerialConfig(
        baudrate=settings.baudrate,
        byte_size=_BYTE_SIZE[settings.bytesize],
        parity=_PARITY[settings.parity],
        stop_bits=_STOP_BITS[settings.stopbits],
        flow_control=FlowControl(xon_xoff=settings.xonxoff, rts_cts=settings.rtscts),
        **changes,
    )


@runtime_checkable
class Transport(Protocol):
    """What every transport offers: an anyio byte stream plus the serial helpers.

    Every concrete transport derives from :class:`ByteStreamTransport`; anything else with
    this shape (an anyio ``ByteStream`` with ``port``, ``reset_input_buffer`` and ``drain``)
    may be passed where a transport is taken.
    """

    @property
    def port(self) -> str:
        """The port string as the user gave it."""
        ...

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Wait for and return between 1 and ``max_bytes`` bytes."""
        ...

    async def send(self, item: bytes) -> None:
        """Send every byte of ``item``."""
        ...

    async def send_eof(self) -> None:
        """Signal that nothing more will be sent (a no-op on serial links)."""
        ...

    async def aclose(self) -> None:
        """Close the link; idempotent."""
        ...

    async def reset_input_buffer(self) -> None:
        """Discard every byte received but not yet read."""
        ...

    async def drain(self) -> None:
        """Wait until the bytes sent have left this end."""
        ...


class ByteStreamTransport(anyio.abc.ByteStream):
    """A byte link to one analyser (or, for the simulator, to one client).

    Subclasses implement ``receive``, ``send``, ``aclose`` and ``reset_input_buffer``;
    ``send_eof`` and ``drain`` default to doing nothing (a serial line has no half-close and
    most links no output queue worth waiting for).
    """

    def __init__(self, port: str, settings: SerialSettings | None) -> None:
        self._port = port
        self._settings = settings

    @property
    def port(self) -> str:
        """The port string as the user gave it."""
        return self._port

    @property
    def settings(self) -> SerialSettings | None:
        """The serial settings in force, or ``None`` when the link has none."""
        return self._settings

    @abstractmethod
    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Wait for and return between 1 and ``max_bytes`` bytes.

        Raises:
            LinkLostError: the link broke (end of stream, pulled cable, reset).
            TransportClosedError: this transport was closed.
        """

    @abstractmethod
    async def send(self, item: bytes) -> None:
        """Send every byte of ``item``.

        Raises:
            LinkLostError: the link broke.
            TransportClosedError: this transport was closed.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Close the link; idempotent. A ``receive`` waiting on it is woken with an error."""

    @abstractmethod
    async def reset_input_buffer(self) -> None:
        """Discard every byte received but not yet read (OS queues and local buffers)."""

    async def send_eof(self) -> None:
        """Signal that nothing more will be sent. Serial links have no half-close: no-op."""
        await anyio.lowlevel.checkpoint()

    async def drain(self) -> None:
        """Wait until the bytes sent have left this end; a no-op where nothing is queued."""
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """Typed attributes: the port, the settings and, when known, anyserial's config."""
        attrs: dict[Any, Callable[[], Any]] = {
            TransportAttribute.port: lambda: self._port,
            TransportAttribute.settings: lambda: self._settings,
        }
        settings = self._settings
        if settings is not None:
            config = serial_config(settings)
            attrs[SerialStreamAttribute.config] = lambda: config
        return attrs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._port!r})"
