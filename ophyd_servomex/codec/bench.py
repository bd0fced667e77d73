"""The bench unit's channel set, once: ids, names, units and readings at rest.

The project's one real analyser, a SERVOPRO 4100D (docs/protocol.md §2.2), is what the
simulator (:func:`ophyd_servomex.sim.bench_channels`) and the devices' mock mode
(:data:`ophyd_servomex.devices.BENCH_CHANNELS`, :data:`~ophyd_servomex.devices.BENCH_IDLE_VALUES`)
both reproduce; they take its facts from here. I1 "Oxygen", I2 "CO" and I3 "CO₂" in %
(the display's subscript two; continuous mode sends ``CO2``), E1 and E2 unlabelled in mA
reading 0.0; I4 and D1–D4 are not configured. The values at rest are the captured ones
(O₂ 20.378 %, CO 0.084 %, CO₂ 0.250 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .models import ChannelId, ChannelInfo, Unit

__all__ = ["BENCH_CHANNELS", "BENCH_IDLE_VALUES", "BENCH_UNIT", "BenchChannel"]


@dataclass(frozen=True, slots=True)
class BenchChannel:
    """One configured channel of the bench unit: what it reports and its value at rest."""

    info: ChannelInfo
    idle: float

    @property
    def channel(self) -> ChannelId:
        """The channel's id (``I1`` …)."""
        return self.info.channel


BENCH_UNIT: tuple[BenchChannel, ...] = (
    BenchChannel(ChannelInfo(ChannelId.I1, "Oxygen", Unit.PERCENT, "%"), 20.378),
    BenchChannel(ChannelInfo(ChannelId.I2, "CO", Unit.PERCENT, "%"), 0.084),
    BenchChannel(ChannelInfo(ChannelId.I3, "CO₂", Unit.PERCENT, "%"), 0.250),
    BenchChannel(ChannelInfo(ChannelId.E1, None, Unit.MILLIAMP, "mA"), 0.0),
    BenchChannel(ChannelInfo(ChannelId.E2, None, Unit.MILLIAMP, "mA"), 0.0),
)
"""The bench unit's configured channels, in the analyser's order."""

BENCH_CHANNELS: tuple[ChannelInfo, ...] = tuple(c.info for c in BENCH_UNIT)
"""What ``identify()`` learns from the bench unit: each channel's id, name and unit."""

BENCH_IDLE_VALUES: Mapping[ChannelId, float] = MappingProxyType(
    {c.channel: c.idle for c in BENCH_UNIT}
)
"""The bench unit's readings at rest, by channel."""
