"""Errors of the catalog layer, all :class:`~ophyd_servomex.codec.errors.ServomexError` subclasses.

They carry the catalog location (a directory or a server URI) and, where there is one, the
key that was looked up, so a message alone says which catalog and which run were meant.
"""

from __future__ import annotations

from ..codec.errors import ErrorContext, ServomexError

__all__ = [
    "CatalogAccessError",
    "CatalogError",
    "CatalogRecoveryError",
    "RunNotFoundError",
]


class CatalogError(ServomexError):
    """A catalog could not be opened, read or written."""

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(message, context=context)
        self.location = location

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} [catalog: {self.location}]" if self.location else text


class CatalogAccessError(CatalogError):
    """The catalog refused the client (no or a wrong API key) or could not be reached."""


class RunNotFoundError(CatalogError, LookupError):
    """No run matches the uid, partial uid, scan id or index that was asked for."""

    def __init__(
        self,
        message: str,
        *,
        key: object,
        location: str | None = None,
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(message, location=location, context=context)
        self.key = key


class CatalogRecoveryError(CatalogError):
    """A journal or backup file could not be replayed into the catalog."""
