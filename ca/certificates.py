"""X.509 v3 certificates signed with SM2 (SM2-with-SM3, Z over the default ID), built with
asn1crypto and signed through a ``Signer`` (a token key in ceremonies).

OpenSSL 3 is the outside judge (tests/integration/test_certificates.py)::

    openssl x509 -in root.pem -noout -text
    openssl verify -vfyopt distid:1234567812345678 -CAfile root.pem list-signing.pem

OpenSSL 3.0 verifies SM2 certificate signatures with an empty distinguishing ID unless told
(``-vfyopt distid:…``); jtca signs with Z over the default ID ``1234567812345678`` (GM/T 0009).
``openssl verify`` does not pass that ID to the trust anchor's own self-signature check
(``-check_ss_sig``), so the root's self-signature is checked with ``openssl pkeyutl`` over the
certificate's TBS bytes instead (``openssl asn1parse -in root.pem -strparse 4 -out tbs.der``).

Key identifiers (RFC 5280 §4.2.1.2 allows any method): the first 20 bytes of SM3 over the
subjectPublicKey bit string.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from asn1crypto import keys, x509

from ca.errors import JtcaError
from hsm.errors import InvalidKey, InvalidSignature
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey, der_to_raw, raw_to_der
from hsm.sm.sm3 import sm3

OID_SM2_WITH_SM3: Final = "1.2.156.10197.1.501"
# Extended key usage for list signing (issuer whitelist, city list, CA key list). A private arc
# (UUID-derived, ITU-T X.667) until the ministry assigns an OID of its own.
LIST_SIGNING_EKU: Final = "2.25.238357468307046418239458734118921340119"
KEY_USAGES: Final = frozenset(
    {
        "digital_signature",
        "non_repudiation",
        "key_cert_sign",
        "crl_sign",
        "key_agreement",
        "key_encipherment",
        "data_encipherment",
    }
)
SUBJECT_FIELDS: Final = {
    "CN": "common_name",
    "O": "organization_name",
    "OU": "organizational_unit_name",
    "C": "country_name",
    "L": "locality_name",
    "ST": "state_or_province_name",
}


class CertificateError(JtcaError):
    title = "Bad certificate"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    subject: str
    issuer: str
    serial: int
    not_before: datetime
    not_after: datetime
    public_key: SM2PublicKey
    is_ca: bool
    key_usage: frozenset[str]
    extended_key_usage: tuple[str, ...]
    sha256: str
    sm3: str


def _name(fields: dict[str, str]) -> x509.Name:
    unknown = sorted(set(fields) - set(SUBJECT_FIELDS))
    if unknown or not fields.get("CN", "").strip():
        raise CertificateError(
            f"a name needs CN and only {sorted(SUBJECT_FIELDS)} (got {sorted(fields)})"
        )
    ordered = {SUBJECT_FIELDS[k]: v for k, v in fields.items()}
    return x509.Name.build(ordered, use_printable=False)


def key_identifier(public_key: SM2PublicKey) -> bytes:
    return sm3(public_key.uncompressed)[:20]


def _time(moment: datetime) -> x509.Time:
    if moment.tzinfo is None:
        raise CertificateError("certificate times must carry a timezone")
    utc = moment.astimezone(UTC).replace(microsecond=0)
    # RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050
    if utc.year < 2050:
        return x509.Time(name="utc_time", value=utc)
    return x509.Time(name="general_time", value=utc)


def issue_certificate(
    signer: Signer,
    *,
    subject: dict[str, str],
    subject_public_key: SM2PublicKey,
    issuer_name: dict[str, str],
    serial: int,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    path_length: int | None,
    key_usage: set[str],
    extended_key_usage: list[str] | None = None,
    issuer_public_key: SM2PublicKey | None = None,
) -> bytes:
    """A DER certificate for ``subject_public_key`` signed by ``signer`` (the issuer's key)."""
    if not 0 < serial < 1 << 159:
        raise CertificateError(f"serial {serial}: must be positive and at most 20 octets")
    if not_before >= not_after:
        raise CertificateError("not_after must be later than not_before")
    unknown = sorted(key_usage - KEY_USAGES)
    if unknown or not key_usage:
        raise CertificateError(f"key usage {unknown or '(none)'}: use some of {sorted(KEY_USAGES)}")
    authority_key = issuer_public_key or signer.public_key
    extensions: list[dict[str, Any]] = [
        {
            "extn_id": "basic_constraints",
            "critical": True,
            "extn_value": {"ca": ca, "path_len_constraint": path_length if ca else None},
        },
        {"extn_id": "key_usage", "critical": True, "extn_value": set(key_usage)},
        {
            "extn_id": "key_identifier",
            "critical": False,
            "extn_value": key_identifier(subject_public_key),
        },
        {
            "extn_id": "authority_key_identifier",
            "critical": False,
            "extn_value": {"key_identifier": key_identifier(authority_key)},
        },
    ]
    if extended_key_usage:
        extensions.append(
            {"extn_id": "extended_key_usage", "critical": False, "extn_value": extended_key_usage}
        )
    algorithm = {"algorithm": OID_SM2_WITH_SM3}
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": algorithm,
            "issuer": _name(issuer_name),
            "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
            "subject": _name(subject),
            "subject_public_key_info": keys.PublicKeyInfo.load(subject_public_key.spki_der()),
            "extensions": extensions,
        }
    )
    signature = raw_to_der(signer.sign(tbs.dump()))
    der: bytes = x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature}
    ).dump()
    return der


