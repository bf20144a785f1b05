"""X.509 v3 certificates with SM2 keys and SM2-with-SM3 signatures (issue #4 point 5: the
ministry root's self-signed certificate and the list-signing key's certificate).

Built with asn1crypto and signed through a ``Signer``, so the same code serves a token key in a
ceremony and a software key in a test. Certificates follow RFC 5280 with the SM2 profile of
GM/T 0015-2012: signatureAlgorithm SM2-with-SM3 (1.2.156.10197.1.501) with absent parameters,
and a SubjectPublicKeyInfo of id-ecPublicKey with the SM2 curve (1.2.156.10197.1.301) as
``SM2PublicKey.spki_der()`` writes it. The signature is SM2 over the DER TBSCertificate with Z
over the default distinguishing ID ``1234567812345678`` (GM/T 0009-2012 §10).

Checking with the OpenSSL 3.0 CLI (what tests/integration/test_x509.py runs against 3.0.19)::

    # print it: "Signature Algorithm: SM2-with-SM3", "ASN1 OID: SM2", the extensions
    openssl x509 -in root.pem -noout -text
    openssl x509 -in root.pem -noout -fingerprint -sha256   # = CertificateInfo.sha256_openssl

    # a certificate issued by the root (the list-signing certificate)
    openssl verify -vfyopt distid:1234567812345678 -CAfile root.pem list-signing.pem

    # the root's own self-signature
    openssl asn1parse -in root.pem -strparse 4 -noout -out tbs.der
    openssl asn1parse -in root.pem -strparse OFFSET -noout -out sig.der
    openssl x509 -in root.pem -pubkey -noout -out root-pub.pem
    openssl pkeyutl -verify -pubin -inkey root-pub.pem -rawin -in tbs.der -sigfile sig.der \\
        -digest sm3 -pkeyopt distid:1234567812345678

OpenSSL 3.0 does not use the default ID by itself: without ``-vfyopt distid:…`` it computes Z
over an empty ID and reports "certificate signature failure". ``-strparse 4`` extracts the
TBSCertificate of any certificate from 256 bytes to 64 KiB (a four-byte outer header); OFFSET is
the offset of the last BIT STRING at depth 1 that ``openssl asn1parse -in root.pem`` prints.

``openssl verify -CAfile root.pem root.pem`` prints "OK" but proves nothing about the root's
signature: OpenSSL does not check a trust anchor's self-signature (it accepts a root whose
signature was made by another key). With ``-check_ss_sig`` OpenSSL 3.0 does check it, but not
with the ``-vfyopt`` ID (that goes only to the certificate named on the command line, and the
chain uses the trust store's copy), so a good SM2 root fails. Hence ``pkeyutl`` above.

Key identifiers (RFC 5280 §4.2.1.2 allows any method that yields unique values): SM3 of the
subjectPublicKey BIT STRING value (``04 || x || y``, without tag, length or unused-bits octet)
— the input of the RFC's method (1) — truncated to SHA-1's 20 bytes. An issuer whose own
certificate was made elsewhere (OpenSSL uses SHA-1) is matched by passing ``issuer_key_id``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from asn1crypto import algos, keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509

from hsm import der_scan
from hsm.errors import InvalidKey, InvalidSignature, JtcaError
from hsm.oids import (
    LEGACY_LIST_SIGNING_EKU,
    LEGACY_LOG_SIGNING_EKU,
    LEGACY_OFFICER_AUTH_EKU,
    arcs_fit_32_bits,
)
from hsm.oids import LIST_SIGNING_EKU as LIST_SIGNING_EKU  # re-exported
from hsm.oids import LOG_SIGNING_EKU as LOG_SIGNING_EKU  # re-exported
from hsm.oids import OFFICER_AUTH_EKU as OFFICER_AUTH_EKU  # re-exported
from hsm.signer import Signer
from hsm.sm.sm2 import SM2_CURVE_OID, SM2PublicKey, der_to_raw, raw_to_der
from hsm.sm.sm3 import sm3

OID_SM2_WITH_SM3: Final = "1.2.156.10197.1.501"  # GM/T 0006-2012, SM2 signature with SM3
OID_EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"  # RFC 5480 §2.1.1 id-ecPublicKey
SM2_DISTID: Final = "1234567812345678"  # GM/T 0009-2012 §10, the default ID OpenSSL must be told

# jtca's extended key usages live in hsm.oids with every other jtca OID (issue #15): 32-bit
# arcs under a PLACEHOLDER arc until the ministry assigns one (see that module and
# docs/ceremony.md, "Certificate profiles"). Re-exported here, where certificates are made.
# LIST_SIGNING_EKU: the list-signing key (issuer whitelists, city lists, CA key lists).
# OFFICER_AUTH_EKU: an officer certificate (issue #12): sign-in, approvals; the certificate also
# carries id-kp-clientAuth (RFC 5280 §4.2.1.12) for TLS client use.
# LOG_SIGNING_EKU: the audit key's certificate (issue #13): the audit log's checkpoints.
CLIENT_AUTH_EKU: Final = "1.3.6.1.5.5.7.3.2"
# The pre-#15 2.25.<UUID> OID each purpose had (a 128-bit arc): accepted when verifying, for
# migration only (has_extended_key_usage); never issued (issue_certificate refuses it).
LEGACY_EXTENDED_KEY_USAGE: Final[Mapping[str, str]] = {
    LIST_SIGNING_EKU: LEGACY_LIST_SIGNING_EKU,
    OFFICER_AUTH_EKU: LEGACY_OFFICER_AUTH_EKU,
    LOG_SIGNING_EKU: LEGACY_LOG_SIGNING_EKU,
}

MAX_SERIAL: Final = (1 << 159) - 1  # RFC 5280 §4.1.2.2: at most 20 octets, positive
KEY_ID_SIZE: Final = 20

# RFC 5280 §4.2.1.3 names (and asn1crypto's) -> asn1crypto's KeyUsage bit names.
KEY_USAGE_NAMES: Final[Mapping[str, str]] = {
    **{
        name: name
        for name in (
            "digital_signature",
            "non_repudiation",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        )
    },
    "digitalSignature": "digital_signature",
    "nonRepudiation": "non_repudiation",
    "contentCommitment": "non_repudiation",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}

# Short attribute names a dict may use: (asn1crypto attribute, RFC 5280 appendix A upper bound).
NAME_ATTRIBUTES: Final[Mapping[str, tuple[str, int]]] = {
    "CN": ("common_name", 64),  # ub-common-name
    "O": ("organization_name", 64),  # ub-organization-name
    "OU": ("organizational_unit_name", 64),  # ub-organizational-unit-name
    "C": ("country_name", 2),  # X.520 CountryName: ISO 3166 alpha-2, PrintableString
    "ST": ("state_or_province_name", 128),  # ub-state-name
    "L": ("locality_name", 128),  # ub-locality-name
}
_SHORT_NAMES: Final = {
    "common_name": "CN",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "country_name": "C",
    "state_or_province_name": "ST",
    "locality_name": "L",
}
_DOTTED_OID: Final = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")

NameLike: TypeAlias = Mapping[str, str] | asn1_x509.Name  # asn1crypto is untyped


class CertificateError(JtcaError):
    """A certificate that cannot be made as asked, or bytes that are not an SM2 certificate."""

    title = "Bad certificate"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What a certificate says. Times are aware UTC datetimes; OIDs are dotted strings."""

    subject: str  # "C=CN, O=…, CN=…" in certificate order
    issuer: str
    # asn1crypto Names: pass subject_name as issuer_name of a certificate this key signs
    subject_name: Any = field(repr=False)
    issuer_name: Any = field(repr=False)
    serial: int
    not_before: datetime
    not_after: datetime
    public_key: SM2PublicKey
    is_ca: bool
    path_length: int | None
    key_usage: frozenset[str]  # asn1crypto names: digital_signature, key_cert_sign, …
    extended_key_usage: tuple[str, ...]  # dotted OIDs
    subject_key_id: bytes | None
    authority_key_id: bytes | None
    sm3_fingerprint: str  # hex of SM3 over the whole DER certificate
    sha256_fingerprint: str  # hex of SHA-256 over the whole DER certificate

    @property
    def sha256_openssl(self) -> str:
        """The fingerprint as ``openssl x509 -noout -fingerprint -sha256`` prints it."""
        return ":".join(f"{b:02X}" for b in bytes.fromhex(self.sha256_fingerprint))


