"""Moving keys between tokens as key packages (hsm.envelope): GM/T 0010 SignedData over a
GM/T 0010 EnvelopedData (SM4 keys) or a GM/T 0009 §7.4 SM2EnvelopedKey (SM2 keys).

A "ministry" token holds the sender's signing key and the city keys; a "province" token holds an
encryption key (generated with decrypt=True, sign=False) that packages are sealed to; a third
token has its own and must not be able to take the province's packages. After every refusal the
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

from hsm import envelope_legacy as legacy
from hsm import gmt0010 as gm
from hsm.envelope import (
    PackageRefused,
    _assemble,
    export_key,
    import_key,
    key_id_of,
    read_package,
    verify_package,
)
from hsm.errors import InvalidKey
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.token import Token, TokenError
from hsm.sm.sm2 import A, B, P, SM2PrivateKey, SM2PublicKey, raw_to_der
from hsm.sm.sm3 import sm3
from hsm.sm.sm4 import sm4_encrypt_block, sm4_key_check_value

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
        transport=province.generate_sm2("province-transport", decrypt=True, sign=False),
        third_transport=third.generate_sm2("third-transport", decrypt=True, sign=False),
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
    assert caught.value.reason == reason
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
    _, parsed = read_package(package)
    content_at = package.index(parsed.content)
    attributes_end = package.index(parsed.signed_bytes[2:]) + len(parsed.signed_bytes) - 2
    label_at = package.index(b"city-0571-sm2")
    for offset in (
        content_at + len(parsed.content) - 1,  # the encrypted scalar (messageDigest differs)
        content_at + len(parsed.content) - 40,
        attributes_end - 10,  # inside the last attribute's value
        label_at,  # a signed attribute
        label_at + 5,
    ):
        tampered = bytearray(package)
        tampered[offset] ^= 0x01
        _refused(scene, snapshot, bytes(tampered), "bad-signature")
    # a signature of another key over the same attributes
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


def test_every_single_byte_change_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    """Each byte of a genuine package, changed in turn: always a refusal with a reason (never
    a stray exception), never an import."""
    package = scene.export(scene.city_sm2)
    before = snapshot(scene.province)
    reasons: dict[str, int] = {}
    for offset in range(len(package)):
        for flip in (0x01, 0x5A):
            tampered = bytearray(package)
            tampered[offset] ^= flip
            with pytest.raises(PackageRefused) as caught:
                scene.import_(bytes(tampered))
            reasons[caught.value.reason] = reasons.get(caught.value.reason, 0) + 1
    assert set(reasons) <= {"malformed", "bad-signature", "untrusted-sender"}
    assert reasons.get("bad-signature", 0) > len(package)  # most bytes are signed content
    assert snapshot(scene.province) == before


def test_bit_strings_with_unused_bits_are_refused(scene: Scene, snapshot: Snapshot) -> None:
    """Sm2PublicKey and Sm2EncryptedPrivateKey are whole octets in BIT STRINGs, so their
    "unused bits" octet is 0; one that says otherwise is refused, even correctly signed."""
    package = scene.export(scene.city_sm2)
    _, parsed = read_package(package)
    point = parsed.public_point
    assert point is not None
    for field, value in ((point, b"\x03\x42\x00" + point), (parsed.encrypted_key, None)):
        old = value or b"\x03\x21\x00" + field
        at = parsed.content.index(old)
        content = bytearray(parsed.content)
        content[at + 2] = 3
        changed = _resigned(package, scene.sender.sign, content=bytes(content))
        error = _refused(scene, snapshot, changed, "malformed")
        assert "SM2EnvelopedKey" in error.message  # DER: unused bits set are not canonical


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_read_package_refuses_any_junk_as_malformed(data: bytes) -> None:
    with pytest.raises(PackageRefused) as caught:
        read_package(data)
    assert caught.value.reason == "malformed"


# -- packages a trusted sender signed, but with wrong content ----------------------------
_ATTRIBUTE_OIDS = {
    "package_id": (gm.OID_ATTR_PACKAGE_ID, core.OctetString),
    "recipient_name": (gm.OID_ATTR_RECIPIENT_NAME, core.UTF8String),
    "recipient_key_id": (gm.OID_ATTR_RECIPIENT_KEY_ID, core.OctetString),
    "key_kind": (gm.OID_ATTR_KEY_KIND, core.Integer),
    "key_label": (gm.OID_ATTR_KEY_LABEL, core.UTF8String),
    "check_value": (gm.OID_ATTR_CHECK_VALUE, core.OctetString),
    "content_type": (gm.OID_CONTENT_TYPE, core.ObjectIdentifier),
    "message_digest": (gm.OID_MESSAGE_DIGEST, core.OctetString),
}


def _resigned(
    package: bytes,
    sign: Callable[[bytes], bytes],
    *,
    content: bytes | None = None,
    sender: SM2PublicKey | None = None,
    **changes: Any,
) -> bytes:
    """The package with ``content`` replaced (its messageDigest recomputed unless
    ``message_digest`` is given) and ``changes`` made to its authenticated attributes, the
    attributes signed again by ``sign`` (the sender id kept unless ``sender`` is given)."""
    info, parsed = read_package(package)
    content = parsed.content if content is None else content
    changes.setdefault("message_digest", sm3(content))
    attributes = gm.Attributes.load(parsed.signed_bytes)
    values = []
    for attribute in attributes:
        oid = attribute["type"].dotted
        name = next((n for n, (o, _) in _ATTRIBUTE_OIDS.items() if o == oid), None)
        if name in changes:
            spec = _ATTRIBUTE_OIDS[name][1]
            values.append({"type": oid, "values": [spec(changes[name])]})
        else:
            values.append({"type": oid, "values": [attribute["values"][0]]})
    signed_bytes = gm.Attributes(values).dump(force=True)
    sender_id = key_id_of(sender) if sender else info.sender_key_id
    return _assemble(
        parsed.content_type, content, signed_bytes, sender_id, raw_to_der(sign(signed_bytes))
    )


def test_a_package_resigned_unchanged_still_imports(scene: Scene) -> None:
    """The helper below rebuilds exactly what export_key wrote: a test's refusal is its change."""
    package = scene.export(scene.city_sm4)
    again = _resigned(package, scene.sender.sign)
    assert read_package(again)[0] == read_package(package)[0]
    assert read_package(again)[1].signed_bytes == read_package(package)[1].signed_bytes
    assert scene.import_(again).check_value == scene.city_sm4.check_value


