"""Moving a key from one token to another (ministry → province → city) as a key package.

A package is GM/T 0010 SignedData over a GM/T 0010 / GM/T 0009 digital envelope, with the
GM/T 0006 object identifiers (the whole structure, and how to open one with the OpenSSL command
line alone, in docs/keypackages.md; the ASN.1 declarations in ``hsm.gmt0010``):

- an SM4 key travels in EnvelopedData: a fresh 16-byte SM4 content key SM2-encrypted to the
  recipient's encryption key (a GM/T 0009 §7.2 SM2Cipher, C1C3C2) and the key itself under it in
  SM4-CBC with a fresh IV (PKCS#7 padding);
- an SM2 key travels as a GM/T 0009 §7.4 SM2EnvelopedKey: the content key as an SM2Cipher, the
  public point, and the 32-byte scalar in SM4-CBC with a fresh IV (no padding: 32 bytes are two
  blocks). GM/T 0009's example names SM4-ECB; jtca uses SM4-CBC, never ECB;
- the sender signs (SM2 with SM3, Z over the default ID) the authenticated attributes: content
  type, SM3 message digest of the content, signing time, and jtca's attributes (package id,
  recipient name, recipient key id, key kind, key label, check value) under a private arc.

Import refuses, each with a stable reason: ``malformed``, ``legacy-format`` (the format before
issue #15, read only with ``accept_legacy=True``: ``hsm.envelope_legacy``), ``untrusted-sender``,
``bad-signature``, ``misaddressed``, ``replayed``, ``bad-envelope``, ``check-value-mismatch``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

import pkcs11
from asn1crypto import core  # untyped
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pkcs11 import Attribute, ObjectClass

from hsm import der_scan
from hsm import envelope_legacy as legacy
from hsm import gmt0010 as gm
from hsm.der_scan import costly_element
from hsm.errors import InvalidKey, InvalidSignature, JtcaError
from hsm.pkcs11.keys import KeyKind, KeyStore, KeyUse, TokenKey, _fresh_key, wipe
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey, der_to_raw, raw_to_der
from hsm.sm.sm3 import sm3
from hsm.sm.sm4 import SM4_BLOCK, SM4_KEY_SIZE, sm4_key_check_value

REPLAY_MARKER_APP: Final = "jtca key package"
KEY_ID_SIZE: Final = 32
PACKAGE_ID_SIZE: Final = 16
T = TypeVar("T")


class PackageRefused(JtcaError):
    """A key package that will not be imported; ``reason`` is a stable code."""

    title = "Key package refused"
    exit_code = 4

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def key_id_of(public_key: SM2PublicKey) -> bytes:
    """SM3 of the compressed point: a signer's ``subjectKeyIdentifier``, a recipient's ``rid``."""
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
    legacy: bool = False  # read by the migration-only reader (hsm.envelope_legacy)


@dataclass(frozen=True, slots=True)
class ParsedPackage:
    """What ``read_package`` found besides the ``PackageInfo``: the bytes the signature covers
    (the authenticated attributes as a SET OF), the signature, and the sealed content."""

    signed_bytes: bytes
    signature_der: bytes
    content_type: str
    content: bytes  # the DER of the EnvelopedData or SM2EnvelopedKey
    sealed_key: bytes  # SM2Cipher DER of the SM4 content key
    iv: bytes
    encrypted_key: bytes  # SM4-CBC of the key value
    public_point: bytes | None  # an SM2EnvelopedKey's Sm2PublicKey (04 || X || Y)
    legacy: legacy.LegacyPackage | None = None


# -- SM4-CBC --------------------------------------------------------------------------------
def _sm4_cbc_encrypt(key: bytearray, iv: bytes, material: bytearray, *, pad: bool) -> bytes:
    """SM4-CBC of ``material`` (read in place), PKCS#7-padded if ``pad``."""
    enc = Cipher(algorithms.SM4(cast(bytes, key)), modes.CBC(iv)).encryptor()
    tail = bytes([SM4_BLOCK - len(material) % SM4_BLOCK]) * (SM4_BLOCK - len(material) % SM4_BLOCK)
    return enc.update(cast(bytes, material)) + (enc.update(tail) if pad else b"") + enc.finalize()


