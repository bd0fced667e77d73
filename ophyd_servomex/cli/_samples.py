"""How the command line writes driver :class:`Sample` rows: live lines, long and wide tables.

*Long* format is the driver's own: one row per channel reading (``Sample``), one row per
lost frame (an error sample). *Wide* format is for spreadsheets: one row per frame, a
column per channel with its unit in the header.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..codec.errors import ServomexError
from ..codec.models import ChannelId, Frame, Sample
from ._render import flags_text, value_text

if TYPE_CHECKING:
    from ..driver import AcquisitionSummary, Analyzer

__all__ = [
    "LONG_COLUMNS",
    "WideTable",
    "follow",
    "format_batch_line",
    "group_frames",
    "sample_record",
    "sample_row",
]

LONG_COLUMNS = (
    "received_at",
    "device",
    "channel",
    "name",
    "value",
    "unit",
    "protocol",
    "ok",
    "flags",
    "monotonic_ns",
    "requested_at",
    "latency_s",
    "error",
)
"""The long CSV layout: the :class:`Sample` fields, one row per channel reading."""


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return ""
    message = error.message if isinstance(error, ServomexError) else str(error)
    return f"{type(error).__name__}: {message}"


def sample_record(sample: Sample) -> dict[str, Any]:
    """A JSON-ready long-format record of one sample (full float precision)."""
    reading = sample.reading
    flags = "" if reading is None else flags_text(reading.status)
    return {
        "received_at": _iso(sample.received_at),
        "device": sample.device,
        "channel": None if sample.channel is None else sample.channel.value,
        "name": sample.name,
        "value": sample.value,
        "unit": None if reading is None else (reading.unit_text or reading.unit.value),
        "protocol": sample.protocol.value,
        "ok": None if reading is None else reading.status.ok,
        "flags": [] if flags in ("", "ok") else flags.split(),
        "monotonic_ns": sample.monotonic_ns,
        "requested_at": None if sample.requested_at is None else _iso(sample.requested_at),
        "latency_s": sample.latency_s,
        "error": _error_text(sample.error) or None,
    }


def sample_row(sample: Sample) -> list[object]:
    """The long CSV row of one sample (see :data:`LONG_COLUMNS`)."""
    record = sample_record(sample)
    row: list[object] = []
    for column in LONG_COLUMNS:
        value = record[column]
        if column == "flags":
            value = " ".join(value)
        elif column == "ok":
            value = "" if value is None else int(value)
        elif column == "value":
            value = "" if value is None else repr(value)
        row.append("" if value is None else value)
    return row


def group_frames(batch: Sequence[Sample]) -> list[list[Sample]]:
    """Split a batch into its frames: consecutive samples of one device and one instant."""
    frames: list[list[Sample]] = []
    for sample in batch:
        last = frames[-1][-1] if frames else None
        if (
            last is not None
            and last.device == sample.device
            and last.monotonic_ns == sample.monotonic_ns
            and last.error is None
            and sample.error is None
        ):
            frames[-1].append(sample)
        else:
            frames.append([sample])
    return frames


def format_batch_line(frame: Sequence[Sample]) -> str:
    """One frame's samples on one line: time, device, then ``I1=20.378%`` … or the error."""
    first = frame[0]
    head = f"{first.received_at.astimezone():%H:%M:%S.%f}"[:-3] + f" {first.device}"
    if first.error is not None:
        return f"{head} error: {_error_text(first.error)}"
    parts = []
    for sample in frame:
        reading = sample.reading
        assert reading is not None
        text = f"{reading.channel.value}={value_text(reading)}{reading.unit_text}"
        flags = flags_text(reading.status)
        parts.append(text if flags == "ok" else f"{text}[{flags.replace(' ', ',')}]")
    return f"{head} {' '.join(parts)}"


class WideTable:
    """Wide rows for spreadsheets: one row per tick (or broadcast frame), a column per
    device and channel with the unit in its header.

    The columns are fixed by the first batch with a reading (later channels that were not
    in it are left out; missing values are blank); ``errors`` holds the tick's errors.
    """

    def __init__(self) -> None:
        self.columns: list[tuple[str, ChannelId]] | None = None

    def header(self, batch: Sequence[Sample]) -> list[str] | None:
        """The header row when ``batch`` is the first with a reading (else ``None``)."""
        good = [s for s in batch if s.reading is not None]
        if self.columns is not None or not good:
            return None
        several = len({s.device for s in good}) > 1
        self.columns = []
        header = ["received_at"]
        for sample in good:
            reading = sample.reading
            assert reading is not None
            self.columns.append((sample.device, reading.channel))
            label = reading.name or reading.channel.value
            unit = reading.unit_text or reading.unit.value
            prefix = f"{sample.device} " if several else ""
            name = f"{prefix}{reading.channel.value}" + (
                f" {label}" if label != reading.channel.value else ""
            )
            header.append(f"{name} [{unit}]" if unit else name)
        header.append("errors")
        return header

    def row(self, batch: Sequence[Sample]) -> list[object]:
        """One batch as a wide row (values at full precision; blank when missing)."""
        values = {(s.device, s.channel): s.value for s in batch if s.channel is not None}
        first = next((s for s in batch if s.reading is not None), batch[0])
        cells: list[object] = [_iso(first.received_at)]
        for key in self.columns or []:
            value = values.get(key)
            cells.append("" if value is None else repr(value))
        errors = [f"{s.device}: {_error_text(s.error)}" for s in batch if s.error is not None]
        cells.append("; ".join(errors))
        return cells


async def follow(
    analyzer: Analyzer,
    on_batch: Callable[[Sequence[Sample]], bool | None],
    *,
    rate_hz: float,
    duration: float | None,
) -> AcquisitionSummary | None:
    """Feed ``on_batch`` every frame of one analyser until ``duration`` (or it returns True).

    Continuous mode: each broadcast frame (and each bad line, as an error sample) as it
    arrives. Modbus: :func:`~ophyd_servomex.driver.record`'s drift-free polls at
    ``rate_hz``, whose summary is returned.
    """
    import anyio

    from ..driver import record

    if analyzer.protocol.is_modbus:
        async with record(analyzer, rate_hz=rate_hz, duration=duration) as recording:
            async for batch in recording.stream:
                if on_batch(batch):
                    recording.stop()
        return recording.summary
    with anyio.move_on_after(math.inf if duration is None else duration):
        subscription = analyzer.subscribe()
        try:
            while True:
                try:
                    item = await subscription.next_item()
                except anyio.EndOfStream:
                    break
                batch = (
                    item.as_samples(analyzer.name)
                    if isinstance(item, Frame)
                    else [Sample.failed(analyzer.name, item, analyzer.protocol)]
                )
                if on_batch(batch):
                    break
        finally:
            subscription.close()
    return None
