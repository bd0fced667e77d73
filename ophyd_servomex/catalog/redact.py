"""One place that removes secrets from text: every catalog message, repr and log line uses it.

:func:`redact` hides

- the userinfo of a URL (``http://user:password@host`` → ``http://***@host``),
- the value of ``api_key=``, ``apikey=``, ``token=``, ``access_token=``, ``password=``,
  ``passwd=``, ``secret=`` (query strings, ``key=value`` text) and ``--api-key KEY``,
- ``Authorization: Apikey …`` / ``Bearer …`` header values,
- any value registered with :func:`register_secret` (the API key given to ``open_catalog``)
  and the values of ``TILED_API_KEY`` and ``TILED_SINGLE_USER_API_KEY``, wherever they appear.

:class:`RedactingFilter` applies it to log records (message, arguments and traceback text).
"""

from __future__ import annotations

import logging
import os
import re
import threading

__all__ = ["MASK", "RedactingFilter", "redact", "register_secret"]

MASK = "***"
"""What a secret is replaced with."""

SECRET_ENVIRONMENT = ("TILED_API_KEY", "TILED_SINGLE_USER_API_KEY")
"""Environment variables whose values are secrets wherever they show up."""

_MIN_SECRET = 6  # shorter values would mask ordinary words
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"]+)@")
_KEY_VALUE = re.compile(
    r"(?P<name>(?<![A-Za-z0-9])(?:api[_-]?key|access[_-]?token|token|password|passwd|secret))"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^&\s#'\",;)\]}]+)",
    re.IGNORECASE,
)
_OPTION = re.compile(r"(?P<name>--api-key)(?P<sep>[=\s]+)(?P<value>\S+)")
_AUTHORIZATION = re.compile(r"(?P<name>\b(?:Apikey|Bearer))(?P<sep>\s+)(?P<value>[^\s'\",]+)")

_registered: set[str] = set()
_registered_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever :func:`redact` meets it from now on (short values are ignored)."""
    if value and len(value) >= _MIN_SECRET:
        with _registered_lock:
            _registered.add(value)


def _known_secrets() -> list[str]:
    with _registered_lock:
        known = set(_registered)
    for name in SECRET_ENVIRONMENT:
        value = os.environ.get(name)
        if value and len(value) >= _MIN_SECRET:
            known.add(value)
    return sorted(known, key=len, reverse=True)


def redact(text: object) -> str:
    """``str(text)`` with URL userinfo, API keys, tokens and passwords replaced by ``***``."""
    result = str(text)
    for secret in _known_secrets():
        result = result.replace(secret, MASK)
    result = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", result)
    for pattern in (_KEY_VALUE, _OPTION, _AUTHORIZATION):
        result = pattern.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", result)
    return result


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record through :func:`redact`.

    The message is formatted with its arguments first and the traceback text is rendered and
    redacted here, so a handler's formatter finds nothing left to leak.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keeps it."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redacting_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with a :class:`RedactingFilter` attached (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
