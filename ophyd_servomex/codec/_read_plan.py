"""Read plans: :class:`ReadRequest`, the three-read :data:`FULL_SWEEP`, the
:func:`gap_free_plan` fallback, and :func:`banks_from_responses`, which assembles the
answers to a plan into :class:`RegisterBanks` (docs/protocol.md §5.9).

Public names are re-exported by :mod:`ophyd_servomex.codec.registers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ._banks import (
    RegisterBanks,
)
from ._register_map import (
    ANALYSER_DISCRETE_COUNT,
    ANALYSER_DISCRETE_START,
    CHANNEL_DISCRETE_COUNT,
    CHANNEL_REGISTERS,
    INPUT_REGISTER_COUNT,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
)
from .errors import (
    ErrorContext,
    ServomexFrameError,
    ServomexValidationError,
)
from .models import (
    ChannelId,
)

# --- read plans ----------------------------------------------------------------------------

_READ_LIMITS = {1: MAX_READ_BITS, 2: MAX_READ_BITS, 3: MAX_READ_REGISTERS, 4: MAX_READ_REGISTERS}


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: function code (1–4), first PDU address and count."""

    function: int
    start: int
    count: int

    def __post_init__(self) -> None:
        limit = _READ_LIMITS.get(self.function)
        if limit is None:
            raise ServomexValidationError(
                f"function code {self.function!r} is not a read (expected 1–4)",
                context=ErrorContext(function_code=self.function),
            )
        if not 0 <= self.start <= 0xFFFF or not 1 <= self.count <= limit:
            raise ServomexValidationError(
                f"read of {self.count!r} at {self.start!r}: start must be 0–65535 and "
                f"count 1–{limit}",
                context=ErrorContext(function_code=self.function, register=self.start),
            )
        if self.start + self.count > 0x10000:
            raise ServomexValidationError(
                f"read of {self.count} at {self.start} runs past address 65535",
                context=ErrorContext(function_code=self.function, register=self.start),
            )

    @property
    def stop(self) -> int:
        """One past the last address read."""
        return self.start + self.count


FULL_SWEEP: tuple[ReadRequest, ...] = (
    ReadRequest(4, 0, INPUT_REGISTER_COUNT),
    ReadRequest(2, 0, CHANNEL_DISCRETE_COUNT),
    ReadRequest(2, ANALYSER_DISCRETE_START, ANALYSER_DISCRETE_COUNT),
)
"""One whole poll: the three block reads the bench unit accepted (docs/protocol.md §5.9)."""


def _merged_spans(spans: Iterable[range]) -> list[range]:
    merged: list[range] = []
    for span in sorted(spans, key=lambda r: r.start):
        if merged and span.start <= merged[-1].stop:
            last = merged.pop()
            merged.append(range(last.start, max(last.stop, span.stop)))
        else:
            merged.append(span)
    return merged


def gap_free_plan(channels: Iterable[ChannelId]) -> tuple[ReadRequest, ...]:
    """Reads covering only the given slots: the fallback when long spans are refused.

    Adjacent slots merge into one span: FC04 spans first, then FC02 status spans, then
    the analyser block. For the bench (I1, I2, I3, E1, E2) that is FC04 (0, 21) + (56, 14),
    FC02 (0, 24) + (64, 16) and FC02 (1000, 16) (docs/protocol.md §5.9); for all ten slots it is
    :data:`FULL_SWEEP`. No channels reads only the analyser block.
    """
    slots = [CHANNEL_REGISTERS[ChannelId.parse(c)] for c in set(channels)]
    plan = [
        ReadRequest(4, span.start, len(span)) for span in _merged_spans(s.input_span for s in slots)
    ]
    plan += [
        ReadRequest(2, span.start, len(span))
        for span in _merged_spans(s.status_span for s in slots)
    ]
    plan.append(ReadRequest(2, ANALYSER_DISCRETE_START, ANALYSER_DISCRETE_COUNT))
    return tuple(plan)


def _bank_for(request: ReadRequest) -> tuple[str, int] | None:
    """Which bank a read fills and the PDU address of that bank's first entry."""
    if request.function == 4 and request.stop <= INPUT_REGISTER_COUNT:
        return "input_registers", 0
    if request.function == 2 and request.stop <= CHANNEL_DISCRETE_COUNT:
        return "channel_bits", 0
    analyser_stop = ANALYSER_DISCRETE_START + ANALYSER_DISCRETE_COUNT
    if request.function == 2 and ANALYSER_DISCRETE_START <= request.start < analyser_stop:
        return ("analyser_bits", ANALYSER_DISCRETE_START) if request.stop <= analyser_stop else None
    return None


def _valid_answer_value(function: int, value: object) -> bool:
    if function == 4:
        return type(value) is int and 0 <= value <= 0xFFFF
    return isinstance(value, int) and value in (0, 1)


def banks_from_responses(
    responses: Mapping[ReadRequest, Sequence[int] | Sequence[bool]],
) -> RegisterBanks:
    """Assemble the answers to a read plan into :class:`RegisterBanks`.

    Addresses no request covered read as 0 / False. FC04 answers must hold exactly
    ``count`` registers of 0–0xFFFF; FC02 answers ``count`` bits of 0/1, or up to the next
    multiple of eight (a Modbus reply pads bits to whole bytes; the padding is dropped).
    Any other answer raises :class:`ServomexFrameError`; a request outside the map, or for
    a function other than FC04/FC02, raises :class:`ServomexValidationError`.
    """
    banks: dict[str, list[int]] = {
        "input_registers": [0] * INPUT_REGISTER_COUNT,
        "channel_bits": [0] * CHANNEL_DISCRETE_COUNT,
        "analyser_bits": [0] * ANALYSER_DISCRETE_COUNT,
    }
    for request, answer in responses.items():
        context = ErrorContext(function_code=request.function, register=request.start)
        where = _bank_for(request)
        if where is None:
            raise ServomexValidationError(
                f"no bank holds a function {request.function} read of {request.count} at "
                f"{request.start}",
                context=context,
            )
        bank, offset = where
        longest = request.count if request.function == 4 else -(-request.count // 8) * 8
        if not request.count <= len(answer) <= longest:
            raise ServomexFrameError(
                f"function {request.function} read of {request.count} at {request.start} "
                f"answered {len(answer)} values",
                context=context,
            )
        values = list(answer[: request.count])
        for address, value in enumerate(values, request.start):
            if not _valid_answer_value(request.function, value):
                raise ServomexFrameError(
                    f"function {request.function} answered {value!r} at address {address}",
                    context=context.merged(register=address),
                )
        banks[bank][request.start - offset : request.stop - offset] = [int(v) for v in values]
    return RegisterBanks(
        tuple(banks["input_registers"]),
        tuple(bool(b) for b in banks["channel_bits"]),
        tuple(bool(b) for b in banks["analyser_bits"]),
    )
