"""The display charset of the Modbus name and unit registers (docs/protocol.md §6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ophyd_servomex.codec.charset import decode_display, encode_display, to_ascii_name
from ophyd_servomex.codec.errors import ServomexValidationError


def test_co2_name_bytes_decode_with_subscript_two() -> None:
    assert decode_display(bytes.fromhex("434f82202020")) == "CO\u2082   "
    assert decode_display(bytes.fromhex("434f82202020")).rstrip() == "CO₂"


def test_printable_ascii_is_ascii() -> None:
    printable = bytes(range(0x20, 0x7F))
    assert decode_display(printable) == printable.decode("ascii")


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b" % \x00", " % "),
        (b" mA\x00", " mA"),
        (b"%\x00\x00\x00", "%"),
        (b"\x00\x00\x00\x00", ""),
        (b"", ""),
        (b"a\x00b\x00", "a\x00b"),  # only the trailing NULs are padding
    ],
)
def test_trailing_nul_padding_is_stripped(raw: bytes, text: str) -> None:
    assert decode_display(raw) == text


def test_other_high_bytes_decode_as_latin1() -> None:
    assert decode_display(b"\xb0C") == "°C"
    assert decode_display(b"\x80\x81\x83\xff") == "\x80\x81\x83ÿ"


@given(st.binary(max_size=64))
def test_decode_never_raises_and_keeps_one_char_per_byte(data: bytes) -> None:
    text = decode_display(data)
    assert len(text) == len(data.rstrip(b"\x00"))
    assert encode_display(text) == data.rstrip(b"\x00")


def test_encode_known_names() -> None:
    assert encode_display("CO₂") == b"CO\x82"
    assert encode_display("Oxygen") == b"Oxygen"
    assert encode_display("°C") == b"\xb0C"


_DISPLAY_TEXT = st.text(
    st.characters(codec="latin-1", exclude_characters="\x82") | st.just("₂"), max_size=16
).filter(lambda t: not t.endswith("\x00"))


@given(_DISPLAY_TEXT)
def test_encode_decode_round_trip(text: str) -> None:
    assert decode_display(encode_display(text)) == text


@pytest.mark.parametrize("text", ["€", "CO³₃", "\x82", "中"])
def test_unencodable_text_is_a_validation_error(text: str) -> None:
    with pytest.raises(ServomexValidationError):
        encode_display(text)


def test_to_ascii_name_matches_continuous_mode() -> None:
    assert to_ascii_name("CO₂") == "CO2"
    assert to_ascii_name("Oxygen") == "Oxygen"
    assert to_ascii_name("₂₂") == "22"
    assert to_ascii_name("C₃H₈₀") == "C3H80"
