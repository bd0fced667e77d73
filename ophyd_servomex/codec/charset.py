"""The analyser's display character set, as used by the Modbus name and unit registers.

Over Modbus the name and unit registers hold display-ROM code points, not ASCII
(docs/protocol.md §6): 0x20–0x7E are plain ASCII and 0x82 is the subscript two of ``CO₂``.
No other glyph has been identified, so every other byte is decoded as Latin-1, which
keeps it (one byte, one character) and never fails. Continuous mode replaces the glyphs
with ASCII (``CO2``); :func:`to_ascii_name` gives that form.
"""

from __future__ import annotations

from .errors import ErrorContext, ServomexValidationError

__all__ = [
    "SUBSCRIPT_TWO",
    "SUBSCRIPT_TWO_BYTE",
    "decode_display",
    "encode_display",
    "to_ascii_name",
]

SUBSCRIPT_TWO = "\u2082"
"""The one known non-ASCII display glyph: subscript two (``₂``)."""

SUBSCRIPT_TWO_BYTE = 0x82
"""The display-ROM code of :data:`SUBSCRIPT_TWO` (CO₂'s name is ``43 4F 82 20 20 20``)."""

# Latin-1 maps byte 0x82 to U+0082; the display ROM shows it as U+2082 instead.
_DECODE_TABLE = {SUBSCRIPT_TWO_BYTE: SUBSCRIPT_TWO}
_ENCODE_TABLE = {ord(SUBSCRIPT_TWO): chr(SUBSCRIPT_TWO_BYTE)}
# Continuous mode sends glyphs as plain ASCII; any subscript digit (only ₂ is known on
# the display, others may exist) becomes its digit.
_ASCII_TABLE = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")


def decode_display(data: bytes) -> str:
    """Decode display-ROM bytes to text; never raises.

    Trailing NUL padding is stripped, 0x82 becomes ``₂`` (U+2082) and every other byte is
    read as Latin-1 (so 0x20–0x7E are ASCII). Spaces are kept: trimming is the caller's
    choice (names and units trim them, see :mod:`ophyd_servomex.codec.registers`).

    >>> decode_display(bytes.fromhex("434f82202020"))
    'CO₂   '
    """
    return bytes(data).rstrip(b"\x00").decode("latin-1").translate(_DECODE_TABLE)


def encode_display(text: str) -> bytes:
    """Encode text to display-ROM bytes, the inverse of :func:`decode_display`.

    ``₂`` becomes 0x82 and every other character is encoded as Latin-1. A character
    outside Latin-1, and U+0082 itself (its byte already means ``₂``, so it could not be
    read back), raise :class:`ServomexValidationError`. No padding is added.

    >>> encode_display("CO₂")
    b'CO\\x82'
    """
    if chr(SUBSCRIPT_TWO_BYTE) in text:
        raise ServomexValidationError(
            f"{text!r} contains U+0082, which the display shows as {SUBSCRIPT_TWO!r}",
            context=ErrorContext(),
        )
    try:
        return text.translate(_ENCODE_TABLE).encode("latin-1")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise ServomexValidationError(
            f"{text!r} has a character the analyser display cannot show: {bad!r}",
            context=ErrorContext(),
        ) from None


def to_ascii_name(text: str) -> str:
    """The name as continuous mode shows it, display glyphs replaced by ASCII: ``CO₂`` → ``CO2``.

    Every subscript digit ``₀``–``₉`` becomes its ASCII digit.
    """
    return text.translate(_ASCII_TABLE)
