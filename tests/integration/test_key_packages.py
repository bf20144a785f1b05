"""Moving keys between tokens as key packages (hsm.envelope).

A "ministry" token holds the sender's signing key and the city keys; a "province" token holds a
transport key (generated with decrypt=True) that packages are sealed to; a third token has its
own transport key and must not be able to take the province's packages. After every refusal the
recipient token holds exactly the objects it held before (read directly through python-pkcs11).
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pkcs11.exceptions as p11e
import pytest
from asn1crypto import core
from hypothesis import given, settings
from hypothesis import strategies as st
from pkcs11 import Attribute, ObjectClass

from hsm.envelope import (
    KeyPackage,
    PackageRefused,
    SignedKeyPackage,
    export_key,
    import_key,
    key_id_of,
    read_package,
)
from hsm.errors import InvalidKey
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.token import Token, TokenError
from hsm.sm.sm2 import A, B, P, SM2PrivateKey, raw_to_der
from hsm.sm.sm4 import sm4_key_check_value

NewToken = Callable[..., tuple[Token, KeyStore, str]]
Snapshot = Callable[[KeyStore], list[Any]]
WHEN = datetime(2031, 3, 1, 8, 30, tzinfo=UTC)


class SM2Cipher(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto declares fields this way
        ("x", core.Integer),
        ("y", core.Integer),
        ("hash", core.OctetString),
        ("ciphertext", core.OctetString),
    ]


@dataclass
class Scene:
    ministry: KeyStore
    province: KeyStore
    third: KeyStore
    sender: TokenSigner
    city_sm4: TokenKey
    city_sm2: TokenKey
    transport: TokenKey
    third_transport: TokenKey

    def export(self, key: TokenKey, **kwargs: Any) -> bytes:
        assert self.transport.public_key is not None
        options: dict[str, Any] = {
            "sender": self.sender,
            "recipient_transport_key": self.transport.public_key,
            "recipient_name": "浙江省 province",
            "now": WHEN,
        } | kwargs
        return export_key(self.ministry, key, **options)

    def import_(self, package: bytes, store: KeyStore | None = None, **kwargs: Any) -> TokenKey:
        options: dict[str, Any] = {
            "transport_key": self.transport,
            "trusted_senders": [self.sender.public_key],
        } | kwargs
        return import_key(store or self.province, package, **options)


@pytest.fixture
def scene(new_token: NewToken) -> Scene:
    # all three tokens first, then the keys
    _, ministry, _ = new_token("MINISTRY")
    _, province, _ = new_token("PROVINCE")
    _, third, _ = new_token("THIRD")
    signing = ministry.generate_sm2("ministry-package-signing")
    return Scene(
        ministry=ministry,
        province=province,
        third=third,
        sender=TokenSigner(ministry, signing.uri),
        city_sm4=ministry.generate_sm4("city-0571-sm4"),
        city_sm2=ministry.generate_sm2("city-0571-sm2"),
        transport=province.generate_sm2("province-transport", decrypt=True),
        third_transport=third.generate_sm2("third-transport", decrypt=True),
    )


def _sensitive_value_unreadable(store: KeyStore, key: TokenKey) -> dict[Attribute, Any]:
    def read(session: Any) -> dict[Attribute, Any]:
        obj = store.find(session, key.uri)
        with pytest.raises(p11e.AttributeSensitive):
            obj[Attribute.VALUE]
        return {a: obj[a] for a in (Attribute.SENSITIVE, Attribute.TOKEN, Attribute.PRIVATE)}

    return store.token.run(read)


# -- the good path -----------------------------------------------------------------------
def test_sm4_key_moves_with_its_check_value(scene: Scene, snapshot: Snapshot) -> None:
    package = scene.export(scene.city_sm4)
    info, _ = read_package(package)
    assert info.kind == KeyKind.SM4
    assert info.key_label == "city-0571-sm4"
    assert info.check_value == scene.city_sm4.check_value
    assert info.recipient_name == "浙江省 province"
    assert info.created_at == WHEN
    assert info.sender_key_id == key_id_of(scene.sender.public_key)
    assert scene.transport.public_key is not None
    assert info.recipient_key_id == key_id_of(scene.transport.public_key)
    assert len(info.package_id) == 16
    # the package does not carry the key in the clear
    value = scene.ministry.with_key_material(scene.city_sm4.uri, bytes)
    assert value not in package

    imported = scene.import_(package)
    assert imported.kind == KeyKind.SM4
    assert imported.label == "city-0571-sm4"
    assert imported.uri.token == scene.province.token.label
    assert imported.check_value == scene.city_sm4.check_value
    moved = scene.province.with_key_material(imported.uri, bytes)
    assert moved == value
    assert sm4_key_check_value(moved) == scene.city_sm4.check_value
    assert _sensitive_value_unreadable(scene.province, imported) == {
        Attribute.SENSITIVE: True,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
    }
    # one replay marker (a private data object) came with it
    rows = snapshot(scene.province)
    markers = [r for r in rows if r[0] == ObjectClass.DATA]
    assert [label for _, label, _ in markers] == [f"jtca-pkg:{info.package_id.hex()}"]


def test_sm2_key_moves_and_signs_as_the_original(scene: Scene, tmp_path: Path) -> None:
    package = scene.export(scene.city_sm2)
    info, _ = read_package(package)
    assert scene.city_sm2.public_key is not None
    assert info.check_value == scene.city_sm2.public_key.compressed
    imported = scene.import_(package, label="city-0571-sm2-in-province")
    assert imported.kind == KeyKind.SM2
    assert imported.label == "city-0571-sm2-in-province"
    assert imported.public_key == scene.city_sm2.public_key
    assert scene.province.public_key(imported.uri) == scene.city_sm2.public_key
    message = b"interop certificate for issuer 0571"
    signature = TokenSigner(scene.province, imported.uri).sign(message)
    scene.city_sm2.public_key.verify(signature, message)  # the ORIGINAL public key
    attrs = _sensitive_value_unreadable(scene.province, imported)
    assert attrs[Attribute.SENSITIVE] is True


# -- refusals, each with its reason, and nothing half-imported ---------------------------
def _refused(
    scene: Scene,
    snapshot: Snapshot,
    package: bytes,
    reason: str,
    store: KeyStore | None = None,
    **kwargs: Any,
) -> PackageRefused:
    recipient = store or scene.province
    before = snapshot(recipient)
    with pytest.raises(PackageRefused) as caught:
        scene.import_(package, store=recipient, **kwargs)
    assert caught.value.reason == reason, caught.value.message
    assert caught.value.message.startswith(f"{reason}: ")
    assert caught.value.title == "Key package refused"
    assert snapshot(recipient) == before, "a refused package left objects behind"
    return caught.value


def test_replayed_package_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    package = scene.export(scene.city_sm4)
    scene.import_(package, label="first-time")
    _refused(scene, snapshot, package, "replayed")
    _refused(scene, snapshot, package, "replayed", label="under-another-label")
    # a fresh package of the same key is a new package
    assert scene.import_(scene.export(scene.city_sm4), label="second").check_value == (
        scene.city_sm4.check_value
    )


def test_tampered_package_is_refused_as_bad_signature(scene: Scene, snapshot: Snapshot) -> None:
    package = scene.export(scene.city_sm2)
    _, signed = read_package(package)
    tbs = signed["tbs_package"].dump()
    start = package.index(tbs)
    label_at = start + tbs.index(b"city-0571-sm2")
    end = start + len(tbs)
    for offset in (end - 1, end - 40, label_at, label_at + 5):  # envelope bytes, the label
        tampered = bytearray(package)
        tampered[offset] ^= 0x01
        _refused(scene, snapshot, bytes(tampered), "bad-signature")
    # a signature of another key over the same bytes
    forged = _resigned(package, SM2PrivateKey.generate().sign)
    _refused(scene, snapshot, forged, "bad-signature")
    # and the untouched package still goes in afterwards
    assert scene.import_(package).public_key == scene.city_sm2.public_key


def test_untrusted_sender_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    package = scene.export(scene.city_sm4)
    stranger = SM2PrivateKey.generate().public_key
    _refused(scene, snapshot, package, "untrusted-sender", trusted_senders=[stranger])
    _refused(scene, snapshot, package, "untrusted-sender", trusted_senders=[])


def test_misaddressed_package_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    package = scene.export(scene.city_sm4)  # sealed to the province's transport key
    _refused(
        scene,
        snapshot,
        package,
        "misaddressed",
        store=scene.third,
        transport_key=scene.third_transport,
    )
    # a key record with no public point cannot be the one a package is sealed to
    _refused(
        scene,
        snapshot,
        package,
        "misaddressed",
        store=scene.province,
        transport_key=scene.city_sm4,
    )


@pytest.mark.parametrize("cut", [0, 1, 2, 10, 100, -100, -66, -2, -1])
def test_truncated_package_is_refused(scene: Scene, snapshot: Snapshot, cut: int) -> None:
    package = scene.export(scene.city_sm4)
    _refused(scene, snapshot, package[:cut], "malformed")


def test_trailing_and_random_bytes_are_refused(scene: Scene, snapshot: Snapshot) -> None:
    package = scene.export(scene.city_sm4)
    for extra in (b"\x00", b"\x30\x00", package):
        _refused(scene, snapshot, package + extra, "malformed")
    rng = random.Random(7512)  # noqa: S311 - reproducible junk, not a secret
    for size in (1, 16, 300, len(package)):
        _refused(scene, snapshot, rng.randbytes(size), "malformed")
    _refused(scene, snapshot, b"\x30" + package[1:2] + rng.randbytes(len(package) - 2), "malformed")


def _unused_bits_offset(package: bytes) -> int:
    """Where the signature BIT STRING's "unused bits" octet sits (the last field)."""
    _, signed = read_package(package)
    der = bytes(signed["signature"].native)
    offset = len(package) - len(der) - 1
    assert package[offset] == 0
    assert package[offset + 1 :] == der
    return offset


