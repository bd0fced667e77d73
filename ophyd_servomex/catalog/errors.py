"""Errors of the catalog layer, all :class:`~ophyd_servomex.codec.errors.ServomexError` subclasses.

They carry the catalog location (a directory or a server URI) and, where there is one, the
key that was looked up, so a message alone says which catalog and which run were meant.
Messages and locations pass through :func:`~ophyd_servomex.catalog.redact.redact`: a URL's
userinfo, API keys and passwords never reach a message.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..codec.errors import ErrorContext, ServomexError
from .redact import redact

__all__ = [
    "AmbiguousRunError",
    "CatalogAccessError",
    "CatalogError",
    "CatalogNotFoundError",
    "CatalogRecoveryError",
    "CatalogWriteError",
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
        message = redact(message)
        super().__init__(message, context=context)
        self.location = redact(location) if location is not None else None

    def __str__(self) -> str:
        text = super().__str__()
        return redact(f"{text} [catalog: {self.location}]" if self.location else text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class CatalogAccessError(CatalogError):
    """The catalog refused the client (no or a wrong API key) or could not be reached."""


class CatalogNotFoundError(CatalogError, LookupError):
    """A read-only command named a catalog that does not exist (nothing was created)."""


class CatalogWriteError(CatalogError):
    """Documents cannot be stored: the catalog is not writable, or no journal location can
    take a document (the run then fails instead of silently losing it)."""


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


class AmbiguousRunError(CatalogError, LookupError):
    """Several runs match one key (a scan id that older catalogs gave twice); ``.uids`` lists
    the candidates, oldest first."""

    def __init__(
        self,
        message: str,
        *,
        key: object,
        uids: Sequence[str],
        location: str | None = None,
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(message, location=location, context=context)
        self.key = key
        self.uids = list(uids)
