"""The ``confirm`` values that must never start or stop a calibration.

Only ``confirm is True`` writes to the analyser; every value here — truthy strings,
numbers, containers, numpy scalars, ``None`` and the falsy ones — must raise
:class:`~ophyd_servomex.codec.errors.ServomexConfirmationRequiredError` before a byte is
sent. The driver, the blocking facade and the device tests refuse all of them, so a value
added here is checked in every layer. ``tests`` is on pytest's ``pythonpath``
(pyproject.toml), so any test directory imports it as ``confirm_values``.
"""

from __future__ import annotations

from typing import Any

import numpy

NOT_TRUE: tuple[Any, ...] = (
    "true",
    "True",
    "false",
    "yes",
    "",
    1,
    0.5,
    1.0,
    [True],
    (True,),
    {"confirm": True},
    numpy.bool_(True),
    numpy.int64(1),
    None,
    False,
    0,
)
"""Everything that is not exactly ``True`` and must be refused as a confirmation."""

NOT_TRUE_IDS: tuple[str, ...] = tuple(f"{type(v).__name__}-{v!r}" for v in NOT_TRUE)
"""A readable pytest id per value of :data:`NOT_TRUE` (``str-'yes'``, ``bool_-True`` …)."""