def test_every_single_byte_change_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    """Each byte of a genuine package, changed in turn: always a refusal with a reason (never
    a stray exception), never an import. (The signature's "unused bits" octet has a test of
    its own below.)"""
    package = scene.export(scene.city_sm2)
    padding = _unused_bits_offset(package)
    before = snapshot(scene.province)
    reasons: dict[str, int] = {}
    for offset in range(len(package)):
        if offset == padding:
            continue
        for flip in (0x01, 0x5A):
            tampered = bytearray(package)
            tampered[offset] ^= flip
            with pytest.raises(PackageRefused) as caught:
                scene.import_(bytes(tampered))
            reasons[caught.value.reason] = reasons.get(caught.value.reason, 0) + 1
    assert set(reasons) <= {"malformed", "bad-signature", "untrusted-sender"}
    assert reasons.get("bad-signature", 0) > len(package)  # most bytes are signed content
    assert snapshot(scene.province) == before


def test_signature_bit_string_with_unused_bits_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    """The signature is a DER SEQUENCE carried whole in a BIT STRING, so its "unused bits"
    octet is 0. A package whose octet says otherwise is not the package that was signed and
    sent, whatever a lenient decoder makes of it."""
    package = scene.export(scene.city_sm4)
    offset = _unused_bits_offset(package)
    for unused in range(1, 8):
        tampered = bytearray(package)
        tampered[offset] = unused
        _refused(scene, snapshot, bytes(tampered), "malformed")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_read_package_refuses_any_junk_as_malformed(data: bytes) -> None:
    with pytest.raises(PackageRefused) as caught:
        read_package(data)
    assert caught.value.reason == "malformed"


