"""MIGRATION ONLY: the reader of jtca's key packages from before issue #15.

Do not use it for anything new. The old format was jtca's own (an ``SM2EnvelopedKey`` that
borrowed GM/T 0009's name but not its structure, SM4 in ECB mode); packages are now written in
GM/T 0010 / GM/T 0009 (``hsm.envelope``, docs/keypackages.md). This module only reads an old
package so that one made before the upgrade and still in transit can be imported once:
``hsm.envelope.import_key`` and ``verify_package`` call it only when the caller passes
``accept_legacy=True``; otherwise an old package is refused ``legacy-format``. It writes nothing.
Delete it once no old package is in transit.

The old ASN.1 (DER)::

    SignedKeyPackage ::= SEQUENCE {
        tbsPackage          KeyPackage,
        signatureAlgorithm  AlgorithmIdentifier,      -- 1.2.156.10197.1.501 SM2-with-SM3
        signature           BIT STRING }              -- DER SEQUENCE { r, s }, Z over default ID
    KeyPackage ::= SEQUENCE {
        version             INTEGER (1),
        packageId           OCTET STRING (SIZE (16)),
        createdAt           GeneralizedTime,
        senderKeyId         OCTET STRING,             -- SM3(sender key, compressed)
        recipientKeyId      OCTET STRING,             -- SM3(recipient transport key, compressed)
        recipientName       UTF8String,
        keyKind             INTEGER { sm2(1), sm4(2) },
        keyLabel            UTF8String,
        checkValue          OCTET STRING,             -- SM4: KCV (3); SM2: public point (33)
        envelope            LegacyEnvelope }
    LegacyEnvelope ::= SEQUENCE {                     -- called SM2EnvelopedKey in the old code
        symAlgID            AlgorithmIdentifier,      -- 1.2.156.10197.1.104.1 SM4-ECB
        symEncryptedKey     OCTET STRING,             -- SM2Cipher (DER) of the SM4 key
        encryptedKey        OCTET STRING }            -- SM4-ECB of the key material
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from asn1crypto import algos, core  # untyped: the ASN.1 classes below subclass Any

from hsm.sm.sm4 import SM4_BLOCK, sm4_decrypt_block

OID_SM2_WITH_SM3: Final = "1.2.156.10197.1.501"
OID_SM4_ECB: Final = "1.2.156.10197.1.104.1"
VERSION: Final = 1


class _KeyKindAsn1(core.Integer):  # type: ignore[misc]
    _map = {1: "sm2", 2: "sm4"}  # noqa: RUF012 - asn1crypto declares fields this way


class LegacyEnvelope(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("sym_alg_id", algos.AlgorithmIdentifier),
        ("sym_encrypted_key", core.OctetString),
        ("encrypted_key", core.OctetString),
    ]


class KeyPackage(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("package_id", core.OctetString),
        ("created_at", core.GeneralizedTime),
        ("sender_key_id", core.OctetString),
        ("recipient_key_id", core.OctetString),
        ("recipient_name", core.UTF8String),
        ("key_kind", _KeyKindAsn1),
        ("key_label", core.UTF8String),
        ("check_value", core.OctetString),
        ("envelope", LegacyEnvelope),
    ]


class SignedKeyPackage(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("tbs_package", KeyPackage),
        ("signature_algorithm", algos.AlgorithmIdentifier),
        ("signature", core.OctetBitString),
    ]


class LegacyMalformed(ValueError):
    """The bytes look like an old package (a SEQUENCE opening with a SEQUENCE) but are not one."""


@dataclass(frozen=True, slots=True)
class LegacyPackage:
    package_id: bytes
    created_at: datetime
    sender_key_id: bytes
    recipient_key_id: bytes
    recipient_name: str
    kind: int  # 1 sm2, 2 sm4
    key_label: str
    check_value: bytes
    signed_bytes: bytes  # the DER of tbsPackage, what the signature covers
    signature_der: bytes
    sealed_key: bytes  # SM2Cipher DER of the SM4-ECB key
    encrypted_key: bytes  # SM4-ECB of the material


def looks_legacy(data: bytes) -> bool:
    """An old package opens ``30 len 30``; a GM/T 0010 ContentInfo opens ``30 len 06``."""
    if len(data) < 4 or data[0] != 0x30:
        return False
    length = data[1]
    at = 2 + (length & 0x7F if length & 0x80 else 0)
    return at < len(data) and data[at] == 0x30


_ERRORS: Final = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    AttributeError,
    RecursionError,
)


def read_legacy(data: bytes) -> LegacyPackage:
    """Parse an old package strictly (DER, no trailing bytes); LegacyMalformed if it is not."""
    try:
        signed = SignedKeyPackage.load(data, strict=True)
        tbs = signed["tbs_package"]
        native: dict[str, Any] = tbs.native
        if signed.dump(force=True) != data:
            raise ValueError("not DER")
        if signed["signature_algorithm"]["algorithm"].dotted != OID_SM2_WITH_SM3:
            raise ValueError("signature algorithm is not SM2-with-SM3")
        if tbs["envelope"]["sym_alg_id"]["algorithm"].dotted != OID_SM4_ECB:
            raise ValueError("envelope algorithm is not the old SM4-ECB")
        signature = bytes(signed["signature"].native)
        if signed["signature"].contents[:1] != b"\x00":
            raise ValueError("the signature BIT STRING has unused bits")
        kind = int(tbs["key_kind"])
    except _ERRORS as exc:
        raise LegacyMalformed(f"not an old-format key package ({exc})") from None
    if native["version"] != VERSION or len(native["package_id"]) != 16 or kind not in (1, 2):
        raise LegacyMalformed("not an old-format key package (version, package id or key kind)")
    return LegacyPackage(
        package_id=native["package_id"],
        created_at=native["created_at"],
        sender_key_id=native["sender_key_id"],
        recipient_key_id=native["recipient_key_id"],
        recipient_name=native["recipient_name"],
        kind=kind,
        key_label=native["key_label"],
        check_value=native["check_value"],
        signed_bytes=tbs.dump(),
        signature_der=signature,
        sealed_key=native["envelope"]["sym_encrypted_key"],
        encrypted_key=native["envelope"]["encrypted_key"],
    )


def open_legacy(package: LegacyPackage, envelope_key: bytearray) -> bytearray:
    """The key material of an old package under its (already SM2-decrypted) SM4 key."""
    expected = 32 if package.kind == 1 else 16
    if len(envelope_key) != 16 or len(package.encrypted_key) != expected:
        raise LegacyMalformed("envelope sizes do not fit the key kind")
    out = bytearray(expected)
    for i in range(0, expected, SM4_BLOCK):
        out[i : i + SM4_BLOCK] = sm4_decrypt_block(
            envelope_key, package.encrypted_key[i : i + SM4_BLOCK]
        )
    return out