def _sm4_cbc_decrypt(key: bytearray, iv: bytes, data: bytes, *, pad: bool) -> bytearray:
    """SM4-CBC decryption into a buffer we own; the padding (if ``pad``) checked and cut."""
    if not data or len(data) % SM4_BLOCK:
        raise PackageRefused("malformed", f"encrypted key of {len(data)} bytes (blocks of 16)")
    dec = Cipher(algorithms.SM4(cast(bytes, key)), modes.CBC(iv)).decryptor()
    out = bytearray(len(data) + SM4_BLOCK)
    try:
        n = dec.update_into(data, out)
        if dec.finalize():  # CBC without padding holds nothing back
            raise PackageRefused("malformed", "SM4-CBC left bytes over")
        size = n
        if pad:
            last = out[n - 1]
            if not 1 <= last <= SM4_BLOCK or any(b != last for b in out[n - last : n]):
                raise PackageRefused("bad-envelope", "the SM4-CBC padding is not PKCS#7")
            size = n - last
        result = bytearray(out[:size])
    finally:
        wipe(out)
    return result


# -- writing ----------------------------------------------------------------------------------
def _alg(oid: str, parameters: Any = None) -> gm.AlgorithmIdentifier:
    value: dict[str, Any] = {"algorithm": oid}
    if parameters is not None:
        value["parameters"] = parameters
    return gm.AlgorithmIdentifier(value)


def _attribute(oid: str, value: Any) -> dict[str, Any]:
    return {"type": oid, "values": [value]}


def _time(moment: datetime) -> Any:
    # PKCS#9 signingTime: UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5652 §11.3)
    return core.UTCTime(moment) if 1950 <= moment.year < 2050 else core.GeneralizedTime(moment)


def export_key(
    store: KeyStore,
    key: TokenKey,
    *,
    sender: Signer,
    recipient_transport_key: SM2PublicKey,
    recipient_name: str,
    now: datetime | None = None,
) -> bytes:
    """Seal ``key`` (from ``store``'s token) to the recipient's encryption key
    (``recipient_transport_key``) and sign it with ``sender`` (the sender's signing key)."""
    if key.kind == KeyKind.SM2:
        if key.public_key is None:
            raise InvalidKey(f"{key.uri}: an SM2 key needs its public point to be exported")
        check_value = key.public_key.compressed
    else:
        if key.check_value is None:
            raise InvalidKey(f"{key.uri}: an SM4 key needs its check value to be exported")
        check_value = key.check_value
    recipient_id = key_id_of(recipient_transport_key)
    iv = secrets.token_bytes(SM4_BLOCK)
    content_key = _fresh_key(SM4_KEY_SIZE)  # libcrypto RAND into our buffer
    try:

        def seal(material: bytearray) -> bytes:
            if key.kind == KeyKind.SM4 and sm4_key_check_value(material) != check_value:
                raise InvalidKey(f"{key.uri}: the key in the token does not match its check value")
            return _sm4_cbc_encrypt(content_key, iv, material, pad=key.kind == KeyKind.SM4)

        encrypted_key = store.with_key_material(key.uri, seal)
        sealed = recipient_transport_key.encrypt(bytes(content_key))
    finally:
        wipe(content_key)
    sm4_cbc = _alg(gm.OID_SM4_CBC, core.OctetString(iv))
    if key.kind == KeyKind.SM4:
        content_type = gm.OID_GM_ENVELOPED_DATA
        content = gm.EnvelopedData(
            {
                "version": gm.VERSION_GM,
                "recipient_infos": [
                    {
                        "version": gm.VERSION_RECIPIENT_SKI,
                        "rid": gm.RecipientIdentifier(
                            name="subject_key_identifier", value=recipient_id
                        ),
                        "key_encryption_algorithm": _alg(gm.OID_SM2_ENCRYPT),
                        "encrypted_key": sealed,
                    }
                ],
                "encrypted_content_info": {
                    "content_type": gm.OID_GM_DATA,
                    "content_encryption_algorithm": sm4_cbc,
                    "encrypted_content": encrypted_key,
                },
            }
        ).dump()
    else:
        point = key.public_key.uncompressed if key.public_key is not None else b""
        content_type = gm.OID_JTCA_SM2_ENVELOPED_KEY
        content = gm.SM2EnvelopedKey(
            {
                "sym_alg_id": sm4_cbc,
                "sym_encrypted_key": gm.SM2Cipher.load(sealed),
                "sm2_public_key": point,
                "sm2_encrypted_private_key": encrypted_key,
            }
        ).dump()
    created = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    attributes = gm.Attributes(
        [
            _attribute(gm.OID_CONTENT_TYPE, core.ObjectIdentifier(content_type)),
            _attribute(gm.OID_MESSAGE_DIGEST, core.OctetString(sm3(content))),
            _attribute(gm.OID_SIGNING_TIME, _time(created)),
            _attribute(gm.OID_ATTR_PACKAGE_ID, core.OctetString(secrets.token_bytes(16))),
            _attribute(gm.OID_ATTR_RECIPIENT_NAME, core.UTF8String(recipient_name)),
            _attribute(gm.OID_ATTR_RECIPIENT_KEY_ID, core.OctetString(recipient_id)),
            _attribute(gm.OID_ATTR_KEY_KIND, core.Integer(1 if key.kind == KeyKind.SM2 else 2)),
            _attribute(gm.OID_ATTR_KEY_LABEL, core.UTF8String(key.label)),
            _attribute(gm.OID_ATTR_CHECK_VALUE, core.OctetString(check_value)),
        ]
    )
    signed_bytes = attributes.dump()  # the SET OF (tag 0x31), as CMS signs it
    signature = raw_to_der(sender.sign(signed_bytes))
    return _assemble(content_type, content, signed_bytes, key_id_of(sender.public_key), signature)


