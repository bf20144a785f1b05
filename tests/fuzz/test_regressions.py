"""What the fuzz suite found, kept as plain tests (each input rebuilt here, the finding named).

- ``packages.read``: a package whose signature BIT STRING is empty raised IndexError from
  asn1crypto (``hsm.envelope.read_package`` caught only ValueError, TypeError, KeyError) —
  an 'internal error' for a file a site hands the authority. (Issue #15's GM/T 0010 packages
  carry the signature in an OCTET STRING; the same empty BIT STRING is kept as a regression in
  the SM2EnvelopedKey's Sm2EncryptedPrivateKey.)
- ``packages.read``, ``lists.decode``: an identifier in the high-tag-number form with 70,000
  continuation octets took over 1 s of CPU in asn1crypto's parser (it builds the tag number
  octet by octet, quadratic); an INTEGER or OID the size of the file likewise; a package
  over 64 KiB is refused by its size (one is under 1 KiB). Both parsers
  now refuse such an element by a linear scan before asn1crypto sees the bytes, naming its
  offset (``ca.lists.der.costly_element``, ``hsm.envelope._costly_element``).
"""

from __future__ import annotations

import pytest
from asn1crypto import parser

from ca.lists import der
from ca.lists.asn1 import ListContentError, decode_signed_list
from hsm.envelope import PackageRefused, read_package
from tests.fuzz.targets import all_targets

TARGETS = all_targets()
PACKAGE = TARGETS["packages.read"].seeds[0]
SIGNED_LIST = TARGETS["lists.decode"].seeds[0]


def _children(data: bytes) -> list[bytes]:
    """The elements inside the outer SEQUENCE, as they are."""
    contents = parser.parse(data)[4]
    parts = []
    while contents:
        size = parser.peek(contents)
        parts.append(contents[:size])
        contents = contents[size:]
    return parts


def test_a_package_with_an_empty_bit_string_is_refused_as_malformed() -> None:
    from hsm.envelope import _assemble

    sm2_package = TARGETS["packages.read"].seeds[1]
    info, parsed = read_package(sm2_package)
    *fields, _encrypted_private_key = _children(parsed.content)
    content = der.tlv(der.SEQUENCE, b"".join(fields) + b"\x03\x00")
    data = _assemble(
        parsed.content_type, content, parsed.signed_bytes, info.sender_key_id, parsed.signature_der
    )
    with pytest.raises(PackageRefused) as refused:
        read_package(data)
    assert refused.value.reason == "malformed"
    assert "SM2EnvelopedKey" in refused.value.message


@pytest.mark.parametrize("where", [0, 4, 40])
def test_a_package_with_a_high_tag_number_is_refused_before_asn1crypto(where: int) -> None:
    data = PACKAGE[:where] + b"\x1f" + b"\xff" * 60_000 + b"\x01" + PACKAGE[where:]
    with pytest.raises(PackageRefused) as refused:
        read_package(data)
    assert refused.value.reason == "malformed"
    assert "high-tag-number form" in refused.value.message


def test_a_package_with_an_integer_the_size_of_the_file_is_refused() -> None:
    huge = b"\x02\x82\xea\x60" + b"\x7f" * 60_000
    data = der.tlv(der.SEQUENCE, huge)
    with pytest.raises(PackageRefused) as refused:
        read_package(data)
    assert "an INTEGER of 60000 octets" in refused.value.message


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"\xff" * 70_000 + SIGNED_LIST, 0),
        (der.tlv(der.SEQUENCE, b"\x1f" + b"\xff" * 70_000 + b"\x01\x00"), 5),
        (
            der.tlv(der.SEQUENCE, SIGNED_LIST + b"\xbf" + b"\xff" * 70_000 + b"\x01\x00"),
            5 + len(SIGNED_LIST),
        ),
    ],
    ids=["first", "nested", "after-a-whole-list"],
)
def test_a_list_with_a_high_tag_number_is_refused_naming_the_offset(
    data: bytes, offset: int
) -> None:
    with pytest.raises(ListContentError) as refused:
        decode_signed_list(data)
    assert str(refused.value) == (
        f"SignedList: not DER: at offset {offset}: an identifier in the high-tag-number form"
    )


def test_a_list_with_an_oid_the_size_of_the_file_is_refused() -> None:
    oid = b"\x06\x83\x01\x11\x70" + b"\x81" * 70_000
    data = der.tlv(der.SEQUENCE, der.tlv(der.SEQUENCE, oid))
    with pytest.raises(ListContentError) as refused:
        decode_signed_list(data)
    assert "an OBJECT IDENTIFIER of 70000 octets" in str(refused.value)


def test_the_scan_passes_every_real_list_and_package() -> None:
    for seed in TARGETS["lists.decode"].seeds:
        assert der.costly_element(seed) is None
        decode_signed_list(seed)
    for seed in TARGETS["packages.read"].seeds:
        read_package(seed)


def test_a_package_over_64_kib_is_refused_by_its_size() -> None:
    data = der.tlv(der.SEQUENCE, b"\x04\x00" * 40_000)
    with pytest.raises(PackageRefused) as refused:
        read_package(data)
    assert f"{len(data)} bytes, at most 65536" in refused.value.message


def test_the_scan_stops_at_the_end_of_the_first_element() -> None:
    """Bytes after the list are refused by the strict parser as trailing data, unread: the
    scan does not walk them either (a 16 MiB tail of tiny elements would cost seconds)."""
    assert der.costly_element(SIGNED_LIST + b"\x1f" + b"\xff" * 1000) is None
    with pytest.raises(ListContentError) as refused:
        decode_signed_list(SIGNED_LIST + b"\x1f" + b"\xff" * 1000)
    assert "trailing data" in str(refused.value)


def test_the_legacy_seed_is_an_old_package_the_migration_reader_takes() -> None:
    """The ``packages.legacy`` target fuzzes the migration-only reader from a real old package:
    refused ``legacy-format`` without the flag, read with it; bytes that only look old (a
    SEQUENCE opening with a SEQUENCE) are ``malformed``, never ``legacy-format``."""
    target = TARGETS["packages.legacy"]
    target.run(target.seeds[0])
    with pytest.raises(PackageRefused) as refused:
        read_package(target.seeds[0])
    assert refused.value.reason == "legacy-format"
    looks_old = der.tlv(der.SEQUENCE, der.tlv(der.SEQUENCE, b"\x02\x01\x01"))
    for accept in (False, True):
        with pytest.raises(PackageRefused) as refused:
            read_package(looks_old, accept_legacy=accept)
        assert refused.value.reason == "malformed"
