"""The signed lists' DER codec (issue #6, one codec since issue #17): the values, their
checks, a descriptor per list type, and one writer and one strict reader driven by the
descriptors.

Pure: bytes in, bytes out; no asn1crypto, no I/O. tests/reference/list_asn1.py holds the same
format in asn1crypto, the independent reference tests/unit/test_list_codec_reference.py checks
this module against byte for byte. docs/lists.md has the module with the meaning of every field,
the OpenSSL commands that verify a list without jtca, and how to add a list type (three edits
here: a value type, a descriptor, and its registration in ``DESCRIPTORS``)::

    JtcaSignedLists DEFINITIONS IMPLICIT TAGS ::= BEGIN

    SignedList ::= SEQUENCE {
        tbsList             TBSList,
        signatureAlgorithm  AlgorithmIdentifier,    -- 1.2.156.10197.1.501, parameters absent
        signature           BIT STRING,             -- DER SEQUENCE { r INTEGER, s INTEGER }
        certificates    [0] SEQUENCE SIZE (1) OF Certificate }  -- the list-signing certificate

    TBSList ::= SEQUENCE {
        version             INTEGER { v1(1) },
        listType            ListType,
        sequenceNumber      INTEGER (1..9223372036854775807),
        thisUpdate          GeneralizedTime,        -- YYYYMMDDHHMMSSZ
        nextUpdate          GeneralizedTime,        -- later than thisUpdate
        entries             ListEntries }           -- the alternative numbered like listType

    ListType ::= ENUMERATED { issuerWhitelist(1), cityList(2), caKeyList(3) }

    ListEntries ::= CHOICE {
        issuers         [1] SEQUENCE OF IssuerEntry,  -- ascending issuerId
        cities          [2] SEQUENCE OF CityEntry,    -- ascending cityCode
        caKeys          [3] SEQUENCE OF CaKeyEntry }  -- ascending caIndex

    IssuerEntry ::= SEQUENCE {
        issuerId            PrintableString (SIZE (1..8)),  -- cn8 digits, no F padding
        certificateSerial   INTEGER (0..16777215),          -- the interop certificate's serial
        caIndex             INTEGER (0..255),               -- the CA key that certified it
        status              IssuerStatus,
        expiry              PrintableString (SIZE (4)) }    -- MMYY, as the certificate says

    IssuerStatus ::= ENUMERATED { active(0), suspended(1), revoked(2) }

    CityEntry ::= SEQUENCE {
        cityCode            PrintableString (SIZE (6)),     -- GB/T 2260, prefecture level
        name                UTF8String (SIZE (1..64)),
        provinceCode        PrintableString (SIZE (6)),     -- GB/T 2260, NN0000
        cardInterop         InteropStatus,                  -- transport card (一卡通)
        qrInterop           InteropStatus,                  -- transport QR code (一码通)
        effectiveFrom       GeneralizedTime }

    InteropStatus ::= ENUMERATED { notConnected(0), connected(1), suspended(2) }

    CaKeyEntry ::= SEQUENCE {
        caIndex             INTEGER (0..255),               -- annex 中心CA公钥索引
        publicKey           OCTET STRING (SIZE (33)),       -- compressed SM2 point
        verifyUntil         GeneralizedTime }

    END

Choices, each for one reason:

* The type is said twice on purpose: ``listType`` for a reader that stops at the header, the
  CHOICE tag so that ``openssl asn1parse`` shows which entries follow. They must agree; a list
  where they do not is malformed.
* Issuer validity is the MMYY of the interop certificate (annex 证书失效日期), not a pair of
  GeneralizedTimes: the acceptor checks expiry from the certificate inside the QR payload, so
  the list can neither be more precise nor disagree with it.
* CA public keys are 33-byte compressed points, the form the QR payload uses for every key.
* Entries are sorted by their key and a decoder requires strictly ascending keys, so one content
  has one encoding and duplicates cannot be expressed.
* Decoding is strict DER (X.690 §10): the bytes must be exactly the encoding of what they
  decode to. The reader checks it as it reads, once: every deviation (another tag, a long-form
  or indefinite length where a shorter one exists, a non-minimal or empty INTEGER, a string not
  valid in its encoding, a time that is not ``YYYYMMDDHHMMSSZ``, bytes past the end) is refused
  with the field and the byte offset. Tags are single identifier octets (tag numbers below 31),
  which is all the format uses.

The writer makes DER: definite lengths in the fewest octets, integers in the fewest octets,
``YYYYMMDDHHMMSSZ`` times. Each ``read_*`` primitive takes the data, the offset of an element and
the end of the enclosing contents, and returns the value with the offset just past the element.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, is_dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar

from ca.core.errors import JtcaError
from ca.pki.x509 import OID_SM2_WITH_SM3
from ca.qr.codec import expiry_end
from ca.registry.divisions import InvalidIssuerId, validate_issuer_id
from hsm import der_scan
from hsm.errors import InvalidKey
from hsm.sm.sm2 import SM2PublicKey

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


# -- more primitives: any element, OBJECT IDENTIFIER, PrintableString -------------------------
OBJECT_IDENTIFIER: Final = 0x06
_PRINTABLE: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)


def read_any(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """Start and end of the contents of the element at ``offset``, whatever its tag (one
    identifier octet: the high-tag-number form is refused)."""
    if offset >= end:
        raise NotDer(offset, "truncated: no identifier and length here")
    if data[offset] & 0x1F == 0x1F:
        raise NotDer(offset, "an identifier in the high-tag-number form")
    return read_element(data, offset, end, data[offset])


def oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER element (X.690 §8.19) of a dotted string."""
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(body))


