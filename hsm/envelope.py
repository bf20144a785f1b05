"""Moving a key from one token to another (ministry → province → city) as a key package.

A package is a digital envelope in the manner of GM/T 0010 / GM/T 0009 §7.4: the key material
encrypted under a one-time SM4 key, that SM4 key encrypted with SM2 to the recipient's
transport public key, the whole signed by the sender. Only the recipient token can open it.
It names the intended recipient, carries a package id (replay protection) and a check value:
the SM4 key check value, or for an SM2 key its public point (d·G must equal it on import).

ASN.1 (DER; also in docs/tokens.md)::

    SignedKeyPackage ::= SEQUENCE {
        tbsPackage          KeyPackage,
        signatureAlgorithm  AlgorithmIdentifier,      -- 1.2.156.10197.1.501 SM2-with-SM3
        signature           BIT STRING }              -- DER SEQUENCE { r, s }, Z over default ID
    KeyPackage ::= SEQUENCE {
        version             INTEGER (1),
        packageId           OCTET STRING (SIZE (16)),
        createdAt           GeneralizedTime,
        senderKeyId         OCTET STRING,             -- SM3(sender signing key, compressed)
        recipientKeyId      OCTET STRING,             -- SM3(recipient transport key, compressed)
        recipientName       UTF8String,
        keyKind             INTEGER { sm2(1), sm4(2) },
        keyLabel            UTF8String,
        checkValue          OCTET STRING,             -- SM4: KCV (3); SM2: public point (33)
        envelope            SM2EnvelopedKey }
    SM2EnvelopedKey ::= SEQUENCE {
        symAlgID            AlgorithmIdentifier,      -- 1.2.156.10197.1.104.1 SM4-ECB
        symEncryptedKey     OCTET STRING,             -- SM2Cipher (DER) of the SM4 key
        encryptedKey        OCTET STRING }            -- SM4-ECB of the key material
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, Final

import pkcs11
from asn1crypto import algos, core  # untyped: the ASN.1 classes below subclass Any
from pkcs11 import Attribute, ObjectClass

from hsm.der_scan import costly_element
from hsm.errors import InvalidKey, InvalidSignature, JtcaError
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey, wipe
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey, der_to_raw, raw_to_der
from hsm.sm.sm3 import sm3
from hsm.sm.sm4 import SM4_BLOCK, sm4_decrypt_block, sm4_encrypt_block, sm4_key_check_value

OID_SM2_WITH_SM3: Final = "1.2.156.10197.1.501"
OID_SM4_ECB: Final = "1.2.156.10197.1.104.1"
VERSION: Final = 1
REPLAY_MARKER_APP: Final = "jtca key package"


class PackageRefused(JtcaError):
    """A key package that will not be imported; ``reason`` is a stable code."""

    title = "Key package refused"
    exit_code = 4

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class _KeyKindAsn1(core.Integer):  # type: ignore[misc]
    _map = {1: "sm2", 2: "sm4"}  # noqa: RUF012 - asn1crypto declares fields this way


class SM2EnvelopedKey(core.Sequence):  # type: ignore[misc]
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
        ("envelope", SM2EnvelopedKey),
    ]


class SignedKeyPackage(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("tbs_package", KeyPackage),
        ("signature_algorithm", algos.AlgorithmIdentifier),
        ("signature", core.OctetBitString),
    ]


class _Kind(IntEnum):
    SM2 = 1
    SM4 = 2


def key_id_of(public_key: SM2PublicKey) -> bytes:
    return sm3(public_key.compressed)


@dataclass(frozen=True, slots=True)
class PackageInfo:
    package_id: bytes
    created_at: datetime
    sender_key_id: bytes
    recipient_key_id: bytes
    recipient_name: str
    kind: KeyKind
    key_label: str
    check_value: bytes


def _sm4_ecb(key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    op = sm4_encrypt_block if encrypt else sm4_decrypt_block
    return b"".join(op(key, data[i : i + SM4_BLOCK]) for i in range(0, len(data), SM4_BLOCK))


def export_key(
    store: KeyStore,
    key: TokenKey,
    *,
    sender: Signer,
    recipient_transport_key: SM2PublicKey,
    recipient_name: str,
    now: datetime | None = None,
) -> bytes:
    """Seal ``key`` (from ``store``'s token) to the recipient and sign it as ``sender``."""
    if key.kind == KeyKind.SM2:
        if key.public_key is None:
            raise InvalidKey(f"{key.uri}: an SM2 key needs its public point to be exported")
        check_value = key.public_key.compressed
    else:
        if key.check_value is None:
            raise InvalidKey(f"{key.uri}: an SM4 key needs its check value to be exported")
        check_value = key.check_value
    envelope_key = bytearray(secrets.token_bytes(16))
    try:

        def seal(material: bytearray) -> bytes:
            if key.kind == KeyKind.SM4 and sm4_key_check_value(bytes(material)) != check_value:
                raise InvalidKey(f"{key.uri}: the key in the token does not match its check value")
            return _sm4_ecb(bytes(envelope_key), bytes(material), encrypt=True)

        encrypted_key = store.with_key_material(key.uri, seal)
        sealed_envelope_key = recipient_transport_key.encrypt(bytes(envelope_key))
    finally:
        wipe(envelope_key)
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    tbs = KeyPackage(
        {
            "version": VERSION,
            "package_id": secrets.token_bytes(16),
            "created_at": created,
            "sender_key_id": key_id_of(sender.public_key),
            "recipient_key_id": key_id_of(recipient_transport_key),
            "recipient_name": recipient_name,
            "key_kind": int(_Kind.SM2 if key.kind == KeyKind.SM2 else _Kind.SM4),
            "key_label": key.label,
            "check_value": check_value,
            "envelope": {
                "sym_alg_id": {"algorithm": OID_SM4_ECB},
                "sym_encrypted_key": sealed_envelope_key,
                "encrypted_key": encrypted_key,
            },
        }
    )
    tbs_der = tbs.dump()
    signature = raw_to_der(sender.sign(tbs_der))
    package: bytes = SignedKeyPackage(
        {
            "tbs_package": tbs,
            "signature_algorithm": {"algorithm": OID_SM2_WITH_SM3},
            "signature": signature,
        }
    ).dump()
    return package


_PARSE_ERRORS: Final = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    AttributeError,
    RecursionError,
)  # what asn1crypto raises on bytes it cannot read (an empty BIT STRING: IndexError)
MAX_NUMBER_OCTETS: Final = 64  # no integer or OID of a package is longer
MAX_PACKAGE: Final = 64 * 1024  # a package is under 1 KiB: one sealed key, names, a signature


