"""The DER format of signed lists (issue #6), its values, their checks, and strict decoding.

Pure: asn1crypto, ca/lists/der.py and our own value types, no I/O. ca/lists/der.py writes and
reads the entries (asn1crypto's objects cost ~60 µs an entry); asn1crypto reads the envelope,
and re-reads an entry der.py will not take, to name the field at fault. docs/lists.md has the
same module with the meaning of every field and the OpenSSL commands that verify a list without
jtca::

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
* Decoding is strict DER: the bytes must be exactly the encoding of what they decode to (shortest
  lengths and integers, ``YYYYMMDDHHMMSSZ`` times, no trailing bytes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TypeAlias, cast

from asn1crypto import algos, core, parser

from ca.errors import CodecError, JtcaError
from ca.lists import der
from ca.qr.codec import expiry_end
from ca.registry.divisions import InvalidIssuerId, validate_issuer_id
from ca.x509 import OID_SM2_WITH_SM3
from hsm.errors import InvalidKey
from hsm.sm.sm2 import SM2PublicKey

LIST_VERSION: Final = 1
MAX_SEQUENCE: Final = (1 << 63) - 1  # fits the publisher's BIGINT column
MAX_TIME: Final = 253402300799  # 9999-12-31T23:59:59Z, the last four-digit-year GeneralizedTime
MAX_INTEROP_SERIAL: Final = 0xFFFFFF  # annex 证书序列号: 3 bytes
MAX_CA_INDEX: Final = 255  # annex 中心CA公钥索引: 1 byte
MAX_CITY_NAME: Final = 64
COMPRESSED_KEY_SIZE: Final = 33

_TIME = re.compile(rb"[0-9]{14}Z")
_DIGITS6 = re.compile(r"[0-9]{6}")
_ISSUER_ID_DIGITS = re.compile(r"[0-9]{1,8}")
_MMYY = re.compile(r"(0[1-9]|1[0-2])[0-9]{2}")


# -- values -------------------------------------------------------------------------------------
class ListType(StrEnum):
    ISSUERS = "issuer-whitelist"
    CITIES = "city-list"
    CA_KEYS = "ca-key-list"

    @property
    def number(self) -> int:
        """The ENUMERATED value and the ``entries`` CHOICE tag."""
        return LIST_TYPE_NUMBERS[self]

    @property
    def asn1_name(self) -> str:
        return _LIST_TYPE_ASN1[self]


LIST_TYPE_NUMBERS: Final[Mapping[ListType, int]] = {
    ListType.ISSUERS: 1,
    ListType.CITIES: 2,
    ListType.CA_KEYS: 3,
}
_LIST_TYPE_ASN1: Final = {
    ListType.ISSUERS: "issuerWhitelist",
    ListType.CITIES: "cityList",
    ListType.CA_KEYS: "caKeyList",
}
_LIST_TYPE_BY_NUMBER: Final = {n: t for t, n in LIST_TYPE_NUMBERS.items()}


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
ENTRY_CLASSES: Final[Mapping[ListType, type]] = {
    ListType.ISSUERS: IssuerEntry,
    ListType.CITIES: CityEntry,
    ListType.CA_KEYS: CaKeyEntry,
}
# Python attribute -> ASN.1 field name, for errors about decoded lists.
ASN1_FIELD_NAMES: Final[Mapping[str, str]] = {
    "issuer_id": "issuerId",
    "certificate_serial": "certificateSerial",
    "ca_index": "caIndex",
    "status": "status",
    "expiry": "expiry",
    "city_code": "cityCode",
    "name": "name",
    "province_code": "provinceCode",
    "card_interop": "cardInterop",
    "qr_interop": "qrInterop",
    "effective_from": "effectiveFrom",
    "public_key": "publicKey",
    "verify_until": "verifyUntil",
}


@dataclass(frozen=True, slots=True)
class ListContent:
    """What a list says, before signing or after verifying. Times are Unix seconds (UTC)."""

    list_type: ListType
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
    ``tbsList.entries[2].issuerId`` for decoded bytes); ``problem`` says what is wrong.
    """

    title = "Bad list"
    exit_code = 3

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class UnknownListType(ListContentError):
    """A listType this version of jtca does not know."""


