"""Signed lists for acceptors (issue #6): the DER format, the builder, the terminal's checks with
each refusal reason, strict DER, the JSON rendering, and the QR verifier's trust from lists.

Where the vectors come from: every list is made here, from fresh SoftwareSigner keys and
certificates made with ca/pki/x509.py. ``Der`` below is a second DER writer, typed by hand from the
ASN.1 module of docs/lists.md with plain tag-length-value bytes (no asn1crypto, no ca.lists
encoder): the builder's TBSList must equal its output byte for byte, and it crafts the malformed
and hostile lists that the builder refuses to make. The city codes are GB/T 2260 codes (as in
ca/registry/data/gbt2260_prefecture.csv); QR payloads are made like tests/unit/qr_fixtures.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from asn1crypto import core as asn1_core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import list_asn1 as reference

from ca.core.clock import FixedClock
from ca.core.errors import JtcaError
from ca.lists import der
from ca.lists.asn1 import (
    MAX_CITY_NAME,
    MAX_TIME,
    CaKeyEntry,
    CityEntry,
    InteropStatus,
    IssuerEntry,
    IssuerStatus,
    ListContent,
    ListContentError,
    ListEntry,
    ListType,
    SignedListParts,
    decode_signed_list,
    encode_tbs,
    make_content,
)
from ca.lists.build import build_list
from ca.lists.render import render_json
from ca.lists.trust import (
    accepted_issuers,
    apply_lists,
    trust_from_lists,
    trusted_ca_keys,
    verifier_from_lists,
)
from ca.lists.verify import DEFAULT_SKEW, ListReason, ListRefused, VerifiedList, load_list
from ca.pki.x509 import LIST_SIGNING_EKU, issue_certificate, key_identifier, self_signed_root
from ca.qr.verify import Reason, Rejected
from ca.registry.divisions import default_divisions
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey, raw_to_der

try:  # tests/unit may become a package while others work in the tree
    from . import qr_fixtures as fx
except ImportError:
    import qr_fixtures as fx

NOW = fx.NOW  # 2026-03-15T08:00:00Z
DAY = 86400
GRACE = 3600
ROOT_NAME = {"CN": "交通运输部 交通一卡通根CA 测试", "O": "中华人民共和国交通运输部", "C": "CN"}
LIST_NAME = {"CN": "交通一卡通名单签名 测试", "O": "中华人民共和国交通运输部", "C": "CN"}
OTHER_ROOT_NAME = {"CN": "另一个根CA", "C": "CN"}


def moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -- a root and a list-signing certificate (ca/pki/x509.py, as the ceremony makes them) ------------
@dataclass(frozen=True)
class Pki:
    root: SoftwareSigner
    root_der: bytes
    signer: SoftwareSigner
    cert_der: bytes


def make_pki(
    root: SoftwareSigner | None = None, root_name: dict[str, str] | None = None, **cert: Any
) -> Pki:
    root = root or SoftwareSigner.generate()
    name = root_name or ROOT_NAME
    root_der = self_signed_root(
        root, name, 1, moment(NOW - 365 * DAY), moment(NOW + 3650 * DAY), path_length=1
    )
    signer = SoftwareSigner.generate()
    args: dict[str, Any] = {
        "subject": LIST_NAME,
        "subject_public_key": signer.public_key,
        "issuer_name": name,
        "serial": 2,
        "not_before": moment(NOW - 30 * DAY),
        "not_after": moment(NOW + 730 * DAY),
        "ca": False,
        "path_length": None,
        "key_usage": {"digital_signature"},
        "extended_key_usage": [LIST_SIGNING_EKU],
    }
    args.update(cert)
    return Pki(root, root_der, signer, issue_certificate(root, **args))


PKI = make_pki()
CA0 = SoftwareSigner.generate()
CA1 = SoftwareSigner.generate()

ISSUERS: tuple[IssuerEntry, ...] = (
    IssuerEntry("02113450", 1, 1, IssuerStatus.ACTIVE, "1230"),
    IssuerEntry("0211", 0xFFFFFF, 255, IssuerStatus.REVOKED, "0127"),
    IssuerEntry("31040001", 0, 0, IssuerStatus.SUSPENDED, "0631"),
)
CITIES: tuple[CityEntry, ...] = (
    CityEntry("440300", "深圳市", "440000", InteropStatus.CONNECTED, InteropStatus.CONNECTED, 1),
    CityEntry(
        "110000", "北京市", "110000", InteropStatus.CONNECTED, InteropStatus.NOT_CONNECTED, NOW
    ),
    CityEntry(
        "513200",
        "阿坝藏族羌族自治州",
        "510000",
        InteropStatus.SUSPENDED,
        InteropStatus.NOT_CONNECTED,
        0,
    ),
)
CA_KEYS: tuple[CaKeyEntry, ...] = (
    CaKeyEntry(1, CA1.public_key, NOW + 1800 * DAY),
    CaKeyEntry(0, CA0.public_key, NOW + 365 * DAY),
)
SAMPLES: dict[ListType, tuple[ListEntry, ...]] = {
    ListType.ISSUERS: ISSUERS,
    ListType.CITIES: CITIES,
    ListType.CA_KEYS: CA_KEYS,
}


def build(
    list_type: ListType = ListType.ISSUERS,
    entries: Sequence[ListEntry] | None = None,
    *,
    pki: Pki = PKI,
    sequence: int = 7,
    this_update: int = NOW - 600,
    next_update: int = NOW + DAY,
) -> bytes:
    return build_list(
        list_type,
        SAMPLES[list_type] if entries is None else entries,
        sequence=sequence,
        this_update=this_update,
        next_update=next_update,
        signer=pki.signer,
        signer_certificate_der=pki.cert_der,
    )


def load(data: bytes, *, pki: Pki = PKI, now: int = NOW, **kwargs: Any) -> VerifiedList:
    kwargs.setdefault("grace_seconds", GRACE)
    return load_list(data, trusted_root_der=pki.root_der, now=now, **kwargs)


def refused(data: bytes, reason: ListReason, **kwargs: Any) -> ListRefused:
    with pytest.raises(ListRefused) as caught:
        load(data, **kwargs)
    assert caught.value.reason is reason, caught.value.message
    assert str(caught.value).startswith(f"{reason.value}: ")
    return caught.value


# -- Der: an independent DER writer typed from docs/lists.md -------------------------------------
class Der:
    STATUS: ClassVar = {IssuerStatus.ACTIVE: 0, IssuerStatus.SUSPENDED: 1, IssuerStatus.REVOKED: 2}
    INTEROP: ClassVar = {
        InteropStatus.NOT_CONNECTED: 0,
        InteropStatus.CONNECTED: 1,
        InteropStatus.SUSPENDED: 2,
    }
    TYPE: ClassVar = {ListType.ISSUERS: 1, ListType.CITIES: 2, ListType.CA_KEYS: 3}
    SM2_WITH_SM3 = "1.2.156.10197.1.501"

    @staticmethod
    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        if n < 0x80:
            length = bytes([n])
        else:
            size = n.to_bytes((n.bit_length() + 7) // 8, "big")
            length = bytes([0x80 | len(size)]) + size
        return bytes([tag]) + length + body

    @classmethod
    def integer(cls, n: int, tag: int = 0x02) -> bytes:
        assert n >= 0
        return cls.tlv(tag, n.to_bytes((n.bit_length() + 8) // 8, "big"))

    @classmethod
    def enum(cls, n: int) -> bytes:
        return cls.integer(n, 0x0A)

    @classmethod
    def printable(cls, text: str) -> bytes:
        return cls.tlv(0x13, text.encode("ascii"))

    @classmethod
    def utf8(cls, text: str) -> bytes:
        return cls.tlv(0x0C, text.encode("utf-8"))

    @classmethod
    def gtime(cls, seconds: int) -> bytes:
        return cls.tlv(0x18, time.strftime("%Y%m%d%H%M%SZ", time.gmtime(seconds)).encode())

    @classmethod
    def seq(cls, *parts: bytes) -> bytes:
        return cls.tlv(0x30, b"".join(parts))

    @classmethod
    def ctx(cls, number: int, *parts: bytes) -> bytes:
        return cls.tlv(0xA0 | number, b"".join(parts))

    @classmethod
    def oid(cls, dotted: str) -> bytes:
        arcs = [int(a) for a in dotted.split(".")]
        body = bytearray()
        for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
            chunk = [arc & 0x7F]
            arc >>= 7
            while arc:
                chunk.append(0x80 | (arc & 0x7F))
                arc >>= 7
            body += bytes(reversed(chunk))
        return cls.tlv(0x06, bytes(body))

    @classmethod
    def entry(cls, entry: ListEntry) -> bytes:
        if isinstance(entry, IssuerEntry):
            return cls.seq(
                cls.printable(entry.issuer_id),
                cls.integer(entry.certificate_serial),
                cls.integer(entry.ca_index),
                cls.enum(cls.STATUS[entry.status]),
                cls.printable(entry.expiry),
            )
        if isinstance(entry, CityEntry):
            return cls.seq(
                cls.printable(entry.city_code),
                cls.utf8(entry.name),
                cls.printable(entry.province_code),
                cls.enum(cls.INTEROP[entry.card_interop]),
                cls.enum(cls.INTEROP[entry.qr_interop]),
                cls.gtime(entry.effective_from),
            )
        return cls.seq(
            cls.integer(entry.ca_index),
            cls.tlv(0x04, entry.public_key.compressed),
            cls.gtime(entry.verify_until),
        )

    @classmethod
    def tbs(
        cls,
        list_type: ListType | int = ListType.ISSUERS,
        entries: Sequence[bytes] | None = None,
        *,
        version: bytes | None = None,
        sequence: bytes | None = None,
        this_update: bytes | None = None,
        next_update: bytes | None = None,
        tag: int | None = None,
    ) -> bytes:
        number = list_type if isinstance(list_type, int) else cls.TYPE[list_type]
        if entries is None:
            assert isinstance(list_type, ListType)
            entries = [cls.entry(e) for e in sorted(SAMPLES[list_type], key=lambda e: e.key)]
        return cls.seq(
            version if version is not None else cls.integer(1),
            cls.enum(number),
            sequence if sequence is not None else cls.integer(7),
            this_update if this_update is not None else cls.gtime(NOW - 600),
            next_update if next_update is not None else cls.gtime(NOW + DAY),
            cls.ctx(number if tag is None else tag, *entries),
        )

    @classmethod
    def signed(
        cls,
        tbs: bytes,
        *,
        pki: Pki = PKI,
        signature: bytes | None = None,
        algorithm: bytes | None = None,
        certificates: Sequence[bytes] | None = None,
        unused_bits: int = 0,
    ) -> bytes:
        der_signature = signature if signature is not None else raw_to_der(pki.signer.sign(tbs))
        return cls.seq(
            tbs,
            algorithm if algorithm is not None else cls.seq(cls.oid(cls.SM2_WITH_SM3)),
            cls.tlv(0x03, bytes([unused_bits]) + der_signature),
            cls.ctx(0, *(certificates if certificates is not None else [pki.cert_der])),
        )


def test_der_writer_matches_openssl_names() -> None:
    # GM/T 0006-2012: SM2-with-SM3 is 1.2.156.10197.1.501, which OpenSSL prints for 06 08 2A 81
    # 1C CF 55 01 83 75 (see `openssl asn1parse` of any certificate made by ca/pki/x509.py).
    assert Der.oid(Der.SM2_WITH_SM3) == bytes.fromhex("06082a811ccf55018375")


def test_sample_city_codes_are_gbt2260_codes() -> None:
    divisions = default_divisions()
    for city in CITIES:
        assert city.city_code in divisions.by_code
        assert city.province_code in divisions.by_code
        assert divisions.by_code[city.city_code].name == city.name


# -- building and reading back ---------------------------------------------------------------------
@pytest.mark.parametrize("list_type", list(ListType))
def test_round_trip(list_type: ListType) -> None:
    data = build(list_type, sequence=42)
    listing = load(data, expected_type=list_type, previous_sequence=41)
    assert listing.list_type is list_type
    assert listing.sequence == 42
    assert listing.this_update == NOW - 600
    assert listing.next_update == NOW + DAY
    assert listing.entries == tuple(sorted(SAMPLES[list_type], key=lambda e: e.key))
    assert listing.signer.subject == "C=CN, O=中华人民共和国交通运输部, CN=交通一卡通名单签名 测试"
    assert listing.signer_certificate_der == PKI.cert_der
    assert decode_signed_list(data).certificates == (PKI.cert_der,)


@pytest.mark.parametrize("list_type", list(ListType))
def test_tbs_equals_the_independent_encoding(list_type: ListType) -> None:
    data = build(list_type)
    assert decode_signed_list(data).tbs_der == Der.tbs(list_type)
    # and a list put together by the independent writer is taken as it is
    crafted = Der.signed(Der.tbs(list_type))
    assert load(crafted).entries == load(data).entries


def test_two_builds_of_the_same_content_have_the_same_tbs() -> None:
    shuffled = [ISSUERS[2], ISSUERS[0], ISSUERS[1]]
    first, second = build(entries=ISSUERS), build(entries=shuffled)
    assert first != second  # SM2 signatures are randomised
    assert decode_signed_list(first).tbs_der == decode_signed_list(second).tbs_der


def test_an_empty_list_is_a_list() -> None:
    listing = load(build(ListType.ISSUERS, []))
    assert listing.entries == ()
    assert accepted_issuers(listing) == frozenset()


def test_a_list_larger_than_64_kib() -> None:
    entries = [
        IssuerEntry(f"{i:08d}", i, i % 256, IssuerStatus.ACTIVE, "1230") for i in range(3000)
    ]
    data = build(entries=entries)
    assert len(data) > 65536
    assert len(load(data).entries) == 3000


issuer_entries = st.builds(
    IssuerEntry,
    issuer_id=st.from_regex(r"[0-9]{1,8}", fullmatch=True),
    certificate_serial=st.integers(0, 0xFFFFFF),
    ca_index=st.integers(0, 255),
    status=st.sampled_from(IssuerStatus),
    expiry=st.builds(lambda m, y: f"{m:02d}{y:02d}", st.integers(1, 12), st.integers(0, 99)),
)
city_entries = st.builds(
    lambda province, city, name, card, qr, at: CityEntry(
        f"{province:02d}{city:02d}00", name, f"{province:02d}0000", card, qr, at
    ),
    st.integers(11, 82),
    st.integers(0, 99),
    st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1, max_size=64),
    st.sampled_from(InteropStatus),
    st.sampled_from(InteropStatus),
    st.integers(0, MAX_TIME),
)
ca_key_entries = st.builds(
    lambda index, scalar, until: CaKeyEntry(
        index, SM2PrivateKey.from_scalar(scalar).public_key, until
    ),
    st.integers(0, 255),
    st.integers(1, 2**255),
    st.integers(0, MAX_TIME),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.tuples(
            st.just(ListType.ISSUERS), st.lists(issuer_entries, unique_by=lambda e: e.issuer_id)
        ),
        st.tuples(st.just(ListType.CITIES), st.lists(city_entries, unique_by=lambda e: e.key)),
        st.tuples(
            st.just(ListType.CA_KEYS), st.lists(ca_key_entries, unique_by=lambda e: e.ca_index)
        ),
    ),
    st.integers(1, 2**63 - 1),
    st.integers(0, MAX_TIME - 1),
)
def test_round_trip_of_any_content(
    typed: tuple[ListType, list[ListEntry]], sequence: int, this_update: int
) -> None:
    list_type, entries = typed
    content = make_content(
        list_type, entries, sequence=sequence, this_update=this_update, next_update=MAX_TIME
    )
    tbs = encode_tbs(content)
    assert tbs == Der.tbs(
        list_type,
        [Der.entry(e) for e in content.entries],
        sequence=Der.integer(sequence),
        this_update=Der.gtime(this_update),
        next_update=Der.gtime(MAX_TIME),
    )
    assert decode_signed_list(Der.signed(tbs)).content == content


# -- the builder refuses what a terminal would refuse, naming field, index and value ---------------
A, B, C = ISSUERS
S, K, P = CITIES

BAD_ENTRIES: list[tuple[ListType, Sequence[Any], str, str]] = [
    (ListType.ISSUERS, [A, replace(B, issuer_id="0211345X")], "entries[1].issuer_id", "0211345X"),
    (ListType.ISSUERS, [replace(A, issuer_id="")], "entries[0].issuer_id", "''"),
    (ListType.ISSUERS, [replace(A, issuer_id="123456789")], "entries[0].issuer_id", "123456789"),
    (ListType.ISSUERS, [replace(A, certificate_serial=-1)], "entries[0].certificate_serial", "-1"),
    (ListType.ISSUERS, [replace(A, certificate_serial=1 << 24)], ".certificate_serial", "16777216"),
    (ListType.ISSUERS, [replace(A, certificate_serial=True)], ".certificate_serial", "True"),
    (ListType.ISSUERS, [A, B, replace(C, ca_index=256)], "entries[2].ca_index", "256"),
    (ListType.ISSUERS, [replace(A, status="active")], "entries[0].status", "'active'"),
    (ListType.ISSUERS, [replace(A, expiry="1330")], "entries[0].expiry", "1330"),
    (ListType.ISSUERS, [replace(A, expiry="0030")], "entries[0].expiry", "0030"),
    (ListType.ISSUERS, [A, replace(B, issuer_id=A.issuer_id)], "entries[1].issuer_id", "[0]"),
    (ListType.ISSUERS, [A, S], "entries[1]", "CityEntry"),
    (ListType.CITIES, [replace(S, city_code="4403")], "entries[0].city_code", "4403"),
    (ListType.CITIES, [replace(S, city_code="440301")], "entries[0].city_code", "440301"),
    (ListType.CITIES, [replace(S, name="")], "entries[0].name", "''"),
    (ListType.CITIES, [replace(S, name=" 深圳市")], "entries[0].name", "' 深圳市'"),
    (ListType.CITIES, [replace(S, name="深圳\n市")], "entries[0].name", "深圳\\n市"),
    (ListType.CITIES, [replace(S, name="市" * 65)], "entries[0].name", "65 characters"),
    (ListType.CITIES, [replace(S, province_code="440300")], "entries[0].province_code", "440300"),
    (ListType.CITIES, [replace(S, province_code="450000")], "entries[0].province_code", "450000"),
    (ListType.CITIES, [replace(S, qr_interop=1)], "entries[0].qr_interop", "1"),
    (ListType.CITIES, [replace(S, effective_from=-1)], "entries[0].effective_from", "-1"),
    (
        ListType.CITIES,
        [K, S, replace(P, city_code=S.city_code, province_code=S.province_code)],
        "entries[2].city_code",
        "[1]",
    ),
    (ListType.CA_KEYS, [replace(CA_KEYS[0], ca_index=-1)], "entries[0].ca_index", "-1"),
    (ListType.CA_KEYS, [replace(CA_KEYS[0], public_key=b"\x02" * 33)], ".public_key", "b'"),
    (ListType.CA_KEYS, [replace(CA_KEYS[0], verify_until=MAX_TIME + 1)], ".verify_until", "9999"),
    (ListType.CA_KEYS, [CA_KEYS[0], replace(CA_KEYS[1], ca_index=1)], "entries[1].ca_index", "[0]"),
]


@pytest.mark.parametrize(
    ("list_type", "entries", "field", "shown"),
    BAD_ENTRIES,
    ids=[f"{t}-{f}-{i}" for i, (t, _, f, _) in enumerate(BAD_ENTRIES)],
)
def test_builder_names_the_bad_field(
    list_type: ListType, entries: Sequence[Any], field: str, shown: str
) -> None:
    with pytest.raises(ListContentError) as caught:
        build(list_type, entries)
    assert caught.value.field.endswith(field), caught.value.message
    assert shown in caught.value.problem, caught.value.message
    assert isinstance(caught.value, JtcaError)
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sequence": 0}, "sequence"),
        ({"sequence": True}, "sequence"),
        ({"sequence": 2**63}, "sequence"),
        ({"this_update": -5}, "this_update"),
        ({"next_update": NOW - 600}, "next_update"),
        ({"next_update": NOW - 601}, "next_update"),
    ],
)
def test_builder_checks_the_header(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ListContentError) as caught:
        build(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_builder_refuses_an_unknown_list_type() -> None:
    with pytest.raises(ListContentError, match="'crl' is not one of issuer-whitelist"):
        build_list(
            "crl",
            [],
            sequence=1,
            this_update=NOW,
            next_update=NOW + 1,
            signer=PKI.signer,
            signer_certificate_der=PKI.cert_der,
        )


def cert_for(key: SM2PublicKey, *, root: Pki = PKI, **overrides: Any) -> bytes:
    """A certificate for ``key`` issued by ``root``'s key, list-signing unless overridden."""
    args: dict[str, Any] = {
        "subject": LIST_NAME,
        "subject_public_key": key,
        "issuer_name": ROOT_NAME,
        "serial": 3,
        "not_before": moment(NOW - 30 * DAY),
        "not_after": moment(NOW + 730 * DAY),
        "ca": False,
        "path_length": None,
        "key_usage": {"digital_signature"},
        "extended_key_usage": [LIST_SIGNING_EKU],
    }
    args.update(overrides)
    return issue_certificate(root.root, **args)