def _assemble(
    content_type: str, content: bytes, signed_bytes: bytes, sender_id: bytes, signature: bytes
) -> bytes:
    """ContentInfo { signedData, SignedData { ..., SignerInfo } } around signed attributes."""
    signer = gm.SignerInfo(
        {
            "version": gm.VERSION_SIGNER_SKI,
            "sid": gm.SignerIdentifier(name="subject_key_identifier", value=sender_id),
            "digest_algorithm": _alg(gm.OID_SM3),
            "authenticated_attributes": gm.Attributes.load(signed_bytes),
            "digest_encryption_algorithm": _alg(gm.OID_SM2_SIGN),
            "encrypted_digest": signature,
        }
    )
    signed_data = gm.SignedData(
        {
            "version": gm.VERSION_GM,
            "digest_algorithms": [_alg(gm.OID_SM3)],
            "content_info": gm.RawContentInfo.load(gm.content_info(content_type, content)),
            "signer_infos": [signer],
        }
    )
    return gm.content_info(gm.OID_GM_SIGNED_DATA, signed_data.dump())


# -- reading ----------------------------------------------------------------------------------
_PARSE_ERRORS: Final = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    AttributeError,
    RecursionError,
)  # what asn1crypto raises on bytes it cannot read
MAX_NUMBER_OCTETS: Final = 64  # no integer or OID of a package is longer
MAX_PACKAGE: Final = 64 * 1024  # a package is about 1 KiB: one sealed key, names, a signature


def _costly_element(data: bytes) -> tuple[int, str] | None:
    """``hsm.der_scan.costly_element`` with a package's bound."""
    return costly_element(data, MAX_NUMBER_OCTETS)


def _malformed(field: str, problem: str) -> PackageRefused:
    return PackageRefused("malformed", f"not a GM/T 0010 key package: {field}: {problem}")


def _der(spec: type[T], data: bytes, field: str) -> T:
    """``data`` parsed as ``spec``: DER only (re-encoding gives the same bytes), nothing after."""
    try:
        value = spec.load(data, strict=True)  # type: ignore[attr-defined]
        _ = value.native  # a full parse of every field
        if value.dump(force=True) != data:
            raise ValueError("not DER (the canonical encoding differs)")
    except _PARSE_ERRORS as exc:
        raise _malformed(field, der_scan.explain(data, str(exc) or type(exc).__name__)) from None
    return cast(T, value)


def _check_alg(alg: Any, oid: str, field: str) -> None:
    """The algorithm is ``oid``, its parameters absent or NULL."""
    if alg["algorithm"].dotted != oid:
        raise _malformed(field, f"algorithm {alg['algorithm'].dotted}, expected {oid}")
    parameters = alg["parameters"]
    if not isinstance(parameters, core.Void) and parameters.dump() != b"\x05\x00":
        raise _malformed(field, "parameters must be absent or NULL")


