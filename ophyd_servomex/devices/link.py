"""The analyser's link: its state, the reconnect back-off, and which errors mean "lost".

A pulled cable, an unplugged USB adapter or a simulator that went away all end the same
way: the driver raises :class:`~ophyd_servomex.codec.errors.ServomexConnectionError` (or,
from a transport not yet translating them, a raw ``OSError`` / ``termios.error``). The
device then releases the port at once, shows :attr:`LinkState.RECONNECTING` and retries on
the :class:`ReconnectPolicy` schedule until the port answers again.
"""

from __future__ import annotations

from dataclasses import dataclass

from ophyd_async.core import StrictEnum

from ..codec.errors import (
    ErrorContext,
    ServomexConnectionError,
    ServomexValidationError,
)

try:  # termios.error (tcflush/tcgetattr on a vanished device) is no OSError
    from termios import error as _TermiosError

    PORT_ERRORS: tuple[type[Exception], ...] = (
        ServomexConnectionError,
        OSError,
        _TermiosError,
    )
except ImportError:  # pragma: no cover - Windows
    PORT_ERRORS = (ServomexConnectionError, OSError)

__all__ = [
    "ALARM_INVALID",
    "PORT_ERRORS",
    "LinkState",
    "ReconnectPolicy",
    "as_connection_error",
]

ALARM_INVALID = 3
"""The alarm severity of a value whose link is gone (EPICS' INVALID)."""


class LinkState(StrictEnum):
    """What the device's link is doing (the ``link_state`` signal)."""

    CONNECTED = "connected"
    """A session is open and frames arrive."""
    RECONNECTING = "reconnecting"
    """The link was lost; the port is released and reopened on the back-off schedule."""
    DISCONNECTED = "disconnected"
    """Never connected, disconnected on purpose, or given up (a changed channel set)."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When to retry after a lost link: ``initial`` s, times ``factor`` each attempt,
    never more than ``maximum`` s. No jitter, so the schedule is exact and testable::

        >>> ReconnectPolicy().schedule(6)
        (0.5, 1.0, 2.0, 4.0, 5.0, 5.0)

    Each attempt (open, identify, first frame) may itself take up to the connect timeout.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1:
            raise ServomexValidationError(
                "ReconnectPolicy needs 0 < initial <= maximum and factor >= 1, not "
                f"initial={self.initial!r}, factor={self.factor!r}, maximum={self.maximum!r}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        if attempt < 0:
            raise ServomexValidationError(f"attempt must be >= 0, not {attempt!r}")
        delay = self.initial
        for _ in range(attempt):
            delay *= self.factor
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def schedule(self, attempts: int) -> tuple[float, ...]:
        """The first ``attempts`` delays."""
        return tuple(self.delay(n) for n in range(attempts))


def as_connection_error(exc: BaseException, context: ErrorContext) -> ServomexConnectionError:
    """``exc`` as a :class:`ServomexConnectionError` (itself when it already is one)."""
    if isinstance(exc, ServomexConnectionError):
        return exc
    error = ServomexConnectionError(
        f"port error on {context.port or 'the port'}: {exc or type(exc).__name__}",
        context=context,
    )
    error.__cause__ = exc
    return error