def read_oid(data: bytes, offset: int, end: int) -> tuple[str, int]:
    """An OBJECT IDENTIFIER as a dotted string; every sub-identifier in its fewest octets."""
    start, stop = read_element(data, offset, end, OBJECT_IDENTIFIER)
    if start == stop:
        raise NotDer(offset, "an OBJECT IDENTIFIER with no contents octets")
    if data[stop - 1] & 0x80:
        raise NotDer(stop - 1, "the last sub-identifier of the OBJECT IDENTIFIER is cut")
    numbers: list[int] = []
    value, first = 0, True
    for at in range(start, stop):
        octet = data[at]
        if first and octet == 0x80:
            raise NotDer(at, "a sub-identifier with a leading 0x80 octet (not DER)")
        value = (value << 7) | (octet & 0x7F)
        first = not octet & 0x80
        if first:
            numbers.append(value)
            value = 0
    head = numbers[0]
    arcs = [0, head] if head < 40 else [1, head - 40] if head < 80 else [2, head - 80]
    return ".".join(str(arc) for arc in [*arcs, *numbers[1:]]), stop


def read_printable(data: bytes, offset: int, end: int) -> tuple[str, int]:
    """A PrintableString (X.680 §41.4: letters, digits, space and ``'()+,-./:=?``)."""
    start, stop = read_element(data, offset, end, PRINTABLE_STRING)
    for at in range(start, stop):
        if data[at] not in _PRINTABLE:
            raise NotDer(at, f"0x{data[at]:02x} is not a PrintableString character")
    return data[start:stop].decode("ascii"), stop


# -- values -------------------------------------------------------------------------------------
LIST_VERSION: Final = 1
MAX_SEQUENCE: Final = (1 << 63) - 1  # fits the publisher's BIGINT column
MAX_TIME: Final = 253402300799  # 9999-12-31T23:59:59Z, the last four-digit-year GeneralizedTime
MAX_INTEROP_SERIAL: Final = 0xFFFFFF  # annex 证书序列号: 3 bytes
MAX_CA_INDEX: Final = 255  # annex 中心CA公钥索引: 1 byte
MAX_CITY_NAME: Final = 64
COMPRESSED_KEY_SIZE: Final = 33

_DIGITS6 = re.compile(r"[0-9]{6}")
_ISSUER_ID_DIGITS = re.compile(r"[0-9]{1,8}")
_MMYY = re.compile(r"(0[1-9]|1[0-2])[0-9]{2}")


class ListType(StrEnum):
    """The list types of this version; each has a descriptor in ``DESCRIPTORS``."""

    ISSUERS = "issuer-whitelist"
    CITIES = "city-list"
    CA_KEYS = "ca-key-list"

    @property
    def number(self) -> int:
        """The ENUMERATED value and the ``entries`` CHOICE tag."""
        return descriptor_for(self).number

    @property
    def asn1_name(self) -> str:
        return descriptor_for(self).asn1_name


class IssuerStatus(StrEnum):
    ACTIVE = "active"  # QR codes of the issuer are accepted
    SUSPENDED = "suspended"  # 暂停: refused until the issuer is active again
    REVOKED = "revoked"  # 注销/吊销: refused for good


ISSUER_STATUS_NUMBERS: Final[Mapping[IssuerStatus, int]] = {
    IssuerStatus.ACTIVE: 0,
    IssuerStatus.SUSPENDED: 1,
    IssuerStatus.REVOKED: 2,
}


class InteropStatus(StrEnum):
    NOT_CONNECTED = "not-connected"
    CONNECTED = "connected"
    SUSPENDED = "suspended"


INTEROP_STATUS_NUMBERS: Final[Mapping[InteropStatus, int]] = {
    InteropStatus.NOT_CONNECTED: 0,
    InteropStatus.CONNECTED: 1,
    InteropStatus.SUSPENDED: 2,
}


@dataclass(frozen=True, slots=True)
class IssuerEntry:
    """One QR issuer (发行机构) and its current interop certificate (互通证书)."""

    issuer_id: str  # annex 发行机构标识, cn8: 1-8 digits as the payload carries them
    certificate_serial: int  # annex 证书序列号, 3 bytes
    ca_index: int  # annex 中心CA公钥索引 of the CA key that signed the interop certificate
    status: IssuerStatus
    expiry: str  # annex 证书失效日期, MMYY: valid through the end of that month (UTC)

    @property
    def key(self) -> str:
        return self.issuer_id

    @property
    def valid_through(self) -> int:
        return expiry_end(self.expiry)


