"""A QR issuer's request for an interop certificate, signed with its own key (proof of
possession). DER, defined with asn1crypto; pure (no I/O)::

    SignedInteropCertRequest ::= SEQUENCE {
        tbsRequest          InteropCertRequest,
        signatureAlgorithm  AlgorithmIdentifier,     -- 1.2.156.10197.1.501 SM2-with-SM3
        signature           BIT STRING }             -- DER { r, s } by the requested key
    InteropCertRequest ::= SEQUENCE {
        version             INTEGER (1),
        issuerId            PrintableString,         -- cn8: 1-8 digits (annex 发行机构标识)
        issuerName          UTF8String,
        publicKey           OCTET STRING (SIZE (33)),-- compressed SM2 point to be certified
        requestedExpiry     PrintableString,         -- MMYY (annex 证书失效日期)
        createdAt           GeneralizedTime,
        nonce               OCTET STRING (SIZE (16)) }
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from asn1crypto import algos, core

from ca.core.errors import CodecError, JtcaError
from ca.qr.codec import InteropCertificate, expiry_end
from hsm import der_scan
from hsm.errors import InvalidKey, InvalidSignature
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey, der_to_raw, raw_to_der

OID_SM2_WITH_SM3: Final = "1.2.156.10197.1.501"


class RequestRefused(JtcaError):
    title = "Certificate request refused"
    exit_code = 3


class _Tbs(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto declares fields this way
        ("version", core.Integer),
        ("issuer_id", core.PrintableString),
        ("issuer_name", core.UTF8String),
        ("public_key", core.OctetString),
        ("requested_expiry", core.PrintableString),
        ("created_at", core.GeneralizedTime),
        ("nonce", core.OctetString),
    ]


class _Signed(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("tbs_request", _Tbs),
        ("signature_algorithm", algos.AlgorithmIdentifier),
        ("signature", core.OctetBitString),
    ]


@dataclass(frozen=True, slots=True)
class InteropCertRequest:
    issuer_id: str
    issuer_name: str
    public_key: SM2PublicKey
    requested_expiry: str
    created_at: datetime

    @property
    def valid_through(self) -> int:
        return expiry_end(self.requested_expiry)


def _check_fields(issuer_id: str, expiry: str, public_key: SM2PublicKey) -> None:
    # The certificate's own builder checks cn8 and MMYY exactly as the payload needs them.
    try:
        InteropCertificate(
            ca_index=0,
            issuer_id=issuer_id,
            expiry=expiry,
            serial=0,
            issuer_public_key=public_key,
            ca_signature=bytes(64),
        )
    except CodecError as exc:
        raise RequestRefused(f"{exc.field.split('.')[-1]}: {exc.problem}") from None


def make_request(
    signer: Signer,
    *,
    issuer_id: str,
    issuer_name: str,
    requested_expiry: str,
    now: datetime | None = None,
) -> bytes:
    """The issuer's side: a request for ``signer``'s key, signed by that key."""
    _check_fields(issuer_id, requested_expiry, signer.public_key)
    if not issuer_name.strip():
        raise RequestRefused("issuer_name: must not be empty")
    tbs = _Tbs(
        {
            "version": 1,
            "issuer_id": issuer_id,
            "issuer_name": issuer_name,
            "public_key": signer.public_key.compressed,
            "requested_expiry": requested_expiry,
            "created_at": (now or datetime.now(UTC)).replace(microsecond=0),
            "nonce": secrets.token_bytes(16),
        }
    )
    signed = _Signed(
        {
            "tbs_request": tbs,
            "signature_algorithm": {"algorithm": OID_SM2_WITH_SM3},
            "signature": raw_to_der(signer.sign(tbs.dump())),
        }
    )
    der: bytes = signed.dump()
    return der


def read_request(data: bytes) -> InteropCertRequest:
    """Parse strictly and check the proof of possession. Raises RequestRefused with the reason."""
    try:
        signed = _Signed.load(data, strict=True)
        native: dict[str, Any] = signed["tbs_request"].native
        if signed["signature_algorithm"]["algorithm"].dotted != OID_SM2_WITH_SM3:
            raise ValueError("signature algorithm is not SM2-with-SM3")
        if signed["signature"].contents[:1] != b"\x00":
            raise ValueError("the signature BIT STRING has unused bits")
        signature = der_to_raw(bytes(signed["signature"].native))
    except (ValueError, TypeError, KeyError, InvalidSignature) as exc:
        raise RequestRefused(f"malformed request: {der_scan.explain(data, exc)}") from None
    if native["version"] != 1:
        raise RequestRefused(f"version: {native['version']} is not 1")
    if len(native["nonce"]) != 16:
        raise RequestRefused("nonce: must be 16 bytes")
    try:
        key = SM2PublicKey.from_bytes(native["public_key"])
    except InvalidKey as exc:
        raise RequestRefused(f"public_key: {exc}") from None
    if len(native["public_key"]) != 33:
        raise RequestRefused("public_key: must be a 33-byte compressed point")
    _check_fields(native["issuer_id"], native["requested_expiry"], key)
    try:
        key.verify(signature, signed["tbs_request"].dump())
    except InvalidSignature:
        raise RequestRefused(
            "proof of possession failed: the request is not signed by the key it names"
        ) from None
    return InteropCertRequest(
        issuer_id=native["issuer_id"],
        issuer_name=native["issuer_name"],
        public_key=key,
        requested_expiry=native["requested_expiry"],
        created_at=native["created_at"],
    )