# -- building ---------------------------------------------------------------------------------
def key_identifier(public_key: SM2PublicKey) -> bytes:
    """SM3 of the subjectPublicKey BIT STRING value, truncated to 20 bytes (see module doc)."""
    spki = keys.PublicKeyInfo.load(public_key.spki_der())
    point = bytes(spki["public_key"].native)
    return sm3(point)[:KEY_ID_SIZE]


def _name(value: NameLike, what: str) -> asn1_x509.Name:
    """An asn1crypto Name from a dict of short names, or a copy of a given Name."""
    if isinstance(value, asn1_x509.Name):
        try:
            copy = asn1_x509.Name.load(value.dump())
            empty = len(copy.chosen) == 0
        except (ValueError, TypeError) as exc:
            raise CertificateError(f"{what}: not a usable X.509 name: {exc}") from None
        if empty:
            raise CertificateError(f"{what} must not be empty (RFC 5280 §4.1.2.4, §4.1.2.6)")
        return copy
    if not isinstance(value, Mapping) or not value:
        raise CertificateError(
            f"{what} must be a non-empty dict of {sorted(NAME_ATTRIBUTES)} or an X.509 Name"
        )
    fields: dict[str, str] = {}
    for short, text in value.items():
        if short not in NAME_ATTRIBUTES:
            raise CertificateError(
                f"{what}: unknown attribute {short!r}; use some of {sorted(NAME_ATTRIBUTES)}"
            )
        attribute, upper_bound = NAME_ATTRIBUTES[short]
        if not isinstance(text, str) or not text.strip():
            raise CertificateError(f"{what}: {short} must be a non-empty string")
        if text != text.strip():
            raise CertificateError(f"{what}: {short} {text!r} has leading or trailing spaces")
        if short == "C" and not re.fullmatch(r"[A-Z]{2}", text):
            raise CertificateError(f"{what}: C must be an ISO 3166 two-letter code, got {text!r}")
        if len(text) > upper_bound:
            raise CertificateError(
                f"{what}: {short} is {len(text)} characters; RFC 5280 allows {upper_bound}"
            )
        fields[attribute] = text
    name: asn1_x509.Name = asn1_x509.Name.build(fields, use_printable=False)
    return name


