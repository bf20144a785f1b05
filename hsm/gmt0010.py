"""The ASN.1 of GM/T 0010-2012 (SM2 cryptographic message syntax), GM/T 0009-2012 §7 (SM2Cipher,
SM2EnvelopedKey) and the object identifiers of GM/T 0006-2012 that jtca's key packages use.

Only the structures a key package needs are declared, each exactly as the standard writes it
(docs/keypackages.md gives the whole package, field by field, with the OpenSSL commands that
open it). Declarations only: building and checking a package is ``hsm.envelope``'s.

GM/T 0010 is PKCS#7 v1.5 (RFC 2315) with the GM/T 0006 object identifiers. Where it has no form
for what a key package needs, RFC 5652 (CMS) fills the gap, as GM/T 0010 itself allows:

- a signer and a recipient are named by key identifier (``subjectKeyIdentifier [0]``, SignerInfo
  version 3, KeyTransRecipientInfo version 2, the RFC 5652 rule for that choice): jtca's transport
  keys have no certificates, so ``issuerAndSerialNumber`` cannot name them. The key identifier is
  SM3 of the compressed public point (``hsm.envelope.key_id_of``). SignedData and EnvelopedData
  keep GM/T 0010's version 1.
- jtca's own authenticated attributes and the content type of an SM2EnvelopedKey sit under the
  arcs ``hsm.oids`` reserves for them: PLACEHOLDERS (every arc below 2^32) until an arc is
  assigned.
"""

from __future__ import annotations

from typing import Final

from asn1crypto import core, parser  # untyped: the ASN.1 classes below subclass Any

from hsm.oids import CONTENT_TYPE_ARC, KEY_PACKAGE_ATTRIBUTE_ARC

# -- GM/T 0006-2012 -----------------------------------------------------------------------------
OID_SM2_SIGN: Final = "1.2.156.10197.1.301.1"  # SM2-1 digital signature
OID_SM2_ENCRYPT: Final = "1.2.156.10197.1.301.3"  # SM2-3 public-key encryption
OID_SM3: Final = "1.2.156.10197.1.401"
OID_SM4_ECB: Final = "1.2.156.10197.1.104.1"  # named here only to be refused
OID_SM4_CBC: Final = "1.2.156.10197.1.104.2"
# GM/T 0010 content types (GM/T 0006 §A: 1.2.156.10197.6.1.4.2.x)
OID_GM_DATA: Final = "1.2.156.10197.6.1.4.2.1"
OID_GM_SIGNED_DATA: Final = "1.2.156.10197.6.1.4.2.2"
OID_GM_ENVELOPED_DATA: Final = "1.2.156.10197.6.1.4.2.3"

# -- PKCS #9 attributes (RFC 2985), as GM/T 0010 uses them --------------------------------------
OID_CONTENT_TYPE: Final = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST: Final = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME: Final = "1.2.840.113549.1.9.5"

# -- jtca's own OIDs: PLACEHOLDERS under hsm.oids.JTCA_ARC ------------------------------------
# hsm/oids.py keeps every jtca OID (RFC 5612's documentation PEN, every arc below 2^32) until the
# ministry assigns an arc; it reserves ``.2`` for key-package attributes and ``.3`` for content
# types. Nothing outside jtca needs to understand these attributes to open a package.
OID_JTCA_SM2_ENVELOPED_KEY: Final = CONTENT_TYPE_ARC + ".1"  # content type of an SM2EnvelopedKey
OID_ATTR_PACKAGE_ID: Final = KEY_PACKAGE_ATTRIBUTE_ARC + ".1"  # OCTET STRING (SIZE (16))
OID_ATTR_RECIPIENT_NAME: Final = KEY_PACKAGE_ATTRIBUTE_ARC + ".2"  # UTF8String
OID_ATTR_RECIPIENT_KEY_ID: Final = KEY_PACKAGE_ATTRIBUTE_ARC + ".3"  # OCTET STRING (32)
OID_ATTR_KEY_KIND: Final = KEY_PACKAGE_ATTRIBUTE_ARC + ".4"  # INTEGER { sm2(1), sm4(2) }
OID_ATTR_KEY_LABEL: Final = KEY_PACKAGE_ATTRIBUTE_ARC + ".5"  # UTF8String
OID_ATTR_CHECK_VALUE: Final = KEY_PACKAGE_ATTRIBUTE_ARC + ".6"  # SM4 KCV (3) / SM2 point (33)

VERSION_GM: Final = 1  # SignedData, EnvelopedData (GM/T 0010)
VERSION_SIGNER_SKI: Final = 3  # SignerInfo with subjectKeyIdentifier (RFC 5652 §5.3)
VERSION_RECIPIENT_SKI: Final = 2  # KeyTransRecipientInfo with subjectKeyIdentifier (§6.2.1)


class AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto declares fields this way
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class SM2Cipher(core.Sequence):  # type: ignore[misc]
    """GM/T 0009 §7.2, C1C3C2: what OpenSSL's ``pkeyutl -encrypt`` writes for an SM2 key."""

    _fields = [  # noqa: RUF012
        ("x", core.Integer),
        ("y", core.Integer),
        ("hash", core.OctetString),
        ("cipher_text", core.OctetString),
    ]