CERTIFICATE_FAULTS: dict[str, dict[str, Any]] = {
    "no-eku": {"extended_key_usage": None},
    "other-eku": {"extended_key_usage": ["code_signing"]},
    "no-digital-signature": {"key_usage": {"non_repudiation"}},
    "ca": {"ca": True, "key_usage": {"key_cert_sign", "digital_signature"}},
    "expired": {"not_after": moment(NOW - DAY)},
    "not-yet-valid": {"not_before": moment(NOW + DAY)},
}


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("no-eku", "lacks the list-signing extended key usage"),
        ("other-eku", "lacks the list-signing extended key usage"),
        ("no-digital-signature", "lacks key usage digitalSignature"),
        ("ca", "is a CA certificate"),
        ("expired", "not at this_update"),
        ("not-yet-valid", "not at this_update"),
        ("other-key", "certifies another key"),
        ("garbage", "not an X.509 certificate"),
    ],
)
def test_builder_refuses_a_certificate_terminals_would_refuse(fault: str, problem: str) -> None:
    signer = SoftwareSigner.generate()
    if fault == "other-key":
        cert = PKI.cert_der
    elif fault == "garbage":
        cert = b"\x30\x03\x02\x01\x01"
    else:
        cert = cert_for(signer.public_key, **CERTIFICATE_FAULTS[fault])
    with pytest.raises(ListContentError) as caught:
        build_list(
            ListType.ISSUERS,
            ISSUERS,
            sequence=1,
            this_update=NOW,
            next_update=NOW + DAY,
            signer=signer,
            signer_certificate_der=cert,
        )
    assert caught.value.field == "signer_certificate_der"
    assert problem in caught.value.problem, caught.value.problem


