"""Finding one channel's child by id: shared by the direct and the remote (``pva://``)
analyser, so both accept ``"I1"``, ``"i1"`` or ``ChannelId.I1`` and refuse an unknown
channel with the same message."""

from __future__ import annotations

from collections.abc import Mapping

from ..codec.errors import ErrorContext, ServomexConfigurationError
from ..codec.models import ChannelId

__all__ = ["lookup_channel"]


def lookup_channel[T](
    channels: Mapping[ChannelId, T],
    channel: ChannelId | str,
    *,
    owner: str,
    context: ErrorContext,
) -> T:
    """The child of ``channel`` in ``channels``; an unknown one is a
    :class:`ServomexConfigurationError` naming the channels there are (``owner`` is the
    device's name, or ``""``)."""
    cid = ChannelId.parse(channel)
    try:
        return channels[cid]
    except KeyError:
        raise ServomexConfigurationError(
            f"{owner or 'analyser'} has no channel {cid.value} "
            f"(it has {', '.join(c.value for c in channels) or 'none; connect first'})",
            context=context,
        ) from None
