"""Answer one Modbus request PDU from a simulated analyser's banks and coils.

The map the analyser serves (docs/protocol.md §5.2–§5.9): input registers 0–69 (FC04),
discrete inputs 0–79 and 1000–1015 (FC02; one request may not span both blocks), coils
0–8 (FC01 read, FC05/FC15 write), FC08 sub-function 0 (echo). Checks run in the standard
Modbus order: an unsupported function or FC08 sub-function → exception 01 (FC03, FC06 and
FC16 too: nothing but coils may be written); a quantity of 0 or beyond the Modbus limit, an
FC05 value other than 0xFF00/0x0000, or a malformed PDU → exception 03; an address range
outside the map → exception 02.
"""

from __future__ import annotations

from collections.abc import Callable

from ..codec.errors import ServomexFrameError
from ..codec.modbus_frames import (
    COIL_OFF,
    COIL_ON,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    MAX_WRITE_COILS,
    ExceptionCode,
    FunctionCode,
    ModbusRequest,
    build_exception,
    build_loopback_response,
    build_read_bits_response,
    build_read_registers_response,
    build_write_coil_response,
    build_write_coils_response,
    parse_request,
)
from ..codec.registers import (
    ANALYSER_DISCRETE_COUNT,
    ANALYSER_DISCRETE_START,
    CHANNEL_DISCRETE_COUNT,
    INPUT_REGISTER_COUNT,
)
from .analyser import COIL_COUNT, SimAnalyser

__all__ = ["answer"]


def _within(start: int, count: int, low: int, size: int) -> bool:
    return low <= start and start + count <= low + size


def answer(analyser: SimAnalyser, pdu: bytes, now: float | None = None) -> bytes:
    """The response PDU ``analyser`` gives to request ``pdu`` (an exception PDU on error)."""
    if not pdu:
        return build_exception(0, ExceptionCode.ILLEGAL_FUNCTION)
    function = pdu[0]
    if function not in _HANDLERS:
        return build_exception(function, ExceptionCode.ILLEGAL_FUNCTION)
    try:
        request = parse_request(pdu)
    except ServomexFrameError:
        return build_exception(function, ExceptionCode.ILLEGAL_DATA_VALUE)
    return _HANDLERS[function](analyser, request, now)


def _read_coils(analyser: SimAnalyser, request: ModbusRequest, now: float | None) -> bytes:
    fc, start, count = request.function, request.address, request.count
    if not 1 <= count <= MAX_READ_BITS:
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE)
    if not _within(start, count, 0, COIL_COUNT):
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    return build_read_bits_response(fc, analyser.coils[start : start + count])


def _read_discretes(analyser: SimAnalyser, request: ModbusRequest, now: float | None) -> bytes:
    fc, start, count = request.function, request.address, request.count
    if not 1 <= count <= MAX_READ_BITS:
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE)
    if _within(start, count, 0, CHANNEL_DISCRETE_COUNT):
        bits = analyser.banks(now).channel_bits[start : start + count]
    elif _within(start, count, ANALYSER_DISCRETE_START, ANALYSER_DISCRETE_COUNT):
        offset = start - ANALYSER_DISCRETE_START
        bits = analyser.banks(now).analyser_bits[offset : offset + count]
    else:
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    return build_read_bits_response(fc, bits)


def _read_inputs(analyser: SimAnalyser, request: ModbusRequest, now: float | None) -> bytes:
    fc, start, count = request.function, request.address, request.count
    if not 1 <= count <= MAX_READ_REGISTERS:
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE)
    if not _within(start, count, 0, INPUT_REGISTER_COUNT):
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    registers = analyser.banks(now).input_registers[start : start + count]
    return build_read_registers_response(fc, registers)


def _write_coil(analyser: SimAnalyser, request: ModbusRequest, now: float | None) -> bytes:
    fc, start, value = request.function, request.address, request.value
    if value not in (COIL_ON, COIL_OFF):
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE)
    if not _within(start, 1, 0, COIL_COUNT):
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    analyser.write_coil(start, value == COIL_ON, now)
    return build_write_coil_response(start, value)


def _write_coils(analyser: SimAnalyser, request: ModbusRequest, now: float | None) -> bytes:
    fc, start, count = request.function, request.address, request.count
    if not 1 <= count <= MAX_WRITE_COILS:
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE)
    if not _within(start, count, 0, COIL_COUNT):
        return build_exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    analyser.write_coils(start, request.coil_values, now)
    return build_write_coils_response(start, count)


def _diagnostics(analyser: SimAnalyser, request: ModbusRequest, now: float | None) -> bytes:
    if request.sub_function != 0:
        return build_exception(request.function, ExceptionCode.ILLEGAL_FUNCTION)
    return build_loopback_response(0, request.data)


_Handler = Callable[[SimAnalyser, ModbusRequest, float | None], bytes]

_HANDLERS: dict[int, _Handler] = {
    FunctionCode.READ_COILS: _read_coils,
    FunctionCode.READ_DISCRETE_INPUTS: _read_discretes,
    FunctionCode.READ_INPUT_REGISTERS: _read_inputs,
    FunctionCode.WRITE_SINGLE_COIL: _write_coil,
    FunctionCode.DIAGNOSTICS: _diagnostics,
    FunctionCode.WRITE_MULTIPLE_COILS: _write_coils,
}