# -- checks (shared by the builder and the decoder) ---------------------------------------------
class _Problem(Exception):
    def __init__(self, attribute: str, problem: str) -> None:
        super().__init__(problem)
        self.attribute = attribute
        self.problem = problem


def _need_int(attribute: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(attribute, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise _Problem(attribute, f"{value} is outside {low}..{high}")
    return value


def _need_time(attribute: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(attribute, f"must be Unix seconds (an integer), got {value!r}")
    if not 0 <= value <= MAX_TIME:
        raise _Problem(attribute, f"{value} is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z")
    return value


def _need_enum(attribute: str, value: object, kind: type[StrEnum]) -> None:
    if not isinstance(value, kind):
        allowed = ", ".join(member.value for member in kind)
        raise _Problem(attribute, f"{value!r} is not one of {allowed}")


def _check_issuer(entry: IssuerEntry) -> None:
    issuer_id = entry.issuer_id
    # 1-8 ASCII digits are always a valid cn8 issuer id; anything else asks the registry's rule.
    if not (isinstance(issuer_id, str) and _ISSUER_ID_DIGITS.fullmatch(issuer_id)):
        try:
            validate_issuer_id(issuer_id)
        except InvalidIssuerId:
            raise _Problem("issuer_id", f"{issuer_id!r} is not 1-8 decimal digits (cn8)") from None
    _need_int("certificate_serial", entry.certificate_serial, 0, MAX_INTEROP_SERIAL)
    _need_int("ca_index", entry.ca_index, 0, MAX_CA_INDEX)
    _need_enum("status", entry.status, IssuerStatus)
    if not isinstance(entry.expiry, str) or not _MMYY.fullmatch(entry.expiry):
        raise _Problem("expiry", f"{entry.expiry!r} is not MMYY (month 01-12)")


def _check_city(entry: CityEntry) -> None:
    code, province = entry.city_code, entry.province_code
    if not isinstance(code, str) or not _DIGITS6.fullmatch(code) or not code.endswith("00"):
        raise _Problem("city_code", f"{code!r} is not a six-digit prefecture code (GB/T 2260)")
    if not isinstance(entry.name, str) or not entry.name:
        raise _Problem("name", f"must be a non-empty string, got {entry.name!r}")
    if entry.name != entry.name.strip() or not entry.name.isprintable():
        raise _Problem("name", f"{entry.name!r} has surrounding spaces or control characters")
    if len(entry.name) > MAX_CITY_NAME:
        raise _Problem("name", f"{len(entry.name)} characters; at most {MAX_CITY_NAME}")
    if not isinstance(province, str) or not _DIGITS6.fullmatch(province):
        raise _Problem("province_code", f"{province!r} is not a six-digit code (GB/T 2260)")
    if not province.endswith("0000"):
        raise _Problem("province_code", f"{province!r} is not a province code (NN0000)")
    if code[:2] != province[:2]:
        raise _Problem("province_code", f"{province!r} is not the province of city {code}")
    _need_enum("card_interop", entry.card_interop, InteropStatus)
    _need_enum("qr_interop", entry.qr_interop, InteropStatus)
    _need_time("effective_from", entry.effective_from)


def _check_ca_key(entry: CaKeyEntry) -> None:
    _need_int("ca_index", entry.ca_index, 0, MAX_CA_INDEX)
    if not isinstance(entry.public_key, SM2PublicKey):
        raise _Problem("public_key", f"must be an SM2PublicKey, got {entry.public_key!r}")
    _need_time("verify_until", entry.verify_until)


_CHECKS: Final[Mapping[ListType, Any]] = {
    ListType.ISSUERS: _check_issuer,
    ListType.CITIES: _check_city,
    ListType.CA_KEYS: _check_ca_key,
}
_KEY_ATTRIBUTE: Final = {
    ListType.ISSUERS: "issuer_id",
    ListType.CITIES: "city_code",
    ListType.CA_KEYS: "ca_index",
}


def _entry_problems(list_type: ListType, entries: Sequence[object]) -> None:
    """Raise _Problem-carrying ``_EntryProblem`` for the first bad entry; check duplicates."""
    expected = ENTRY_CLASSES[list_type]
    seen: dict[object, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, expected):
            got = type(entry).__name__
            raise _EntryProblem(
                index, None, f"{list_type} entries are {expected.__name__}, got {got}"
            )
        try:
            _CHECKS[list_type](entry)
        except _Problem as problem:
            raise _EntryProblem(index, problem.attribute, problem.problem) from None
        key = cast(ListEntry, entry).key
        if key in seen:
            raise _EntryProblem(
                index, _KEY_ATTRIBUTE[list_type], f"{key!r} is already at entries[{seen[key]}]"
            )
        seen[key] = index


class _EntryProblem(Exception):
    def __init__(self, index: int, attribute: str | None, problem: str) -> None:
        super().__init__(problem)
        self.index = index
        self.attribute = attribute
        self.problem = problem

    def field(self, asn1: bool) -> str:
        prefix = f"tbsList.entries[{self.index}]" if asn1 else f"entries[{self.index}]"
        if self.attribute is None:
            return prefix
        return f"{prefix}.{ASN1_FIELD_NAMES[self.attribute] if asn1 else self.attribute}"


def _header_problems(sequence: object, this_update: object, next_update: object) -> None:
    _need_int("sequence", sequence, 1, MAX_SEQUENCE)
    start = _need_time("this_update", this_update)
    end = _need_time("next_update", next_update)
    if not end > start:
        raise _Problem("next_update", f"{end} is not later than this_update {start}")


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
    try:
        kind = ListType(list_type)
    except ValueError:
        allowed = ", ".join(t.value for t in ListType)
        raise ListContentError("list_type", f"{list_type!r} is not one of {allowed}") from None
    given = tuple(entries)
    try:
        _header_problems(sequence, this_update, next_update)
    except _Problem as problem:
        raise ListContentError(problem.attribute, problem.problem) from None
    try:
        _entry_problems(kind, given)
    except _EntryProblem as problem:
        raise ListContentError(problem.field(asn1=False), problem.problem) from None
    ordered = tuple(sorted(given, key=lambda entry: entry.key))
    return ListContent(kind, sequence, this_update, next_update, ordered)


# -- asn1crypto structures ----------------------------------------------------------------------
class _Enumerated(core.Integer):  # type: ignore[misc]
    """ENUMERATED read as its number; the value sets are mapped here, not by asn1crypto."""

    tag = 10


class _IssuerEntry(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto declares fields this way
        ("issuer_id", core.PrintableString),
        ("certificate_serial", core.Integer),
        ("ca_index", core.Integer),
        ("status", _Enumerated),
        ("expiry", core.PrintableString),
    ]


class _CityEntry(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("city_code", core.PrintableString),
        ("name", core.UTF8String),
        ("province_code", core.PrintableString),
        ("card_interop", _Enumerated),
        ("qr_interop", _Enumerated),
        ("effective_from", core.GeneralizedTime),
    ]


class _CaKeyEntry(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("ca_index", core.Integer),
        ("public_key", core.OctetString),
        ("verify_until", core.GeneralizedTime),
    ]


class _IssuerEntries(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _IssuerEntry


class _CityEntries(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _CityEntry


class _CaKeyEntries(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _CaKeyEntry


_ENTRIES_SPEC: Final[Mapping[ListType, Any]] = {
    ListType.ISSUERS: _IssuerEntries,
    ListType.CITIES: _CityEntries,
    ListType.CA_KEYS: _CaKeyEntries,
}


class _TbsList(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("list_type", _Enumerated),
        ("sequence_number", core.Integer),
        ("this_update", core.GeneralizedTime),
        ("next_update", core.GeneralizedTime),
        ("entries", core.Any),  # the CHOICE: read once listType is known
    ]


class _AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class _Certificates(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.Any  # each is checked by ca.x509.certificate_info


class _SignedList(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("tbs_list", _TbsList),
        ("signature_algorithm", _AlgorithmIdentifier),
        ("signature", core.OctetBitString),
        ("certificates", _Certificates, {"implicit": 0}),
    ]


# -- encoding -----------------------------------------------------------------------------------
def _gtime(seconds: int) -> core.GeneralizedTime:
    return core.GeneralizedTime(datetime.fromtimestamp(seconds, UTC))


def _entry_value(entry: ListEntry) -> dict[str, Any]:
    if isinstance(entry, IssuerEntry):
        return {
            "issuer_id": entry.issuer_id,
            "certificate_serial": entry.certificate_serial,
            "ca_index": entry.ca_index,
            "status": _Enumerated(ISSUER_STATUS_NUMBERS[entry.status]),
            "expiry": entry.expiry,
        }
    if isinstance(entry, CityEntry):
        return {
            "city_code": entry.city_code,
            "name": entry.name,
            "province_code": entry.province_code,
            "card_interop": _Enumerated(INTEROP_STATUS_NUMBERS[entry.card_interop]),
            "qr_interop": _Enumerated(INTEROP_STATUS_NUMBERS[entry.qr_interop]),
            "effective_from": _gtime(entry.effective_from),
        }
    return {
        "ca_index": entry.ca_index,
        "public_key": entry.public_key.compressed,
        "verify_until": _gtime(entry.verify_until),
    }


# The entries, and the TBSList around them, are written by ca/lists/der.py: asn1crypto's
# objects cost ~60 µs an entry. tests/unit/test_lists.py checks that both write the same bytes.
_STATUS_DER: Final = {s: der.integer(n, der.ENUMERATED) for s, n in ISSUER_STATUS_NUMBERS.items()}
_INTEROP_DER: Final = {s: der.integer(n, der.ENUMERATED) for s, n in INTEROP_STATUS_NUMBERS.items()}
_SMALL_INTEGERS: Final = tuple(der.integer(n) for n in range(MAX_CA_INDEX + 1))


def _integer_der(value: int) -> bytes:
    if 0 <= value <= MAX_CA_INDEX:
        return _SMALL_INTEGERS[value]
    return der.integer(value)


def _issuer_der(entry: IssuerEntry) -> bytes:
    return der.tlv(
        der.SEQUENCE,
        der.tlv(der.PRINTABLE_STRING, entry.issuer_id.encode("latin-1"))
        + _integer_der(entry.certificate_serial)
        + _integer_der(entry.ca_index)
        + _STATUS_DER[entry.status]
        + der.tlv(der.PRINTABLE_STRING, entry.expiry.encode("latin-1")),
    )


def _city_der(entry: CityEntry) -> bytes:
    return der.tlv(
        der.SEQUENCE,
        der.tlv(der.PRINTABLE_STRING, entry.city_code.encode("latin-1"))
        + der.tlv(der.UTF8_STRING, entry.name.encode("utf-8"))
        + der.tlv(der.PRINTABLE_STRING, entry.province_code.encode("latin-1"))
        + _INTEROP_DER[entry.card_interop]
        + _INTEROP_DER[entry.qr_interop]
        + der.generalized_time(entry.effective_from),
    )


def _ca_key_der(entry: CaKeyEntry) -> bytes:
    return der.tlv(
        der.SEQUENCE,
        _integer_der(entry.ca_index)
        + der.tlv(der.OCTET_STRING, entry.public_key.compressed)
        + der.generalized_time(entry.verify_until),
    )


_ENTRY_DER: Final[Mapping[ListType, Callable[[Any], bytes]]] = {
    ListType.ISSUERS: _issuer_der,
    ListType.CITIES: _city_der,
    ListType.CA_KEYS: _ca_key_der,
}


def _entries_der(list_type: ListType, entries: Sequence[ListEntry]) -> bytes:
    """The ``entries`` CHOICE: ``[n] IMPLICIT SEQUENCE OF`` the DER of each entry."""
    entry_der = _ENTRY_DER[list_type]
    return der.tlv(0xA0 | list_type.number, b"".join([entry_der(entry) for entry in entries]))


def _tbs_der(content: ListContent) -> bytes:
    """The DER TBSList of checked content (ca/lists/der.py writes every part)."""
    return der.tlv(
        der.SEQUENCE,
        der.integer(LIST_VERSION)
        + der.integer(content.list_type.number, der.ENUMERATED)
        + der.integer(content.sequence)
        + der.generalized_time(content.this_update)
        + der.generalized_time(content.next_update)
        + _entries_der(content.list_type, content.entries),
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


def _algorithm() -> _AlgorithmIdentifier:
    return _AlgorithmIdentifier({"algorithm": OID_SM2_WITH_SM3})


_ALGORITHM_DER: Final[bytes] = _algorithm().dump()  # SEQUENCE { 1.2.156.10197.1.501 }


def encode_signed_list(
    tbs_der: bytes, signature_der: bytes, certificates: Sequence[bytes]
) -> bytes:
    """The DER SignedList around a DER TBSList, a DER signature and DER certificates.

    Written by ca/lists/der.py around the bytes as given. (asn1crypto's ``dump`` of a loaded
    TBSList takes a definite length whose last octet is 0x80 for an indefinite one and writes
    a broken TBSList, one list size in 256; tests/unit/test_lists.py keeps such a list.)
    Raises ValueError if ``tbs_der`` or a certificate is not one DER element.
    """
    parts = [bytes(tbs_der), *(bytes(certificate) for certificate in certificates)]
    for part in parts:
        parser.parse(part, strict=True)  # one whole element, or ValueError
    return der.tlv(
        der.SEQUENCE,
        parts[0]
        + _ALGORITHM_DER
        + der.tlv(der.BIT_STRING, b"\x00" + bytes(signature_der))
        + der.tlv(0xA0, b"".join(parts[1:])),
    )


# -- strict decoding ------------------------------------------------------------------------------
_PARSE_ERRORS: Final = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


def _integer(value: core.Integer, where: str) -> int:
    contents = bytes(value.contents or b"")
    if not contents:
        raise ListContentError(where, "an INTEGER with no contents octets")
    if len(contents) > 1 and (
        (contents[0] == 0x00 and contents[1] < 0x80)
        or (contents[0] == 0xFF and contents[1] >= 0x80)
    ):
        raise ListContentError(where, "INTEGER not in its shortest form (not DER)")
    return int(value.native)


def _time(value: core.GeneralizedTime, where: str) -> int:
    contents = bytes(value.contents or b"")
    if not _TIME.fullmatch(contents):
        raise ListContentError(
            where, f"GeneralizedTime {contents!r} is not YYYYMMDDHHMMSSZ (DER, whole seconds)"
        )
    moment: datetime = value.native
    seconds = int(moment.timestamp())
    if not 0 <= seconds <= MAX_TIME:
        raise ListContentError(where, f"{contents.decode()} is before 1970")
    return seconds


def _text(value: core.AbstractString, where: str) -> str:
    text: str = value.native
    return text


def _decode_entry(list_type: ListType, child: core.Sequence, where: str) -> ListEntry:
    if list_type is ListType.ISSUERS:
        status_number = _integer(child["status"], f"{where}.status")
        statuses = {n: s for s, n in ISSUER_STATUS_NUMBERS.items()}
        if status_number not in statuses:
            raise ListContentError(f"{where}.status", f"{status_number} is not an IssuerStatus")
        return IssuerEntry(
            issuer_id=_text(child["issuer_id"], f"{where}.issuerId"),
            certificate_serial=_integer(child["certificate_serial"], f"{where}.certificateSerial"),
            ca_index=_integer(child["ca_index"], f"{where}.caIndex"),
            status=statuses[status_number],
            expiry=_text(child["expiry"], f"{where}.expiry"),
        )
    if list_type is ListType.CITIES:
        interop = {n: s for s, n in INTEROP_STATUS_NUMBERS.items()}
        found: dict[str, InteropStatus] = {}
        for attribute in ("card_interop", "qr_interop"):
            field = f"{where}.{ASN1_FIELD_NAMES[attribute]}"
            number = _integer(child[attribute], field)
            if number not in interop:
                raise ListContentError(field, f"{number} is not an InteropStatus")
            found[attribute] = interop[number]
        return CityEntry(
            city_code=_text(child["city_code"], f"{where}.cityCode"),
            name=_text(child["name"], f"{where}.name"),
            province_code=_text(child["province_code"], f"{where}.provinceCode"),
            card_interop=found["card_interop"],
            qr_interop=found["qr_interop"],
            effective_from=_time(child["effective_from"], f"{where}.effectiveFrom"),
        )
    point = bytes(child["public_key"].native)
    if len(point) != COMPRESSED_KEY_SIZE:
        raise ListContentError(
            f"{where}.publicKey", f"{len(point)} bytes; a compressed SM2 point is 33"
        )
    try:
        key = SM2PublicKey.from_bytes(point)
    except InvalidKey as exc:
        raise ListContentError(f"{where}.publicKey", str(exc)) from None
    return CaKeyEntry(
        ca_index=_integer(child["ca_index"], f"{where}.caIndex"),
        public_key=key,
        verify_until=_time(child["verify_until"], f"{where}.verifyUntil"),
    )


def _guard(where: str, action: Any) -> Any:
    """Run ``action``; asn1crypto's parse errors become ListContentError naming ``where``."""
    try:
        return action()
    except (ListContentError, CodecError):
        raise
    except _PARSE_ERRORS as exc:
        raise ListContentError(where, f"not DER: {exc}") from None


def _list_type(tbs: core.Sequence) -> ListType:
    number = _integer(tbs["list_type"], "tbsList.listType")
    if number not in _LIST_TYPE_BY_NUMBER:
        known = ", ".join(f"{t.asn1_name}({t.number})" for t in ListType)
        raise UnknownListType("tbsList.listType", f"{number} is not a known list type ({known})")
    return _LIST_TYPE_BY_NUMBER[number]


def _read_issuer(data: bytes, offset: int, end: int) -> IssuerEntry:
    issuer_id, offset = der.read_text(data, offset, end, der.PRINTABLE_STRING, "latin-1")
    serial, offset = der.read_integer(data, offset, end)
    ca_index, offset = der.read_integer(data, offset, end)
    status, offset = der.read_integer(data, offset, end, der.ENUMERATED)
    expiry, offset = der.read_text(data, offset, end, der.PRINTABLE_STRING, "latin-1")
    if offset != end:
        raise der.NotDer(offset, "bytes after the last field of an IssuerEntry")
    if status not in _ISSUER_STATUS_BY_NUMBER:
        raise der.NotDer(offset, f"{status} is not an IssuerStatus")
    return IssuerEntry(issuer_id, serial, ca_index, _ISSUER_STATUS_BY_NUMBER[status], expiry)


def _read_city(data: bytes, offset: int, end: int) -> CityEntry:
    city_code, offset = der.read_text(data, offset, end, der.PRINTABLE_STRING, "latin-1")
    name, offset = der.read_text(data, offset, end, der.UTF8_STRING, "utf-8")
    province_code, offset = der.read_text(data, offset, end, der.PRINTABLE_STRING, "latin-1")
    card, offset = der.read_integer(data, offset, end, der.ENUMERATED)
    qr, offset = der.read_integer(data, offset, end, der.ENUMERATED)
    effective_from, offset = der.read_time(data, offset, end)
    if offset != end:
        raise der.NotDer(offset, "bytes after the last field of a CityEntry")
    if card not in _INTEROP_BY_NUMBER or qr not in _INTEROP_BY_NUMBER:
        raise der.NotDer(offset, f"{card} or {qr} is not an InteropStatus")
    if not 0 <= effective_from <= MAX_TIME:
        raise der.NotDer(offset, f"effectiveFrom {effective_from} is before 1970")
    return CityEntry(
        city_code,
        name,
        province_code,
        _INTEROP_BY_NUMBER[card],
        _INTEROP_BY_NUMBER[qr],
        effective_from,
    )


def _read_ca_key(data: bytes, offset: int, end: int) -> CaKeyEntry:
    ca_index, offset = der.read_integer(data, offset, end)
    point, offset = der.read_octets(data, offset, end)
    verify_until, offset = der.read_time(data, offset, end)
    if offset != end:
        raise der.NotDer(offset, "bytes after the last field of a CaKeyEntry")
    if len(point) != COMPRESSED_KEY_SIZE:
        raise der.NotDer(offset, f"{len(point)} bytes; a compressed SM2 point is 33")
    if not 0 <= verify_until <= MAX_TIME:
        raise der.NotDer(offset, f"verifyUntil {verify_until} is before 1970")
    try:
        key = SM2PublicKey.from_bytes(point)
    except (InvalidKey, *_PARSE_ERRORS) as exc:
        raise der.NotDer(offset, str(exc)) from None
    return CaKeyEntry(ca_index, key, verify_until)


_ISSUER_STATUS_BY_NUMBER: Final = {n: s for s, n in ISSUER_STATUS_NUMBERS.items()}
_INTEROP_BY_NUMBER: Final = {n: s for s, n in INTEROP_STATUS_NUMBERS.items()}
_ENTRY_READERS: Final[Mapping[ListType, Callable[[bytes, int, int], ListEntry]]] = {
    ListType.ISSUERS: _read_issuer,
    ListType.CITIES: _read_city,
    ListType.CA_KEYS: _read_ca_key,
}


def _read_entries(list_type: ListType, raw: bytes) -> tuple[list[ListEntry], bool]:
    """The entries ca/lists/der.py reads from the DER ``entries`` CHOICE, and whether it read
    all of them.

    It reads an entry only if it is DER and asn1crypto's reading below would take it with the
    same values; it stops at the first one it cannot read, or reads none if the CHOICE's own
    header is not DER. Every list a publisher makes is read to the end here.
    """
    entries: list[ListEntry] = []
    read = _ENTRY_READERS[list_type]
    try:
        offset, end = der.read_element(raw, 0, len(raw), 0xA0 | list_type.number)
        if end != len(raw):
            return entries, False
        while offset < end:
            start, stop = der.read_element(raw, offset, end, der.SEQUENCE)
            entries.append(read(raw, start, stop))
            offset = stop
    except der.NotDer:
        return entries, False
    return entries, True


def _decode_entries(list_type: ListType, raw: bytes) -> tuple[ListEntry, ...]:
    tag = raw[0] if raw else None
    wanted = 0xA0 | list_type.number
    if tag != wanted:
        shown = "nothing" if tag is None else f"0x{tag:02x}"
        raise ListContentError(
            "tbsList.entries",
            f"tag {shown}, but listType {list_type.asn1_name}({list_type.number}) needs "
            f"[{list_type.number}] (0x{wanted:02x})",
        )
    entries, complete = _read_entries(list_type, raw)
    if complete:
        return tuple(entries)
    # Not all DER, or not valid: asn1crypto reads the rest, and says which field is wrong.
    return _decode_entries_asn1crypto(list_type, raw, entries)


def _decode_entries_asn1crypto(
    list_type: ListType, raw: bytes, read: Sequence[ListEntry] = ()
) -> tuple[ListEntry, ...]:
    """Entries as asn1crypto reads them, with the field of the first problem in its errors.

    ``read`` are the first entries as ``_read_entries`` read them, which asn1crypto would read
    the same: they are not read again, so a list with one bad entry costs no more than one
    entry in asn1crypto (and a look at the headers of all).
    """
    spec = _ENTRIES_SPEC[list_type]
    parsed = _guard(
        "tbsList.entries", lambda: spec.load(raw, strict=True, implicit=list_type.number)
    )
    entries: list[ListEntry] = list(read)
    for index in range(len(read), _guard("tbsList.entries", lambda: len(parsed))):
        where = f"tbsList.entries[{index}]"
        child = _guard(where, lambda i=index: parsed[i])
        entry = _guard(where, lambda c=child, w=where: _decode_entry(list_type, c, w))
        if _guard(where, lambda c=child: c.dump()) != spec([_entry_value(entry)])[0].dump():
            raise ListContentError(where, "not DER: re-encodes differently")
        entries.append(entry)
    return tuple(entries)


def decode_signed_list(data: bytes) -> SignedListParts:
    """Parse a DER SignedList strictly and check every field of its content.

    Raises ListContentError naming the field (``tbsList.entries[3].cityCode``) for anything
    that is not exactly the DER encoding of valid content, UnknownListType for a listType this
    version does not know. The signature and certificates are not checked here (ca.lists.verify).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ListContentError("SignedList", f"must be bytes, got {type(data).__name__}")
    data = bytes(data)
    costly = der.costly_element(data)
    if costly is not None:
        raise ListContentError("SignedList", f"not DER: at offset {costly[0]}: {costly[1]}")
    signed = _guard("SignedList", lambda: _SignedList.load(data, strict=True))
    # asn1crypto reads the headers of all children at the first access: do it here, so that a
    # bad header is blamed on its parent rather than on the first field asked for.
    _guard("SignedList", lambda: len(signed))
    tbs = _guard("tbsList", lambda: signed["tbs_list"])
    _guard("tbsList", lambda: len(tbs))
    version = _guard("tbsList.version", lambda: _integer(tbs["version"], "tbsList.version"))
    if version != LIST_VERSION:
        raise ListContentError(
            "tbsList.version",
            f"version {version} is not supported (this reader knows {LIST_VERSION})",
        )
    list_type = _guard("tbsList.listType", lambda: _list_type(tbs))
    sequence = _guard(
        "tbsList.sequenceNumber", lambda: _integer(tbs["sequence_number"], "tbsList.sequenceNumber")
    )
    this_update = _guard(
        "tbsList.thisUpdate", lambda: _time(tbs["this_update"], "tbsList.thisUpdate")
    )
    next_update = _guard(
        "tbsList.nextUpdate", lambda: _time(tbs["next_update"], "tbsList.nextUpdate")
    )
    try:
        _header_problems(sequence, this_update, next_update)
    except _Problem as problem:
        names = {
            "sequence": "sequenceNumber",
            "this_update": "thisUpdate",
            "next_update": "nextUpdate",
        }
        raise ListContentError(f"tbsList.{names[problem.attribute]}", problem.problem) from None
    raw_entries = _guard("tbsList.entries", lambda: _element(tbs.contents, 5))
    entries = _decode_entries(list_type, raw_entries)
    try:
        _entry_problems(list_type, entries)
    except _EntryProblem as problem:
        raise ListContentError(problem.field(asn1=True), problem.problem) from None
    for index in range(1, len(entries)):
        if not entries[index - 1].key < entries[index].key:  # type: ignore[operator]
            name = ASN1_FIELD_NAMES[_KEY_ATTRIBUTE[list_type]]
            raise ListContentError(
                f"tbsList.entries[{index}].{name}",
                f"{entries[index].key!r} is not after {entries[index - 1].key!r} "
                "(entries are in ascending order)",
            )
    content = ListContent(list_type, sequence, this_update, next_update, entries)

    algorithm = _guard("signatureAlgorithm", lambda: signed["signature_algorithm"])
    oid = _guard("signatureAlgorithm", lambda: algorithm["algorithm"].dotted)
    if oid != OID_SM2_WITH_SM3:
        raise ListContentError(
            "signatureAlgorithm", f"{oid} is not SM2-with-SM3 ({OID_SM2_WITH_SM3})"
        )
    if _guard("signatureAlgorithm", lambda: algorithm["parameters"].native) is not None or (
        len(algorithm.contents) != len(_algorithm().contents)
    ):
        raise ListContentError("signatureAlgorithm", "SM2-with-SM3 takes no parameters")
    bit_string = _guard("signature", lambda: signed["signature"])
    if bytes(bit_string.contents or b"")[:1] != b"\x00":
        raise ListContentError("signature", "the BIT STRING has unused bits or is empty")
    signature_der = _guard("signature", lambda: bytes(bit_string.native))
    _check_signature_der(signature_der)
    certificates = _guard("certificates", lambda: signed["certificates"])
    count = _guard("certificates", lambda: len(certificates))
    if count != 1:
        raise ListContentError(
            "certificates", f"{count} certificates; version 1 carries exactly the signer's"
        )
    certificate_ders = tuple(
        _guard(f"certificates[{i}]", lambda i=i: _element(certificates.contents, i))
        for i in range(count)
    )
    tbs_der = _guard("tbsList", lambda: _element(signed.contents, 0))
    if _tbs_der(content) != tbs_der:
        raise ListContentError("tbsList", "not DER: re-encodes differently")
    if encode_signed_list(tbs_der, signature_der, certificate_ders) != data:
        raise ListContentError("SignedList", "not DER: re-encodes differently")
    return SignedListParts(content, tbs_der, signature_der, certificate_ders)


def _element(contents: bytes, index: int) -> bytes:
    """Element ``index`` in ``contents``, the bytes as they are, as asn1crypto's parser
    delimits them. (Not asn1crypto's ``dump`` of a loaded value, which takes a definite length
    whose last octet is 0x80 for an indefinite one and writes other bytes.)"""
    contents = bytes(contents)
    for _ in range(index):
        contents = contents[parser.peek(contents) :]
    return contents[: parser.peek(contents)]


def _check_signature_der(signature_der: bytes) -> None:
    """A DER SEQUENCE { r INTEGER, s INTEGER }; the range of r and s is the verifier's."""

    def parse() -> None:
        parsed = algos.DSASignature.load(signature_der, strict=True)
        r, s = int(parsed["r"].native), int(parsed["s"].native)
        if algos.DSASignature({"r": r, "s": s}).dump() != signature_der:
            raise ValueError("the signature re-encodes differently")

    _guard("signature", parse)