def _check_iv(alg: Any, field: str) -> bytes:
    """SM4-CBC with its IV: the parameters are an OCTET STRING of 16 bytes."""
    if alg["algorithm"].dotted != gm.OID_SM4_CBC:
        raise _malformed(field, f"algorithm {alg['algorithm'].dotted}, expected SM4-CBC "
                         f"{gm.OID_SM4_CBC}")  # fmt: skip
    parameters = alg["parameters"]
    raw = b"" if isinstance(parameters, core.Void) else parameters.dump()
    if len(raw) != 2 + SM4_BLOCK or raw[:2] != b"\x04\x10":
        raise _malformed(field, "the SM4-CBC IV is not an OCTET STRING of 16 bytes")
    return raw[2:]


def _content_info(data: bytes, field: str) -> tuple[str, bytes]:
    try:
        return gm.read_content_info(data)
    except _PARSE_ERRORS as exc:
        raise _malformed(field, der_scan.explain(data, exc)) from None


_ATTRIBUTES: Final = {
    gm.OID_CONTENT_TYPE: ("contentType", core.ObjectIdentifier),
    gm.OID_MESSAGE_DIGEST: ("messageDigest", core.OctetString),
    gm.OID_SIGNING_TIME: ("signingTime", None),
    gm.OID_ATTR_PACKAGE_ID: ("packageId", core.OctetString),
    gm.OID_ATTR_RECIPIENT_NAME: ("recipientName", core.UTF8String),
    gm.OID_ATTR_RECIPIENT_KEY_ID: ("recipientKeyId", core.OctetString),
    gm.OID_ATTR_KEY_KIND: ("keyKind", core.Integer),
    gm.OID_ATTR_KEY_LABEL: ("keyLabel", core.UTF8String),
    gm.OID_ATTR_CHECK_VALUE: ("checkValue", core.OctetString),
}


def _attributes(attributes: Any) -> dict[str, Any]:
    """The authenticated attributes by name: each exactly once, one value, of its type."""
    found: dict[str, Any] = {}
    for attribute in attributes:
        oid = attribute["type"].dotted
        if oid not in _ATTRIBUTES:
            raise _malformed("authenticatedAttributes", f"unknown attribute {oid}")
        name, spec = _ATTRIBUTES[oid]
        if name in found:
            raise _malformed(f"authenticatedAttributes.{name}", "present twice")
        values = attribute["values"]
        if len(values) != 1:
            raise _malformed(f"authenticatedAttributes.{name}", f"{len(values)} values, not 1")
        raw = values[0].dump()
        if spec is None:
            spec = {0x17: core.UTCTime, 0x18: core.GeneralizedTime}.get(raw[0])
            if spec is None:
                raise _malformed("authenticatedAttributes.signingTime", "not a UTCTime")
        found[name] = _der(spec, raw, f"authenticatedAttributes.{name}").native
    missing = [name for name, _ in _ATTRIBUTES.values() if name not in found]
    if missing:
        raise _malformed("authenticatedAttributes", "missing " + ", ".join(missing))
    return found


