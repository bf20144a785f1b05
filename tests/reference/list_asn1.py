"""The signed lists' format in asn1crypto: the independent reference for ca/lists/der.py.

These are the definitions jtca used before issue #17 made ca/lists/der.py the only codec (the
ASN.1 module is in ca/lists/der.py and docs/lists.md). tests/unit/test_list_codec_reference.py
encodes every list type here and decodes it with ca/lists/der.py, and the other way round, byte
for byte. Reading here is strict the asn1crypto way: load with ``strict=True``, then the bytes
must be exactly what the values encode to (DER has one encoding per value).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from asn1crypto import algos, core, parser

from ca.lists.der import (
    INTEROP_STATUS_NUMBERS,
    ISSUER_STATUS_NUMBERS,
    LIST_VERSION,
    CaKeyEntry,
    CityEntry,
    IssuerEntry,
    ListContent,
    ListEntry,
    ListType,
    make_content,
)
from ca.pki.x509 import OID_SM2_WITH_SM3
from hsm.sm.sm2 import SM2PublicKey

LIST_TYPE_NUMBERS = {ListType.ISSUERS: 1, ListType.CITIES: 2, ListType.CA_KEYS: 3}
_TYPE_BY_NUMBER = {number: list_type for list_type, number in LIST_TYPE_NUMBERS.items()}
_STATUS_BY_NUMBER = {number: status for status, number in ISSUER_STATUS_NUMBERS.items()}
_INTEROP_BY_NUMBER = {number: status for status, number in INTEROP_STATUS_NUMBERS.items()}


class Enumerated(core.Integer):  # type: ignore[misc]
    """ENUMERATED read as its number."""

    tag = 10


class IssuerEntrySpec(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto declares fields this way
        ("issuer_id", core.PrintableString),
        ("certificate_serial", core.Integer),
        ("ca_index", core.Integer),
        ("status", Enumerated),
        ("expiry", core.PrintableString),
    ]


class CityEntrySpec(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("city_code", core.PrintableString),
        ("name", core.UTF8String),
        ("province_code", core.PrintableString),
        ("card_interop", Enumerated),
        ("qr_interop", Enumerated),
        ("effective_from", core.GeneralizedTime),
    ]


class CaKeyEntrySpec(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("ca_index", core.Integer),
        ("public_key", core.OctetString),
        ("verify_until", core.GeneralizedTime),
    ]


class IssuerEntries(core.SequenceOf):  # type: ignore[misc]
    _child_spec = IssuerEntrySpec


class CityEntries(core.SequenceOf):  # type: ignore[misc]
    _child_spec = CityEntrySpec


class CaKeyEntries(core.SequenceOf):  # type: ignore[misc]
    _child_spec = CaKeyEntrySpec


ENTRIES_SPEC: dict[ListType, Any] = {
    ListType.ISSUERS: IssuerEntries,
    ListType.CITIES: CityEntries,
    ListType.CA_KEYS: CaKeyEntries,
}


class TbsList(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("list_type", Enumerated),
        ("sequence_number", core.Integer),
        ("this_update", core.GeneralizedTime),
        ("next_update", core.GeneralizedTime),
        ("entries", core.Any),  # the CHOICE: read once listType is known
    ]


class AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class Certificates(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.Any


class SignedList(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("tbs_list", TbsList),
        ("signature_algorithm", AlgorithmIdentifier),
        ("signature", core.OctetBitString),
        ("certificates", Certificates, {"implicit": 0}),
    ]


# -- encoding -------------------------------------------------------------------------------------
def gtime(seconds: int) -> core.GeneralizedTime:
    return core.GeneralizedTime(datetime.fromtimestamp(seconds, UTC))


def entry_value(entry: ListEntry) -> dict[str, Any]:
    if isinstance(entry, IssuerEntry):
        return {
            "issuer_id": entry.issuer_id,
            "certificate_serial": entry.certificate_serial,
            "ca_index": entry.ca_index,
            "status": Enumerated(ISSUER_STATUS_NUMBERS[entry.status]),
            "expiry": entry.expiry,
        }
    if isinstance(entry, CityEntry):
        return {
            "city_code": entry.city_code,
            "name": entry.name,
            "province_code": entry.province_code,
            "card_interop": Enumerated(INTEROP_STATUS_NUMBERS[entry.card_interop]),
            "qr_interop": Enumerated(INTEROP_STATUS_NUMBERS[entry.qr_interop]),
            "effective_from": gtime(entry.effective_from),
        }
    return {
        "ca_index": entry.ca_index,
        "public_key": entry.public_key.compressed,
        "verify_until": gtime(entry.verify_until),
    }


def encode_entry(list_type: ListType, entry: ListEntry) -> bytes:
    encoded: bytes = ENTRIES_SPEC[list_type]._child_spec(entry_value(entry)).dump()
    return encoded


def tbs_list(content: ListContent) -> TbsList:
    number = LIST_TYPE_NUMBERS[content.list_type]
    entries = ENTRIES_SPEC[content.list_type](
        [entry_value(entry) for entry in content.entries], implicit=number
    )
    tbs = TbsList(
        {
            "version": LIST_VERSION,
            "list_type": Enumerated(number),
            "sequence_number": content.sequence,
            "this_update": gtime(content.this_update),
            "next_update": gtime(content.next_update),
            "entries": core.Any(entries),
        }
    )
    return tbs


def encode_tbs(content: ListContent) -> bytes:
    encoded: bytes = tbs_list(content).dump()
    return encoded


def algorithm() -> AlgorithmIdentifier:
    return AlgorithmIdentifier({"algorithm": OID_SM2_WITH_SM3})


def encode_signed_list(
    content: ListContent, signature_der: bytes, certificates: Sequence[bytes]
) -> bytes:
    """The whole SignedList, built from the content (a TBSList asn1crypto loaded would be
    dumped as it was read)."""
    signed = SignedList(
        {
            "tbs_list": tbs_list(content),
            "signature_algorithm": algorithm(),
            "signature": signature_der,
            "certificates": [core.Any.load(certificate) for certificate in certificates],
        }
    )
    encoded: bytes = signed.dump()
    return encoded


# -- strict decoding ------------------------------------------------------------------------------
def _time(value: core.GeneralizedTime) -> int:
    moment: datetime = value.native
    return int(moment.timestamp())


def _entry(list_type: ListType, child: core.Sequence) -> ListEntry:
    if list_type is ListType.ISSUERS:
        return IssuerEntry(
            child["issuer_id"].native,
            child["certificate_serial"].native,
            child["ca_index"].native,
            _STATUS_BY_NUMBER[child["status"].native],
            child["expiry"].native,
        )
    if list_type is ListType.CITIES:
        return CityEntry(
            child["city_code"].native,
            child["name"].native,
            child["province_code"].native,
            _INTEROP_BY_NUMBER[child["card_interop"].native],
            _INTEROP_BY_NUMBER[child["qr_interop"].native],
            _time(child["effective_from"]),
        )
    return CaKeyEntry(
        child["ca_index"].native,
        SM2PublicKey.from_bytes(bytes(child["public_key"].native)),
        _time(child["verify_until"]),
    )


def _element(contents: bytes, index: int) -> bytes:
    contents = bytes(contents)
    for _ in range(index):
        contents = contents[parser.peek(contents) :]
    return contents[: parser.peek(contents)]


def decode_tbs(tbs_der: bytes) -> ListContent:
    """The content of a DER TBSList; ValueError (or another asn1crypto error) if it is not
    exactly the DER of valid content."""
    tbs = TbsList.load(tbs_der, strict=True)
    if tbs["version"].native != LIST_VERSION:
        raise ValueError("version")
    list_type = _TYPE_BY_NUMBER[tbs["list_type"].native]
    raw = _element(tbs.contents, 5)
    number = LIST_TYPE_NUMBERS[list_type]
    parsed = ENTRIES_SPEC[list_type].load(raw, strict=True, implicit=number)
    entries = tuple(_entry(list_type, child) for child in parsed)
    content = make_content(
        list_type,
        entries,
        sequence=tbs["sequence_number"].native,
        this_update=_time(tbs["this_update"]),
        next_update=_time(tbs["next_update"]),
    )
    if content.entries != entries:
        raise ValueError("entries not in ascending order")
    if encode_tbs(content) != bytes(tbs_der):
        raise ValueError("not DER: re-encodes differently")
    return content


def decode_signed_list(data: bytes) -> tuple[ListContent, bytes, bytes, tuple[bytes, ...]]:
    """Content, TBS bytes, signature and certificates of a DER SignedList, strictly."""
    signed = SignedList.load(data, strict=True)
    tbs_der = _element(signed.contents, 0)
    content = decode_tbs(tbs_der)
    if signed["signature_algorithm"].dump() != algorithm().dump():
        raise ValueError("signatureAlgorithm")
    signature_der = bytes(signed["signature"].native)
    parsed = algos.DSASignature.load(signature_der, strict=True)
    if parsed.dump(force=True) != signature_der:
        raise ValueError("signature not DER")
    certificates_contents = bytes(signed["certificates"].contents)
    certificates = []
    while certificates_contents:
        size = parser.peek(certificates_contents)
        certificates.append(certificates_contents[:size])
        certificates_contents = certificates_contents[size:]
    if len(certificates) != 1:
        raise ValueError("certificates")
    if encode_signed_list(content, signature_der, certificates) != bytes(data):
        raise ValueError("not DER: re-encodes differently")
    return content, tbs_der, signature_der, tuple(certificates)
