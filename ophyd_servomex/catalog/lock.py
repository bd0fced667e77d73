"""An exclusive ``flock`` on a file beside an embedded catalog, shared by every process.

It is held while a catalog is created (so two processes never both create one) and from the
moment a scan id is chosen until the run's start document is written (so two processes never
hand out the same scan id). The lock dies with its process, so a killed holder never leaves
it stuck.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - not on the Linux CI
    fcntl = None  # type: ignore[assignment]

from .errors import CatalogError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "FileLock"]

DEFAULT_LOCK_TIMEOUT = 60.0
"""Seconds to wait for another process's lock before giving up with a CatalogError."""


class FileLock:
    """A blocking, non-reentrant ``flock`` on ``path`` (created, mode 0600, when missing).

    Use as a context manager, or :meth:`acquire` / :meth:`release` when the lock spans
    callbacks (scan id chosen → start document written).
    """

    def __init__(self, path: Path, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Wait (up to ``timeout`` s) for the lock; a CatalogError when it does not come."""
        if self._fd is not None:
            return
        try:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only filesystem: an existing lock file still locks
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise CatalogError(
                f"cannot open the catalog lock {self.path}: {error}", location=str(self.path.parent)
            ) from error
        if fcntl is None:  # pragma: no cover
            self._fd = fd
            return
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise CatalogError(
                        f"another process has held the catalog lock {self.path} for more than "
                        f"{self.timeout:g} s",
                        location=str(self.path.parent),
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
            return

    def release(self) -> None:
        """Release the lock (nothing happens when it is not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