# -- the terminal: every refusal reason ------------------------------------------------------------
DATA = build()


def test_a_good_list_is_taken() -> None:
    listing = load(DATA, expected_type=ListType.ISSUERS, previous_sequence=6)
    assert listing.sequence == 7
    assert len(listing.sm3) == 64


def test_malformed_garbage() -> None:
    error = refused(b"not a list", ListReason.MALFORMED)
    assert error.field == "SignedList"
    assert error.exit_code == 4


def test_malformed_every_truncation() -> None:
    for end in range(len(DATA)):
        with pytest.raises(ListRefused) as caught:
            load(DATA[:end])
        assert caught.value.reason is ListReason.MALFORMED, (end, caught.value.message)


@pytest.mark.parametrize("extra", [b"\x00", b"\x30\x00", DATA])
def test_malformed_trailing_bytes(extra: bytes) -> None:
    refused(DATA + extra, ListReason.MALFORMED)


def test_malformed_long_form_length() -> None:
    # the outer SEQUENCE's length in three octets instead of two: BER, not DER
    assert DATA[1] == 0x82
    longer = b"\x30\x83\x00" + DATA[2:]
    error = refused(longer, ListReason.MALFORMED)
    assert "not DER" in error.message


def crafted_tbs_error(tbs: bytes, reason: ListReason = ListReason.MALFORMED) -> ListRefused:
    """Refusal of a list with this TBSList, properly signed by the list-signing key."""
    return refused(Der.signed(tbs), reason)