# -- packages a trusted sender signed, but with wrong content ----------------------------
def _resigned(package: bytes, sign: Callable[[bytes], bytes], **changes: Any) -> bytes:
    """The package with ``changes`` made to its tbsPackage, signed again by ``sign``."""
    signed = SignedKeyPackage.load(package)
    tbs = KeyPackage.load(signed["tbs_package"].dump())
    for name, value in changes.items():
        if name.startswith("envelope_"):
            tbs["envelope"][name[len("envelope_") :]] = value
        else:
            tbs[name] = value
    tbs_der = tbs.dump(force=True)
    return SignedKeyPackage(
        {
            "tbs_package": KeyPackage.load(tbs_der),
            "signature_algorithm": {"algorithm": "1.2.156.10197.1.501"},
            "signature": raw_to_der(sign(tbs_der)),
        }
    ).dump()


def test_wrong_check_value_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    sm4 = scene.export(scene.city_sm4)
    assert scene.city_sm4.check_value is not None
    wrong_kcv = bytes(b ^ 0xFF for b in scene.city_sm4.check_value)
    package = _resigned(sm4, scene.sender.sign, check_value=wrong_kcv)
    _refused(scene, snapshot, package, "check-value-mismatch")

    sm2 = scene.export(scene.city_sm2)
    other_point = SM2PrivateKey.generate().public_key.compressed
    package = _resigned(sm2, scene.sender.sign, check_value=other_point)
    _refused(scene, snapshot, package, "check-value-mismatch")