@dataclass(frozen=True, slots=True)
class CityEntry:
    """One city of the interconnection (互联互通城市) and its card and QR status."""

    city_code: str  # GB/T 2260 prefecture-level code (a 直辖市 uses its own NN0000 code)
    name: str
    province_code: str  # GB/T 2260 code of its province, NN0000
    card_interop: InteropStatus
    qr_interop: InteropStatus
    effective_from: int  # Unix seconds (UTC) from which these statuses apply

    @property
    def key(self) -> str:
        return self.city_code


@dataclass(frozen=True, slots=True)
class CaKeyEntry:
    """One central CA key (中心CA公钥) by its index, and until when acceptors use it."""

    ca_index: int
    public_key: SM2PublicKey
    verify_until: int  # Unix seconds (UTC); after this acceptors drop the key

    @property
    def key(self) -> int:
        return self.ca_index


ListEntry: TypeAlias = IssuerEntry | CityEntry | CaKeyEntry


@dataclass(frozen=True, slots=True)
class ListContent:
    """What a list says, before signing or after verifying. Times are Unix seconds (UTC)."""

    list_type: ListType  # (a list type registered outside ListType: its name)
    sequence: int  # strictly increasing per list type
    this_update: int
    next_update: int
    entries: tuple[ListEntry, ...]  # ascending by key


@dataclass(frozen=True, slots=True)
class SignedListParts:
    """A decoded signed list: the content, the exact TBS bytes, signature and certificates."""

    content: ListContent
    tbs_der: bytes
    signature_der: bytes  # DER SEQUENCE { r, s }
    certificates: tuple[bytes, ...]  # DER; the list-signing certificate first


class ListContentError(JtcaError):
    """List content that cannot be signed, or bytes that are not a well-formed list.

    ``field`` names the field (``entries[2].issuer_id`` for a builder's input,
    ``tbsList.entries[2].issuerId`` for decoded bytes); ``problem`` says what is wrong, with the
    byte offset for decoded bytes.
    """

    title = "Bad list"
    exit_code = 3

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class UnknownListType(ListContentError):
    """A listType this version of jtca does not know."""


