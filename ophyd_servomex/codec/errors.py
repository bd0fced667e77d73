"""The typed error hierarchy: every failure the package reports is a :class:`ServomexError`.

Each error carries an :class:`ErrorContext` saying where it happened (port, protocol,
address, channel, register) and, where there were any, the bytes sent and received, so a
log line alone is enough to reproduce a wire problem.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = [
    "ErrorContext",
    "ServomexCapabilityError",
    "ServomexChecksumError",
    "ServomexConfigurationError",
    "ServomexConfirmationRequiredError",
    "ServomexConnectionError",
    "ServomexError",
    "ServomexFrameError",
    "ServomexIllegalDataAddressError",
    "ServomexIllegalFunctionError",
    "ServomexModbusError",
    "ServomexParseError",
    "ServomexProtocolError",
    "ServomexTimeoutError",
    "ServomexTransportError",
    "ServomexUnsupportedError",
    "ServomexValidationError",
]


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Where an error happened. Every field is optional; unset fields are left out of messages."""

    port: str | None = None
    protocol: str | None = None
    address: int | None = None
    channel: str | None = None
    register: int | None = None
    function: int | None = None
    request: bytes | None = None
    response: bytes | None = None

    def merged(self, **changes: Any) -> ErrorContext:
        """A copy with the given fields set (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def describe(self) -> str:
        """A compact ``key=value`` rendering of the fields that are set."""
        parts: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bytes):
                text = value.hex(" ") if len(value) <= 64 else value[:64].hex(" ") + " …"
                parts.append(f"{f.name}=[{text}]")
            else:
                parts.append(f"{f.name}={value}")
        return ", ".join(parts)


class ServomexError(Exception):
    """Base class of every error raised by ophyd_servomex."""

    def __init__(self, message: str, *, context: ErrorContext | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.context = context if context is not None else ErrorContext()

    def __str__(self) -> str:
        where = self.context.describe()
        return f"{self.message} ({where})" if where else self.message

    def with_context(self, **changes: Any) -> ServomexError:
        """Add context fields (e.g. the port) as the error travels up the layers; returns self."""
        self.context = self.context.merged(**changes)
        return self


# --- configuration: the caller asked for something that cannot be done -----------------


class ServomexConfigurationError(ServomexError):
    """The request or the settings are wrong; nothing was sent."""


class ServomexValidationError(ServomexConfigurationError, ValueError):
    """An argument is out of range or unknown (a group outside 1–4, an unknown channel…)."""


class ServomexConfirmationRequiredError(ServomexConfigurationError):
    """A process-affecting action (starting or stopping calibration) needs ``confirm=True``."""


class ServomexCapabilityError(ServomexError):
    """The active protocol cannot do this (continuous mode cannot calibrate, for example)."""


# --- transport: the link itself failed ---------------------------------------------------


class ServomexTransportError(ServomexError):
    """The byte link failed."""


class ServomexTimeoutError(ServomexTransportError, TimeoutError):
    """No (complete) answer arrived in time."""


class ServomexConnectionError(ServomexTransportError, ConnectionError):
    """The port could not be opened, is busy, or was lost (a pulled cable)."""


# --- protocol: bytes arrived but do not make sense ---------------------------------------


class ServomexProtocolError(ServomexError):
    """Bytes arrived that do not follow the protocol."""


class ServomexParseError(ServomexProtocolError):
    """A field could not be decoded (a bad id, flag or number where one is required)."""


class ServomexFrameError(ServomexProtocolError):
    """The frame's shape is wrong: length, field count, channel count or separators."""


class ServomexChecksumError(ServomexProtocolError):
    """The frame's checksum (continuous sum, Modbus CRC or LRC) does not match its content."""

    def __init__(
        self,
        message: str,
        *,
        expected: int,
        actual: int,
        raw: bytes,
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(message, context=context)
        self.expected = expected
        self.actual = actual
        self.raw = raw


class ServomexUnsupportedError(ServomexProtocolError):
    """The device or frame uses a feature this driver does not know."""


class ServomexModbusError(ServomexProtocolError):
    """The analyser answered with a Modbus exception response."""

    def __init__(
        self,
        message: str,
        *,
        exception_code: int,
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(message, context=context)
        self.exception_code = exception_code


class ServomexIllegalFunctionError(ServomexModbusError):
    """Modbus exception 01: the analyser does not support this function code."""


class ServomexIllegalDataAddressError(ServomexModbusError):
    """Modbus exception 02: the address range is outside the analyser's map."""