def test_signed_but_malformed_content_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    sm4 = scene.export(scene.city_sm4)
    # an SM4 envelope claiming to hold an SM2 key: sizes do not fit the kind
    wrong_kind = _resigned(sm4, scene.sender.sign, key_kind=1)
    _refused(scene, snapshot, wrong_kind, "malformed")
    other_version = _resigned(sm4, scene.sender.sign, version=2)
    _refused(scene, snapshot, other_version, "malformed")
    short_id = _resigned(sm4, scene.sender.sign, package_id=b"\x01" * 15)
    _refused(scene, snapshot, short_id, "malformed")
    wrong_algorithm = _resigned(
        sm4, scene.sender.sign, envelope_sym_alg_id={"algorithm": "1.2.156.10197.1.104.2"}
    )
    _refused(scene, snapshot, wrong_algorithm, "malformed")


def test_envelope_key_that_does_not_open_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    sm4 = scene.export(scene.city_sm4)
    _, signed = read_package(sm4)
    sealed = bytearray(signed["tbs_package"]["envelope"]["sym_encrypted_key"].native)
    sealed[-1] ^= 0x01  # inside the SM2 ciphertext: its SM3 hash no longer matches
    package = _resigned(sm4, scene.sender.sign, envelope_sym_encrypted_key=bytes(sealed))
    _refused(scene, snapshot, package, "bad-envelope")


def test_a_label_clash_leaves_nothing_behind(scene: Scene, snapshot: Snapshot) -> None:
    package = scene.export(scene.city_sm4)
    before = snapshot(scene.province)
    with pytest.raises(TokenError, match="already holds an object labelled"):
        scene.import_(package, label="province-transport")
    assert snapshot(scene.province) == before
    # not marked as imported: the same package can go in under a free label
    assert scene.import_(package, label="free").check_value == scene.city_sm4.check_value


def test_export_refuses_a_record_that_does_not_match_the_token(scene: Scene) -> None:
    wrong = TokenKey(
        uri=scene.city_sm4.uri,
        kind=KeyKind.SM4,
        label=scene.city_sm4.label,
        key_id=scene.city_sm4.key_id,
        check_value=b"\x00\x00\x00",
    )
    with pytest.raises(InvalidKey, match="does not match its check value"):
        scene.export(wrong)
    no_point = TokenKey(
        uri=scene.city_sm2.uri, kind=KeyKind.SM2, label="x", key_id=scene.city_sm2.key_id
    )
    with pytest.raises(InvalidKey, match="needs its public point"):
        scene.export(no_point)


# -- the SM2 encryption that seals envelopes, checked by OpenSSL -----------------------
def test_sm2_encryption_round_trip_and_openssl_decrypts_it(tmp_path: Path) -> None:
    key = SM2PrivateKey.generate()
    for plaintext in (b"\x00", bytes(range(16)), b"envelope key 16b" * 8):
        ciphertext = key.public_key.encrypt(plaintext)
        assert ciphertext != key.public_key.encrypt(plaintext)  # fresh randomness each time
        assert key.decrypt(ciphertext) == plaintext
        (tmp_path / "key.pem").write_bytes(key.pkcs8_pem())
        (tmp_path / "ct").write_bytes(ciphertext)
        run = subprocess.run(
            [
                "openssl",
                "pkeyutl",
                "-decrypt",
                "-inkey",
                str(tmp_path / "key.pem"),
                "-in",
                str(tmp_path / "ct"),
            ],
            capture_output=True,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout == plaintext
        # the ciphertext is the GM/T 0009 DER SM2Cipher: C1 = (x, y) on the curve, C3 = hash,
        # C2 = as long as the plaintext
        parsed = SM2Cipher.load(ciphertext, strict=True)
        x, y = parsed["x"].native, parsed["y"].native
        assert (y * y - (x * x * x + A * x + B)) % P == 0
        assert len(parsed["hash"].native) == 32
        assert len(parsed["ciphertext"].native) == len(plaintext)


def test_sm2_decryption_refuses_tampered_or_misdirected_ciphertext() -> None:
    key = SM2PrivateKey.generate()
    ciphertext = key.public_key.encrypt(b"sixteen byte key")
    for offset in (len(ciphertext) - 1, len(ciphertext) - 20, 10):
        tampered = bytearray(ciphertext)
        tampered[offset] ^= 0x01
        with pytest.raises(InvalidKey):
            key.decrypt(bytes(tampered))
    with pytest.raises(InvalidKey):
        SM2PrivateKey.generate().decrypt(ciphertext)
    with pytest.raises(InvalidKey):
        key.decrypt(ciphertext[:-1])