def read_package(data: bytes, *, accept_legacy: bool = False) -> tuple[PackageInfo, ParsedPackage]:
    """Parse a package strictly (DER, no trailing bytes); refuse truncated or malformed ones,
    naming the field. An old-format package is refused ``legacy-format`` unless
    ``accept_legacy`` (migration only)."""
    data = bytes(data)
    if len(data) > MAX_PACKAGE:
        raise _malformed("package", f"{len(data)} bytes, at most {MAX_PACKAGE}")
    costly = _costly_element(data)
    if costly is not None:
        raise _malformed("package", f"at offset {costly[0]}: {costly[1]}")
    if legacy.looks_legacy(data):
        return _read_legacy(data, accept_legacy=accept_legacy)
    outer_type, outer_content = _content_info(data, "ContentInfo")
    if outer_type != gm.OID_GM_SIGNED_DATA:
        raise _malformed("ContentInfo.contentType", f"{outer_type} is not GM/T 0010 signedData "
                         f"{gm.OID_GM_SIGNED_DATA}")  # fmt: skip
    signed = _der(gm.SignedData, outer_content, "SignedData")
    if signed["version"].native != gm.VERSION_GM:
        raise _malformed("SignedData.version", f"{signed['version'].native}, not 1")
    algorithms_ = list(signed["digest_algorithms"])
    if len(algorithms_) != 1:
        raise _malformed("SignedData.digestAlgorithms", f"{len(algorithms_)} algorithms, not 1")
    _check_alg(algorithms_[0], gm.OID_SM3, "SignedData.digestAlgorithms")
    content_type, content = _content_info(signed["content_info"].dump(), "SignedData.contentInfo")
    if content_type not in (gm.OID_GM_ENVELOPED_DATA, gm.OID_JTCA_SM2_ENVELOPED_KEY):
        raise _malformed("SignedData.contentInfo.contentType", f"{content_type} is not "
                         "envelopedData or SM2EnvelopedKey")  # fmt: skip
    signers = list(signed["signer_infos"])
    if len(signers) != 1:
        raise _malformed("SignedData.signerInfos", f"{len(signers)} signers, not 1")
    signer = signers[0]
    if signer["version"].native != gm.VERSION_SIGNER_SKI:
        raise _malformed("SignerInfo.version", f"{signer['version'].native}, not 3")
    sender_id = bytes(signer["sid"].chosen.native)
    if len(sender_id) != KEY_ID_SIZE:
        raise _malformed("SignerInfo.sid", f"a key id of {len(sender_id)} bytes, not 32")
    _check_alg(signer["digest_algorithm"], gm.OID_SM3, "SignerInfo.digestAlgorithm")
    _check_alg(
        signer["digest_encryption_algorithm"], gm.OID_SM2_SIGN,
        "SignerInfo.digestEncryptionAlgorithm",
    )  # fmt: skip
    attributes = _attributes(signer["authenticated_attributes"])
    # what was signed: the attributes' DER with the [0] IMPLICIT tag put back to SET OF
    signed_bytes = b"\x31" + signer["authenticated_attributes"].dump()[1:]
    signature_der = bytes(signer["encrypted_digest"].native)
    if attributes["contentType"] != content_type:
        raise _malformed("authenticatedAttributes.contentType", "differs from the content's")
    if len(attributes["packageId"]) != PACKAGE_ID_SIZE:
        raise _malformed("authenticatedAttributes.packageId", "not 16 bytes")
    kind_value = attributes["keyKind"]
    if kind_value not in (1, 2):
        raise _malformed("authenticatedAttributes.keyKind", f"unknown key kind {kind_value}")
    kind = KeyKind.SM2 if kind_value == 1 else KeyKind.SM4
    recipient_id = attributes["recipientKeyId"]
    if (kind == KeyKind.SM4) != (content_type == gm.OID_GM_ENVELOPED_DATA):
        raise _malformed("authenticatedAttributes.keyKind", f"{kind} in a {content_type}")
    if kind == KeyKind.SM4:
        sealed, iv, encrypted, point = _enveloped_data(content, recipient_id)
    else:
        sealed, iv, encrypted, point = _sm2_enveloped_key(content)
    if attributes["messageDigest"] != sm3(content):
        raise PackageRefused("bad-signature", "the content's SM3 digest is not the signed one")
    info = PackageInfo(
        package_id=attributes["packageId"],
        created_at=attributes["signingTime"],
        sender_key_id=sender_id,
        recipient_key_id=recipient_id,
        recipient_name=attributes["recipientName"],
        kind=kind,
        key_label=attributes["keyLabel"],
        check_value=attributes["checkValue"],
    )
    return info, ParsedPackage(
        signed_bytes=signed_bytes,
        signature_der=signature_der,
        content_type=content_type,
        content=content,
        sealed_key=sealed,
        iv=iv,
        encrypted_key=encrypted,
        public_point=point,
    )


def _sm2_cipher(data: bytes, field: str) -> bytes:
    cipher = _der(gm.SM2Cipher, data, field)
    if len(cipher["hash"].native) != 32:
        raise _malformed(f"{field}.hash", "not 32 bytes")
    if len(cipher["cipher_text"].native) != SM4_KEY_SIZE:
        raise _malformed(f"{field}.cipherText", "not a 16-byte SM4 key")
    return data


