"""The typed error hierarchy: every failure the package reports is a :class:`ServomexError`.

Each error carries an :class:`ErrorContext` saying where it happened (port, protocol,
address, channel, register) and, where there were any, the bytes sent and received, so a
log line alone is enough to reproduce a wire problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Self

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
    "ServomexProtocolUnsupportedError",
    "ServomexTimeoutError",
    "ServomexTransportError",
    "ServomexUnsupportedError",
    "ServomexValidationError",
]


_EMPTY_EXTRA: Mapping[str, Any] = MappingProxyType({})


def _empty_extra() -> Mapping[str, Any]:
    """The shared, read-only empty ``extra`` mapping."""
    return _EMPTY_EXTRA


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Where an error happened. Every field is optional; unset fields are left out of messages.

    ``extra`` holds any further detail; whatever mapping is given is frozen into a read-only
    :class:`types.MappingProxyType` copy, so no one can change a context after the fact.
    """

    port: str | None = None
    protocol: str | None = None
    address: int | None = None
    channel: str | None = None
    register: int | None = None
    function_code: int | None = None
    request: bytes | None = None
    response: bytes | None = None
    elapsed_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=_empty_extra)

    def __post_init__(self) -> None:
        extra = self.extra
        if extra is _EMPTY_EXTRA:
            return
        if not isinstance(extra, Mapping):
            raise TypeError(f"ErrorContext.extra must be a mapping, not {type(extra).__name__}")
        object.__setattr__(self, "extra", MappingProxyType(dict(extra)) if extra else _EMPTY_EXTRA)

    def merged(self, **updates: Any) -> ErrorContext:
        """A new context with ``updates`` overlaid; keys that are no field go into ``extra``.

        ``None`` values leave a field as it was.
        """
        known = {f.name for f in fields(self)} - {"extra"}
        changes = {k: v for k, v in updates.items() if k in known and v is not None}
        extra_updates = {k: v for k, v in updates.items() if k not in known and v is not None}
        if isinstance(updates.get("extra"), Mapping):
            extra_updates.pop("extra", None)
            extra_updates = {**updates["extra"], **extra_updates}
        if extra_updates:
            changes["extra"] = {**self.extra, **extra_updates}
        return replace(self, **changes) if changes else self

    def describe(self) -> str:
        """A compact ``key=value`` rendering of the fields that are set."""
        parts: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "extra":
                parts.extend(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, bytes):
                text = value.hex(" ") if len(value) <= 64 else value[:64].hex(" ") + " …"
                parts.append(f"{f.name}=[{text}]")
            elif f.name == "elapsed_s":
                parts.append(f"elapsed_s={value:.3f}")
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

    def with_context(self, **updates: Any) -> Self:
        """A copy of this error with its context updated; this error is left unchanged.

        An outer layer uses it to add what it knows (the port, ``elapsed_s``) before
        raising the copy ``from`` the original. Unknown keys go into ``context.extra``.
        """
        clone = type(self).__new__(type(self), *self.args)
        clone.__dict__.update(self.__dict__)
        clone.args = self.args
        clone.__cause__ = self.__cause__
        clone.__suppress_context__ = self.__suppress_context__
        clone.context = self.context.merged(**updates)
        return clone


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


class ServomexProtocolUnsupportedError(ServomexProtocolError, ServomexCapabilityError):
    """The active protocol cannot do this (calibration or loopback in continuous mode).

    Also a :class:`ServomexCapabilityError`, the wider "not possible here" family.
    """


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