def _time(moment: datetime) -> asn1_x509.Time:
    # RFC 5280 §4.1.2.5: UTCTime for 1950-2049, GeneralizedTime otherwise; seconds, Zulu.
    utc = moment.astimezone(UTC)
    if 1950 <= utc.year < 2050:
        return asn1_x509.Time(name="utc_time", value=utc)
    return asn1_x509.Time(name="general_time", value=utc)


def _utc(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise CertificateError(f"{what} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CertificateError(f"{what} must carry a timezone (UTC), got naive {moment}")
    # X.509 times count whole seconds (RFC 5280 §4.1.2.5.1/.2): fractions are dropped.
    return moment.astimezone(UTC).replace(microsecond=0)


def _key_usage(names: Iterable[str], *, ca: bool) -> set[str]:
    if isinstance(names, str):
        raise CertificateError("key_usage must be a set of names, not one string")
    given = set(names)
    unknown = sorted(n for n in given if n not in KEY_USAGE_NAMES)
    if unknown or not given:
        raise CertificateError(
            f"key usage {unknown or '(none)'}: use some of "
            f"{sorted(n for n, v in KEY_USAGE_NAMES.items() if n == v)}"
        )
    usage = {KEY_USAGE_NAMES[n] for n in given}
    # RFC 5280 §4.2.1.3 and §4.2.1.9: keyCertSign if and only if cA
    if ca and "key_cert_sign" not in usage:
        raise CertificateError("a CA certificate needs key usage key_cert_sign (RFC 5280 §4.2.1.3)")
    if not ca and "key_cert_sign" in usage:
        raise CertificateError("key_cert_sign needs ca=True (RFC 5280 §4.2.1.9)")
    return usage


def _extended_key_usage(purposes: Iterable[str]) -> list[str]:
    if isinstance(purposes, str):
        raise CertificateError("extended_key_usage must be a list of OIDs, not one string")
    result: list[str] = []
    for purpose in purposes:
        known = purpose in asn1_x509.KeyPurposeId._map.values()
        if not isinstance(purpose, str) or not (known or _DOTTED_OID.fullmatch(purpose)):
            raise CertificateError(
                f"extended key usage {purpose!r}: not a dotted OID or a known purpose name"
            )
        dotted = asn1_x509.KeyPurposeId(purpose).dotted
        if not arcs_fit_32_bits(dotted):
            # pkilint: FATAL itu.invalid_asn1_syntax; terminals with 32-bit arcs refuse it
            raise CertificateError(
                f"extended key usage {dotted}: an arc exceeds 32 bits, which parsers limited "
                "to 32-bit arcs refuse (issue #15); use the OIDs of hsm.oids"
            )
        if dotted in result:
            raise CertificateError(f"extended key usage {purpose!r} is listed twice")
        result.append(dotted)
    if not result:
        raise CertificateError("extended_key_usage, when given, lists at least one purpose")
    return result


def issue_certificate(
    signer: Signer,
    *,
    subject: NameLike,
    subject_public_key: SM2PublicKey,
    issuer_name: NameLike,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    path_length: int | None,
    key_usage: set[str] | frozenset[str],
    extended_key_usage: list[str] | None = None,
    issuer_key_id: bytes | None = None,
) -> bytes:
    """A DER X.509 v3 certificate for ``subject_public_key``, signed by ``signer`` (the issuer).

    Extensions: basicConstraints (critical), keyUsage (critical), subjectKeyIdentifier,
    authorityKeyIdentifier (``issuer_key_id``, or by default the identifier of the signer's
    key computed as ``key_identifier``), and extendedKeyUsage (not critical) when given.
    ``key_usage`` takes RFC 5280 or asn1crypto names; ``extended_key_usage`` dotted OIDs or
    asn1crypto purpose names. Times must be timezone-aware; fractions of seconds are dropped.

    The signature is checked with the signer's public key before the certificate is returned,
    so a token that signs with another key than its URI claims never yields a certificate.
    Raises CertificateError for unusable input, InvalidSignature for a faulty signer.
    """
    if not isinstance(serial, int) or isinstance(serial, bool) or not 0 < serial <= MAX_SERIAL:
        raise CertificateError(
            f"serial {serial!r}: must be a positive integer of at most 20 octets "
            "(RFC 5280 §4.1.2.2)"
        )
    start = _utc(not_before, "not_before")
    end = _utc(not_after, "not_after")
    if not start < end:
        raise CertificateError(
            f"not_after ({end:%Y-%m-%d %H:%M:%S}Z) must be later than "
            f"not_before ({start:%Y-%m-%d %H:%M:%S}Z)"
        )
    if not isinstance(subject_public_key, SM2PublicKey):
        raise CertificateError("subject_public_key must be an SM2PublicKey")
    if path_length is not None:
        if not ca:
            raise CertificateError("path_length applies only to CA certificates (ca=True)")
        if isinstance(path_length, bool) or not isinstance(path_length, int) or path_length < 0:
            raise CertificateError(f"path_length {path_length!r}: a non-negative integer")
    usage = _key_usage(key_usage, ca=ca)
    purposes = None if extended_key_usage is None else _extended_key_usage(extended_key_usage)
    if issuer_key_id is not None and (not isinstance(issuer_key_id, bytes) or not issuer_key_id):
        raise CertificateError("issuer_key_id, when given, is a non-empty byte string")
    subject_name = _name(subject, "subject")
    issuer = _name(issuer_name, "issuer_name")
    authority_key_id = issuer_key_id or key_identifier(signer.public_key)

    extensions: list[dict[str, Any]] = [
        {  # RFC 5280 §4.2.1.9: critical in CA certificates; we mark it so in every one
            "extn_id": "basic_constraints",
            "critical": True,
            "extn_value": {"ca": ca, "path_len_constraint": path_length},
        },
        {"extn_id": "key_usage", "critical": True, "extn_value": usage},  # §4.2.1.3
        {  # §4.2.1.2
            "extn_id": "key_identifier",
            "critical": False,
            "extn_value": key_identifier(subject_public_key),
        },
        {  # §4.2.1.1
            "extn_id": "authority_key_identifier",
            "critical": False,
            "extn_value": {"key_identifier": authority_key_id},
        },
    ]
    if purposes is not None:  # §4.2.1.12
        extensions.append(
            {"extn_id": "extended_key_usage", "critical": False, "extn_value": purposes}
        )
    algorithm = algos.SignedDigestAlgorithm({"algorithm": OID_SM2_WITH_SM3})
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": algorithm,
            "issuer": issuer,
            "validity": {"not_before": _time(start), "not_after": _time(end)},
            "subject": subject_name,
            "subject_public_key_info": keys.PublicKeyInfo.load(subject_public_key.spki_der()),
            "extensions": extensions,
        }
    )
    tbs_der = tbs.dump()
    raw = signer.sign(tbs_der)
    try:
        signer.public_key.verify(raw, tbs_der)
    except InvalidSignature:
        raise InvalidSignature(
            f"the signer {signer.key_uri} made a signature its own public key does not verify; "
            "no certificate was made"
        ) from None
    certificate = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": OID_SM2_WITH_SM3}),
            "signature_value": raw_to_der(raw),
        }
    )
    der: bytes = certificate.dump()
    return der


