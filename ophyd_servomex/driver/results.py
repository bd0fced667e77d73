"""What a call over several analysers gives back: a result per device, or their errors together.

:class:`ErrorPolicy` picks how :meth:`ServomexManager.execute_each` surfaces failures:
``RAISE`` waits for every analyser, then raises :class:`DeviceErrors` (an
``ExceptionGroup`` that also keeps every :class:`DeviceResult`); ``RETURN`` gives one
:class:`DeviceResult` per device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Self, cast

__all__ = ["DeviceErrors", "DeviceResult", "ErrorPolicy", "raise_failures"]


class ErrorPolicy(Enum):
    """How the manager surfaces per-device failures of a call over several analysers."""

    RAISE = "raise"
    """Wait for every analyser, then raise :class:`DeviceErrors` if any failed."""
    RETURN = "return"
    """Return one :class:`DeviceResult` per analyser, good or bad."""


@dataclass(frozen=True, slots=True)
class DeviceResult[T]:
    """What one analyser's part of a manager call gave: a value, or the error instead."""

    name: str
    value: T | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the call succeeded for this analyser."""
        return self.error is None

    def unwrap(self) -> T:
        """The value, or raise the error."""
        if self.error is not None:
            raise self.error
        return cast("T", self.value)


class DeviceErrors(ExceptionGroup[Exception]):
    """Some analysers failed (``ErrorPolicy.RAISE``); raised after all of them finished.

    Each sub-exception carries the device name in its notes; :attr:`results` holds every
    analyser's :class:`DeviceResult`, so the good frames are not lost with the bad ones.
    """

    results: dict[str, DeviceResult[Any]]

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[Exception],
        results: dict[str, DeviceResult[Any]] | None = None,
    ) -> Self:
        self = super().__new__(cls, message, exceptions)
        self.results = dict(results or {})
        return self

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        results: dict[str, DeviceResult[Any]] | None = None,
    ) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> DeviceErrors:  # type: ignore[override]
        """A group with other exceptions but the same message and results (``split``)."""
        return DeviceErrors(self.message, excs, self.results)

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the analysers that failed."""
        return tuple(name for name, result in self.results.items() if not result.ok)


def raise_failures(what: str, results: dict[str, DeviceResult[Any]]) -> None:
    """Raise :class:`DeviceErrors` holding every failure in ``results``, if there is one."""
    errors = [r.error for r in results.values() if r.error is not None]
    if errors:
        failed = ", ".join(name for name, r in results.items() if not r.ok)
        raise DeviceErrors(
            f"{what} failed for {len(errors)} of {len(results)} analysers ({failed})",
            errors,
            results,
        )
