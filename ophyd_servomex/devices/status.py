"""A channel's ``status`` field: every flag in one string, and filtering runs by it.

Each channel reports its status flags as one string field, ``<name>-<id>-status``: the
active flags separated by single spaces, in this fixed order, or ``ok`` when none is on:

=========  ==================  ===========================================
token      child signal        meaning
=========  ==================  ===========================================
``fault``  ``fault``           the channel is faulty
``maint``  ``maintenance``     maintenance required
``cal``    ``calibrating``     an autocalibration flows gas on the channel
``warm-up`` ``warming_up``     the transducer is warming up
``A1``…    ``alarm1`` …        alarm 1 … 4 is active
=========  ==================  ===========================================

so ``"fault A1"`` is a faulty channel with alarm 1, ``"cal"`` one being calibrated. This
is the text ``ophyd-servomex ioc`` serves at ``P:C:Status``, so a direct device and one
read through the IOC record the same thing. ``ok`` here means "no flag at all"; the
individual flags stay readable as child signals of the channel, which ``read()`` does not
report.

:func:`status_mask` and :func:`rows_with_flag` filter a run's table (a pandas
``DataFrame``, as ``run.primary.read()`` gives it, or a list of event ``data`` dicts) by
one flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..codec.errors import ServomexValidationError
from ..codec.status_text import STATUS_FLAGS, STATUS_OK, status_flags, status_text

_TOKENS = {token: name for name, token in STATUS_FLAGS.items()}

__all__ = [
    "STATUS_FLAGS",
    "STATUS_OK",
    "has_flag",
    "rows_with_flag",
    "status_flags",
    "status_mask",
    "status_text",
]


def _flag_name(flag: str) -> str:
    if flag in STATUS_FLAGS:
        return flag
    if flag in _TOKENS:
        return _TOKENS[flag]
    raise ServomexValidationError(
        f"unknown status flag {flag!r} (use one of {', '.join(STATUS_FLAGS)})"
    )


def has_flag(text: str, flag: str) -> bool:
    """True when the status string has ``flag`` on (a name such as ``"warming_up"`` or its
    token, ``"warm-up"``)."""
    return _flag_name(flag) in status_flags(text)


def _status_columns(columns: Iterable[Any], column: str | None) -> list[str]:
    if column is not None:
        return [column]
    found = [str(c) for c in columns if str(c).endswith("-status")]
    if not found:
        raise ServomexValidationError("no '<channel>-status' column in the table")
    return found


def status_mask(
    table: Any | Sequence[Mapping[str, Any]], flag: str, column: str | None = None
) -> list[bool]:
    """Per row, whether ``flag`` is on in ``column`` (default: in any ``…-status`` column).

    ``table`` is a pandas ``DataFrame`` (a run's ``primary.read()``) or a sequence of
    event ``data`` dicts; the mask indexes either (``df[status_mask(df, "fault")]``).
    """
    name = _flag_name(flag)
    if isinstance(table, Sequence):
        rows: Sequence[Mapping[str, Any]] = table
        keys: list[str] = sorted({k for row in rows for k in row})
        columns = _status_columns(keys, column)
        return [any(name in status_flags(row.get(c, "")) for c in columns) for row in rows]
    columns = _status_columns(table.columns, column)
    per_column = [[name in status_flags(v) for v in table[c]] for c in columns]
    return [any(flags) for flags in zip(*per_column, strict=True)]


def rows_with_flag[T](table: T, flag: str, column: str | None = None) -> T:
    """The rows of ``table`` whose status has ``flag`` on (see :func:`status_mask`)."""
    mask = status_mask(table, flag, column)
    if isinstance(table, Sequence):
        kept = [row for row, keep in zip(table, mask, strict=True) if keep]
        return type(table)(kept) if isinstance(table, tuple) else kept  # type: ignore[return-value]
    return table[mask]  # type: ignore[index, no-any-return]