def self_signed_root(
    signer: Signer,
    subject: NameLike,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    *,
    path_length: int | None = None,
    key_usage: frozenset[str] = frozenset({"key_cert_sign", "crl_sign"}),
) -> bytes:
    """The self-signed certificate of a root key: CA, subject = issuer, AKI = SKI.

    ``path_length`` None leaves the depth below the root unconstrained; the ministry's policy
    may set it. Key usage is keyCertSign and cRLSign unless given.
    """
    return issue_certificate(
        signer,
        subject=subject,
        subject_public_key=signer.public_key,
        issuer_name=subject,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        ca=True,
        path_length=path_length,
        key_usage=set(key_usage),
        issuer_key_id=None,
    )


# -- reading and verifying ----------------------------------------------------------------------
def _describe(name: asn1_x509.Name) -> str:
    parts: list[str] = []
    for rdn in name.chosen:
        for type_and_value in rdn:
            attribute = type_and_value["type"]
            label = _SHORT_NAMES.get(attribute.native, attribute.dotted)
            parts.append(f"{label}={type_and_value['value'].native}")
    return ", ".join(parts)


def _check_algorithm(algorithm: algos.SignedDigestAlgorithm, where: str) -> None:
    if algorithm["algorithm"].dotted != OID_SM2_WITH_SM3:
        raise CertificateError(
            f"{where} is {algorithm['algorithm'].dotted}, not SM2-with-SM3 ({OID_SM2_WITH_SM3})"
        )
    # We write no parameters (as OpenSSL does); NULL, which some producers write, is read as
    # absent. Anything else is refused.
    if algorithm["parameters"].native is not None:
        raise CertificateError(f"{where} SM2-with-SM3 carries parameters")