@pytest.mark.parametrize(
    ("tbs", "field", "problem"),
    [
        (Der.tbs(version=Der.integer(2)), "tbsList.version", "version 2 is not supported"),
        (Der.tbs(version=Der.integer(0)), "tbsList.version", "version 0"),
        (Der.tbs(sequence=Der.integer(0)), "tbsList.sequenceNumber", "outside 1.."),
        (
            Der.tbs(sequence=Der.tlv(0x02, b"\x00\x07")),
            "tbsList.sequenceNumber",
            "shortest form",
        ),
        (
            Der.tbs(this_update=Der.tlv(0x18, b"20260315075000.5Z")),
            "tbsList.thisUpdate",
            "YYYYMMDDHHMMSSZ",
        ),
        (
            Der.tbs(next_update=Der.tlv(0x18, b"202603160800Z")),
            "tbsList.nextUpdate",
            "YYYYMMDDHHMMSSZ",
        ),
        (
            Der.tbs(this_update=Der.tlv(0x17, b"260315075000Z")),
            "tbsList.thisUpdate",
            "not DER",
        ),
        (Der.tbs(next_update=Der.gtime(NOW - 600)), "tbsList.nextUpdate", "not later"),
        (Der.tbs(tag=2), "tbsList.entries", "needs [1]"),
        (
            Der.tbs(entries=[Der.entry(A), Der.entry(B)]),
            "tbsList.entries[1].issuerId",
            "not after '02113450'",
        ),
        (
            Der.tbs(entries=[Der.entry(A), Der.entry(A)]),
            "tbsList.entries[1].issuerId",
            "already at entries[0]",
        ),
        (
            Der.tbs(entries=[Der.entry(B), Der.entry(replace(A, issuer_id="0211345X"))]),
            "tbsList.entries[1].issuerId",
            "'0211345X' is not 1-8 decimal digits",
        ),
        (
            Der.tbs(
                entries=[
                    Der.seq(
                        Der.printable("0211"),
                        Der.integer(1),
                        Der.integer(1),
                        Der.enum(3),
                        Der.printable("1230"),
                    )
                ]
            ),
            "tbsList.entries[0].status",
            "3 is not an IssuerStatus",
        ),
        (
            Der.tbs(
                entries=[
                    Der.seq(
                        Der.printable("0211"),
                        Der.integer(1),
                        Der.integer(1),
                        Der.enum(0),
                        Der.printable("1230"),
                        Der.integer(9),
                    )
                ]
            ),
            "tbsList.entries[0]",
            "not DER",
        ),
        (
            Der.tbs(entries=[Der.entry(replace(A, certificate_serial=1 << 24))]),
            "tbsList.entries[0].certificateSerial",
            "16777216 is outside 0..16777215",
        ),
        (
            Der.tbs(ListType.CITIES, [Der.entry(replace(S, name="深圳市 "))]),
            "tbsList.entries[0].name",
            "surrounding spaces",
        ),
        (
            Der.tbs(
                ListType.CITIES,
                [
                    Der.seq(
                        Der.printable("440300"),
                        Der.tlv(0x0C, b"\xff\xfe"),
                        Der.printable("440000"),
                        Der.enum(1),
                        Der.enum(1),
                        Der.gtime(0),
                    )
                ],
            ),
            "tbsList.entries[0].name",
            "not DER: at offset 63: not utf-8",
        ),
        (
            Der.tbs(
                ListType.CITIES,
                [
                    Der.seq(
                        Der.printable("440300"),
                        Der.utf8("深圳市"),
                        Der.printable("440000"),
                        Der.enum(1),
                        Der.enum(7),
                        Der.gtime(0),
                    )
                ],
            ),
            "tbsList.entries[0].qrInterop",
            "7 is not an InteropStatus",
        ),
        (
            Der.tbs(
                ListType.CA_KEYS,
                [
                    Der.seq(
                        Der.integer(1),
                        Der.tlv(0x04, CA1.public_key.uncompressed),
                        Der.gtime(NOW),
                    )
                ],
            ),
            "tbsList.entries[0].publicKey",
            "65 bytes; a compressed SM2 point is 33",
        ),
        (
            Der.tbs(
                ListType.CA_KEYS,
                [Der.seq(Der.integer(1), Der.tlv(0x04, b"\x02" + b"\xff" * 32), Der.gtime(NOW))],
            ),
            "tbsList.entries[0].publicKey",
            "not below the field prime",
        ),
    ],
)
def test_malformed_names_the_field(tbs: bytes, field: str, problem: str) -> None:
    error = crafted_tbs_error(tbs)
    assert error.field == field, error.message
    assert problem in error.message, error.message
    assert field in error.message


@pytest.mark.parametrize(
    ("envelope", "field", "problem"),
    [
        (
            {"algorithm": Der.seq(Der.oid("1.2.840.10045.4.3.2"))},
            "signatureAlgorithm",
            "1.2.840.10045.4.3.2 is not SM2-with-SM3",
        ),
        (
            {"algorithm": Der.seq(Der.oid(Der.SM2_WITH_SM3), b"\x05\x00")},
            "signatureAlgorithm",
            "takes no parameters",
        ),
        ({"unused_bits": 1}, "signature", "unused bits"),
        ({"signature": b"\x30\x03\x02\x01\x01"}, "signature", "not DER"),
        ({"signature": b"\x30\x06\x02\x01\x01\x02\x01\x01\x00"}, "signature", "not DER"),
        ({"certificates": []}, "certificates", "0 certificates"),
        ({"certificates": [PKI.cert_der, PKI.root_der]}, "certificates", "2 certificates"),
        ({"certificates": [b"\x30\x03\x02\x01\x01"]}, "certificates[0]", "not an X.509"),
    ],
)
def test_malformed_envelope_names_the_field(
    envelope: dict[str, Any], field: str, problem: str
) -> None:
    error = refused(Der.signed(Der.tbs(), **envelope), ListReason.MALFORMED)
    assert error.field == field, error.message
    assert problem in error.message, error.message


def test_unknown_list_type() -> None:
    for number, tag in ((0, 0), (4, 4), (30, 30), (1000, 1)):
        error = crafted_tbs_error(Der.tbs(number, [], tag=tag), ListReason.UNKNOWN_LIST_TYPE)
        assert error.field == "tbsList.listType"
        assert f"{number} is not a known list type" in error.message


def test_wrong_list_type() -> None:
    error = refused(
        build(ListType.CITIES), ListReason.WRONG_LIST_TYPE, expected_type=ListType.CA_KEYS
    )
    assert "city-list" in error.message
    listing = load(build(ListType.CITIES))
    with pytest.raises(ListRefused) as caught:
        listing.issuers()
    assert caught.value.reason is ListReason.WRONG_LIST_TYPE


def test_bad_signature_over_changed_content() -> None:
    # one digit of an issuer id changed: still well formed, no longer what was signed
    at = DATA.index(b"02113450")
    changed = DATA[:at] + b"02113451" + DATA[at + 8 :]
    load_error = refused(changed, ListReason.BAD_SIGNATURE)
    assert "sequence 7" in load_error.message


def test_bad_signature_by_another_key() -> None:
    tbs = Der.tbs()
    other = SoftwareSigner.generate()
    refused(Der.signed(tbs, signature=raw_to_der(other.sign(tbs))), ListReason.BAD_SIGNATURE)


def test_bad_signature_r_out_of_range() -> None:
    n = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123  # GB/T 32918.5 n
    r_is_n = Der.seq(Der.integer(n), Der.integer(1))
    refused(Der.signed(Der.tbs(), signature=r_is_n), ListReason.BAD_SIGNATURE)


def signed_with(cert_der: bytes, signer: SoftwareSigner, root: Pki = PKI) -> bytes:
    tbs = Der.tbs()
    return Der.signed(tbs, signature=raw_to_der(signer.sign(tbs)), certificates=[cert_der])


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("no-eku", "lacks the list-signing extended key usage"),
        ("other-eku", "lacks the list-signing extended key usage"),
        ("no-digital-signature", "lacks key usage digitalSignature"),
        ("ca", "is a CA certificate"),
        ("expired", "not at thisUpdate"),
        ("not-yet-valid", "not at thisUpdate"),
    ],
)
def test_untrusted_signer_certificate(fault: str, problem: str) -> None:
    signer = SoftwareSigner.generate()
    cert = cert_for(signer.public_key, **CERTIFICATE_FAULTS[fault])
    error = refused(signed_with(cert, signer), ListReason.UNTRUSTED_SIGNER)
    assert problem in error.message, error.message


def test_untrusted_signer_from_another_root() -> None:
    # same root name and key identifier, another root key
    stranger = make_pki(issuer_key_id=key_identifier(PKI.root.public_key))
    error = refused(build(pki=stranger), ListReason.UNTRUSTED_SIGNER)
    assert "not signed by the trusted root" in error.message
    named = make_pki(root_name=OTHER_ROOT_NAME)
    error = refused(build(pki=named), ListReason.UNTRUSTED_SIGNER)
    assert "issued by C=CN, CN=另一个根CA" in error.message


def test_untrusted_signer_with_another_authority_key_id() -> None:
    signer = SoftwareSigner.generate()
    cert = cert_for(signer.public_key, issuer_key_id=b"\x01" * 20)
    error = refused(signed_with(cert, signer), ListReason.UNTRUSTED_SIGNER)
    assert "another authority key" in error.message


def test_untrusted_signer_certificate_expired_by_now() -> None:
    signer = SoftwareSigner.generate()
    cert = cert_for(signer.public_key, not_after=moment(NOW - 60))
    tbs = Der.tbs(this_update=Der.gtime(NOW - 600))
    data = Der.signed(tbs, signature=raw_to_der(signer.sign(tbs)), certificates=[cert])
    error = refused(data, ListReason.UNTRUSTED_SIGNER)
    assert "not at now" in error.message


