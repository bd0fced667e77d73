"""How the transport layer reports a failed link.

Two errors are added to the codec's hierarchy here, because they must also be anyio errors:
generic anyio code and anymodbus's ``Bus`` recognise a broken or closed stream by its anyio
class (``BrokenResourceError`` → ``ConnectionLostError``, ``ClosedResourceError`` →
``BusClosedError``). Both are :class:`~ophyd_servomex.codec.errors.ServomexConnectionError`
subclasses carrying an :class:`~ophyd_servomex.codec.errors.ErrorContext` that names the port.

:func:`translating_io_errors` turns whatever a stream raised (anyio's ``EndOfStream``,
``BrokenResourceError``, ``ClosedResourceError``, anyserial's errors, a raw ``OSError``) into
one of them, so no raw ``OSError`` reaches a caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

try:  # termios.error (tcflush/tcgetattr on a vanished device) is no OSError
    from termios import error as _TermiosError

    OS_ERRORS: tuple[type[Exception], ...] = (OSError, _TermiosError)
except ImportError:  # pragma: no cover - Windows
    OS_ERRORS = (OSError,)

from ..codec.errors import ErrorContext, ServomexConnectionError, ServomexError

__all__ = [
    "OS_ERRORS",
    "LinkLostError",
    "TransportClosedError",
    "connection_failed",
    "link_lost",
    "translating_io_errors",
    "transport_closed",
]


class LinkLostError(ServomexConnectionError, anyio.BrokenResourceError):
    """The link broke during I/O: end of stream, a closed pty, a TCP reset (a pulled cable)."""


class TransportClosedError(ServomexConnectionError, anyio.ClosedResourceError):
    """This end of the transport was closed (by its owner) and can no longer be used."""


def connection_failed(
    port: str, reason: str, cause: BaseException | None = None
) -> ServomexConnectionError:
    """The error for a port that could not be opened; the message and context name the port."""
    detail = f": {_describe(cause)}" if cause is not None else ""
    return ServomexConnectionError(
        f"cannot open {port}: {reason}{detail}", context=ErrorContext(port=port)
    )


def link_lost(port: str, reason: str, cause: BaseException | None = None) -> LinkLostError:
    """The error for a link that broke during I/O on ``port``."""
    detail = f" ({_describe(cause)})" if cause is not None and _describe(cause) else ""
    return LinkLostError(f"link lost on {port}: {reason}{detail}", context=ErrorContext(port=port))


def transport_closed(port: str) -> TransportClosedError:
    """The error for using a transport after its own ``aclose()``."""
    return TransportClosedError(f"{port} is closed", context=ErrorContext(port=port))


@contextmanager
def translating_io_errors(port: str) -> Iterator[None]:
    """Re-raise stream failures inside the block as :class:`LinkLostError` / closed errors.

    ServomexErrors pass through unchanged; cancellation is not touched.
    """
    try:
        yield
    except ServomexError:
        raise
    except anyio.ClosedResourceError as exc:  # includes anyserial's SerialClosedError
        raise transport_closed(port) from exc
    except anyio.EndOfStream as exc:
        raise link_lost(port, "the other end closed the link") from exc
    except anyio.BrokenResourceError as exc:  # includes anyserial's SerialDisconnectedError
        raise link_lost(port, "the link broke", exc) from exc
    except OS_ERRORS as exc:
        raise link_lost(port, "I/O error", exc) from exc


def _describe(exc: BaseException) -> str:
    """A short human description of an exception (its strerror or message, else its type)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else exc.strerror
    if len(exc.args) == 2 and isinstance(exc.args[0], int):  # termios.error(errno, text)
        return f"[Errno {exc.args[0]}] {exc.args[1]}"
    text = str(exc)
    return text if text else type(exc).__name__
