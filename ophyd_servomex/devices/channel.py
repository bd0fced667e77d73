"""One analyser channel (I1…I4, D1…D4, E1, E2) as an ophyd-async readable."""

from __future__ import annotations

from typing import Any

from bluesky.protocols import Reading as BlueskyReading
from ophyd_async.core import StandardReadable, StandardReadableFormat

from ..codec.errors import ErrorContext
from ..codec.models import ChannelId, ChannelInfo, ChannelKind
from ..codec.status_text import flag_values
from .frames import DeviceFrames, FrameSnapshot
from .signals import (
    UNIT_PRECISION,
    FrameSignalR,
    find_reading,
    frame_signal,
    severity_of,
    units_of,
    value_of,
)
from .status import STATUS_FLAGS, STATUS_OK, status_text

__all__ = ["ServomexChannel", "is_hinted"]


class ServomexChannel(StandardReadable):
    """The signals of one channel, all read from the analyser's frames (:class:`DeviceFrames`).

    ``read()`` reports two fields, ``<name>-<id>-value`` and ``<name>-<id>-status``:

    - ``value`` (float, NaN when the analyser sent no number) carries the units and
      display precision in ``describe()`` and a severity (2 on fault, 1 on an alarm). It
      is hinted, except on an unlabelled external channel (E1/E2 with no name: an unused
      mA input), which is still read but not plotted or tabulated by default.
    - ``status`` (str) keeps every flag of the channel in one field: the active flags in
      the order ``fault maint cal warm-up A1 A2 A3 A4``, space-separated, or ``ok`` when
      none is on (see :mod:`ophyd_servomex.devices.status`; ``"fault A1"`` is a faulty
      channel with alarm 1). It is the text the IOC serves at ``P:C:Status``.

    The individual flags stay available as child signals that ``read()`` does not
    report: ``fault``, ``maintenance``, ``calibrating``, ``warming_up``, ``alarm1`` …
    ``alarm4`` and ``ok`` (no fault and no alarm); read, subscribe or ``bps.rd`` them.
    ``display_name`` and ``unit`` are configuration (``name`` is taken by the device's own
    name).

    Channels are built by the analyser's connector when it learns the channel set; a
    ``read()`` of a channel on its own is pinned to one frame, like the analyser's.
    """

    # The single flags: built in __init__ from the codec's STATUS_FLAGS (their names and
    # order); declared here only so that type checkers know them.
    fault: FrameSignalR[bool]
    maintenance: FrameSignalR[bool]
    calibrating: FrameSignalR[bool]
    warming_up: FrameSignalR[bool]
    alarm1: FrameSignalR[bool]
    alarm2: FrameSignalR[bool]
    alarm3: FrameSignalR[bool]
    alarm4: FrameSignalR[bool]

    def __init__(
        self,
        info: ChannelInfo,
        frames: DeviceFrames,
        *,
        source: str,
        context: ErrorContext | None = None,
        name: str = "",
    ) -> None:
        self.channel_id: ChannelId = info.channel
        self.info: ChannelInfo = info
        self._frames = frames
        cid = info.channel
        ctx = (context or ErrorContext()).merged(channel=cid.value)
        base = f"{source}#{cid.value.lower()}"

        def flag(index: int, flag_name: str) -> FrameSignalR[bool]:
            def extract(snapshot: FrameSnapshot) -> bool:
                reading = find_reading(snapshot, cid)
                return reading is not None and flag_values(reading.status)[index]

            return frame_signal(
                bool, frames, extract, source=f"{base}.{flag_name}", default=False, context=ctx
            )

        value_format = (
            StandardReadableFormat.HINTED_UNCACHED_SIGNAL
            if is_hinted(info)
            else StandardReadableFormat.UNCACHED_SIGNAL
        )
        with self.add_children_as_readables(value_format):
            self.value = frame_signal(
                float,
                frames,
                lambda s: value_of(find_reading(s, cid), s.frame.protocol),
                source=f"{base}.value",
                default=0.0,
                units=units_of(info.unit, info.unit_text),
                precision=UNIT_PRECISION.get(info.unit),
                severity=lambda s: severity_of(find_reading(s, cid)),
                context=ctx,
            )
        with self.add_children_as_readables(StandardReadableFormat.UNCACHED_SIGNAL):
            self.status = frame_signal(
                str,
                frames,
                lambda s: _status_of(s, cid),
                source=f"{base}.status",
                default=STATUS_OK,
                context=ctx,
            )
        # the single flags: children (readable, subscribable), not fields of read()
        # (named and ordered by the codec's STATUS_FLAGS: fault, maintenance … alarm4)
        for index, flag_name in enumerate(STATUS_FLAGS):
            setattr(self, flag_name, flag(index, flag_name))
        self.ok = frame_signal(
            bool,
            frames,
            lambda s: (r := find_reading(s, cid)) is not None and r.status.ok,
            source=f"{base}.ok",
            default=True,
            context=ctx,
        )
        fallback_name = info.name or ""
        fallback_unit = units_of(info.unit, info.unit_text)
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.display_name = frame_signal(
                str,
                frames,
                lambda s: _name_of(s, cid, fallback_name),
                source=f"{base}.name",
                default=fallback_name,
                context=ctx,
            )
            self.unit = frame_signal(
                str,
                frames,
                lambda s: _unit_of(s, cid, fallback_unit),
                source=f"{base}.unit",
                default=fallback_unit,
                context=ctx,
            )
        super().__init__(name=name)

    @property
    def read_signals(self) -> tuple[FrameSignalR[Any], ...]:
        """The signals ``read()`` reports, in order: ``value``, ``status``."""
        return (self.value, self.status)

    @property
    def flag_signals(self) -> tuple[FrameSignalR[bool], ...]:
        """The single flags, in the status string's order, then ``ok``."""
        flags: list[FrameSignalR[bool]] = [getattr(self, n) for n in STATUS_FLAGS]
        return (*flags, self.ok)

    async def read(self) -> dict[str, BlueskyReading[Any]]:
        """Every field of this channel from one frame (the triggered one, else the latest)."""
        with self._frames.pinned():
            return await super().read()

    async def read_configuration(self) -> dict[str, BlueskyReading[Any]]:
        """Display name and unit, from one frame."""
        with self._frames.pinned():
            return await super().read_configuration()


def is_hinted(info: ChannelInfo) -> bool:
    """Whether a channel's value is hinted: all but an unlabelled external channel (E1/E2
    with no name, an unused mA input)."""
    return bool(info.name) or info.channel.kind is not ChannelKind.EXTERNAL


def _status_of(snapshot: FrameSnapshot, channel: ChannelId) -> str:
    reading = find_reading(snapshot, channel)
    return STATUS_OK if reading is None else status_text(reading.status)


def _name_of(snapshot: FrameSnapshot, channel: ChannelId, fallback: str) -> str:
    reading = find_reading(snapshot, channel)
    if reading is None:
        return fallback
    return reading.name or ""


def _unit_of(snapshot: FrameSnapshot, channel: ChannelId, fallback: str) -> str:
    reading = find_reading(snapshot, channel)
    if reading is None:
        return fallback
    return units_of(reading.unit, reading.unit_text)