def test_untrusted_when_the_root_is_not_a_ca() -> None:
    leaf = SoftwareSigner.generate()
    not_ca = issue_certificate(
        PKI.root,
        subject=ROOT_NAME,
        subject_public_key=PKI.root.public_key,
        issuer_name=ROOT_NAME,
        serial=9,
        not_before=moment(NOW - DAY),
        not_after=moment(NOW + DAY),
        ca=False,
        path_length=None,
        key_usage={"digital_signature"},
    )
    error = refused(
        signed_with(cert_for(leaf.public_key), leaf),
        ListReason.UNTRUSTED_SIGNER,
        pki=replace(PKI, root_der=not_ca),
    )
    assert "not a CA certificate" in error.message


def test_rollback() -> None:
    load(DATA, previous_sequence=6)
    for held in (7, 8, 2**62):
        error = refused(DATA, ListReason.ROLLBACK, previous_sequence=held)
        assert (
            f"sequence 7 is not after the issuer-whitelist held (sequence {held})" in error.message
        )


def test_stale_after_next_update_plus_grace() -> None:
    next_update = NOW + DAY
    load(DATA, now=next_update + GRACE)
    error = refused(DATA, ListReason.STALE, now=next_update + GRACE + 1)
    assert "2026-03-16T08:00:00Z" in error.message
    refused(DATA, ListReason.STALE, now=next_update + 1, grace_seconds=0)


def test_not_yet_valid_beyond_the_skew() -> None:
    this_update = NOW - 600
    load(DATA, now=this_update - DEFAULT_SKEW)
    error = refused(DATA, ListReason.NOT_YET_VALID, now=this_update - DEFAULT_SKEW - 1)
    assert "2026-03-15T07:50:00Z" in error.message
    load(DATA, now=this_update - 5, skew=5)
    refused(DATA, ListReason.NOT_YET_VALID, now=this_update - 6, skew=5)