def test_wrong_check_value_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    sm4 = scene.export(scene.city_sm4)
    assert scene.city_sm4.check_value is not None
    wrong_kcv = bytes(b ^ 0xFF for b in scene.city_sm4.check_value)
    package = _resigned(sm4, scene.sender.sign, check_value=wrong_kcv)
    _refused(scene, snapshot, package, "check-value-mismatch")

    sm2 = scene.export(scene.city_sm2)
    other_point = SM2PrivateKey.generate().public_key
    package = _resigned(sm2, scene.sender.sign, check_value=other_point.compressed)
    _refused(scene, snapshot, package, "check-value-mismatch")
    # the SM2EnvelopedKey's Sm2PublicKey field is checked against d·G as well
    _, parsed = read_package(sm2)
    assert parsed.public_point is not None
    content = parsed.content.replace(parsed.public_point, other_point.uncompressed)
    package = _resigned(sm2, scene.sender.sign, content=content)
    error = _refused(scene, snapshot, package, "check-value-mismatch")
    assert "Sm2PublicKey" in error.message


def test_signed_but_malformed_content_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    sm4 = scene.export(scene.city_sm4)
    # an EnvelopedData claiming to hold an SM2 key
    wrong_kind = _resigned(sm4, scene.sender.sign, key_kind=1)
    assert "keyKind" in _refused(scene, snapshot, wrong_kind, "malformed").message
    short_id = _resigned(sm4, scene.sender.sign, package_id=b"\x01" * 15)
    assert "packageId" in _refused(scene, snapshot, short_id, "malformed").message
    other_type = _resigned(sm4, scene.sender.sign, content_type=gm.OID_GM_DATA)
    assert "contentType" in _refused(scene, snapshot, other_type, "malformed").message
    # SM4-ECB (GM/T 0009's example) is refused: packages are SM4-CBC only
    _, parsed = read_package(sm4)
    cbc = core.ObjectIdentifier(gm.OID_SM4_CBC).dump()
    ecb_content = parsed.content.replace(cbc, core.ObjectIdentifier(gm.OID_SM4_ECB).dump())
    ecb = _resigned(sm4, scene.sender.sign, content=ecb_content)
    assert "SM4-CBC" in _refused(scene, snapshot, ecb, "malformed").message
    # the recipient named in the envelope must be the signed one
    assert scene.third_transport.public_key is not None
    rid = key_id_of(scene.third_transport.public_key)
    other_rid = _resigned(sm4, scene.sender.sign, recipient_key_id=rid)
    assert "rid" in _refused(scene, snapshot, other_rid, "malformed").message
    # a digest over other content than the one carried
    wrong_digest = _resigned(sm4, scene.sender.sign, message_digest=bytes(32))
    _refused(scene, snapshot, wrong_digest, "bad-signature")


