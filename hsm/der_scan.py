"""A linear pre-scan of DER before asn1crypto reads it (issue #14, found by the fuzz suite).

asn1crypto takes more than linear time on two shapes no jtca structure has: an identifier in
the high-tag-number form (it builds the tag number from every continuation octet, quadratic in
their count) and an INTEGER, ENUMERATED or OBJECT IDENTIFIER the size of the file. Lists
(``ca.lists``) and key packages (``hsm.envelope``) refuse such bytes by offset first. Pure.
"""

from __future__ import annotations

from typing import Final

NUMBERS: Final = {0x02: "an INTEGER", 0x0A: "an ENUMERATED", 0x06: "an OBJECT IDENTIFIER"}
MAX_NUMBER_OCTETS: Final = 64  # no integer or OID of a list, a certificate or a package is longer


def costly_element(
    data: bytes, max_number_octets: int = MAX_NUMBER_OCTETS
) -> tuple[int, str] | None:
    """The offset of the first element asn1crypto would take more than linear time to read, and
    why, or ``None``: an identifier in the high-tag-number form, or an INTEGER, ENUMERATED or
    OBJECT IDENTIFIER of more than ``max_number_octets`` octets. One pass over the headers in
    order, no recursion (a constructed element's children follow its header; a primitive's
    contents are skipped); where the bytes stop making sense it stops quietly, for the strict
    parser to name the problem."""
    pos, size = 0, len(data)
    limit = size  # the end of the first element, once its length is read (trailing bytes are
    # refused by the strict parser without being parsed)
    while pos + 1 < limit:
        identifier = data[pos]
        if identifier & 0x1F == 0x1F:
            return pos, "an identifier in the high-tag-number form"
        length = data[pos + 1]
        start = pos + 2
        if length == 0x80:  # indefinite: the contents (children, then 00 00) follow
            pos = start
            continue
        if length & 0x80:
            count = length & 0x7F
            if count > 8 or start + count > size:
                return None
            length = int.from_bytes(data[start : start + count], "big")
            start += count
        if pos == 0:
            limit = min(size, start + length)
        kind = NUMBERS.get(identifier)
        if kind is not None and length > max_number_octets:
            return pos, f"{kind} of {length} octets (at most {max_number_octets})"
        pos = start if identifier & 0x20 else start + length
    return None


MAX_DEPTH: Final = 64  # deeper than any jtca structure nests


def broken_element(data: bytes) -> tuple[int, str] | None:
    """The offset of the first header (identifier and length) whose element does not fit in its
    parent or in the file, and what is wrong, or ``None`` when every header fits and the first
    element ends where the file does. Used to explain a parser's refusal by offset (asn1crypto's
    own messages can carry a length read from garbage: a number of hundreds of digits)."""

    def walk(pos: int, end: int, depth: int, single: bool) -> tuple[int, str] | None:
        while pos < end:
            at = pos
            if depth > MAX_DEPTH:
                return at, f"nested more than {MAX_DEPTH} deep"
            identifier = data[pos]
            pos += 1
            if identifier & 0x1F == 0x1F:  # high tag number: continuation octets
                while pos < end and data[pos] & 0x80:
                    pos += 1
                pos += 1
            if pos >= end:
                return at, f"an element (identifier 0x{identifier:02x}) cut short before its length"
            first = data[pos]
            pos += 1
            if first == 0x80:
                return at, "an indefinite length (not DER)"
            if first == 0xFF:
                return at, "a length octet 0xff (reserved)"
            length = first
            if first & 0x80:
                count = first & 0x7F
                if pos + count > end:
                    return at, f"a length field of {count} octets, cut short by the end"
                raw = data[pos : pos + count]
                pos += count
                if count > 4:
                    return at, f"a length field of {count} octets (0x{raw.hex()[:16]}…): too long"
                length = int.from_bytes(raw, "big")
            if length > end - pos:
                room = "the file" if depth == 0 else "its parent"
                return at, f"a length of {length} bytes, but {room} has {end - pos} left"
            if identifier & 0x20:
                found = walk(pos, pos + length, depth + 1, False)
                if found is not None:
                    return found
            pos += length
            if single and pos < end:
                return pos, f"{end - pos} bytes after the end of the structure"
        return None

    if not data:
        return 0, "no bytes"
    return walk(0, len(data), 0, True)


def hex_at(data: bytes, offset: int, count: int = 12) -> str:
    """A short hex view of the bytes at ``offset``: ``30 82 ff 00 …``."""
    shown = data[offset : offset + count].hex(" ")
    return f"{shown} …" if len(data) > offset + count else shown


def explain(data: bytes, error: BaseException | str | None = None) -> str:
    """Why ``data`` is not the DER it should be, in one line: the offset, what is wrong there and
    the bytes there in hex; when every header fits, the parser's own complaint (``error``), its
    first line, with any number of more than 20 digits shortened."""
    found = broken_element(bytes(data))
    if found is not None:
        offset, problem = found
        return f"at offset {offset}: {problem} (bytes there: {hex_at(bytes(data), offset)})"
    text = str(error) if error is not None else ""
    return short_message(text) or "not the structure expected"


def short_message(text: str) -> str:
    """The first line of a message, numbers of more than 20 digits replaced by their size."""
    return shorten_numbers(text.strip().splitlines()[0] if text.strip() else "")


def shorten_numbers(text: str) -> str:
    """``text`` with every number of more than 20 digits replaced by its size: a length or an
    integer read from garbage is no use to a reader at 240 digits."""
    import re

    return re.sub(r"\d{21,}", lambda m: f"<a {len(m.group())}-digit number>", text)
