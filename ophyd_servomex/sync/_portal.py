"""The blocking facade's plumbing: the refusal of blocking calls from a thread that runs an
event loop (:func:`_refuse_in_loop`), and the closer that leaves an async context manager
and stops its loop thread (:func:`_closer`). The loop thread itself is
:class:`ophyd_servomex._loop_thread.LoopThread`, shared with the simulator thread (its
docstring says why a forgotten facade does not hang interpreter exit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .._loop_thread import LoopThread
from ..codec.errors import ServomexConfigurationError


def _refuse_in_loop(what: str) -> None:
    """Refuse a blocking call from a thread whose event loop it would freeze."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ServomexConfigurationError(
        f"{what} blocks, and this thread runs an event loop that it would freeze: use the "
        "async API here ('async with open_device(...)' or 'async with ServomexManager()')"
    )


def _closer(cm: AbstractContextManager[Any], thread: LoopThread) -> Callable[[], None]:
    def close() -> None:
        try:
            cm.__exit__(None, None, None)
        finally:
            thread.stop()

    return close