def _costly_element(data: bytes) -> tuple[int, str] | None:
    """``hsm.der_scan.costly_element`` with a package's bound."""
    return costly_element(data, MAX_NUMBER_OCTETS)


def read_package(data: bytes) -> tuple[PackageInfo, SignedKeyPackage]:
    """Parse a package strictly (DER, no trailing bytes); refuse truncated or malformed ones."""
    data = bytes(data)
    if len(data) > MAX_PACKAGE:
        raise PackageRefused(
            "malformed", f"not a jtca key package ({len(data)} bytes, at most {MAX_PACKAGE})"
        )
    costly = _costly_element(data)
    if costly is not None:
        raise PackageRefused(
            "malformed", f"not a jtca key package (at offset {costly[0]}: {costly[1]})"
        )
    try:
        signed = SignedKeyPackage.load(data, strict=True)
        tbs = signed["tbs_package"]
        native: dict[str, Any] = tbs.native  # forces a full parse of every field
        if signed["signature_algorithm"]["algorithm"].dotted != OID_SM2_WITH_SM3:
            raise ValueError("signature algorithm is not SM2-with-SM3")
        if tbs["envelope"]["sym_alg_id"]["algorithm"].dotted != OID_SM4_ECB:
            raise ValueError("envelope algorithm is not SM4-ECB")
        _ = signed["signature"].native
        if signed["signature"].contents[:1] != b"\x00":
            raise ValueError("the signature BIT STRING has unused bits")
    except _PARSE_ERRORS as exc:
        raise PackageRefused("malformed", f"not a jtca key package ({exc})") from None
    if native["version"] != VERSION:
        raise PackageRefused("malformed", f"package version {native['version']} is not {VERSION}")
    if len(native["package_id"]) != 16:
        raise PackageRefused("malformed", "package id is not 16 bytes")
    kind_value = int(tbs["key_kind"])
    if kind_value not in (1, 2):
        raise PackageRefused("malformed", f"unknown key kind {kind_value}")
    info = PackageInfo(
        package_id=native["package_id"],
        created_at=native["created_at"],
        sender_key_id=native["sender_key_id"],
        recipient_key_id=native["recipient_key_id"],
        recipient_name=native["recipient_name"],
        kind=KeyKind.SM2 if kind_value == 1 else KeyKind.SM4,
        key_label=native["key_label"],
        check_value=native["check_value"],
    )
    return info, signed


