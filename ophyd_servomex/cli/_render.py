"""Text and JSON renderings of frames and readings for the device commands: a reading's
value as the panel shows it, its flags, a frame as a table or as a dict."""

from __future__ import annotations

from typing import Any

from ..codec.models import ChannelStatus, Frame, Reading, Unit
from ..codec.status_text import STATUS_OK, status_text

__all__ = ["flags_text", "format_frame_table", "frame_to_dict", "value_text"]


def value_text(reading: Reading) -> str:
    """A reading's value as the analyser shows it (3 decimals, mA 1), or ``-``."""
    if reading.value is None:
        return "-"
    decimals = 1 if reading.unit is Unit.MILLIAMP else 3
    return f"{reading.value:.{decimals}f}"


def flags_text(status: ChannelStatus, *, none: str = STATUS_OK) -> str:
    """The active flags (the status string: ``fault maint cal warm-up A1`` …), else ``none``."""
    text = status_text(status)
    return none if text == STATUS_OK else text


def format_frame_table(frame: Frame) -> str:
    """The analyser's state and one row per channel."""
    analyser = frame.analyser
    state = [
        name
        for name, on in (("FAULT", analyser.fault), ("MAINTENANCE", analyser.maintenance))
        if on
    ]
    calibrating = [
        f"group {g.group} (gas {g.cal_gas})" for g in analyser.cal_groups if g.calibrating
    ]
    lines = [
        f"analyser: {' '.join(state) or 'ok'}; calibrating: {', '.join(calibrating) or 'none'}",
        f"{'id':<3} {'name':<7} {'value':>9} {'unit':<4} status",
    ]
    for reading in frame.readings:
        name = reading.name if reading.name is not None else "-"
        lines.append(
            f"{reading.channel.value:<3} {name:<7} {value_text(reading):>9} "
            f"{reading.unit_text:<4} {flags_text(reading.status)}"
        )
    return "\n".join(lines)


def frame_to_dict(frame: Frame) -> dict[str, Any]:
    """A JSON-ready rendering of a frame (full float precision)."""
    return {
        "time": frame.timestamp,
        "protocol": frame.protocol.value,
        "address": frame.address,
        "analyser": {
            "fault": frame.analyser.fault,
            "maintenance": frame.analyser.maintenance,
            "calibrating": [g.group for g in frame.analyser.cal_groups if g.calibrating],
        },
        "channels": {
            r.channel.value: {
                "name": r.name,
                "value": r.value,
                "unit": r.unit_text,
                "ok": r.status.ok,
                "flags": [] if flags_text(r.status) == "ok" else flags_text(r.status).split(),
            }
            for r in frame.readings
        },
    }
