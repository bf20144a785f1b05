"""ca/lists/der.py, the only list codec, against the asn1crypto reference (issue #17).

tests/reference/list_asn1.py holds the format's asn1crypto definitions, which jtca used before
ca/lists/der.py became its one codec. Here every list type is written by one and read by the
other, byte for byte, for the vectors in tests/vectors/lists.json (written by the reference)
and for hypothesis-generated content; strict DER is refused with the field and the offset; and
a list type defined in this file (a value type, a descriptor, a registration) round-trips.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import list_asn1 as reference

from ca.lists import der
from ca.lists.der import (
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
    UnknownListType,
    decode_signed_list,
    encode_signed_list,
    encode_tbs,
    make_content,
)
from ca.lists.render import render_json
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "lists.json"
SIGNATURE = bytes.fromhex("3006020101020102")  # SEQUENCE { r 1, s 2 }: decoding does not verify
CERTIFICATE = bytes.fromhex("3003020101")  # one element; ca.lists.verify reads certificates
KEYS = [SM2PrivateKey.from_scalar(d).public_key for d in (1, 2, 3, 0xC0FFEE)]


def signed(tbs: bytes) -> bytes:
    return encode_signed_list(tbs, SIGNATURE, [CERTIFICATE])


def reference_signed(content: ListContent) -> bytes:
    return reference.encode_signed_list(content, SIGNATURE, [CERTIFICATE])


def both_ways(content: ListContent) -> None:
    """Written by each codec: the same bytes; each reads what the other wrote."""
    tbs = encode_tbs(content)
    assert tbs == reference.encode_tbs(content)
    data = signed(tbs)
    assert data == reference_signed(content)
    assert decode_signed_list(reference_signed(content)) == SignedListParts(
        content, tbs, SIGNATURE, (CERTIFICATE,)
    )
    assert reference.decode_signed_list(data) == (content, tbs, SIGNATURE, (CERTIFICATE,))
    for entry in content.entries:
        assert der.descriptor_for(content.list_type).write_entry(entry) == (
            reference.encode_entry(content.list_type, entry)
        )


# -- the vectors ----------------------------------------------------------------------------------
def _entry(list_type: ListType, fields: dict[str, Any]) -> ListEntry:
    if list_type is ListType.ISSUERS:
        return IssuerEntry(**{**fields, "status": IssuerStatus(fields["status"])})
    if list_type is ListType.CITIES:
        return CityEntry(
            **{
                **fields,
                "card_interop": InteropStatus(fields["card_interop"]),
                "qr_interop": InteropStatus(fields["qr_interop"]),
            }
        )
    return CaKeyEntry(
        **{**fields, "public_key": SM2PublicKey.from_bytes(bytes.fromhex(fields["public_key"]))}
    )


def vectors() -> Iterator[tuple[ListContent, bytes]]:
    for vector in json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]:
        list_type = ListType(vector["list_type"])
        content = ListContent(
            list_type,
            vector["sequence"],
            vector["this_update"],
            vector["next_update"],
            tuple(_entry(list_type, fields) for fields in vector["entries"]),
        )
        yield content, bytes.fromhex(vector["tbs_der"])


def test_the_vectors_cover_every_list_type() -> None:
    assert {content.list_type for content, _ in vectors()} == set(ListType)


@pytest.mark.parametrize(("content", "tbs"), list(vectors()))
def test_vectors_are_written_and_read_byte_exact(content: ListContent, tbs: bytes) -> None:
    assert encode_tbs(content) == tbs
    assert reference.encode_tbs(content) == tbs
    assert decode_signed_list(signed(tbs)).content == content
    assert reference.decode_tbs(tbs) == content
    both_ways(content)


# -- hypothesis-generated content ------------------------------------------------------------
times = st.integers(0, MAX_TIME)
issuers = st.builds(
    IssuerEntry,
    st.from_regex(r"[0-9]{1,8}", fullmatch=True),
    st.integers(0, 0xFFFFFF),
    st.integers(0, 255),
    st.sampled_from(IssuerStatus),
    st.from_regex(r"(0[1-9]|1[0-2])[0-9]{2}", fullmatch=True),
)
PROVINCES = ["110000", "310000", "440000", "650000"]


@st.composite
def cities(draw: st.DrawFn) -> CityEntry:
    province = draw(st.sampled_from(PROVINCES))
    code = province[:2] + draw(st.from_regex(r"[0-9]{2}", fullmatch=True)) + "00"
    name = draw(
        st.text(
            st.characters(codec="utf-8", categories=["L", "N", "P", "S"]),
            min_size=1,
            max_size=64,
        )
    )
    interop = st.sampled_from(InteropStatus)
    return CityEntry(code, name, province, draw(interop), draw(interop), draw(times))


ca_keys = st.builds(CaKeyEntry, st.integers(0, 255), st.sampled_from(KEYS), times)
contents = st.one_of(
    st.tuples(st.just(ListType.ISSUERS), st.lists(issuers, max_size=20, unique_by=lambda e: e.key)),
    st.tuples(st.just(ListType.CITIES), st.lists(cities(), max_size=8, unique_by=lambda e: e.key)),
    st.tuples(st.just(ListType.CA_KEYS), st.lists(ca_keys, max_size=6, unique_by=lambda e: e.key)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contents, st.integers(1, 2**63 - 1), times, st.integers(1, 2**40))
def test_any_content_both_ways(
    typed: tuple[ListType, list[ListEntry]], sequence: int, this_update: int, later: int
) -> None:
    list_type, entries = typed
    this_update = min(this_update, MAX_TIME - 1)
    content = make_content(
        list_type,
        entries,
        sequence=sequence,
        this_update=this_update,
        next_update=min(this_update + later, MAX_TIME),
    )
    both_ways(content)


# -- strict DER, with the offset -------------------------------------------------------------
FIELDS = [
    der.tlv(der.PRINTABLE_STRING, b"02113450"),
    der.integer(1),
    der.integer(1),
    der.integer(0, der.ENUMERATED),
    der.tlv(der.PRINTABLE_STRING, b"1230"),
]


def issuer_list(index: int, field: bytes) -> tuple[bytes, int]:
    """A signed issuer list of one entry whose field ``index`` is these bytes, and the offset
    of that field in the list."""
    fields = [*FIELDS[:index], field, *FIELDS[index + 1 :]]
    entry = der.tlv(der.SEQUENCE, b"".join(fields))
    tbs = der.tlv(
        der.SEQUENCE,
        der.integer(1)
        + der.integer(1, der.ENUMERATED)
        + der.integer(7)
        + der.generalized_time(10)
        + der.generalized_time(20)
        + der.tlv(0xA1, entry),
    )
    data = signed(tbs)
    return data, data.index(entry) + 2 + len(b"".join(fields[:index]))


@pytest.mark.parametrize(
    ("index", "field", "name", "at", "problem"),
    [
        (0, b"\x13\x81\x0802113450", "issuerId", 1, "length 8 in the long form (not DER)"),
        (0, b"\x13\x80" + FIELDS[0] + b"\x00\x00", "issuerId", 1, "an indefinite length"),
        (1, b"\x02\x02\x00\x01", "certificateSerial", 0, "INTEGER not in its shortest form"),
        (3, b"\x02\x01\x00", "status", 0, "tag 0x02, expected 0x0a"),
        (4, b"\x13\x0412*0", "expiry", 4, "0x2a is not a PrintableString character"),
    ],
    ids=["long-form length", "indefinite length", "non-minimal integer", "wrong tag", "charset"],
)
def test_strict_der_names_the_field_and_offset(
    index: int, field: bytes, name: str, at: int, problem: str
) -> None:
    data, offset = issuer_list(index, field)
    with pytest.raises(ListContentError) as caught:
        decode_signed_list(data)
    assert caught.value.field == f"tbsList.entries[0].{name}"
    assert caught.value.problem.startswith(f"not DER: at offset {offset + at}: {problem}")
    if name != "expiry":  # asn1crypto does not check PrintableString's characters
        with pytest.raises(Exception):  # noqa: B017, PT011 - the reference, in its own words
            reference.decode_signed_list(data)


def test_the_fields_as_written_are_taken() -> None:
    data, _ = issuer_list(0, FIELDS[0])
    assert decode_signed_list(data).content.entries == (
        IssuerEntry("02113450", 1, 1, IssuerStatus.ACTIVE, "1230"),
    )


def test_trailing_bytes_are_refused_with_their_offset() -> None:
    data, _ = issuer_list(0, FIELDS[0])
    with pytest.raises(ListContentError) as caught:
        decode_signed_list(data + b"\x00\x00")
    assert caught.value.field == "SignedList"
    assert caught.value.problem == (
        f"not DER: at offset {len(data)}: 2 bytes of trailing data after the list"
    )


# -- a list type defined here: a value type, a descriptor, a registration --------------------------
class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


@dataclass(frozen=True, slots=True)
class Lamp:  # 1. the value type
    lamp_id: int
    colour: Colour
    label: str
    lit_since: int


def check_lamp(lamp: Lamp) -> None:
    der.need_int("lamp_id", lamp.lamp_id, 0, 9999)
    der.need_enum("colour", lamp.colour, Colour)
    if not lamp.label:
        raise der.Problem("label", "must not be empty")
    der.need_time("lit_since", lamp.lit_since)


LAMPS = der.ListDescriptor(  # 2. the descriptor
    name="lamp-list",
    number=9,
    asn1_name="lampList",
    entry_class=Lamp,
    entry_asn1_name="LampEntry",
    fields=(
        der.Field("lamp_id", "lampId", der.Integer()),
        der.Field("colour", "colour", der.Enumerated({Colour.RED: 0, Colour.GREEN: 1}, "Colour")),
        der.Field("label", "label", der.Utf8()),
        der.Field("lit_since", "litSince", der.Time()),
    ),
    key="lamp_id",
    check=check_lamp,
)


@pytest.fixture
def lamps() -> Iterator[der.ListDescriptor]:
    der.register(LAMPS)  # 3. the registration
    try:
        yield LAMPS
    finally:
        der.unregister(LAMPS)


def test_a_list_type_defined_in_three_edits_round_trips(lamps: der.ListDescriptor) -> None:
    entries = [Lamp(7, Colour.GREEN, "站台 7", 1_700_000_000), Lamp(2, Colour.RED, "gate", 0)]
    content = make_content(
        cast(ListType, "lamp-list"), entries, sequence=3, this_update=10, next_update=20
    )
    assert [lamp.lamp_id for lamp in content.entries] == [2, 7]
    tbs = encode_tbs(content)
    lamp = [
        der.integer(2) + der.integer(0, der.ENUMERATED) + der.tlv(der.UTF8_STRING, b"gate"),
        der.integer(7)
        + der.integer(1, der.ENUMERATED)
        + der.tlv(der.UTF8_STRING, "站台 7".encode()),
    ]
    assert tbs == der.tlv(
        der.SEQUENCE,
        der.integer(1)
        + der.integer(9, der.ENUMERATED)  # listType 9
        + der.integer(3)
        + der.generalized_time(10)
        + der.generalized_time(20)
        + der.tlv(
            0xA9,  # entries [9]
            der.tlv(der.SEQUENCE, lamp[0] + der.generalized_time(0))
            + der.tlv(der.SEQUENCE, lamp[1] + der.generalized_time(1_700_000_000)),
        ),
    )
    parts = decode_signed_list(signed(tbs))
    assert parts.content == content
    assert parts.tbs_der == tbs
    assert json.loads(render_json(content))["entries"][1] == {  # shown to people as well
        "lamp_id": 7,
        "colour": "green",
        "label": "站台 7",
        "lit_since": "2023-11-14T22:13:20Z",
    }
    with pytest.raises(ListContentError) as caught:
        make_content(
            cast(ListType, "lamp-list"),
            [Lamp(1, Colour.RED, "", 0)],
            sequence=1,
            this_update=0,
            next_update=1,
        )
    assert caught.value.field == "entries[0].label"
    bad = tbs.replace(b"gate", b"\xff\xfeat")
    with pytest.raises(ListContentError) as caught:
        decode_signed_list(signed(bad))
    assert caught.value.field == "tbsList.entries[0].label"
    assert "not utf-8" in caught.value.problem


def test_an_unregistered_list_type_is_unknown() -> None:
    entries = [Lamp(2, Colour.RED, "gate", 0)]
    der.register(LAMPS)
    try:
        tbs = encode_tbs(
            make_content(
                cast(ListType, "lamp-list"), entries, sequence=3, this_update=10, next_update=20
            )
        )
    finally:
        der.unregister(LAMPS)
    with pytest.raises(UnknownListType, match="9 is not a known list type"):
        decode_signed_list(signed(tbs))
    with pytest.raises(ValueError, match="already registered"):
        der.register(der.ISSUERS)
