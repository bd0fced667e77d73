"""What the simulator's servers need to know about the byte links they serve."""

from __future__ import annotations

import anyio

from ..codec.errors import ServomexConnectionError

__all__ = ["DISCONNECT_LINGER", "LINK_CLOSED", "LINK_LOST", "Disconnected"]

LINK_LOST: tuple[type[BaseException], ...] = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
)
"""A client went away (its end closed, a TCP reset, a pty hang-up): wait for the next one."""

LINK_CLOSED: tuple[type[BaseException], ...] = (
    anyio.ClosedResourceError,
    ServomexConnectionError,
)
"""This end of the link is closed (checked after :data:`LINK_LOST`): stop serving."""


class Disconnected(Exception):
    """Raised inside a server when a ``DISCONNECT`` fault closed the link."""


DISCONNECT_LINGER = 0.05
"""Seconds a ``DISCONNECT`` fault waits after its last bytes before closing the link.

Bytes already on the wire reach the far end when a cable is pulled; a pty master that
closes at once discards what the slave has not read yet, so the simulator lingers briefly.
"""
