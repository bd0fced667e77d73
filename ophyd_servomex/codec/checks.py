"""The argument checks every layer shares: Modbus address, calibration group, numbers.

These are the only copies in the package (the protocol's is :func:`ProtocolKind.parse`, the
channel's :meth:`ChannelId.parse`): every layer that takes these arguments calls them, so
the same bad argument raises the same :class:`~ophyd_servomex.codec.errors.ServomexValidationError`,
with the same message, wherever it is given. Each takes an optional :class:`ErrorContext`
for the error. :class:`~ophyd_servomex.codec.options.ConnectionOptions` runs them on
construction.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal, TypeGuard, overload

from .errors import ErrorContext, ServomexValidationError

__all__ = [
    "CAL_GROUPS",
    "MAX_ADDRESS",
    "MIN_ADDRESS",
    "check_address",
    "check_count",
    "check_group",
    "check_non_negative",
    "check_positive",
]

MIN_ADDRESS = 1
MAX_ADDRESS = 247
"""Modbus slave addresses a unit can have (0 is broadcast, 248–255 are reserved)."""
CAL_GROUPS = (1, 2, 3, 4)
"""The analyser's autocalibration groups."""


def _fail(message: str, context: ErrorContext | None) -> ServomexValidationError:
    return ServomexValidationError(message, context=context)


def check_address(address: object, *, context: ErrorContext | None = None) -> int:
    """A Modbus slave address: a whole number 1–247 (not a bool, float or string).

    Raises:
        ServomexValidationError: ``Modbus slave address must be 1–247, not 0``.
    """
    if not _whole(address) or not MIN_ADDRESS <= address <= MAX_ADDRESS:
        raise _fail(f"Modbus slave address must be 1–247, not {address!r}", context)
    return int(address)


def check_group(group: object, *, context: ErrorContext | None = None) -> int:
    """An autocalibration group: a whole number 1–4 (not a bool, float or string).

    Raises:
        ServomexValidationError: ``calibration group must be 1–4, not 5``.
    """
    if not _whole(group) or group not in CAL_GROUPS:
        raise _fail(f"calibration group must be 1–4, not {group!r}", context)
    return int(group)


@overload
def check_positive(
    name: str,
    value: object,
    *,
    allow_none: Literal[False] = False,
    context: ErrorContext | None = None,
) -> float: ...


@overload
def check_positive(
    name: str,
    value: object,
    *,
    allow_none: bool,
    context: ErrorContext | None = None,
) -> float | None: ...


def check_positive(
    name: str,
    value: object,
    *,
    allow_none: bool = False,
    context: ErrorContext | None = None,
) -> float | None:
    """A finite number > 0 (``int`` or ``float``; not a bool or a string), as a float.

    With ``allow_none``, ``None`` passes through (an option left to its default).

    Raises:
        ServomexValidationError: ``timeout must be a positive number, not 0``.
    """
    if value is None and allow_none:
        return None
    if not _finite_real(value) or not value > 0:
        raise _fail(f"{name} must be a positive number, not {value!r}", context)
    return float(value)


def check_non_negative(name: str, value: object, *, context: ErrorContext | None = None) -> float:
    """A finite number ≥ 0 (``int`` or ``float``; not a bool or a string), as a float.

    Raises:
        ServomexValidationError: ``inter_frame_idle must be a finite number ≥ 0, not -1``.
    """
    if not _finite_real(value) or not value >= 0:
        raise _fail(f"{name} must be a finite number ≥ 0, not {value!r}", context)
    return float(value)


def check_count(name: str, value: object, *, context: ErrorContext | None = None) -> int:
    """A whole number ≥ 0 (not a bool, float or string), such as a retry count.

    Raises:
        ServomexValidationError: ``retries must be a whole number ≥ 0, not -1``.
    """
    if not _whole(value) or value < 0:
        raise _fail(f"{name} must be a whole number ≥ 0, not {value!r}", context)
    return int(value)


def _whole(value: object) -> TypeGuard[int]:
    """An integer (``int`` or e.g. ``numpy.int64``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_real(value: object) -> TypeGuard[float]:
    """A finite real number (``int``, ``float``, numpy scalars), not a bool."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
