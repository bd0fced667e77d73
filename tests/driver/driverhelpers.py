"""Helpers for the driver tests: simulator servers, the quiet bench unit's values, the wire log."""

from __future__ import annotations

import struct
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from ophyd_servomex.codec.models import ChannelId, ProtocolKind, Unit
from ophyd_servomex.sim import SimConfig, SimHandle, WireKind, serve_memory, serve_pty, serve_tcp

MODES = (ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII, ProtocolKind.CONTINUOUS_ASCII)
MODBUS_MODES = (ProtocolKind.MODBUS_RTU, ProtocolKind.MODBUS_ASCII)

type Server = Callable[[SimConfig], AbstractAsyncContextManager[SimHandle]]

SERVERS: dict[str, Server] = {"pty": serve_pty, "tcp": serve_tcp, "memory": serve_memory}
"""The simulator's links: a real pseudo-terminal, a TCP port, an in-memory pair."""

ADDRESS = 30
"""The bench unit's slave address."""


def f32(x: float) -> float:
    """``x`` rounded to float32, as it travels in two Modbus registers."""
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def bench_values(mode: ProtocolKind) -> dict[ChannelId, float]:
    """The quiet bench unit's values as each mode reports them."""
    raw = {
        ChannelId.I1: 20.378,
        ChannelId.I2: 0.084,
        ChannelId.I3: 0.250,
        ChannelId.E1: 0.0,
        ChannelId.E2: 0.0,
    }
    return raw if mode is ProtocolKind.CONTINUOUS_ASCII else {k: f32(v) for k, v in raw.items()}


def bench_labels(mode: ProtocolKind) -> list[tuple[ChannelId, str | None, Unit]]:
    """(channel, name, unit) of the bench unit; over Modbus CO₂ keeps its display glyph."""
    co2 = "CO2" if mode is ProtocolKind.CONTINUOUS_ASCII else "CO₂"
    return [
        (ChannelId.I1, "Oxygen", Unit.PERCENT),
        (ChannelId.I2, "CO", Unit.PERCENT),
        (ChannelId.I3, co2, Unit.PERCENT),
        (ChannelId.E1, None, Unit.MILLIAMP),
        (ChannelId.E2, None, Unit.MILLIAMP),
    ]


def quiet_config(mode: ProtocolKind, **changes: Any) -> SimConfig:
    """The bench unit without noise, fast broadcasts (20 per second), zero latency."""
    options: dict[str, Any] = {"mode": mode, "noisy": False, "seed": 1, "period": 0.05}
    options.update(changes)
    return SimConfig(**options)


def requests(sim: SimHandle) -> list[bytes]:
    """Every well-formed request the simulator received, in order."""
    return [e.data for e in sim.log.events(WireKind.REQUEST)]
