"""A small strict DER writer and reader for the primitive types of list entries.

Pure: bytes in, bytes out; no asn1crypto, no I/O. ca/lists/asn1.py uses it for the list
entries, where asn1crypto's generic objects cost some 60 µs per entry; asn1crypto keeps the
envelope and stays the reference that tests/unit/test_lists.py checks this module against.

The writer makes DER (X.690 §10): definite lengths in the fewest octets, integers in the fewest
octets, ``YYYYMMDDHHMMSSZ`` times. The reader takes only DER: every deviation (another tag, a
long-form or indefinite length where a shorter one exists, a non-minimal or empty INTEGER, a
string that is not valid in its encoding, a time that is not ``YYYYMMDDHHMMSSZ`` or no date at
all, bytes past the end) raises ``NotDer`` with the offset. Tags are single identifier octets
(tag numbers below 31), which is all the list format uses.

Each ``read_*`` function takes the data, the offset of an element and the end of the enclosing
contents, and returns the value with the offset just past the element.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from hsm import der_scan

# X.690 identifier octets (universal class), as single bytes
INTEGER: Final = 0x02
BIT_STRING: Final = 0x03
OCTET_STRING: Final = 0x04
ENUMERATED: Final = 0x0A
UTF8_STRING: Final = 0x0C
SEQUENCE: Final = 0x30
PRINTABLE_STRING: Final = 0x13
GENERALIZED_TIME: Final = 0x18

_TIME: Final = re.compile(rb"[0-9]{14}Z")
_SHORT_LENGTHS: Final = tuple(bytes((n,)) for n in range(0x80))


class NotDer(ValueError):
    """Bytes that are not the DER of the element expected at ``offset``."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"at offset {offset}: {problem}")
        self.offset = offset
        self.problem = problem


# -- writing --------------------------------------------------------------------------------------
def length_octets(length: int) -> bytes:
    """The DER length octets: short form below 128, else the fewest long-form octets."""
    if length < 0x80:
        if length < 0:
            raise ValueError(f"a length is ≥ 0, got {length}")
        return _SHORT_LENGTHS[length]
    size = (length.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def tlv(tag: int, contents: bytes) -> bytes:
    """The element with the identifier octet ``tag`` (a tag number below 31) and these
    contents octets."""
    length = len(contents)
    if length < 0x80:
        return bytes((tag, length)) + contents
    return bytes((tag,)) + length_octets(length) + contents


def integer_contents(value: int) -> bytes:
    """The two's complement contents of an INTEGER in the fewest octets (X.690 §8.3.2)."""
    size = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return value.to_bytes(size, "big", signed=True)


def integer(value: int, tag: int = INTEGER) -> bytes:
    """An INTEGER (or, with ``tag=ENUMERATED``, an ENUMERATED)."""
    return tlv(tag, integer_contents(value))


def time_contents(seconds: int) -> bytes:
    """``YYYYMMDDHHMMSSZ`` of Unix seconds, for a year from 1 to 9999."""
    at = datetime.fromtimestamp(seconds, UTC)
    return (
        f"{at.year:04d}{at.month:02d}{at.day:02d}{at.hour:02d}{at.minute:02d}{at.second:02d}Z"
    ).encode("ascii")


def generalized_time(seconds: int) -> bytes:
    """A GeneralizedTime in DER form (X.690 §11.7): UTC, whole seconds, ``Z``."""
    return tlv(GENERALIZED_TIME, time_contents(seconds))


# -- a linear pre-scan before asn1crypto ---------------------------------------------------------
MAX_NUMBER_OCTETS: Final = 64  # no integer or OID of a list or its certificate is longer


def costly_element(data: bytes) -> tuple[int, str] | None:
    """``hsm.der_scan.costly_element``: what asn1crypto would read in more than linear time."""
    return der_scan.costly_element(data, MAX_NUMBER_OCTETS)


# -- reading --------------------------------------------------------------------------------------
def read_element(data: bytes, offset: int, end: int, tag: int) -> tuple[int, int]:
    """Start and end of the contents of the element with identifier ``tag`` at ``offset``."""
    if offset + 2 > end:
        raise NotDer(offset, "truncated: no identifier and length here")
    if data[offset] != tag:
        raise NotDer(offset, f"tag 0x{data[offset]:02x}, expected 0x{tag:02x}")
    length = data[offset + 1]
    start = offset + 2
    if length >= 0x80:
        size = length & 0x7F
        if size == 0:
            raise NotDer(offset + 1, "an indefinite length (BER, not DER)")
        if start + size > end:
            raise NotDer(offset + 1, "truncated length octets")
        if data[start] == 0:
            raise NotDer(offset + 1, "a length with leading zero octets (not DER)")
        length = int.from_bytes(data[start : start + size], "big")
        if length < 0x80:
            raise NotDer(offset + 1, f"length {length} in the long form (not DER)")
        start += size
    stop = start + length
    if stop > end:
        raise NotDer(offset, f"{length} contents octets, only {end - start} left")
    return start, stop


def read_integer(data: bytes, offset: int, end: int, tag: int = INTEGER) -> tuple[int, int]:
    """A signed INTEGER (or ENUMERATED) in its shortest form."""
    start, stop = read_element(data, offset, end, tag)
    if stop - start == 1:
        value = data[start]
        return (value - 0x100 if value >= 0x80 else value), stop
    if stop == start:
        raise NotDer(offset, "an INTEGER with no contents octets")
    first, second = data[start], data[start + 1]
    if (first == 0x00 and second < 0x80) or (first == 0xFF and second >= 0x80):
        raise NotDer(offset, "INTEGER not in its shortest form (not DER)")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def read_octets(data: bytes, offset: int, end: int, tag: int = OCTET_STRING) -> tuple[bytes, int]:
    """The contents octets of a primitive element (an OCTET STRING by default)."""
    start, stop = read_element(data, offset, end, tag)
    return data[start:stop], stop


def read_text(data: bytes, offset: int, end: int, tag: int, encoding: str) -> tuple[str, int]:
    """A primitive string decoded strictly with a Python codec (``utf-8``, ``latin-1``)."""
    start, stop = read_element(data, offset, end, tag)
    try:
        return data[start:stop].decode(encoding), stop
    except UnicodeDecodeError as exc:
        raise NotDer(start + exc.start, f"not {encoding}: {exc.reason}") from None


def read_time(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """A DER GeneralizedTime (``YYYYMMDDHHMMSSZ``, a real date, year 1 to 9999) as Unix seconds."""
    start, stop = read_element(data, offset, end, GENERALIZED_TIME)
    text = data[start:stop]
    if not _TIME.fullmatch(text):
        raise NotDer(offset, f"GeneralizedTime {text!r} is not YYYYMMDDHHMMSSZ")
    try:
        at = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise NotDer(offset, f"GeneralizedTime {text.decode()} is no time: {exc}") from None
    return int(at.timestamp()), stop