def test_negative_grace_or_skew_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="≥ 0"):
        load(DATA, grace_seconds=-1)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_changed_byte_is_refused(data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(DATA) - 1), label="offset")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != DATA[at]), label="value")
    changed = DATA[:at] + bytes([value]) + DATA[at + 1 :]
    with pytest.raises(ListRefused):
        load(changed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_malformed(blob: bytes) -> None:
    refused(blob, ListReason.MALFORMED)


# -- ca/lists/der.py against the asn1crypto reference (tests/reference/list_asn1.py) -----------
# asn1crypto defined the format's bytes first and stays the independent reference: the same bytes
# out, the same lists taken and refused. (tests/unit/test_list_codec_reference.py has more.)
FIXED_SIGNATURE = raw_to_der(PKI.signer.sign(b"decoding does not check the signature"))


def decode_with_asn1crypto(data: bytes) -> SignedListParts:
    """The list as the asn1crypto reference reads it strictly (any error: refused)."""
    return SignedListParts(*reference.decode_signed_list(data))


def outcome(decode: Any, data: bytes) -> object:
    try:
        return decode(data)
    except ListContentError as exc:
        return (type(exc).__name__, exc.field, exc.problem)


def taken(decode: Any, data: bytes) -> SignedListParts | None:
    """What ``decode`` reads, or None if it refuses the bytes (in whatever words).

    ca/lists/der.py refuses before reading what asn1crypto would read in more than linear time
    anywhere in the list (an INTEGER of 114 octets inside the certificate, which asn1crypto reads
    later in ca.lists.verify): the reference is not asked about such bytes."""
    if decode is decode_with_asn1crypto and der.costly_element(data) is not None:
        return None
    try:
        parts: SignedListParts = decode(data)
    except Exception:  # asn1crypto raises many types; any is a refusal here
        return None
    return parts


any_content = st.one_of(
    st.tuples(st.just(ListType.ISSUERS), st.lists(issuer_entries, unique_by=lambda e: e.key)),
    st.tuples(
        st.just(ListType.CITIES), st.lists(city_entries, max_size=6, unique_by=lambda e: e.key)
    ),
    st.tuples(
        st.just(ListType.CA_KEYS),
        st.lists(ca_key_entries, max_size=4, unique_by=lambda e: e.key),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_content, st.integers(1, 2**63 - 1), st.integers(0, MAX_TIME - 1))
def test_fast_encoder_writes_what_asn1crypto_writes(
    typed: tuple[ListType, list[ListEntry]], sequence: int, this_update: int
) -> None:
    list_type, entries = typed
    content = make_content(
        list_type, entries, sequence=sequence, this_update=this_update, next_update=MAX_TIME
    )
    tbs = encode_tbs(content)
    assert tbs == reference.encode_tbs(content)
    for entry in content.entries:
        expected = reference.encode_entry(list_type, entry)
        assert der.descriptor_for(list_type).write_entry(entry) == expected
    data = Der.signed(tbs, signature=FIXED_SIGNATURE)
    assert decode_signed_list(data) == decode_with_asn1crypto(data)


def test_fast_encoder_at_the_length_boundaries() -> None:
    # 127/128 and 255/256 content octets of an entry, the entries and the TBSList; and over 64 KiB
    for name_length in range(1, MAX_CITY_NAME + 1):
        city = replace(S, name="深" * (name_length - 1) + "a")
        content = make_content(
            ListType.CITIES, [city], sequence=1, this_update=0, next_update=MAX_TIME
        )
        assert encode_tbs(content) == reference.encode_tbs(content)
    for count in (0, 1, 4, 5, 9, 10, 2400, 2500):
        issuers = [
            IssuerEntry(f"{i}", i * 4099 % (1 << 24), i % 256, IssuerStatus.REVOKED, "0199")
            for i in range(count)
        ]
        content = make_content(
            ListType.ISSUERS, issuers, sequence=2**63 - 1, this_update=0, next_update=1
        )
        assert encode_tbs(content) == reference.encode_tbs(content)


def test_lists_jtca_makes_are_read_as_the_reference_reads_them() -> None:
    entries = [IssuerEntry(f"{i:08d}", i, i % 256, IssuerStatus.ACTIVE, "1230") for i in range(300)]
    built = [build(entries=entries), *(build(t) for t in ListType)]
    for data in built:
        assert decode_signed_list(data) == decode_with_asn1crypto(data)


def entry_fields(entry_der: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) of each field of a DER entry (as Der writes it)."""
    fields, offset = [], 0
    start, end = der.read_element(entry_der, 0, len(entry_der), 0x30)
    offset = start
    while offset < end:
        tag = entry_der[offset]
        body_start, body_end = der.read_element(entry_der, offset, end, tag)
        fields.append((tag, entry_der[body_start:body_end]))
        offset = body_end
    return fields


def long_form(tag: int, body: bytes, extra_zeros: int = 0) -> bytes:
    """BER, not DER: the length in the long form, with leading zero octets."""
    size = max(1, (len(body).bit_length() + 7) // 8)
    length = bytes(extra_zeros) + len(body).to_bytes(size, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def indefinite(tag: int, body: bytes) -> bytes:
    """BER, not DER: constructed with an indefinite length (strings as one primitive chunk)."""
    if tag != 0x30:
        body = Der.tlv(tag, body)
        tag |= 0x20
    return bytes([tag, 0x80]) + body + b"\x00\x00"


FIELD_TAGS = [0x02, 0x04, 0x0A, 0x0C, 0x13, 0x16, 0x17, 0x18, 0x30, 0x33, 0x05, 0x82]


@st.composite
def mutated_entry(draw: st.DrawFn, entry_der: bytes) -> bytes:
    """One entry changed the way a broken or hostile encoder would change it."""
    fields = entry_fields(entry_der)
    kind = draw(
        st.sampled_from(
            [
                "replace byte",
                "insert byte",
                "delete byte",
                "truncate",
                "append",
                "long-form field",
                "long-form entry",
                "indefinite field",
                "indefinite entry",
                "non-minimal integer",
                "drop field",
                "extra field",
                "swap fields",
                "retag field",
                "field contents",
            ]
        ),
        label="mutation",
    )
    where = draw(st.integers(0, len(fields) - 1), label="field")
    tag, body = fields[where]
    if kind in ("replace byte", "insert byte", "delete byte", "truncate", "append"):
        at = draw(st.integers(0, len(entry_der) - 1), label="offset")
        byte = bytes([draw(st.integers(0, 255), label="byte")])
        if kind == "replace byte":
            return entry_der[:at] + byte + entry_der[at + 1 :]
        if kind == "insert byte":
            return entry_der[:at] + byte + entry_der[at:]
        if kind == "delete byte":
            return entry_der[:at] + entry_der[at + 1 :]
        if kind == "truncate":
            return entry_der[:at]
        return entry_der + draw(st.binary(min_size=1, max_size=4), label="appended")
    if kind == "long-form entry":
        return long_form(0x30, entry_der[2:] if entry_der[1] < 0x80 else entry_der[3:])
    if kind == "indefinite entry":
        return indefinite(0x30, b"".join(Der.tlv(t, b) for t, b in fields))
    parts = [Der.tlv(t, b) for t, b in fields]
    if kind == "long-form field":
        parts[where] = long_form(tag, body, draw(st.integers(0, 2), label="zeros"))
    elif kind == "indefinite field":
        parts[where] = indefinite(tag, body)
    elif kind == "non-minimal integer":
        pad = b"\xff" if body[:1] and body[0] >= 0x80 else b"\x00"
        parts[where] = Der.tlv(tag, pad + body)
    elif kind == "drop field":
        del parts[where]
    elif kind == "extra field":
        parts.insert(draw(st.integers(0, len(parts)), label="at"), Der.integer(0))
    elif kind == "swap fields":
        other = draw(st.integers(0, len(parts) - 1), label="other")
        parts[where], parts[other] = parts[other], parts[where]
    elif kind == "retag field":
        parts[where] = Der.tlv(draw(st.sampled_from(FIELD_TAGS), label="tag"), body)
    else:
        contents = draw(
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from(
                    [
                        b"",
                        b"\x00",
                        b"\xff",
                        b"\x80",
                        b"\x00\x80",
                        b"\xff\x7f",
                        b"\x01\x00\x00\x00",
                        b"19691231235959Z",
                        b"00000101000000Z",
                        b"20260230000000Z",
                        b"20261231246000Z",
                        b"99991231235959Z",
                        b"20260315080000.5Z",
                        b"202603150800Z",
                        b"2026031508000Z",
                        b"\x03" + b"\x00" * 32,
                        "深圳市".encode(),
                        b"\xc0\xaf",
                        b"\xed\xa0\x80",
                    ]
                ),
            ),
            label="contents",
        )
        parts[where] = Der.tlv(tag, contents)
    return Der.seq(*parts)


@st.composite
def mutated_tbs(draw: st.DrawFn) -> tuple[ListType, bytes, bytes]:
    """A list type, a TBSList with one entry (or the entries' header) changed, and its entries."""
    list_type, entries = draw(any_content.filter(lambda typed: len(typed[1]) > 0))
    content = make_content(list_type, entries, sequence=7, this_update=0, next_update=MAX_TIME)
    ders = [Der.entry(entry) for entry in content.entries]
    index = draw(st.integers(0, len(ders) - 1), label="entry")
    ders[index] = draw(mutated_entry(ders[index]))
    if draw(st.integers(0, 9), label="twice") == 0:  # a second, later, entry changed too
        later = draw(st.integers(index, len(ders) - 1), label="later")
        ders[later] = draw(mutated_entry(Der.entry(content.entries[later])))
    number = list_type.number
    entries_der = Der.ctx(number, *ders)
    framing = draw(st.sampled_from(["der", "long-form", "indefinite"]), label="framing")
    if framing == "long-form":
        entries_der = long_form(0xA0 | number, b"".join(ders))
    elif framing == "indefinite":
        entries_der = bytes([0xA0 | number, 0x80]) + b"".join(ders) + b"\x00\x00"
    tbs = Der.seq(
        Der.integer(1),
        Der.enum(number),
        Der.integer(7),
        Der.gtime(0),
        Der.gtime(MAX_TIME),
        entries_der,
    )
    return list_type, tbs, entries_der


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_tbs())
def test_fast_decoder_takes_and_refuses_what_asn1crypto_does(
    mutated: tuple[ListType, bytes, bytes],
) -> None:
    _list_type, tbs, _entries_der = mutated
    data = Der.signed(tbs, signature=FIXED_SIGNATURE)
    # the same list taken, with the same values, or refused by both
    assert taken(decode_signed_list, data) == taken(decode_with_asn1crypto, data)
    refusal = outcome(decode_signed_list, data)
    if isinstance(refusal, tuple):  # named inside the TBSList (or by the pre-scan, the list)
        assert refusal[1].startswith(("tbsList", "SignedList")), refusal
        assert "offset" in refusal[2], refusal


BUILT = {list_type: build(list_type) for list_type in ListType}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fast_decoder_on_truncated_and_changed_lists(data: st.DataObject) -> None:
    built = BUILT[data.draw(st.sampled_from(ListType), label="type")]
    at = data.draw(st.integers(0, len(built) - 1), label="offset")
    change = data.draw(st.sampled_from(["truncate", "replace", "insert"]), label="change")
    if change == "truncate":
        changed = built[:at]
    elif change == "replace":
        changed = built[:at] + bytes([data.draw(st.integers(0, 255))]) + built[at + 1 :]
    else:
        changed = built[:at] + bytes([data.draw(st.integers(0, 255))]) + built[at:]
    assert taken(decode_signed_list, changed) == taken(decode_with_asn1crypto, changed)


def city_der(time_contents: bytes = b"20260315080000Z", name: bytes = "深圳市".encode()) -> bytes:
    return Der.seq(
        Der.printable("440300"),
        Der.tlv(0x0C, name),
        Der.printable("440000"),
        Der.enum(1),
        Der.enum(1),
        Der.tlv(0x18, time_contents),
    )


def ca_key_der(
    index: bytes = b"\x00", point: bytes | None = None, until: bytes | None = None
) -> bytes:
    return Der.seq(
        Der.tlv(0x02, index),
        Der.tlv(0x04, CA0.public_key.compressed if point is None else point),
        Der.gtime(NOW) if until is None else Der.tlv(0x18, until),
    )


def issuer_der(*fields: bytes) -> bytes:
    """An IssuerEntry for 02113450 with the given fields in place of the first ones."""
    default = [
        Der.printable("02113450"),
        Der.integer(1),
        Der.integer(1),
        Der.enum(0),
        Der.printable("1230"),
    ]
    return Der.seq(*fields, *default[len(fields) :])


BAD_ENTRIES_DECODED: list[tuple[str, ListType, list[bytes], str, str]] = [
    (
        "long-form length of a field",
        ListType.ISSUERS,
        [Der.entry(B), issuer_der(long_form(0x13, b"02113450"))],
        "tbsList.entries[1].issuerId",
        "not DER: at offset 81: length 8 in the long form (not DER)",
    ),
    (
        "long-form length with a leading zero",
        ListType.ISSUERS,
        [Der.entry(B), issuer_der(long_form(0x13, b"02113450", 1))],
        "tbsList.entries[1].issuerId",
        "not DER: at offset 81: a length with leading zero octets (not DER)",
    ),
    (
        "long-form length of an entry",
        ListType.ISSUERS,
        [Der.entry(B), Der.entry(A), long_form(0x30, Der.entry(C)[2:])],
        "tbsList.entries[2]",
        "not DER: at offset 106: length 25 in the long form (not DER)",
    ),
    (
        "indefinite-length entry",
        ListType.ISSUERS,
        [indefinite(0x30, Der.entry(B)[2:])],
        "tbsList.entries[0]",
        "not DER: at offset 52: an indefinite length (BER, not DER)",
    ),
    (
        "constructed issuerId",
        ListType.ISSUERS,
        [Der.entry(B), issuer_der(indefinite(0x13, b"02113450"))],
        "tbsList.entries[1].issuerId",
        "not DER: at offset 80: tag 0x33, expected 0x13",
    ),
    (
        "the first fault in byte order: a long-form length before a bad status",
        ListType.ISSUERS,
        [issuer_der(long_form(0x13, b"02113450"), Der.integer(1), Der.integer(1), Der.enum(3))],
        "tbsList.entries[0].issuerId",
        "not DER: at offset 54: length 8 in the long form (not DER)",
    ),
    (
        "non-minimal INTEGER",
        ListType.ISSUERS,
        [Der.entry(B), issuer_der(Der.printable("02113450"), Der.tlv(0x02, b"\x00\x01"))],
        "tbsList.entries[1].certificateSerial",
        "INTEGER not in its shortest form (not DER)",
    ),
    (
        "non-minimal negative INTEGER",
        ListType.ISSUERS,
        [issuer_der(Der.printable("02113450"), Der.tlv(0x02, b"\xff\xff"))],
        "tbsList.entries[0].certificateSerial",
        "INTEGER not in its shortest form (not DER)",
    ),
    (
        "a field missing",
        ListType.ISSUERS,
        [Der.entry(B), Der.seq(*[Der.printable("02113450"), Der.integer(1)])],
        "tbsList.entries[1]",
        "not DER: ",
    ),
    (
        "a field too many, at index 2",
        ListType.ISSUERS,
        [Der.entry(B), Der.entry(A), Der.seq(Der.entry(C)[2:], Der.integer(0))],
        "tbsList.entries[2]",
        "not DER: at offset 133: bytes after the last field of the IssuerEntry",
    ),
    (
        "a field of another type",
        ListType.ISSUERS,
        [issuer_der(Der.utf8("02113450"))],
        "tbsList.entries[0].issuerId",
        "not DER: at offset 53: tag 0x0c, expected 0x13",
    ),
    (
        "an entry that is not a SEQUENCE",
        ListType.ISSUERS,
        [Der.entry(B), Der.tlv(0x31, Der.entry(A)[2:])],
        "tbsList.entries[1]",
        "not DER: ",
    ),
    (
        "an entry running past the entries",
        ListType.ISSUERS,
        [Der.entry(B), Der.entry(A)[:-1]],
        "tbsList.entries[1]",
        "not DER: at offset 78: 25 contents octets, only 24 left",
    ),
    (
        "empty INTEGER",
        ListType.CA_KEYS,
        [ca_key_der(b"")],
        "tbsList.entries[0].caIndex",
        "an INTEGER with no contents octets",
    ),
    (
        "negative caIndex: DER, but out of range",
        ListType.CA_KEYS,
        [ca_key_der(b"\xff")],
        "tbsList.entries[0].caIndex",
        "-1 is outside 0..255",
    ),
    (
        "a time before 1970",
        ListType.CITIES,
        [city_der(b"19691231235959Z")],
        "tbsList.entries[0].effectiveFrom",
        "19691231235959Z is before 1970",
    ),
    (
        "year 0",
        ListType.CITIES,
        [city_der(b"00000101000000Z")],
        "tbsList.entries[0].effectiveFrom",
        "00000101000000Z is before 1970",
    ),
    (
        "a day that does not exist",
        ListType.CITIES,
        [city_der(b"20260230000000Z")],
        "tbsList.entries[0].effectiveFrom",
        "not DER: at offset 86: GeneralizedTime 20260230000000Z is no time: day is out of range",
    ),
    (
        "a fraction of a second",
        ListType.CA_KEYS,
        [ca_key_der(until=b"20260315080000.5Z")],
        "tbsList.entries[0].verifyUntil",
        "GeneralizedTime b'20260315080000.5Z' is not YYYYMMDDHHMMSSZ",
    ),
    (
        "an overlong UTF-8 name",
        ListType.CITIES,
        [city_der(name=b"\xc0\xaf")],
        "tbsList.entries[0].name",
        "not DER: at offset 63: not utf-8: invalid start byte",
    ),
    (
        "a public key that is not a point",
        ListType.CA_KEYS,
        [ca_key_der(point=b"\x05" + bytes(32))],
        "tbsList.entries[0].publicKey",
        "",
    ),
    (
        "a public key of 34 bytes",
        ListType.CA_KEYS,
        [ca_key_der(point=CA0.public_key.compressed + b"\x00")],
        "tbsList.entries[0].publicKey",
        "34 bytes; a compressed SM2 point is 33",
    ),
    (
        "keys out of order",
        ListType.CA_KEYS,
        [Der.entry(CA_KEYS[0]), Der.entry(CA_KEYS[1])],
        "tbsList.entries[1].caIndex",
        "0 is not after 1 (entries are in ascending order; the entry at offset",
    ),
]


@pytest.mark.parametrize(
    ("case", "list_type", "entries", "field", "problem"),
    BAD_ENTRIES_DECODED,
    ids=[case for case, *_ in BAD_ENTRIES_DECODED],
)
def test_bad_entries_are_named_with_the_offset(
    case: str, list_type: ListType, entries: list[bytes], field: str, problem: str
) -> None:
    data = Der.signed(Der.tbs(list_type, entries), signature=FIXED_SIGNATURE)
    error = outcome(decode_signed_list, data)
    assert taken(decode_with_asn1crypto, data) is None, case  # the reference refuses it too
    assert isinstance(error, tuple), case
    assert error[1] == field, error
    assert problem in error[2], error
    refusal = crafted_tbs_error(Der.tbs(list_type, entries))  # and a terminal says malformed
    assert refusal.field == field


@pytest.mark.parametrize(
    "entries_der",
    [
        long_form(0xA1, Der.entry(B)),
        long_form(0xA1, Der.entry(B), 1),
        b"\xa1\x80" + Der.entry(B) + b"\x00\x00",
    ],
    ids=["long-form", "leading-zero", "indefinite"],
)
def test_entries_header_not_der(entries_der: bytes) -> None:
    tbs = Der.seq(
        Der.integer(1),
        Der.enum(1),
        Der.integer(7),
        Der.gtime(NOW - 600),
        Der.gtime(NOW + DAY),
        entries_der,
    )
    data = Der.signed(tbs, signature=FIXED_SIGNATURE)
    error = outcome(decode_signed_list, data)
    assert taken(decode_with_asn1crypto, data) is None
    assert isinstance(error, tuple)
    assert error[:2] == ("ListContentError", "tbsList.entries")
    assert error[2].startswith("not DER: at offset 50: "), error  # the entries' length octet


def test_lengths_ending_in_0x80_are_lists_too() -> None:
    # asn1crypto's dump() of a loaded value takes a definite length whose last octet is 0x80
    # (30 81 80, 30 82 01 80, ...) for the indefinite length 80, and writes a broken TBSList:
    # before ca/lists/der.py wrote the envelope, one list size in 256 came out truncated.
    found: dict[str, list[IssuerEntry]] = {}
    for count in range(1, 40):
        for width in range(1, 9):
            entries = [
                IssuerEntry(
                    f"{i:0{width}d}" if i == 0 else f"{10_000_000 + i}", i, 1, A.status, "1230"
                )
                for i in range(count)
            ]
            tbs = encode_tbs(
                make_content(
                    ListType.ISSUERS,
                    entries,
                    sequence=7,
                    this_update=NOW - 600,
                    next_update=NOW + DAY,
                )
            )
            start, _ = der.read_element(tbs, 0, len(tbs), der.SEQUENCE)
            if tbs[start - 1] == 0x80:
                found.setdefault("tbsList", entries)
            entries_at = len(tbs) - len(
                Der.ctx(1, *[Der.entry(e) for e in sorted(entries, key=lambda e: e.key)])
            )
            if (
                tbs[entries_at + 1] > 0x80
                and tbs[entries_at + 1 + (tbs[entries_at + 1] & 0x7F)] == 0x80
            ):
                found.setdefault("entries", entries)
    assert set(found) == {"tbsList", "entries"}
    for entries in found.values():
        data = build(ListType.ISSUERS, entries)
        assert decode_signed_list(data).tbs_der == Der.tbs(
            ListType.ISSUERS, [Der.entry(e) for e in sorted(entries, key=lambda e: e.key)]
        )
        assert load(data).entries == tuple(sorted(entries, key=lambda e: e.key))


def test_signed_list_envelope_is_what_asn1crypto_writes() -> None:
    for list_type in ListType:
        parts = decode_signed_list(BUILT[list_type])
        envelope = reference.encode_signed_list(
            parts.content, parts.signature_der, parts.certificates
        )
        assert BUILT[list_type] == envelope
        assert (
            der.encode_signed_list(parts.tbs_der, parts.signature_der, parts.certificates)
            == BUILT[list_type]
        )
    with pytest.raises(ValueError, match="1 bytes of trailing data after the TBSList"):
        der.encode_signed_list(Der.tbs() + b"\x00", FIXED_SIGNATURE, [PKI.cert_der])
    with pytest.raises(ValueError, match="contents octets, only"):
        der.encode_signed_list(Der.tbs(), FIXED_SIGNATURE, [PKI.cert_der[:-1]])


# -- ca/lists/der.py on its own, against asn1crypto ------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**80), 2**80))
def test_der_integer(value: int) -> None:
    encoded = der.integer(value)
    assert encoded == asn1_core.Integer(value).dump()
    assert der.read_integer(encoded, 0, len(encoded)) == (value, len(encoded))
    enumerated = der.integer(value, der.ENUMERATED)
    assert enumerated == reference.Enumerated(value).dump()
    assert der.read_integer(enumerated, 0, len(enumerated), der.ENUMERATED)[0] == value


@pytest.mark.parametrize("size", [0, 1, 127, 128, 129, 255, 256, 257, 65535, 65536, 70000])
def test_der_lengths(size: int) -> None:
    encoded = der.tlv(der.OCTET_STRING, b"\x5a" * size)
    assert encoded == asn1_core.OctetString(b"\x5a" * size).dump()
    assert der.read_octets(encoded, 0, len(encoded)) == (b"\x5a" * size, len(encoded))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MAX_TIME))