def _load(der: bytes) -> asn1_x509.Certificate:
    if not isinstance(der, bytes | bytearray | memoryview):
        raise CertificateError(f"a certificate is DER bytes, got {type(der).__name__}")
    der = bytes(der)
    if der.startswith(b"-----BEGIN"):
        raise CertificateError("this is PEM; pass DER (pem_to_der converts)")
    try:
        # Re-encoding a separate copy parses every field and proves the input is DER.
        if asn1_x509.Certificate.load(der, strict=True).dump(force=True) != der:
            raise CertificateError("not DER: the certificate re-encodes differently")
        cert = asn1_x509.Certificate.load(der, strict=True)
        cert.native  # noqa: B018 - parse every field now, so errors surface here
    except CertificateError:
        raise
    except (ValueError, TypeError, KeyError, OverflowError, IndexError) as exc:
        # IndexError: asn1crypto on an empty BIT STRING (e.g. a KeyUsage of 03 00)
        raise CertificateError(f"not an X.509 certificate: {der_scan.explain(der, exc)}") from None
    _check_algorithm(cert["signature_algorithm"], "signatureAlgorithm")
    _check_algorithm(cert["tbs_certificate"]["signature"], "TBSCertificate signature")
    if cert["signature_algorithm"].dump() != cert["tbs_certificate"]["signature"].dump():
        raise CertificateError(
            "signatureAlgorithm differs from TBSCertificate.signature (RFC 5280 §4.1.1.2)"
        )
    return cert


def _public_key(tbs: asn1_x509.TbsCertificate) -> SM2PublicKey:
    spki = tbs["subject_public_key_info"]
    algorithm = spki["algorithm"]
    curve = algorithm["parameters"]
    if (
        algorithm["algorithm"].dotted != OID_EC_PUBLIC_KEY
        or curve.name != "named"
        or (curve.chosen.dotted != SM2_CURVE_OID)
    ):
        raise CertificateError(
            "the subject public key is not an SM2 key (id-ecPublicKey on curve 1.2.156.10197.1.301)"
        )
    try:
        return SM2PublicKey.from_spki_der(spki.dump())
    except InvalidKey as exc:
        raise CertificateError(f"the subject public key: {exc}") from None


