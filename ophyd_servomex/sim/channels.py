"""Configuration of the simulated analyser's channel slots, and the bench unit's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from ..codec.bench import BENCH_UNIT
from ..codec.errors import ServomexValidationError
from ..codec.models import ChannelId, ChannelKind

__all__ = ["SimAlarm", "SimChannel", "bench_channels"]


@dataclass(frozen=True, slots=True)
class SimAlarm:
    """One alarm threshold: active while the value is above (``high``) or below it."""

    threshold: float
    high: bool = True

    def active(self, value: float) -> bool:
        """True when ``value`` is beyond the threshold."""
        return value > self.threshold if self.high else value < self.threshold


_NO_ALARMS: tuple[SimAlarm | None, SimAlarm | None, SimAlarm | None, SimAlarm | None] = (
    None,
    None,
    None,
    None,
)


@dataclass(frozen=True, slots=True)
class SimChannel:
    """One configured channel slot of the simulated analyser.

    ``name`` is the display name (``"CO₂"`` with the display glyph; ``None`` for an
    unlabelled slot such as the bench's E1/E2). ``unit`` is the unit text (``"%"``,
    ``"vpm"``, ``"mA"``). The value wanders around ``setpoint``: Gaussian ``noise`` (one
    standard deviation, fresh at every reading) plus a slow random ``drift`` bounded to
    ± ``drift`` with correlation time ``drift_time`` (simulated seconds); ``noise=0`` and
    ``drift=0`` give exactly ``setpoint``. ``decimals`` rounds the true value to the
    analyser's resolution (``None`` keeps full precision; continuous mode shows 3 decimals,
    1 for mA, whatever this is). ``alarms`` holds alarm 1–4 thresholds. ``parent`` is the
    transducer a derived (D) channel copies its fault/maintenance/calibration/warm-up
    flags from.
    """

    channel: ChannelId
    name: str | None
    unit: str
    setpoint: float = 0.0
    noise: float = 0.0
    drift: float = 0.0
    drift_time: float = 600.0
    decimals: int | None = None
    alarms: tuple[SimAlarm | None, SimAlarm | None, SimAlarm | None, SimAlarm | None] = _NO_ALARMS
    parent: ChannelId | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel", ChannelId.parse(self.channel))
        if self.noise < 0 or self.drift < 0 or self.drift_time <= 0:
            raise ServomexValidationError(
                f"{self.channel.value}: noise and drift must be ≥ 0 and drift_time > 0"
            )
        if len(self.alarms) != 4:
            raise ServomexValidationError(f"{self.channel.value}: alarms needs 4 entries")
        if self.parent is not None:
            parent = ChannelId.parse(self.parent)
            if self.channel.kind is not ChannelKind.DERIVED or (
                parent.kind is not ChannelKind.TRANSDUCER
            ):
                raise ServomexValidationError(
                    f"{self.channel.value}: only a derived channel has a parent transducer"
                )
            object.__setattr__(self, "parent", parent)


_BENCH_WANDER: dict[ChannelId, tuple[float, float]] = {
    ChannelId.I1: (0.0008, 0.002),
    ChannelId.I2: (0.0003, 0.0005),
    ChannelId.I3: (0.0008, 0.0015),
}
"""Noise and drift (one standard deviation, bound) of the bench's gas channels, in %."""


def bench_channels(*, noisy: bool = True) -> tuple[SimChannel, ...]:
    """The bench SERVOPRO 4100D (docs/protocol.md §2.2): I1 Oxygen, I2 CO, I3 CO₂, E1, E2.

    Channel ids, names, units and set-points are the bench unit's
    (:mod:`ophyd_servomex.codec.bench`, which the devices' mock mode shares): I1 ``Oxygen``
    ≈ 20.378 %, I2 ``CO`` ≈ 0.084 %, I3 ``CO₂`` ≈ 0.250 % (Modbus name bytes
    ``43 4F 82 20 20 20``; continuous mode shows ``CO2``), E1 and E2 unlabelled at 0.0 mA.
    I4 is not configured: over Modbus it reads 0.0 with a blank name and continuous frames
    leave it out. With ``noisy=False`` every value sits exactly on its set-point.
    """
    scale = 1.0 if noisy else 0.0
    channels: list[SimChannel] = []
    for bench in BENCH_UNIT:
        noise, drift = _BENCH_WANDER.get(bench.channel, (0.0, 0.0))
        channels.append(
            SimChannel(
                bench.channel,
                bench.info.name,
                bench.info.unit_text,
                bench.idle,
                noise=noise * scale,
                drift=drift * scale,
            )
        )
    return tuple(channels)