def _enveloped_data(content: bytes, recipient_id: bytes) -> tuple[bytes, bytes, bytes, None]:
    env = _der(gm.EnvelopedData, content, "EnvelopedData")
    if env["version"].native != gm.VERSION_GM:
        raise _malformed("EnvelopedData.version", f"{env['version'].native}, not 1")
    recipients = list(env["recipient_infos"])
    if len(recipients) != 1:
        raise _malformed("EnvelopedData.recipientInfos", f"{len(recipients)}, not 1")
    recipient = recipients[0]
    if recipient["version"].native != gm.VERSION_RECIPIENT_SKI:
        raise _malformed("KeyTransRecipientInfo.version", f"{recipient['version'].native}, not 2")
    if bytes(recipient["rid"].chosen.native) != recipient_id:
        raise _malformed("KeyTransRecipientInfo.rid", "is not the signed recipientKeyId")
    _check_alg(
        recipient["key_encryption_algorithm"], gm.OID_SM2_ENCRYPT,
        "KeyTransRecipientInfo.keyEncryptionAlgorithm",
    )  # fmt: skip
    sealed = _sm2_cipher(
        bytes(recipient["encrypted_key"].native), "KeyTransRecipientInfo.encryptedKey"
    )
    eci = env["encrypted_content_info"]
    if eci["content_type"].dotted != gm.OID_GM_DATA:
        raise _malformed("EncryptedContentInfo.contentType", "not GM/T 0010 data")
    iv = _check_iv(
        eci["content_encryption_algorithm"], "EncryptedContentInfo.contentEncryptionAlgorithm"
    )
    encrypted = bytes(eci["encrypted_content"].native)
    if len(encrypted) != 2 * SM4_BLOCK:
        raise _malformed("EncryptedContentInfo.encryptedContent", f"{len(encrypted)} bytes, "
                         "not 32 (a padded 16-byte SM4 key)")  # fmt: skip
    return sealed, iv, encrypted, None


