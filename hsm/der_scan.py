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
