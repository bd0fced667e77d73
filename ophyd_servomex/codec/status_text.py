"""A channel's status flags as one string: ``"fault A1"``, ``"cal"``, or ``"ok"``.

The active flags separated by single spaces, in a fixed order — ``fault``, ``maint``,
``cal``, ``warm-up``, ``A1`` … ``A4`` — or ``ok`` when none is on. The devices record it as
each channel's ``status`` field, the IOC serves it at ``P:C:Status``, the command line
prints it: one text everywhere, written and read here.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ServomexValidationError
from .models import ChannelStatus

__all__ = [
    "STATUS_FLAGS",
    "STATUS_OK",
    "flag_values",
    "status_flags",
    "status_from_flags",
    "status_text",
]


STATUS_FLAGS: dict[str, str] = {
    "fault": "fault",
    "maintenance": "maint",
    "calibrating": "cal",
    "warming_up": "warm-up",
    "alarm1": "A1",
    "alarm2": "A2",
    "alarm3": "A3",
    "alarm4": "A4",
}
"""Flag name (the channel's child signal) → its token in the status string, in order."""

STATUS_OK = "ok"
"""The status string of a channel with no flag on."""

_TOKENS = {token: name for name, token in STATUS_FLAGS.items()}


def flag_values(status: ChannelStatus) -> tuple[bool, ...]:
    """One channel's flags as booleans, in :data:`STATUS_FLAGS` order (``fault`` …
    ``alarm4``): the one place a :class:`ChannelStatus` is read in that order."""
    return (
        status.fault,
        status.maintenance,
        status.calibrating,
        status.warming_up,
        *status.alarms,
    )


def status_from_flags(values: Sequence[bool]) -> ChannelStatus:
    """The :class:`ChannelStatus` of flags given in :data:`STATUS_FLAGS` order, the inverse
    of :func:`flag_values`; anything but exactly one value per flag raises
    :class:`ServomexValidationError`."""
    if len(values) != len(STATUS_FLAGS):
        raise ServomexValidationError(
            f"a channel has {len(STATUS_FLAGS)} status flags ({', '.join(STATUS_FLAGS)}), "
            f"not {len(values)}"
        )
    fault, maintenance, calibrating, warming_up, a1, a2, a3, a4 = (bool(v) for v in values)
    return ChannelStatus(fault, maintenance, calibrating, warming_up, (a1, a2, a3, a4))


def status_text(status: ChannelStatus) -> str:
    """The status string of one channel's flags (``"fault A1"``, or ``"ok"``)."""
    on = flag_values(status)
    tokens = [token for token, flag in zip(STATUS_FLAGS.values(), on, strict=True) if flag]
    return " ".join(tokens) if tokens else STATUS_OK


def status_flags(text: str) -> frozenset[str]:
    """The flag names (``fault``, ``alarm1`` …) a status string has on.

    ``"ok"`` (and an empty string, a channel that never reported) has none; an unknown
    token raises :class:`ServomexValidationError`. A missing value (``None``, a table's
    NaN) has none either.
    """
    if not isinstance(text, str):
        return frozenset()
    names: set[str] = set()
    for token in text.split():
        if token == STATUS_OK:
            continue
        try:
            names.add(_TOKENS[token])
        except KeyError:
            raise ServomexValidationError(
                f"unknown status token {token!r} in {text!r} "
                f"(known: {', '.join(STATUS_FLAGS.values())})"
            ) from None
    return frozenset(names)