def self_signed_root(
    signer: Signer,
    *,
    subject: dict[str, str],
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> bytes:
    return issue_certificate(
        signer,
        subject=subject,
        subject_public_key=signer.public_key,
        issuer_name=subject,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        ca=True,
        path_length=1,
        key_usage={"key_cert_sign", "crl_sign", "digital_signature"},
    )


def _describe(name: x509.Name) -> str:
    return ", ".join(f"{k}={v}" for k, v in name.native.items())


def certificate_info(der: bytes) -> CertificateInfo:
    try:
        cert = x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        spki = tbs["subject_public_key_info"]
        public_key = SM2PublicKey.from_spki_der(spki.dump())
        basic = cert.basic_constraints_value
        usage = cert.key_usage_value
        eku = cert.extended_key_usage_value
        return CertificateInfo(
            subject=_describe(tbs["subject"]),
            issuer=_describe(tbs["issuer"]),
            serial=int(tbs["serial_number"].native),
            not_before=tbs["validity"]["not_before"].native,
            not_after=tbs["validity"]["not_after"].native,
            public_key=public_key,
            is_ca=bool(basic and basic["ca"].native),
            key_usage=frozenset(usage.native) if usage is not None else frozenset(),
            extended_key_usage=tuple(eku.native) if eku is not None else (),
            sha256=hashlib.sha256(der).hexdigest(),
            sm3=sm3(der).hex(),
        )
    except (ValueError, TypeError, KeyError, InvalidKey) as exc:
        raise CertificateError(f"not an SM2 X.509 certificate: {exc}") from None


def verify_certificate(der: bytes, issuer_public_key: SM2PublicKey) -> CertificateInfo:
    """Check the signature with the issuer's key; raises InvalidSignature or CertificateError."""
    info = certificate_info(der)
    cert = x509.Certificate.load(der)
    if cert["signature_algorithm"]["algorithm"].dotted != OID_SM2_WITH_SM3:
        raise CertificateError("the signature algorithm is not SM2-with-SM3")
    try:
        raw = der_to_raw(bytes(cert["signature_value"].native))
    except InvalidSignature as exc:
        raise CertificateError(f"malformed signature: {exc}") from None
    issuer_public_key.verify(raw, cert["tbs_certificate"].dump())
    return info


def pem(der: bytes) -> bytes:
    from asn1crypto import pem as asn1_pem

    armored: bytes = asn1_pem.armor("CERTIFICATE", der)
    return armored