# -- field kinds: how one field is written and read ---------------------------------------------
class BadValue(ValueError):
    """Well-formed DER whose value the field does not take (an unknown ENUMERATED number, a
    time before 1970, a public key that is no point), at ``offset``."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"{problem} (at offset {offset})")
        self.offset = offset
        self.problem = problem


class FieldKind(Protocol):
    """The DER type of a field: ``write`` gives the whole element of a value; ``read`` takes
    the element at ``offset`` (raising NotDer or BadValue) and returns the value and the offset
    just past it."""

    def write(self, value: Any) -> bytes: ...

    def read(self, data: bytes, offset: int, end: int) -> tuple[Any, int]: ...


_SMALL_INTEGERS: Final = tuple(integer(n) for n in range(256))


class Integer:
    """INTEGER (its range is the descriptor's check)."""

    def write(self, value: int) -> bytes:
        if 0 <= value < 256:
            return _SMALL_INTEGERS[value]
        return integer(value)

    def read(self, data: bytes, offset: int, end: int) -> tuple[int, int]:
        return read_integer(data, offset, end)


E = TypeVar("E", bound=StrEnum)


class Enumerated(Generic[E]):
    """ENUMERATED, numbered by ``numbers``; an unknown number is a BadValue."""

    def __init__(self, numbers: Mapping[E, int], name: str) -> None:
        self.name = name
        self._der = {member: integer(number, ENUMERATED) for member, number in numbers.items()}
        self._members = {number: member for member, number in numbers.items()}

    def write(self, value: E) -> bytes:
        return self._der[value]

    def read(self, data: bytes, offset: int, end: int) -> tuple[E, int]:
        number, stop = read_integer(data, offset, end, ENUMERATED)
        if number not in self._members:
            raise BadValue(offset, f"{number} is not an {self.name}")
        return self._members[number], stop


class Printable:
    """PrintableString."""

    def write(self, value: str) -> bytes:
        return tlv(PRINTABLE_STRING, value.encode("ascii"))

    def read(self, data: bytes, offset: int, end: int) -> tuple[str, int]:
        return read_printable(data, offset, end)


class Utf8:
    """UTF8String (strict UTF-8: no overlong forms, no surrogates)."""

    def write(self, value: str) -> bytes:
        return tlv(UTF8_STRING, value.encode("utf-8"))

    def read(self, data: bytes, offset: int, end: int) -> tuple[str, int]:
        return read_text(data, offset, end, UTF8_STRING, "utf-8")


class Time:
    """GeneralizedTime ``YYYYMMDDHHMMSSZ`` as Unix seconds, from 1970 to 9999."""

    def write(self, value: int) -> bytes:
        return generalized_time(value)

    def read(self, data: bytes, offset: int, end: int) -> tuple[int, int]:
        start, stop = read_element(data, offset, end, GENERALIZED_TIME)
        text = data[start:stop]
        if _TIME.fullmatch(text) and text[:4] < b"1970":
            raise BadValue(offset, f"{text.decode()} is before 1970")
        return read_time(data, offset, end)


class Sm2Point:
    """OCTET STRING (SIZE (33)): a compressed SM2 point."""

    def write(self, value: SM2PublicKey) -> bytes:
        return tlv(OCTET_STRING, value.compressed)

    def read(self, data: bytes, offset: int, end: int) -> tuple[SM2PublicKey, int]:
        point, stop = read_octets(data, offset, end)
        if len(point) != COMPRESSED_KEY_SIZE:
            raise BadValue(offset, f"{len(point)} bytes; a compressed SM2 point is 33")
        try:
            return SM2PublicKey.from_bytes(point), stop
        except (InvalidKey, ValueError) as exc:
            raise BadValue(offset, str(exc)) from None


# -- descriptors ---------------------------------------------------------------------------------
class Problem(Exception):
    """A check's finding: the Python ``attribute`` at fault and what is wrong with it."""

    def __init__(self, attribute: str, problem: str) -> None:
        super().__init__(problem)
        self.attribute = attribute
        self.problem = problem


@dataclass(frozen=True)
class Field:
    """One field of an entry: its Python attribute, its ASN.1 name and its DER type."""

    attribute: str
    asn1_name: str
    kind: FieldKind


@dataclass(frozen=True)
class ListDescriptor:
    """Everything the codec knows about one list type.

    ``fields`` are the entry's SEQUENCE in order (and the value type's constructor keywords);
    ``check`` raises Problem for a value the list must not carry (the same check for content
    to sign and for decoded bytes); entries are sorted by, and unique in, the ``key`` attribute.
    """

    name: str  # the ListType value, "issuer-whitelist"
    number: int  # listType ENUMERATED value and the entries CHOICE tag [number]
    asn1_name: str  # "issuerWhitelist"
    entry_class: type
    entry_asn1_name: str  # "IssuerEntry"
    fields: tuple[Field, ...]
    key: str
    check: Callable[[Any], None]

    def __post_init__(self) -> None:
        attributes = [field.attribute for field in self.fields]
        getter = attrgetter(*attributes)
        # the writer's and the reader's own precomputed steps (a list of 10,000 entries is read
        # and written on every publication)
        object.__setattr__(
            self, "_values", getter if len(attributes) > 1 else lambda e: (getter(e),)
        )
        object.__setattr__(self, "_writes", tuple(field.kind.write for field in self.fields))
        object.__setattr__(self, "_reads", tuple(field.kind.read for field in self.fields))
        positional = (
            is_dataclass(self.entry_class)
            and [f.name for f in dataclass_fields(self.entry_class)] == attributes
        )
        object.__setattr__(self, "_positional", positional)

    def asn1_field(self, attribute: str) -> str:
        for field in self.fields:
            if field.attribute == attribute:
                return field.asn1_name
        return attribute

    def write_entry(self, entry: Any) -> bytes:
        writes: tuple[Callable[[Any], bytes], ...] = self._writes  # type: ignore[attr-defined]
        values = self._values(entry)  # type: ignore[attr-defined]
        return tlv(
            SEQUENCE, b"".join([write(value) for write, value in zip(writes, values, strict=True)])
        )

    def read_entry(self, data: bytes, offset: int, end: int, where: str) -> Any:
        """The entry whose element is at ``offset``; ListContentError names ``where`` or the
        field within it, and the offset."""
        try:
            start, stop = read_element(data, offset, end, SEQUENCE)
        except NotDer as exc:
            raise ListContentError(where, f"not DER: {exc}") from None
        values: list[Any] = []
        at = start
        index = 0
        try:
            for index, read in enumerate(self._reads):  # type: ignore[attr-defined]
                if at >= stop:
                    field = self.fields[index]
                    raise ListContentError(
                        where,
                        f"not DER: at offset {at}: the {self.entry_asn1_name} ends before "
                        f"its {field.asn1_name}",
                    )
                value, at = read(data, at, stop)
                values.append(value)
        except NotDer as exc:
            name = f"{where}.{self.fields[index].asn1_name}"
            raise ListContentError(name, f"not DER: {exc}") from None
        except BadValue as exc:
            raise ListContentError(f"{where}.{self.fields[index].asn1_name}", str(exc)) from None
        if at != stop:
            raise ListContentError(
                where,
                f"not DER: at offset {at}: bytes after the last field of the "
                f"{self.entry_asn1_name}",
            )
        if self._positional:  # type: ignore[attr-defined]
            return self.entry_class(*values)
        return self.entry_class(
            **{f.attribute: v for f, v in zip(self.fields, values, strict=True)}
        )


# -- checks (the same for content to sign and for decoded bytes) ---------------------------------
def need_int(attribute: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Problem(attribute, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise Problem(attribute, f"{value} is outside {low}..{high}")
    return value


def need_time(attribute: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Problem(attribute, f"must be Unix seconds (an integer), got {value!r}")
    if not 0 <= value <= MAX_TIME:
        raise Problem(attribute, f"{value} is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z")
    return value


def need_enum(attribute: str, value: object, kind: type[StrEnum]) -> None:
    if not isinstance(value, kind):
        allowed = ", ".join(member.value for member in kind)
        raise Problem(attribute, f"{value!r} is not one of {allowed}")


def _check_issuer(entry: IssuerEntry) -> None:
    issuer_id = entry.issuer_id
    # 1-8 ASCII digits are always a valid cn8 issuer id; anything else asks the registry's rule.
    if not (isinstance(issuer_id, str) and _ISSUER_ID_DIGITS.fullmatch(issuer_id)):
        try:
            validate_issuer_id(issuer_id)
        except InvalidIssuerId:
            raise Problem("issuer_id", f"{issuer_id!r} is not 1-8 decimal digits (cn8)") from None
    need_int("certificate_serial", entry.certificate_serial, 0, MAX_INTEROP_SERIAL)
    need_int("ca_index", entry.ca_index, 0, MAX_CA_INDEX)
    need_enum("status", entry.status, IssuerStatus)
    if not isinstance(entry.expiry, str) or not _MMYY.fullmatch(entry.expiry):
        raise Problem("expiry", f"{entry.expiry!r} is not MMYY (month 01-12)")


def _check_city(entry: CityEntry) -> None:
    code, province = entry.city_code, entry.province_code
    if not isinstance(code, str) or not _DIGITS6.fullmatch(code) or not code.endswith("00"):
        raise Problem("city_code", f"{code!r} is not a six-digit prefecture code (GB/T 2260)")
    if not isinstance(entry.name, str) or not entry.name:
        raise Problem("name", f"must be a non-empty string, got {entry.name!r}")
    if entry.name != entry.name.strip() or not entry.name.isprintable():
        raise Problem("name", f"{entry.name!r} has surrounding spaces or control characters")
    if len(entry.name) > MAX_CITY_NAME:
        raise Problem("name", f"{len(entry.name)} characters; at most {MAX_CITY_NAME}")
    if not isinstance(province, str) or not _DIGITS6.fullmatch(province):
        raise Problem("province_code", f"{province!r} is not a six-digit code (GB/T 2260)")
    if not province.endswith("0000"):
        raise Problem("province_code", f"{province!r} is not a province code (NN0000)")
    if code[:2] != province[:2]:
        raise Problem("province_code", f"{province!r} is not the province of city {code}")
    need_enum("card_interop", entry.card_interop, InteropStatus)
    need_enum("qr_interop", entry.qr_interop, InteropStatus)
    need_time("effective_from", entry.effective_from)


def _check_ca_key(entry: CaKeyEntry) -> None:
    need_int("ca_index", entry.ca_index, 0, MAX_CA_INDEX)
    if not isinstance(entry.public_key, SM2PublicKey):
        raise Problem("public_key", f"must be an SM2PublicKey, got {entry.public_key!r}")
    need_time("verify_until", entry.verify_until)


_ISSUER_STATUS: Final = Enumerated(ISSUER_STATUS_NUMBERS, "IssuerStatus")
_INTEROP: Final = Enumerated(INTEROP_STATUS_NUMBERS, "InteropStatus")

ISSUERS: Final = ListDescriptor(
    name=ListType.ISSUERS,
    number=1,
    asn1_name="issuerWhitelist",
    entry_class=IssuerEntry,
    entry_asn1_name="IssuerEntry",
    fields=(
        Field("issuer_id", "issuerId", Printable()),
        Field("certificate_serial", "certificateSerial", Integer()),
        Field("ca_index", "caIndex", Integer()),
        Field("status", "status", _ISSUER_STATUS),
        Field("expiry", "expiry", Printable()),
    ),
    key="issuer_id",
    check=_check_issuer,
)
CITIES: Final = ListDescriptor(
    name=ListType.CITIES,
    number=2,
    asn1_name="cityList",
    entry_class=CityEntry,
    entry_asn1_name="CityEntry",
    fields=(
        Field("city_code", "cityCode", Printable()),
        Field("name", "name", Utf8()),
        Field("province_code", "provinceCode", Printable()),
        Field("card_interop", "cardInterop", _INTEROP),
        Field("qr_interop", "qrInterop", _INTEROP),
        Field("effective_from", "effectiveFrom", Time()),
    ),
    key="city_code",
    check=_check_city,
)
CA_KEYS: Final = ListDescriptor(
    name=ListType.CA_KEYS,
    number=3,
    asn1_name="caKeyList",
    entry_class=CaKeyEntry,
    entry_asn1_name="CaKeyEntry",
    fields=(
        Field("ca_index", "caIndex", Integer()),
        Field("public_key", "publicKey", Sm2Point()),
        Field("verify_until", "verifyUntil", Time()),
    ),
    key="ca_index",
    check=_check_ca_key,
)

# -- registration --------------------------------------------------------------------------------
DESCRIPTORS: Final[tuple[ListDescriptor, ...]] = (ISSUERS, CITIES, CA_KEYS)
_BY_NAME: dict[str, ListDescriptor] = {}
_BY_NUMBER: dict[int, ListDescriptor] = {}
_BY_CLASS: dict[type, ListDescriptor] = {}


def register(descriptor: ListDescriptor) -> ListDescriptor:
    """Make the codec know a list type. Its name and number must be new."""
    if descriptor.name in _BY_NAME or descriptor.number in _BY_NUMBER:
        raise ValueError(f"list type {descriptor.name}({descriptor.number}) is already registered")
    if not 0 <= descriptor.number < 31:
        raise ValueError(f"list type number {descriptor.number} is not 0..30 (one tag octet)")
    _BY_NAME[descriptor.name] = descriptor
    _BY_NUMBER[descriptor.number] = descriptor
    _BY_CLASS[descriptor.entry_class] = descriptor
    return descriptor


def unregister(descriptor: ListDescriptor) -> None:
    """Forget a list type ``register`` added (for tests and tools that add their own)."""
    if _BY_NAME.get(descriptor.name) is descriptor:
        del _BY_NAME[descriptor.name]
        del _BY_NUMBER[descriptor.number]
        _BY_CLASS.pop(descriptor.entry_class, None)


for _descriptor in DESCRIPTORS:
    register(_descriptor)


def descriptor_for(list_type: str) -> ListDescriptor:
    """The descriptor of a registered list type, by its name (a ListType is one)."""
    return _BY_NAME[str(list_type)]


def descriptor_of(entry: object) -> ListDescriptor:
    """The descriptor of the list type whose entries are of ``entry``'s class."""
    return _BY_CLASS[type(entry)]


def _typed(name: str) -> ListType:
    """The ListType member of that name; the name itself for a type registered outside it."""
    try:
        return ListType(name)
    except ValueError:
        return name  # type: ignore[return-value]


# Kept for the modules that read them: derived from the descriptors.
LIST_TYPE_NUMBERS: Final[Mapping[ListType, int]] = {t: descriptor_for(t).number for t in ListType}
ENTRY_CLASSES: Final[Mapping[ListType, type]] = {t: descriptor_for(t).entry_class for t in ListType}
ASN1_FIELD_NAMES: Final[Mapping[str, str]] = {
    field.attribute: field.asn1_name for d in DESCRIPTORS for field in d.fields
}


# -- content -------------------------------------------------------------------------------------
class _EntryProblem(Exception):
    def __init__(self, index: int, attribute: str | None, problem: str) -> None:
        super().__init__(problem)
        self.index = index
        self.attribute = attribute
        self.problem = problem

    def field(self, descriptor: ListDescriptor, asn1: bool) -> str:
        prefix = f"tbsList.entries[{self.index}]" if asn1 else f"entries[{self.index}]"
        if self.attribute is None:
            return prefix
        name = descriptor.asn1_field(self.attribute) if asn1 else self.attribute
        return f"{prefix}.{name}"


def _entry_problems(descriptor: ListDescriptor, entries: Sequence[object]) -> None:
    """Raise ``_EntryProblem`` for the first bad entry or duplicate key."""
    expected = descriptor.entry_class
    seen: dict[object, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, expected):
            got = type(entry).__name__
            raise _EntryProblem(
                index, None, f"{descriptor.name} entries are {expected.__name__}, got {got}"
            )
        try:
            descriptor.check(entry)
        except Problem as problem:
            raise _EntryProblem(index, problem.attribute, problem.problem) from None
        key = getattr(entry, descriptor.key)
        if key in seen:
            raise _EntryProblem(
                index, descriptor.key, f"{key!r} is already at entries[{seen[key]}]"
            )
        seen[key] = index


def _header_problems(sequence: object, this_update: object, next_update: object) -> None:
    need_int("sequence", sequence, 1, MAX_SEQUENCE)
    start = need_time("this_update", this_update)
    end = need_time("next_update", next_update)
    if not end > start:
        raise Problem("next_update", f"{end} is not later than this_update {start}")


def make_content(
    list_type: ListType | str,
    entries: Iterable[ListEntry],
    *,
    sequence: int,
    this_update: int,
    next_update: int,
) -> ListContent:
    """Checked list content with entries sorted by key. Raises ListContentError naming the
    field (``entries[3].city_code``), the index and the value."""
    descriptor = _BY_NAME.get(list_type) if isinstance(list_type, str) else None
    if descriptor is None:
        allowed = ", ".join(_BY_NAME)
        raise ListContentError("list_type", f"{list_type!r} is not one of {allowed}")
    given = tuple(entries)
    try:
        _header_problems(sequence, this_update, next_update)
    except Problem as problem:
        raise ListContentError(problem.attribute, problem.problem) from None
    try:
        _entry_problems(descriptor, given)
    except _EntryProblem as problem:
        raise ListContentError(problem.field(descriptor, asn1=False), problem.problem) from None
    key = descriptor.key
    ordered = tuple(sorted(given, key=lambda entry: getattr(entry, key)))
    return ListContent(_typed(descriptor.name), sequence, this_update, next_update, ordered)


# -- writing -------------------------------------------------------------------------------------
def _tbs_der(content: ListContent) -> bytes:
    """The DER TBSList of checked content."""
    descriptor = descriptor_for(content.list_type)
    write = descriptor.write_entry
    return tlv(
        SEQUENCE,
        integer(LIST_VERSION)
        + integer(descriptor.number, ENUMERATED)
        + integer(content.sequence)
        + generalized_time(content.this_update)
        + generalized_time(content.next_update)
        + tlv(0xA0 | descriptor.number, b"".join([write(entry) for entry in content.entries])),
    )


def encode_tbs(content: ListContent) -> bytes:
    """The DER TBSList of checked content (``make_content`` makes such content)."""
    checked = make_content(
        content.list_type,
        content.entries,
        sequence=content.sequence,
        this_update=content.this_update,
        next_update=content.next_update,
    )
    if checked.entries != content.entries:
        raise ListContentError("entries", "are not in ascending order of their keys")
    return _tbs_der(checked)


_ALGORITHM_DER: Final = tlv(SEQUENCE, oid(OID_SM2_WITH_SM3))  # parameters absent


def _one_element(part: bytes, what: str) -> None:
    """Raise NotDer (a ValueError) unless ``part`` is exactly one element."""
    _, stop = read_any(part, 0, len(part))
    if stop != len(part):
        raise NotDer(stop, f"{len(part) - stop} bytes of trailing data after the {what}")


def encode_signed_list(
    tbs_der: bytes, signature_der: bytes, certificates: Sequence[bytes]
) -> bytes:
    """The DER SignedList around a DER TBSList, a DER signature and DER certificates, the
    bytes as given. Raises NotDer (a ValueError) if ``tbs_der`` or a certificate is not one
    element."""
    parts = [bytes(tbs_der), *(bytes(certificate) for certificate in certificates)]
    _one_element(parts[0], "TBSList")
    for certificate in parts[1:]:
        _one_element(certificate, "certificate")
    return tlv(
        SEQUENCE,
        parts[0]
        + _ALGORITHM_DER
        + tlv(BIT_STRING, b"\x00" + bytes(signature_der))
        + tlv(0xA0, b"".join(parts[1:])),
    )


# -- strict reading ------------------------------------------------------------------------------
class _Reader:
    """Reads the fields of one constructed element in order, naming each in its errors."""

    def __init__(self, data: bytes, start: int, stop: int, where: str) -> None:
        self.data, self.at, self.stop, self.where = data, start, stop, where

    def field(self, name: str, read: Callable[[bytes, int, int], tuple[Any, int]]) -> Any:
        try:
            value, self.at = read(self.data, self.at, self.stop)
        except NotDer as exc:
            raise ListContentError(name, f"not DER: {exc}") from None
        except BadValue as exc:
            raise ListContentError(name, str(exc)) from None
        return value

    def element(self, name: str, tag: int) -> tuple[int, int]:
        """Start and end of the contents of the next element, which must have ``tag``."""
        try:
            start, stop = read_element(self.data, self.at, self.stop, tag)
        except NotDer as exc:
            raise ListContentError(name, f"not DER: {exc}") from None
        self.at = stop
        return start, stop

    def end(self) -> None:
        if self.at != self.stop:
            raise ListContentError(
                self.where,
                f"not DER: at offset {self.at}: {self.stop - self.at} bytes of trailing data",
            )


def _entries(
    descriptor: ListDescriptor, data: bytes, tbs: _Reader
) -> tuple[tuple[Any, ...], list[int]]:
    """The entries, and the offset of each."""
    at = tbs.at
    wanted = 0xA0 | descriptor.number
    tag = data[at] if at < tbs.stop else None
    if tag != wanted:
        shown = "nothing" if tag is None else f"0x{tag:02x}"
        raise ListContentError(
            "tbsList.entries",
            f"tag {shown} at offset {at}, but listType {descriptor.asn1_name}({descriptor.number})"
            f" needs [{descriptor.number}] (0x{wanted:02x})",
        )
    start, stop = tbs.element("tbsList.entries", wanted)
    entries: list[Any] = []
    offsets: list[int] = []
    offset = start
    while offset < stop:
        where = f"tbsList.entries[{len(entries)}]"
        offsets.append(offset)
        try:
            _, next_offset = read_element(data, offset, stop, SEQUENCE)
        except NotDer as exc:
            raise ListContentError(where, f"not DER: {exc}") from None
        entries.append(descriptor.read_entry(data, offset, stop, where))
        offset = next_offset
    return tuple(entries), offsets


def _signature(data: bytes, start: int, stop: int) -> bytes:
    """The contents of the signature BIT STRING, a DER SEQUENCE { r INTEGER, s INTEGER }."""
    if start == stop or data[start] != 0:
        raise ListContentError("signature", "the BIT STRING has unused bits or is empty")
    signature = _Reader(data, start + 1, stop, "signature")
    inner_start, inner_stop = signature.element("signature", SEQUENCE)
    signature.end()
    pair = _Reader(data, inner_start, inner_stop, "signature")
    pair.field("signature", read_integer)
    pair.field("signature", read_integer)
    pair.end()
    return data[start + 1 : stop]


def decode_signed_list(data: bytes) -> SignedListParts:
    """Read a DER SignedList strictly and check every field of its content.

    Raises ListContentError naming the field (``tbsList.entries[3].cityCode``) and the byte
    offset for anything that is not exactly the DER encoding of valid content, UnknownListType
    for a listType this version does not know. The signature and certificates are not checked
    here (ca.lists.verify).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ListContentError("SignedList", f"must be bytes, got {type(data).__name__}")
    data = bytes(data)
    costly = costly_element(data)
    if costly is not None:
        raise ListContentError("SignedList", f"not DER: at offset {costly[0]}: {costly[1]}")
    top = _Reader(data, 0, len(data), "SignedList")
    start, stop = top.element("SignedList", SEQUENCE)
    if stop != len(data):
        raise ListContentError(
            "SignedList",
            f"not DER: at offset {stop}: {len(data) - stop} bytes of trailing data after the list",
        )
    signed = _Reader(data, start, stop, "SignedList")

    tbs_at = signed.at
    tbs_start, tbs_stop = signed.element("tbsList", SEQUENCE)
    tbs = _Reader(data, tbs_start, tbs_stop, "tbsList")
    version = tbs.field("tbsList.version", read_integer)
    if version != LIST_VERSION:
        raise ListContentError(
            "tbsList.version",
            f"version {version} is not supported (this reader knows {LIST_VERSION})",
        )
    number = tbs.field("tbsList.listType", lambda d, o, e: read_integer(d, o, e, ENUMERATED))
    descriptor = _BY_NUMBER.get(number)
    if descriptor is None:
        known = ", ".join(f"{d.asn1_name}({d.number})" for d in _BY_NUMBER.values())
        raise UnknownListType("tbsList.listType", f"{number} is not a known list type ({known})")
    sequence = tbs.field("tbsList.sequenceNumber", read_integer)
    this_update = tbs.field("tbsList.thisUpdate", Time().read)
    next_update = tbs.field("tbsList.nextUpdate", Time().read)
    try:
        _header_problems(sequence, this_update, next_update)
    except Problem as problem:
        names = {"sequence": "sequenceNumber", "this_update": "thisUpdate"}
        name = names.get(problem.attribute, "nextUpdate")
        raise ListContentError(f"tbsList.{name}", problem.problem) from None
    entries, offsets = _entries(descriptor, data, tbs)
    tbs.end()
    try:
        _entry_problems(descriptor, entries)
    except _EntryProblem as problem:
        raise ListContentError(
            problem.field(descriptor, asn1=True),
            f"{problem.problem} (the entry at offset {offsets[problem.index]})",
        ) from None
    key = descriptor.key
    for index in range(1, len(entries)):
        before, after = getattr(entries[index - 1], key), getattr(entries[index], key)
        if not before < after:
            raise ListContentError(
                f"tbsList.entries[{index}].{descriptor.asn1_field(key)}",
                f"{after!r} is not after {before!r} (entries are in ascending order; "
                f"the entry at offset {offsets[index]})",
            )
    content = ListContent(_typed(descriptor.name), sequence, this_update, next_update, entries)

    algorithm_start, algorithm_stop = signed.element("signatureAlgorithm", SEQUENCE)
    algorithm = _Reader(data, algorithm_start, algorithm_stop, "signatureAlgorithm")
    dotted = algorithm.field("signatureAlgorithm", read_oid)
    if dotted != OID_SM2_WITH_SM3:
        raise ListContentError(
            "signatureAlgorithm", f"{dotted} is not SM2-with-SM3 ({OID_SM2_WITH_SM3})"
        )
    if algorithm.at != algorithm_stop:
        raise ListContentError(
            "signatureAlgorithm", f"SM2-with-SM3 takes no parameters (at offset {algorithm.at})"
        )
    signature_der = _signature(data, *signed.element("signature", BIT_STRING))
    certificates_start, certificates_stop = signed.element("certificates", 0xA0)
    signed.end()
    certificates: list[bytes] = []
    offset = certificates_start
    while offset < certificates_stop:
        where = f"certificates[{len(certificates)}]"
        try:
            _, end = read_any(data, offset, certificates_stop)
        except NotDer as exc:
            raise ListContentError(where, f"not DER: {exc}") from None
        certificates.append(data[offset:end])
        offset = end
    if len(certificates) != 1:
        raise ListContentError(
            "certificates",
            f"{len(certificates)} certificates; version 1 carries exactly the signer's",
        )
    return SignedListParts(content, data[tbs_at:tbs_stop], signature_der, tuple(certificates))
