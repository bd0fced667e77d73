"""A local serial device (``/dev/ttyUSB0``, ``COM3``, a pty slave) through anyserial."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import anyio.lowlevel
from anyio.streams.file import FileStreamAttribute
from anyserial import (
    PortBusyError,
    PortNotFoundError,
    SerialError,
    SerialPort,
    UnsupportedPolicy,
    open_serial_port,
)

from ..codec.errors import ServomexConnectionError
from ..codec.models import SerialSettings
from .base import DEFAULT_RECEIVE_SIZE, ByteStreamTransport, serial_config
from .errors import OS_ERRORS, connection_failed, translating_io_errors

__all__ = ["SerialTransport", "hold_exclusively", "open_serial"]

_LOGGER = logging.getLogger(__name__)

# tcgetattr on something that is no tty raises termios.error, which is no OSError
_OPEN_ERRORS: tuple[type[Exception], ...] = (SerialError, *OS_ERRORS)

try:
    import fcntl
    import termios

    _TIOCEXCL: int | None = getattr(termios, "TIOCEXCL", None)
except ImportError:  # pragma: no cover - Windows (its ports are exclusive anyway)
    _TIOCEXCL = None


def hold_exclusively(fd: int) -> bool:
    """Take the kernel's exclusive hold on a tty (``TIOCEXCL``); ``False`` where unsupported.

    ``flock`` only keeps out programs that also ask for the lock; with ``TIOCEXCL`` the
    kernel refuses every further ``open()`` of the device (``EBUSY``) to anyone but root,
    so ``cat`` or a terminal program cannot silently steal the analyser's bytes.
    """
    if _TIOCEXCL is None:
        return False
    try:
        fcntl.ioctl(fd, _TIOCEXCL)
    except OSError:
        return False
    return True


class SerialTransport(ByteStreamTransport):
    """A serial port opened with anyserial; see :func:`open_serial`."""

    def __init__(self, port: str, settings: SerialSettings, serial: SerialPort) -> None:
        super().__init__(port, settings)
        self._serial = serial

    @property
    def serial_port(self) -> SerialPort:
        """The underlying anyserial port (for modem lines, break and such)."""
        return self._serial

    async def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE) -> bytes:
        """Wait for and return between 1 and ``max_bytes`` bytes from the line."""
        with translating_io_errors(self.port):
            return await self._serial.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        """Write every byte of ``item`` to the line."""
        with translating_io_errors(self.port):
            await self._serial.send(item)

    async def reset_input_buffer(self) -> None:
        """Flush the kernel's input queue (``tcflush``)."""
        with translating_io_errors(self.port):
            await self._serial.reset_input_buffer()

    async def drain(self) -> None:
        """Wait until the kernel's output queue is empty."""
        with translating_io_errors(self.port):
            await self._serial.drain()

    async def send_eof(self) -> None:
        """Serial has no half-close: wait for the output to drain."""
        with translating_io_errors(self.port):
            await self._serial.send_eof()

    async def aclose(self) -> None:
        """Close the port (releasing its exclusive holds); idempotent.

        Closing a port whose device vanished (a pulled USB adapter) can fail in the OS;
        that is a :class:`ServomexConnectionError` naming the port, after the port is
        marked closed.
        """
        with translating_io_errors(self.port):
            await self._serial.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """Ours plus the port's own (its live config, capabilities, fileno and path)."""
        return {**super().extra_attributes, **self._serial.extra_attributes}


async def open_serial(
    port: str, settings: SerialSettings | None = None, *, exclusive: bool = True
) -> SerialTransport:
    """Open the serial device ``port`` with ``settings`` (default 19200 8-N-1).

    Features a device cannot do (low-latency mode on a pty, for example) are skipped
    silently. With ``exclusive`` (``settings.exclusive`` when given) the port is locked
    (``flock``, so a second exclusive open fails) and held with ``TIOCEXCL`` (so the kernel
    refuses any other program's ``open()``, ``cat`` and terminal programs included).

    Raises:
        ServomexConnectionError: the port is missing, busy, not permitted or not a serial
            device; the message and the context name the port.
    """
    if settings is None:
        settings = SerialSettings(port)
    elif settings.port != port:
        settings = replace(settings, port=port)
    exclusive = exclusive and settings.exclusive
    config = serial_config(
        settings,
        exclusive=exclusive,
        low_latency=True,
        unsupported_policy=UnsupportedPolicy.IGNORE,
    )
    try:
        serial = await open_serial_port(port, config)
    except PortNotFoundError as exc:
        raise connection_failed(port, "no such serial port") from exc
    except PortBusyError as exc:
        raise _busy_or_denied(port, exc) from exc
    except _OPEN_ERRORS as exc:
        raise connection_failed(port, "not usable as a serial port", exc) from exc
    if exclusive:
        fileno = serial.extra_attributes.get(FileStreamAttribute.fileno)
        if fileno is None or not hold_exclusively(fileno()):
            _LOGGER.debug("%s: no TIOCEXCL hold on this device (flock only)", port)
    await anyio.lowlevel.checkpoint()
    return SerialTransport(port, settings, serial)


def _busy_or_denied(port: str, exc: PortBusyError) -> ServomexConnectionError:
    """anyserial reports EACCES as busy too; tell the two apart for the user."""
    if exc.errno == errno.EACCES or isinstance(exc.__cause__, PermissionError):
        return connection_failed(port, "permission denied (is the user in the dialout group?)")
    return connection_failed(port, "the port is busy (opened exclusively elsewhere)")