def test_der_generalized_time(seconds: int) -> None:
    encoded = der.generalized_time(seconds)
    assert encoded == asn1_core.GeneralizedTime(moment(seconds)).dump()
    assert der.read_time(encoded, 0, len(encoded)) == (seconds, len(encoded))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_der_text(text: str) -> None:
    try:
        contents = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates have no UTF-8
        return
    encoded = der.tlv(der.UTF8_STRING, contents)
    assert encoded == asn1_core.UTF8String(text).dump()
    assert der.read_text(encoded, 0, len(encoded), der.UTF8_STRING, "utf-8") == (text, len(encoded))


@pytest.mark.parametrize(
    ("encoded", "read", "problem"),
    [
        (b"", der.read_integer, "truncated"),
        (b"\x02", der.read_integer, "truncated"),
        (b"\x0a\x01\x00", der.read_integer, "tag 0x0a, expected 0x02"),
        (b"\x02\x00", der.read_integer, "no contents octets"),
        (b"\x02\x02\x00\x7f", der.read_integer, "shortest form"),
        (b"\x02\x02\xff\x80", der.read_integer, "shortest form"),
        (b"\x02\x02\x00", der.read_integer, "2 contents octets, only 1 left"),
        (b"\x02\x81\x01\x01", der.read_integer, "long form"),
        (b"\x02\x82\x00\x01\x01", der.read_integer, "leading zero"),
        (b"\x02\x80\x01\x00\x00", der.read_integer, "indefinite"),
        (b"\x02\x84\x01", der.read_integer, "truncated length"),
        (b"\x04\x82\x01", der.read_octets, "truncated length"),
        (b"\x18\x0d260315080000Z", der.read_time, "not YYYYMMDDHHMMSSZ"),
        (b"\x18\x0f20260315080000+", der.read_time, "not YYYYMMDDHHMMSSZ"),
        (b"\x18\x1120260315080000.5Z", der.read_time, "not YYYYMMDDHHMMSSZ"),
        (b"\x18\x0f20261315080000Z", der.read_time, "no time"),
        (b"\x18\x0f20260315240000Z", der.read_time, "no time"),
        (b"\x18\x0f20261231235960Z", der.read_time, "no time"),
        (b"\x18\x0f00000101000000Z", der.read_time, "no time"),
        (b"\x0c\x02\xc0\xaf", lambda d, o, e: der.read_text(d, o, e, 0x0C, "utf-8"), "not utf-8"),
        (b"\x0c\x03\xed\xa0\x80", lambda d, o, e: der.read_text(d, o, e, 0x0C, "utf-8"), "not utf"),
    ],
)
def test_der_reader_refuses(encoded: bytes, read: Any, problem: str) -> None:
    with pytest.raises(der.NotDer) as caught:
        read(encoded, 0, len(encoded))
    assert problem in str(caught.value)


