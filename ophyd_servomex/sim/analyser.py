"""The simulated SERVOPRO 4100: channel values, status flags, coils and autocalibration.

:class:`SimAnalyser` is the pure state model: no I/O, time read from an injectable clock.
What it shows at an instant is :meth:`SimAnalyser.truth`, one :class:`Frame`; the
continuous broadcaster sends that frame as text and the Modbus slave serves
``encode_banks(truth)``, so both modes report the same analyser.

All public methods take a lock, so a test thread may read and change an analyser that a
simulator thread is serving.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from ..codec.checks import check_address, check_group, check_positive
from ..codec.errors import ServomexValidationError
from ..codec.models import (
    AnalyserStatus,
    ChannelId,
    ChannelKind,
    ChannelStatus,
    Frame,
    Reading,
    Unit,
)
from ..codec.registers import CAL_START_COIL, CAL_STOP_COIL, RegisterBanks, encode_banks
from .autocal import DEFAULT_FLUSH_TIME, Autocal, CalLogEntry
from .channels import SimChannel, bench_channels

__all__ = ["COIL_COUNT", "SimAnalyser"]

COIL_COUNT = 9
"""Coils 0–8: 0–3 start autocal groups 1–4, 4–7 are undocumented (kept, no effect), 8 stops all."""

_START_COIL_GROUP = {coil: group for group, coil in CAL_START_COIL.items()}


class _ChannelState:
    """The mutable part of one channel: set-point, drift offset and flags."""

    __slots__ = ("config", "drift", "fault", "maintenance", "setpoint", "warming_up")

    def __init__(self, config: SimChannel) -> None:
        self.config = config
        self.setpoint = config.setpoint
        self.drift = 0.0
        self.fault = False
        self.maintenance = False
        self.warming_up = False


class SimAnalyser:
    """A virtual SERVOPRO 4100 analyser.

    ``channels`` defaults to :func:`bench_channels`; slots not listed are unconfigured
    (over Modbus they read 0.0 with a blank name; continuous frames leave them out).
    ``address`` is the Modbus slave address (the bench unit's is 30). ``seed`` makes the
    noise and drift reproducible. ``time_scale`` speeds simulated time up: with 60, one
    real second is a simulated minute, so a 3 × 60 s calibration takes 3 s. ``clock`` is
    the real-time source (``time.monotonic``, the same clock anyio uses on asyncio).

    ``flush_time`` is how long each calibration gas flows (simulated seconds). ``cal_groups``
    maps autocal groups 1–4 to the channels they calibrate; by default every configured
    transducer channel is in group 1 and groups 2–4 are empty (they still run their gas
    sequence when started). ``analyser_clock`` gives the analyser's own date and time for
    the continuous header (default: the host's local time, whole seconds).
    """

    def __init__(
        self,
        channels: Iterable[SimChannel] | None = None,
        *,
        address: int = 30,
        seed: int | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        flush_time: float = DEFAULT_FLUSH_TIME,
        cal_groups: Mapping[int, Iterable[ChannelId | str]] | None = None,
        analyser_clock: Callable[[], datetime] | None = None,
    ) -> None:
        address = check_address(address)
        time_scale = check_positive("time_scale", time_scale)
        configs = tuple(bench_channels() if channels is None else channels)
        by_id: dict[ChannelId, SimChannel] = {}
        for config in configs:
            if config.channel in by_id:
                raise ServomexValidationError(f"channel {config.channel.value} configured twice")
            by_id[config.channel] = config
        if not by_id:
            raise ServomexValidationError("a simulated analyser needs at least one channel")
        for config in configs:
            if config.parent is not None and config.parent not in by_id:
                raise ServomexValidationError(
                    f"{config.channel.value}'s parent {config.parent.value} is not configured"
                )
        self.address = address
        self.time_scale = float(time_scale)
        self._clock = clock
        self._analyser_clock = analyser_clock or _local_time
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        # wire order: slot order (I1…I4, D1…D4, E1, E2), as the bench unit sends them
        self._channels = {cid: _ChannelState(by_id[cid]) for cid in ChannelId if cid in by_id}
        self._groups = self._group_members(cal_groups)
        self._fault = False
        self._maintenance = False
        self._coils = [False] * COIL_COUNT
        self._autocal = Autocal(flush_time)
        self._start = clock()
        self._last_sim = 0.0
        self._cached: tuple[float, Frame] | None = None

    def _group_members(
        self, cal_groups: Mapping[int, Iterable[ChannelId | str]] | None
    ) -> dict[int, frozenset[ChannelId]]:
        if cal_groups is None:
            transducers = [c for c in self._channels if c.kind is ChannelKind.TRANSDUCER]
            return {1: frozenset(transducers), 2: frozenset(), 3: frozenset(), 4: frozenset()}
        groups: dict[int, frozenset[ChannelId]] = {g: frozenset() for g in (1, 2, 3, 4)}
        for key, members in cal_groups.items():
            group = check_group(key)
            ids = frozenset(ChannelId.parse(c) for c in members)
            unknown = sorted(c.value for c in ids - self._channels.keys())
            if unknown:
                raise ServomexValidationError(
                    f"group {group} lists unconfigured channels {', '.join(unknown)}"
                )
            groups[group] = ids
        return groups

    # --- time ----------------------------------------------------------------------------

    def sim_time(self, now: float | None = None) -> float:
        """Simulated seconds since the analyser started (real seconds × ``time_scale``)."""
        real = self._clock() if now is None else now
        return (real - self._start) * self.time_scale

    def _advance(self, now: float | None) -> float:
        """Move drift and autocal on to ``now``; returns the simulated time."""
        sim = max(self.sim_time(now), self._last_sim)
        dt = sim - self._last_sim
        if dt > 0:
            for state in self._channels.values():
                self._step_drift(state, dt)
        self._last_sim = sim
        self._autocal.advance(sim)
        return sim

    def _step_drift(self, state: _ChannelState, dt: float) -> None:
        """An Ornstein–Uhlenbeck wander of standard deviation drift/3, clamped to ±drift."""
        bound = state.config.drift
        if bound <= 0:
            return
        decay = math.exp(-dt / state.config.drift_time)
        sigma = bound / 3.0
        step = self._rng.gauss(0.0, sigma * math.sqrt(1.0 - decay * decay))
        state.drift = min(bound, max(-bound, state.drift * decay + step))

    # --- the truth -----------------------------------------------------------------------

    @property
    def channels(self) -> tuple[ChannelId, ...]:
        """The configured channels, in wire order."""
        return tuple(self._channels)

    def config(self, channel: ChannelId | str) -> SimChannel:
        """The configuration of one channel."""
        return self._state(channel).config

    def truth(self, now: float | None = None) -> Frame:
        """What the analyser shows at ``now`` (default: the clock's current time).

        The frame holds every configured channel in wire order, the analyser status with
        the four autocal groups, the analyser clock, ``address`` and ``timestamp`` (host
        ``time.time()``). Noise is drawn afresh for each new ``now``; asking twice for the
        same instant returns the same frame.
        """
        with self._lock:
            real = self._clock() if now is None else now
            if self._cached is not None and self._cached[0] == real:
                return self._cached[1]
            self._advance(real)
            frame = self._build_frame()
            self._cached = (real, frame)
            return frame

    def banks(self, now: float | None = None) -> RegisterBanks:
        """The Modbus input registers and discrete inputs at ``now`` (``encode_banks(truth)``)."""
        return encode_banks(self.truth(now))

    def _build_frame(self) -> Frame:
        calibrating = self._groups.get(self._autocal.running or 0, frozenset())
        values = {cid: self._value(state) for cid, state in self._channels.items()}
        flags: dict[ChannelId, tuple[bool, bool, bool, bool]] = {
            cid: (state.fault, state.maintenance, cid in calibrating, state.warming_up)
            for cid, state in self._channels.items()
        }
        readings = []
        for cid, state in self._channels.items():
            config = state.config
            fault, maintenance, cal, warming = flags[config.parent or cid]
            value = values[cid]
            alarms = tuple(a is not None and a.active(value) for a in config.alarms)
            status = ChannelStatus(
                fault=fault,
                maintenance=maintenance,
                calibrating=cal,
                warming_up=warming,
                alarms=(alarms[0], alarms[1], alarms[2], alarms[3]),
            )
            unit_text = config.unit.strip(" \x00")
            readings.append(
                Reading(
                    channel=cid,
                    value=value,
                    name=config.name,
                    unit=Unit.from_text(unit_text),
                    status=status,
                    unit_text=unit_text,
                )
            )
        analyser = AnalyserStatus(
            fault=self._fault,
            maintenance=self._maintenance,
            cal_groups=self._autocal.states(),
            clock=self._analyser_clock(),
        )
        return Frame(
            readings=tuple(readings),
            analyser=analyser,
            timestamp=time.time(),
            address=self.address,
        )

    def _value(self, state: _ChannelState) -> float:
        config = state.config
        value = state.setpoint + state.drift
        if config.noise > 0:
            value += self._rng.gauss(0.0, config.noise)
        if config.decimals is not None:
            value = round(value, config.decimals)
        return value

    # --- set-points and flags ------------------------------------------------------------

    def _state(self, channel: ChannelId | str) -> _ChannelState:
        cid = ChannelId.parse(channel)
        state = self._channels.get(cid)
        if state is None:
            raise ServomexValidationError(f"channel {cid.value} is not configured")
        return state

    def _changed(self) -> None:
        self._cached = None

    def setpoint(self, channel: ChannelId | str) -> float:
        """The value a channel currently wanders around."""
        with self._lock:
            return self._state(channel).setpoint

    def set_setpoint(self, channel: ChannelId | str, value: float) -> None:
        """Move a channel's set-point (the value steps at once; noise and drift stay)."""
        with self._lock:
            if not math.isfinite(value):
                raise ServomexValidationError(f"set-point must be finite, not {value!r}")
            self._state(channel).setpoint = float(value)
            self._changed()

    def set_fault(self, on: bool = True, channel: ChannelId | str | None = None) -> None:
        """Set the analyser fault (``channel=None``) or one channel's fault.

        On an external input (E1/E2) a channel fault is the *Invalid* flag (Modbus bit 0).
        """
        with self._lock:
            if channel is None:
                self._fault = bool(on)
            else:
                self._state(channel).fault = bool(on)
            self._changed()

    def set_maintenance(self, on: bool = True, channel: ChannelId | str | None = None) -> None:
        """Set the analyser maintenance flag (``channel=None``) or one channel's."""
        with self._lock:
            if channel is None:
                self._maintenance = bool(on)
            else:
                self._state(channel).maintenance = bool(on)
            self._changed()

    def set_warming_up(self, on: bool = True, channel: ChannelId | str | None = None) -> None:
        """Set warm-up on one channel, or (``channel=None``) on every transducer channel."""
        with self._lock:
            if channel is None:
                for cid, state in self._channels.items():
                    if cid.kind is ChannelKind.TRANSDUCER:
                        state.warming_up = bool(on)
            else:
                self._state(channel).warming_up = bool(on)
            self._changed()

    # --- coils and autocalibration -------------------------------------------------------

    @property
    def coils(self) -> tuple[bool, ...]:
        """The nine coils as last written."""
        with self._lock:
            return tuple(self._coils)

    def write_coil(self, coil: int, on: bool, now: float | None = None) -> None:
        """Write one coil as the Modbus master would.

        A 0 → 1 edge on coils 0–3 starts autocal group 1–4 (queued if another group runs);
        on coil 8 it stops all. The coil keeps the written value until the master writes 0,
        so writing 1 to a coil that is already 1 does nothing.
        """
        self.write_coils(coil, [on], now)

    def write_coils(self, start: int, values: Sequence[bool], now: float | None = None) -> None:
        """Write consecutive coils from ``start`` (FC15), each with the edge rule above."""
        with self._lock:
            if start < 0 or start + len(values) > COIL_COUNT:
                raise ServomexValidationError(
                    f"coils {start}–{start + len(values) - 1} are outside 0–{COIL_COUNT - 1}"
                )
            sim = self._advance(now)
            for coil, value in enumerate(values, start):
                rising = bool(value) and not self._coils[coil]
                self._coils[coil] = bool(value)
                if not rising:
                    continue
                if coil == CAL_STOP_COIL:
                    self._autocal.stop_all(sim)
                elif coil in _START_COIL_GROUP:
                    self._autocal.start(_START_COIL_GROUP[coil], sim)
            self._changed()

    @property
    def calibration_log(self) -> tuple[CalLogEntry, ...]:
        """Every autocal event so far (simulated times), up to the clock's current time."""
        with self._lock:
            self._advance(None)
            return tuple(self._autocal.log)

    @property
    def calibrating_group(self) -> int | None:
        """The autocal group calibrating now, or ``None``."""
        with self._lock:
            self._advance(None)
            return self._autocal.running

    @property
    def queued_groups(self) -> tuple[int, ...]:
        """Autocal groups waiting their turn."""
        with self._lock:
            self._advance(None)
            return self._autocal.queued

    @property
    def flush_time(self) -> float:
        """Simulated seconds each calibration gas flows."""
        return self._autocal.flush_time

    def group_members(self, group: int) -> frozenset[ChannelId]:
        """The channels autocal group ``group`` calibrates."""
        return self._groups[check_group(group)]


def _local_time() -> datetime:
    return datetime.now().replace(microsecond=0)