def import_key(
    store: KeyStore,
    data: bytes,
    *,
    transport_key: TokenKey,
    trusted_senders: list[SM2PublicKey],
    label: str | None = None,
) -> TokenKey:
    """Verify, open and import a package into ``store``'s token as a sensitive key.

    Refused, each with its reason: ``malformed`` (truncated, not DER, wrong algorithms),
    ``untrusted-sender``, ``bad-signature`` (tampered), ``misaddressed`` (sealed to another
    transport key), ``replayed`` (this package id was imported here before),
    ``check-value-mismatch``. Nothing is half-imported: if any step after the key object is
    created fails, the objects created are destroyed.
    """
    info, signed = _verified(data, trusted_senders)
    if (
        transport_key.public_key is None
        or key_id_of(transport_key.public_key) != info.recipient_key_id
    ):
        raise PackageRefused(
            "misaddressed",
            f"the package is sealed to another transport key (for {info.recipient_name!r})",
        )
    marker = "jtca-pkg:" + info.package_id.hex()
    if _has_marker(store, marker):
        raise PackageRefused("replayed", f"package {info.package_id.hex()} was imported before")
    envelope = signed["tbs_package"]["envelope"]

    def open_envelope(transport_scalar: bytearray) -> bytearray:
        transport = SM2PrivateKey.from_scalar(bytes(transport_scalar))
        try:
            envelope_key = bytearray(transport.decrypt(envelope["sym_encrypted_key"].native))
        except InvalidKey:
            raise PackageRefused("bad-envelope", "the envelope key does not open") from None
        try:
            encrypted = envelope["encrypted_key"].native
            expected = 32 if info.kind == KeyKind.SM2 else 16
            if len(envelope_key) != 16 or len(encrypted) != expected:
                raise PackageRefused("malformed", "envelope sizes do not fit the key kind")
            return bytearray(_sm4_ecb(bytes(envelope_key), encrypted, encrypt=False))
        finally:
            wipe(envelope_key)

    material = store.with_key_material(transport_key.uri, open_envelope)
    try:
        return _install(store, info, material, label or info.key_label)
    finally:
        wipe(material)


def verify_package(data: bytes, trusted_senders: list[SM2PublicKey]) -> PackageInfo:
    """Parse a package and check its sender's signature, without opening it: what the authority
    checks of a package a site made (refused ``malformed``, ``untrusted-sender`` or
    ``bad-signature``, as ``import_key`` would)."""
    info, _ = _verified(data, trusted_senders)
    return info


def _verified(
    data: bytes, trusted_senders: list[SM2PublicKey]
) -> tuple[PackageInfo, SignedKeyPackage]:
    info, signed = read_package(data)
    sender = next((k for k in trusted_senders if key_id_of(k) == info.sender_key_id), None)
    if sender is None:
        raise PackageRefused("untrusted-sender", "the package is not from a trusted sender key")
    try:
        sender.verify(der_to_raw(bytes(signed["signature"].native)), signed["tbs_package"].dump())
    except InvalidSignature:
        raise PackageRefused("bad-signature", "the sender's signature does not verify") from None
    return info, signed


def forget_import(store: KeyStore, package_id: bytes) -> None:
    """Remove a package's replay marker from ``store``'s token: for an import whose record was
    refused and whose key object was destroyed, so the package can be imported again once the
    record is accepted. A marker already gone is no error."""

    def drop(session: pkcs11.Session) -> None:
        for obj in list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: "jtca-pkg:" + package_id.hex()}
            )
        ):
            obj.destroy()

    store.token.run(drop)


def _has_marker(store: KeyStore, marker: str) -> bool:
    def look(session: pkcs11.Session) -> bool:
        return (
            len(
                list(
                    session.get_objects(
                        {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: marker}
                    )
                )
            )
            > 0
        )

    return store.token.run(look)


def replay_marker(package_id: bytes) -> dict[Attribute, Any]:
    """The data object that records, in the recipient token, that a package was imported."""
    return {
        Attribute.CLASS: ObjectClass.DATA,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.LABEL: "jtca-pkg:" + package_id.hex(),
        Attribute.APPLICATION: REPLAY_MARKER_APP,
        Attribute.VALUE: package_id,
    }


def _install(store: KeyStore, info: PackageInfo, material: bytearray, label: str) -> TokenKey:
    public_key: SM2PublicKey | None = None
    if info.kind == KeyKind.SM2:
        try:
            private = SM2PrivateKey.from_scalar(bytes(material))
        except InvalidKey:
            raise PackageRefused("check-value-mismatch", "not a valid SM2 scalar") from None
        if private.public_key.compressed != info.check_value:
            raise PackageRefused("check-value-mismatch", "d·G is not the packaged public key")
        public_key = private.public_key
    elif sm4_key_check_value(bytes(material)) != info.check_value:
        raise PackageRefused("check-value-mismatch", "the SM4 key does not match its check value")
    return store.install_key(
        info.kind,
        label,
        material,
        public_key=public_key,
        check_value=info.check_value if info.kind == KeyKind.SM4 else None,
        companions=[replay_marker(info.package_id)],
    )