def _sm2_enveloped_key(content: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    env = _der(gm.SM2EnvelopedKey, content, "SM2EnvelopedKey")
    iv = _check_iv(env["sym_alg_id"], "SM2EnvelopedKey.symAlgID")
    sealed = _sm2_cipher(env["sym_encrypted_key"].dump(), "SM2EnvelopedKey.symEncryptedKey")
    for field in ("sm2_public_key", "sm2_encrypted_private_key"):
        if env[field].contents[:1] != b"\x00":
            raise _malformed(f"SM2EnvelopedKey.{field}", "BIT STRING with unused bits")
    point = bytes(env["sm2_public_key"].native)
    if len(point) != 65 or point[0] != 4:
        raise _malformed("SM2EnvelopedKey.Sm2PublicKey", "not 04 || X || Y (65 bytes)")
    encrypted = bytes(env["sm2_encrypted_private_key"].native)
    if len(encrypted) != 32:
        raise _malformed("SM2EnvelopedKey.Sm2EncryptedPrivateKey", f"{len(encrypted)} bytes, "
                         "not 32")  # fmt: skip
    return sealed, iv, encrypted, point


def _read_legacy(data: bytes, *, accept_legacy: bool) -> tuple[PackageInfo, ParsedPackage]:
    try:
        old = legacy.read_legacy(data)
    except legacy.LegacyMalformed as exc:
        raise _malformed("package", str(exc)) from None
    if not accept_legacy:
        raise PackageRefused(
            "legacy-format",
            "this is a key package in jtca's old format (before issue #15: SM4-ECB, not "
            "GM/T 0010); ask the sender for a new package, or import this one once with the "
            "migration-only reader (accept_legacy=True; docs/keypackages.md, Migration)",
        )
    info = PackageInfo(
        package_id=old.package_id,
        created_at=old.created_at,
        sender_key_id=old.sender_key_id,
        recipient_key_id=old.recipient_key_id,
        recipient_name=old.recipient_name,
        kind=KeyKind.SM2 if old.kind == 1 else KeyKind.SM4,
        key_label=old.key_label,
        check_value=old.check_value,
        legacy=True,
    )
    return info, ParsedPackage(
        signed_bytes=old.signed_bytes,
        signature_der=old.signature_der,
        content_type="legacy",
        content=b"",
        sealed_key=old.sealed_key,
        iv=b"",
        encrypted_key=old.encrypted_key,
        public_point=None,
        legacy=old,
    )


# -- importing --------------------------------------------------------------------------------
def import_key(
    store: KeyStore,
    data: bytes,
    *,
    transport_key: TokenKey,
    trusted_senders: list[SM2PublicKey],
    label: str | None = None,
    accept_legacy: bool = False,
) -> TokenKey:
    """Verify, open and import a package into ``store``'s token as a sensitive key.

    ``transport_key`` is the recipient's encryption key (in this token), ``trusted_senders``
    the senders' signing public keys. Refused, each with its reason: ``malformed`` (truncated,
    not DER, wrong algorithms), ``legacy-format`` (unless ``accept_legacy``),
    ``untrusted-sender``, ``bad-signature`` (tampered), ``misaddressed`` (sealed to another
    key), ``replayed`` (this package id was imported here before), ``bad-envelope``,
    ``check-value-mismatch``. Nothing is half-imported.
    """
    info, parsed = _verified(data, trusted_senders, accept_legacy=accept_legacy)
    if (
        transport_key.public_key is None
        or key_id_of(transport_key.public_key) != info.recipient_key_id
    ):
        raise PackageRefused(
            "misaddressed",
            f"the package is sealed to another encryption key (for {info.recipient_name!r})",
        )
    marker = "jtca-pkg:" + info.package_id.hex()
    if _has_marker(store, marker):
        raise PackageRefused("replayed", f"package {info.package_id.hex()} was imported before")

    def open_envelope(transport_scalar: bytearray) -> bytearray:
        transport = SM2PrivateKey.from_scalar_buffer(transport_scalar)
        try:
            content_key = bytearray(transport.decrypt(parsed.sealed_key))
        except InvalidKey:
            raise PackageRefused("bad-envelope", "the SM2Cipher of the content key does not "
                                 "open with this encryption key") from None  # fmt: skip
        finally:
            del transport
        try:
            if len(content_key) != SM4_KEY_SIZE:
                raise PackageRefused("bad-envelope", "the content key is not 16 bytes")
            if parsed.legacy is not None:
                try:
                    return legacy.open_legacy(parsed.legacy, content_key)
                except legacy.LegacyMalformed as exc:
                    raise _malformed("package", str(exc)) from None
            return _sm4_cbc_decrypt(
                content_key, parsed.iv, parsed.encrypted_key, pad=info.kind == KeyKind.SM4
            )
        finally:
            wipe(content_key)

    material = store.with_key_material(transport_key.uri, open_envelope, purpose=KeyUse.DECRYPT)
    try:
        return _install(store, info, parsed, material, label or info.key_label)
    finally:
        wipe(material)


def verify_package(
    data: bytes, trusted_senders: list[SM2PublicKey], *, accept_legacy: bool = False
) -> PackageInfo:
    """Parse a package and check its sender's signature, without opening it: what the authority
    checks of a package a site made (refused ``malformed``, ``legacy-format``,
    ``untrusted-sender`` or ``bad-signature``, as ``import_key`` would)."""
    info, _ = _verified(data, trusted_senders, accept_legacy=accept_legacy)
    return info


def _verified(
    data: bytes, trusted_senders: list[SM2PublicKey], *, accept_legacy: bool
) -> tuple[PackageInfo, ParsedPackage]:
    info, parsed = read_package(data, accept_legacy=accept_legacy)
    sender = next((k for k in trusted_senders if key_id_of(k) == info.sender_key_id), None)
    if sender is None:
        raise PackageRefused("untrusted-sender", "the package is not from a trusted sender key")
    try:
        sender.verify(der_to_raw(parsed.signature_der), parsed.signed_bytes)
    except InvalidSignature:
        raise PackageRefused("bad-signature", "the sender's signature does not verify") from None
    return info, parsed


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
        found = session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: marker})
        return len(list(found)) > 0

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


def _install(
    store: KeyStore, info: PackageInfo, parsed: ParsedPackage, material: bytearray, label: str
) -> TokenKey:
    public_key: SM2PublicKey | None = None
    if info.kind == KeyKind.SM2:
        try:
            private = SM2PrivateKey.from_scalar_buffer(material)
        except InvalidKey:
            raise PackageRefused("check-value-mismatch", "not a valid SM2 scalar") from None
        public_key = private.public_key
        del private
        if public_key.compressed != info.check_value:
            raise PackageRefused("check-value-mismatch", "d·G is not the packaged public key")
        if parsed.public_point is not None and public_key.uncompressed != parsed.public_point:
            raise PackageRefused("check-value-mismatch", "d·G is not the Sm2PublicKey field")
    elif sm4_key_check_value(material) != info.check_value:
        raise PackageRefused("check-value-mismatch", "the SM4 key does not match its check value")
    return store.install_key(
        info.kind,
        label,
        material,
        public_key=public_key,
        check_value=info.check_value if info.kind == KeyKind.SM4 else None,
        companions=[replay_marker(info.package_id)],
    )
