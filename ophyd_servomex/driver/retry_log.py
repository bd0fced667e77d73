"""anymodbus's per-attempt retry messages, kept out of the console unless they matter.

anymodbus logs every retried attempt at WARNING ("Transient error on attempt 1/3 …"). A
retry that then succeeds is routine on a real RS485 line, so :class:`RetryLogFilter` turns
those records into DEBUG ones, and logs one WARNING summary of its own only when retries
become frequent (``threshold`` of them within ``window`` seconds).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RetryLogFilter", "install_retry_log_filter"]

_ANYMODBUS_LOGGER = "anymodbus.bus"
_LOGGER = logging.getLogger("ophyd_servomex.driver.modbus")
_RETRY_PREFIX = "Transient error on attempt"


class RetryLogFilter(logging.Filter):
    """Demotes anymodbus's retry records to DEBUG; warns once per window when they pile up."""

    def __init__(
        self,
        *,
        threshold: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.window = window
        self._clock = clock
        self._recent: deque[float] = deque()
        self._warned_at = -float("inf")
        self.retries = 0
        """Retry records seen since the filter was installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Let every record through; retry records leave as DEBUG."""
        if not str(record.msg).startswith(_RETRY_PREFIX):
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        self.retries += 1
        now = self._clock()
        recent = self._recent
        recent.append(now)
        while recent and recent[0] < now - self.window:
            recent.popleft()
        if len(recent) >= self.threshold and now - self._warned_at >= self.window:
            self._warned_at = now
            _LOGGER.warning(
                "Modbus retries are frequent: %d in the last %.0f s (latest: %s); check the "
                "wiring, termination, baud rate and that only one master polls the line",
                len(recent),
                self.window,
                record.getMessage(),
            )
        # the logger's own level was checked before the record was made (at WARNING):
        # pass it on only where DEBUG is wanted
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_INSTALLED: RetryLogFilter | None = None


def install_retry_log_filter() -> RetryLogFilter:
    """Install the filter on anymodbus's logger once (idempotent) and return it."""
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = RetryLogFilter()
        logging.getLogger(_ANYMODBUS_LOGGER).addFilter(_INSTALLED)
    return _INSTALLED