def test_envelope_key_that_does_not_open_is_refused(scene: Scene, snapshot: Snapshot) -> None:
    for key in (scene.city_sm4, scene.city_sm2):
        package = scene.export(key)
        _, parsed = read_package(package)
        sealed = bytearray(parsed.sealed_key)
        sealed[-1] ^= 0x01  # inside the SM2 ciphertext: its SM3 hash no longer matches
        content = parsed.content.replace(parsed.sealed_key, bytes(sealed))
        changed = _resigned(package, scene.sender.sign, content=content)
        _refused(scene, snapshot, changed, "bad-envelope")


def test_the_package_is_gmt0010_over_gmt0009(scene: Scene) -> None:
    """The structure field by field, read with the GM/T declarations (hsm.gmt0010)."""
    assert scene.transport.public_key is not None
    for key in (scene.city_sm4, scene.city_sm2):
        package = scene.export(key)
        outer_type, signed_der = gm.read_content_info(package)
        assert outer_type == gm.OID_GM_SIGNED_DATA
        signed = gm.SignedData.load(signed_der)
        assert signed["version"].native == 1
        assert [a["algorithm"].dotted for a in signed["digest_algorithms"]] == [gm.OID_SM3]
        content_type, content = gm.read_content_info(signed["content_info"].dump())
        (signer,) = list(signed["signer_infos"])
        assert signer["version"].native == 3
        assert signer["sid"].chosen.native == key_id_of(scene.sender.public_key)
        assert signer["digest_encryption_algorithm"]["algorithm"].dotted == gm.OID_SM2_SIGN
        if key.kind == KeyKind.SM4:
            assert content_type == gm.OID_GM_ENVELOPED_DATA
            env = gm.EnvelopedData.load(content)
            (recipient,) = list(env["recipient_infos"])
            assert recipient["rid"].chosen.native == key_id_of(scene.transport.public_key)
            assert recipient["key_encryption_algorithm"]["algorithm"].dotted == gm.OID_SM2_ENCRYPT
            sealed = gm.SM2Cipher.load(recipient["encrypted_key"].native, strict=True)
            eci = env["encrypted_content_info"]
            assert eci["content_type"].dotted == gm.OID_GM_DATA
            algorithm = eci["content_encryption_algorithm"]
            assert len(eci["encrypted_content"].native) == 32  # 16 + a block of padding
        else:
            assert content_type == gm.OID_JTCA_SM2_ENVELOPED_KEY
            env = gm.SM2EnvelopedKey.load(content)
            sealed = env["sym_encrypted_key"]
            assert key.public_key is not None
            assert env["sm2_public_key"].native == key.public_key.uncompressed
            assert len(env["sm2_encrypted_private_key"].native) == 32
            algorithm = env["sym_alg_id"]
        assert algorithm["algorithm"].dotted == gm.OID_SM4_CBC
        assert len(core.OctetString.load(algorithm["parameters"].dump()).native) == 16
        assert len(sealed["hash"].native) == 32
        assert len(sealed["cipher_text"].native) == 16