def test_der_reader_stays_inside_its_parent() -> None:
    encoded = Der.seq(Der.integer(5)) + Der.integer(6)
    with pytest.raises(der.NotDer, match="only 1 left"):
        der.read_integer(Der.integer(300), 0, 3)
    start, stop = der.read_element(encoded, 0, len(encoded), der.SEQUENCE)
    assert der.read_integer(encoded, start, stop) == (5, stop)
    assert der.read_integer(encoded, stop, len(encoded)) == (6, len(encoded))


# -- rendering -------------------------------------------------------------------------------------
def test_render_json() -> None:
    listing = load(build(ListType.CITIES, sequence=3))
    text = render_json(listing)
    assert "深圳市" in text  # ensure_ascii=False
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert parsed["list_type"] == "city-list"
    assert parsed["sequence"] == 3
    assert parsed["this_update"] == "2026-03-15T07:50:00Z"
    assert parsed["next_update"] == "2026-03-16T08:00:00Z"
    assert parsed["signer"]["subject"] == listing.signer.subject
    assert parsed["sm3"] == listing.sm3
    assert parsed["entries"][0] == {
        "card_interop": "connected",
        "city_code": "110000",
        "effective_from": "2026-03-15T08:00:00Z",
        "name": "北京市",
        "province_code": "110000",
        "qr_interop": "not-connected",
    }
    assert [e["city_code"] for e in parsed["entries"]] == ["110000", "440300", "513200"]
    assert render_json(listing) == text  # stable


def test_render_json_of_issuers_and_keys() -> None:
    issuers = json.loads(render_json(load(build(ListType.ISSUERS))))
    assert issuers["entries"][0] == {
        "ca_index": 255,
        "certificate_serial": 16777215,
        "expiry": "0127",
        "issuer_id": "0211",
        "status": "revoked",
        "valid_through": "2027-01-31T23:59:59Z",
    }
    keys = json.loads(render_json(load(build(ListType.CA_KEYS))))
    assert keys["entries"][0]["public_key"] == CA0.public_key.compressed.hex()
    content = ListContent(ListType.CA_KEYS, 1, NOW, NOW + 1, CA_KEYS)
    assert json.loads(render_json(content))["signer"] is None


# -- trust for the QR verifier ---------------------------------------------------------------------
def issuer_list(chain: fx.Chain, status: IssuerStatus, sequence: int) -> VerifiedList:
    entry = IssuerEntry(
        chain.interop.issuer_id,
        chain.interop.serial,
        chain.interop.ca_index,
        status,
        chain.interop.expiry,
    )
    others = [IssuerEntry("31040001", 5, 0, IssuerStatus.ACTIVE, "1230")]
    return load(
        build(ListType.ISSUERS, [entry, *others], sequence=sequence),
        expected_type=ListType.ISSUERS,
        previous_sequence=sequence - 1,
    )


def ca_key_list(chain: fx.Chain, verify_until: int = NOW + 365 * DAY) -> VerifiedList:
    entry = CaKeyEntry(chain.interop.ca_index, chain.ca.public_key, verify_until)
    return load(build(ListType.CA_KEYS, [entry, CA_KEYS[1]]), expected_type=ListType.CA_KEYS)


def test_trust_from_lists() -> None:
    chain = fx.make_chain()
    trust = trust_from_lists(
        issuer_list(chain, IssuerStatus.ACTIVE, 1), ca_key_list(chain), now=NOW
    )
    assert trust.accepted_issuers == {"02113450", "31040001"}
    assert trust.ca_keys == {1: chain.ca.public_key, 0: CA0.public_key}
    listing = issuer_list(chain, IssuerStatus.SUSPENDED, 2)
    assert accepted_issuers(listing) == {"31040001"}
    with pytest.raises(ListRefused):
        trusted_ca_keys(listing, now=NOW)


def test_revoked_issuer_qr_fails_after_the_new_list() -> None:
    chain = fx.make_chain()
    clock = FixedClock(NOW)
    verifier = verifier_from_lists(
        issuer_list(chain, IssuerStatus.ACTIVE, 1), ca_key_list(chain), clock=clock
    )
    assert verifier.verify(chain.data).payload.interop_cert.issuer_id == "02113450"

    apply_lists(verifier, issuer_list=issuer_list(chain, IssuerStatus.REVOKED, 2))
    with pytest.raises(Rejected) as caught:
        verifier.verify(chain.data)
    assert caught.value.reason_code is Reason.ISSUER_NOT_ACCEPTED
    assert verifier.ca_keys == {1: chain.ca.public_key, 0: CA0.public_key}  # kept


def test_suspended_issuer_passes_again_once_active() -> None:
    chain = fx.make_chain()
    verifier = verifier_from_lists(
        issuer_list(chain, IssuerStatus.SUSPENDED, 1), ca_key_list(chain), clock=FixedClock(NOW)
    )
    with pytest.raises(Rejected) as caught:
        verifier.verify(chain.data)
    assert caught.value.reason_code is Reason.ISSUER_NOT_ACCEPTED
    apply_lists(verifier, issuer_list=issuer_list(chain, IssuerStatus.ACTIVE, 2))
    verifier.verify(chain.data)


def test_ca_key_past_verify_until_is_dropped() -> None:
    chain = fx.make_chain()
    clock = FixedClock(NOW)
    verifier = verifier_from_lists(
        issuer_list(chain, IssuerStatus.ACTIVE, 1), ca_key_list(chain, NOW + 60), clock=clock
    )
    verifier.verify(chain.data)
    clock.set(NOW + 61)
    apply_lists(verifier, ca_key_list=ca_key_list(chain, NOW + 60))
    with pytest.raises(Rejected) as caught:
        verifier.verify(chain.resign_ride(NOW + 61))
    assert caught.value.reason_code is Reason.UNKNOWN_CA_KEY
