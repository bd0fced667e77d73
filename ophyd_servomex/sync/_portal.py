"""The blocking facade's plumbing: the refusal of blocking calls from a thread that runs an
event loop (:func:`_refuse_in_loop`). The loop thread itself is
:class:`ophyd_servomex._loop_thread.LoopThread`, shared with the simulator thread: a
facade enters its analyser or manager there (:meth:`LoopThread.enter`) and closes by
stopping the thread, which leaves it first (its docstring says why a forgotten facade does
not hang interpreter exit).
"""

from __future__ import annotations

import asyncio

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