def certificate_info(der: bytes) -> CertificateInfo:
    """Parse a DER SM2 certificate (signature not checked: see ``verify_certificate``)."""
    cert = _load(der)
    tbs = cert["tbs_certificate"]
    public_key = _public_key(tbs)
    basic = cert.basic_constraints_value
    usage = cert.key_usage_value
    purposes = cert.extended_key_usage_value
    authority = cert.authority_key_identifier_value
    subject_key_id = cert.key_identifier_value
    data = bytes(der)
    return CertificateInfo(
        subject=_describe(tbs["subject"]),
        issuer=_describe(tbs["issuer"]),
        subject_name=tbs["subject"],
        issuer_name=tbs["issuer"],
        serial=int(tbs["serial_number"].native),
        not_before=tbs["validity"]["not_before"].native,
        not_after=tbs["validity"]["not_after"].native,
        public_key=public_key,
        is_ca=bool(basic is not None and basic["ca"].native),
        path_length=None if basic is None else basic["path_len_constraint"].native,
        key_usage=frozenset(usage.native) if usage is not None else frozenset(),
        extended_key_usage=tuple(p.dotted for p in purposes) if purposes is not None else (),
        subject_key_id=None if subject_key_id is None else bytes(subject_key_id.native),
        authority_key_id=(
            None
            if authority is None or authority["key_identifier"].native is None
            else bytes(authority["key_identifier"].native)
        ),
        sm3_fingerprint=sm3(data).hex(),
        sha256_fingerprint=hashlib.sha256(data).hexdigest(),
    )


def verify_certificate(
    cert_der: bytes, issuer_public_key: SM2PublicKey, *, at: datetime | None = None
) -> CertificateInfo:
    """Check the certificate's SM2 signature with the issuer's public key.

    Raises InvalidSignature if it does not verify, CertificateError if the bytes are not a
    well-formed SM2 certificate or (when ``at`` is given) ``at`` lies outside its validity.
    Names, key usage and path constraints are not checked: this is one link, not a path.
    """
    info = certificate_info(cert_der)
    cert = asn1_x509.Certificate.load(bytes(cert_der))
    signature = cert["signature_value"]
    try:
        if signature.contents[:1] != b"\x00":
            raise ValueError("the signature BIT STRING has unused bits")
        der_signature = bytes(signature.native)
        algos.DSASignature.load(der_signature, strict=True).native  # noqa: B018
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"the signature value is not a DER SM2 signature: {exc}") from None
    raw = der_to_raw(der_signature)  # InvalidSignature for r or s outside [1, n-1]
    issuer_public_key.verify(raw, cert["tbs_certificate"].dump())
    if at is not None:
        moment = _utc(at, "at")
        if not info.not_before <= moment <= info.not_after:
            raise CertificateError(
                f"the certificate is valid from {info.not_before:%Y-%m-%d %H:%M:%S}Z to "
                f"{info.not_after:%Y-%m-%d %H:%M:%S}Z, not at {moment:%Y-%m-%d %H:%M:%S}Z"
            )
    return info


def has_extended_key_usage(info: CertificateInfo, purpose: str) -> bool:
    """True if the certificate lists ``purpose`` (a dotted OID) as an extended key usage, or —
    for migration only — the pre-#15 2.25 OID of the same jtca purpose, so that lists, audit
    certificates and checkpoints made before the change still verify. Nothing issues the old
    OIDs any more (``issue_certificate`` refuses arcs over 32 bits)."""
    legacy = LEGACY_EXTENDED_KEY_USAGE.get(purpose)
    return purpose in info.extended_key_usage or (
        legacy is not None and legacy in info.extended_key_usage
    )


# -- armour -----------------------------------------------------------------------------------
def pem(der: bytes) -> bytes:
    """PEM ``CERTIFICATE`` armour (RFC 7468) around DER bytes."""
    armored: bytes = asn1_pem.armor("CERTIFICATE", bytes(der))
    return armored


def pem_to_der(data: bytes) -> bytes:
    """The DER inside one PEM ``CERTIFICATE`` block."""
    try:
        kind, _, der = asn1_pem.unarmor(bytes(data))
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not a PEM certificate: {exc}") from None
    if kind != "CERTIFICATE":
        raise CertificateError(f"PEM block is {kind!r}, not 'CERTIFICATE'")
    result: bytes = der
    return result