class SM2EnvelopedKey(core.Sequence):  # type: ignore[misc]
    """GM/T 0009 §7.4."""

    _fields = [  # noqa: RUF012
        ("sym_alg_id", AlgorithmIdentifier),
        ("sym_encrypted_key", SM2Cipher),
        ("sm2_public_key", core.OctetBitString),  # 04 || X || Y
        ("sm2_encrypted_private_key", core.OctetBitString),
    ]


class RawContentInfo(core.Asn1Value):  # type: ignore[misc]
    """A ContentInfo SEQUENCE kept as its bytes: asn1crypto can read its content only with a
    spec chosen by contentType, so ``read_content_info`` reads it."""

    class_ = 0
    method = 1
    tag = 16

    @property
    def native(self) -> bytes:
        return bytes(self.dump())


def content_info(content_type: str, der: bytes) -> bytes:
    """``ContentInfo { contentType, content [0] EXPLICIT ANY }`` around one DER element (written
    here: asn1crypto does not put an explicit tag on an ``Any``)."""
    oid = bytes(core.ObjectIdentifier(content_type).dump())
    inner = _header(0xA0, len(der)) + der
    return _header(0x30, len(oid) + len(inner)) + oid + inner


def read_content_info(data: bytes) -> tuple[str, bytes]:
    """The content type and the DER of the content of a DER ``ContentInfo`` (nothing after it);
    ValueError naming the problem."""
    klass, constructed, tag, header, contents, _ = parser.parse(data, strict=True)
    if (klass, constructed, tag) != (0, 1, 16) or header != _header(0x30, len(contents)):
        raise ValueError("not a DER SEQUENCE")
    oid_class, _, oid_tag, oid_header, oid_contents, _ = parser.parse(contents)
    if (oid_class, oid_tag) != (0, 6):
        raise ValueError("contentType is not an OBJECT IDENTIFIER")
    oid_der = oid_header + oid_contents
    oid = core.ObjectIdentifier.load(oid_der, strict=True)
    if oid.dump(force=True) != oid_der:
        raise ValueError("contentType is not DER")
    rest = contents[len(oid_der) :]
    klass, constructed, tag, header, inner, _ = parser.parse(rest, strict=True)
    if (klass, constructed, tag) != (2, 1, 0) or header != _header(0xA0, len(inner)):
        raise ValueError(f"content is not [0] EXPLICIT (identifier 0x{rest[0]:02x})")
    parser.parse(inner, strict=True)  # exactly one element, nothing after it
    return str(oid.dotted), bytes(inner)


def _header(identifier: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((identifier, length))
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((identifier, 0x80 | len(size))) + size


class Attribute(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("type", core.ObjectIdentifier),
        ("values", core.SetOf, {"spec": core.Any}),
    ]


class Attributes(core.SetOf):  # type: ignore[misc]
    _child_spec = Attribute


class SignerIdentifier(core.Choice):  # type: ignore[misc]
    _alternatives = [  # noqa: RUF012
        ("subject_key_identifier", core.OctetString, {"implicit": 0}),
    ]


class SignerInfo(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("sid", SignerIdentifier),
        ("digest_algorithm", AlgorithmIdentifier),
        ("authenticated_attributes", Attributes, {"implicit": 0}),
        ("digest_encryption_algorithm", AlgorithmIdentifier),
        ("encrypted_digest", core.OctetString),
    ]


class SignerInfos(core.SetOf):  # type: ignore[misc]
    _child_spec = SignerInfo


class DigestAlgorithms(core.SetOf):  # type: ignore[misc]
    _child_spec = AlgorithmIdentifier


class SignedData(core.Sequence):  # type: ignore[misc]
    """GM/T 0010 §8 (certificates and crls absent: the signer is named by key identifier)."""

    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("digest_algorithms", DigestAlgorithms),
        ("content_info", RawContentInfo),  # ContentInfo: content_info() and read_content_info()
        ("signer_infos", SignerInfos),
    ]


class RecipientIdentifier(core.Choice):  # type: ignore[misc]
    _alternatives = [  # noqa: RUF012
        ("subject_key_identifier", core.OctetString, {"implicit": 0}),
    ]


class KeyTransRecipientInfo(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("rid", RecipientIdentifier),
        ("key_encryption_algorithm", AlgorithmIdentifier),
        ("encrypted_key", core.OctetString),  # the DER of an SM2Cipher
    ]


class RecipientInfos(core.SetOf):  # type: ignore[misc]
    _child_spec = KeyTransRecipientInfo


class EncryptedContentInfo(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("content_type", core.ObjectIdentifier),
        ("content_encryption_algorithm", AlgorithmIdentifier),
        ("encrypted_content", core.OctetString, {"implicit": 0}),
    ]


class EnvelopedData(core.Sequence):  # type: ignore[misc]
    """GM/T 0010 §9 (one recipient, named by key identifier)."""

    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("recipient_infos", RecipientInfos),
        ("encrypted_content_info", EncryptedContentInfo),
    ]