def test_every_package_has_a_fresh_iv_and_content_key(scene: Scene) -> None:
    seen_iv, seen_sealed = set(), set()
    for _ in range(4):
        _, parsed = read_package(scene.export(scene.city_sm4))
        seen_iv.add(parsed.iv)
        seen_sealed.add(parsed.sealed_key)
        assert parsed.encrypted_key not in {b""}
    assert len(seen_iv) == 4
    assert len(seen_sealed) == 4


# -- the old format: read for migration only ----------------------------------------------
def _legacy_package(scene: Scene, key: TokenKey) -> bytes:
    """A package in the format before issue #15, made as the old export_key made it."""
    assert scene.transport.public_key is not None
    if key.kind == KeyKind.SM2:
        assert key.public_key is not None
        check = key.public_key.compressed
    else:
        assert key.check_value is not None
        check = key.check_value
    envelope_key = bytes(range(100, 116))

    def seal(material: bytearray) -> bytes:
        blocks = range(0, len(material), 16)
        return b"".join(
            sm4_encrypt_block(envelope_key, bytes(material[i : i + 16])) for i in blocks
        )

    tbs = legacy.KeyPackage(
        {
            "version": 1,
            "package_id": sm3(key.label.encode())[:16],
            "created_at": WHEN,
            "sender_key_id": key_id_of(scene.sender.public_key),
            "recipient_key_id": key_id_of(scene.transport.public_key),
            "recipient_name": "浙江省 province",
            "key_kind": 1 if key.kind == KeyKind.SM2 else 2,
            "key_label": key.label,
            "check_value": check,
            "envelope": {
                "sym_alg_id": {"algorithm": legacy.OID_SM4_ECB},
                "sym_encrypted_key": scene.transport.public_key.encrypt(envelope_key),
                "encrypted_key": scene.ministry.with_key_material(key.uri, seal),
            },
        }
    )
    signature = raw_to_der(scene.sender.sign(tbs.dump()))
    return legacy.SignedKeyPackage(
        {
            "tbs_package": tbs,
            "signature_algorithm": {"algorithm": legacy.OID_SM2_WITH_SM3},
            "signature": signature,
        }
    ).dump()


def test_an_old_package_is_refused_unless_the_migration_reader_is_asked(
    scene: Scene, snapshot: Snapshot
) -> None:
    for key in (scene.city_sm4, scene.city_sm2):
        old = _legacy_package(scene, key)
        error = _refused(scene, snapshot, old, "legacy-format")
        assert "old format" in error.message
        assert "accept_legacy" in error.message
        with pytest.raises(PackageRefused) as caught:
            verify_package(old, [scene.sender.public_key])
        assert caught.value.reason == "legacy-format"
        info = verify_package(old, [scene.sender.public_key], accept_legacy=True)
        assert info.legacy is True
        assert info.key_label == key.label
        imported = scene.import_(old, accept_legacy=True, label=f"{key.label}-migrated")
        if key.kind == KeyKind.SM4:
            assert imported.check_value == key.check_value
        else:
            assert imported.public_key == key.public_key
        # the migration reader keeps every check: replay, signature
        _refused(scene, snapshot, old, "replayed", accept_legacy=True, label="again")
    tampered = bytearray(_legacy_package(scene, scene.city_sm4))
    tampered[tampered.index(b"city-0571-sm4")] ^= 1
    _refused(scene, snapshot, bytes(tampered), "bad-signature", accept_legacy=True)


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


def test_a_signing_only_key_cannot_open_a_package(scene: Scene, snapshot: Snapshot) -> None:
    """GM/T 0014/0015 keep a holder's signing and encryption keys apart: a package sealed (by
    mistake or by an attacker) to the public point of a signing key (CKA_DECRYPT FALSE in the
    token) does not open with it; the token's own attribute decides, not the caller."""
    signing_only = scene.province.generate_sm2("province-signing-only")
    assert signing_only.public_key is not None
    package = scene.export(scene.city_sm4, recipient_transport_key=signing_only.public_key)
    before = snapshot(scene.province)
    with pytest.raises(TokenError, match="may not decrypt"):
        scene.import_(package, transport_key=signing_only)
    assert snapshot(scene.province) == before
