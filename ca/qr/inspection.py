"""``jtca qr inspect``: every field with its offset, a verdict per signature, the clock checks.

The JSON is a contract other tools read (issue #2): top-level keys ``guide``, ``interop_cert``,
``user_cert``, ``ride``, ``signatures`` (``ca``, ``issuer``, ``user``) and ``checks``; binary
values as lowercase hex, counts and amounts as integers, times as ISO-8601 UTC, BCD numbers as
digit strings. Each domain also carries ``offsets``: field name → payload offset.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ca.core.clock import FixedClock, iso_utc
from ca.core.errors import InvalidSignature
from ca.qr.codec import LAYOUT, QrPayload, decode_payload
from ca.qr.verify import PayloadVerifier, Rejected
from hsm.sm.sm2 import SM2PublicKey

VALID = "valid"
INVALID = "invalid"
UNKNOWN_CA_KEY = "unknown-ca-key"


@dataclass(frozen=True, slots=True)
class FieldRow:
    domain: str
    name: str
    annex_name: str
    offset: int
    length: int
    value: str | int


def _verdict(key: SM2PublicKey | None, signature: bytes, message: bytes) -> str:
    if key is None:
        return UNKNOWN_CA_KEY
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return INVALID
    return VALID


def _rows(payload: QrPayload, data: bytes) -> list[FieldRow]:
    ext = payload.extension_length
    i, u, r = payload.interop_cert, payload.user_cert, payload.ride
    values: dict[str, str | int] = {
        "guide.type_version": f"{data[0]:02x}",
        "guide.data_length": len(data) - 3,
        "interop_cert.record_header": f"{data[3]:02x}",
        "interop_cert.service_id": data[4:8].hex(),
        "interop_cert.ca_index": i.ca_index,
        "interop_cert.cert_format": f"{data[9]:02x}",
        "interop_cert.issuer_id": i.issuer_id,
        "interop_cert.expiry": i.expiry,
        "interop_cert.serial": i.serial,
        "interop_cert.signature_algorithm": f"{data[19]:02x}",
        "interop_cert.encryption_algorithm": f"{data[20]:02x}",
        "interop_cert.public_key_parameter": f"{data[21]:02x}",
        "interop_cert.public_key_length": data[22],
        "interop_cert.issuer_public_key": i.issuer_public_key.compressed.hex(),
        "interop_cert.ca_signature": i.ca_signature.hex(),
        "user_cert.issuer_data": u.issuer_data,
        "user_cert.account_number": u.account_number,
        "user_cert.card_issuer_code": u.card_issuer_code.hex(),
        "user_cert.platform_id": u.platform_id.hex(),
        "user_cert.account_type": u.account_type,
        "user_cert.single_ride_limit": u.single_ride_limit,
        "user_cert.user_public_key": u.user_public_key.compressed.hex(),
        "user_cert.expires_at": iso_utc(u.expires_at),
        "user_cert.qr_validity": u.qr_validity,
        "user_cert.extension_length": ext,
        "user_cert.extension": u.extension.hex(),
        "user_cert.issuer_signature": data[198 + ext : 263 + ext].hex(),
        "ride.generated_at": iso_utc(r.generated_at),
        "ride.user_signature": data[267 + ext : 332 + ext].hex(),
    }
    rows = []
    for spec in LAYOUT:
        length = ext if spec.qualified == "user_cert.extension" else spec.length
        rows.append(
            FieldRow(
                spec.domain,
                spec.name,
                spec.annex_name,
                spec.at(ext),
                length,
                values[spec.qualified],
            )
        )
    return rows


def inspect_payload(
    data: bytes,
    *,
    ca_keys: Mapping[int, SM2PublicKey],
    accepted_issuers: Collection[str],
    now: int,
    skew: int,
    fare: int | None = None,
) -> dict[str, Any]:
    """Decode (raises CodecError on malformed input) and report. Never raises on a bad
    signature or a failed check: those are the report's verdicts."""
    payload = decode_payload(data)
    ext = payload.extension_length
    i, u, r = payload.interop_cert, payload.user_cert, payload.ride
    rows = _rows(payload, data)

    report: dict[str, Any] = {}
    for domain in ("guide", "interop_cert", "user_cert", "ride"):
        section: dict[str, Any] = {row.name: row.value for row in rows if row.domain == domain}
        section["offsets"] = {row.name: row.offset for row in rows if row.domain == domain}
        report[domain] = section
    report["guide"]["qr_type"] = data[0] >> 4
    report["guide"]["structure_version"] = payload.guide.structure_version
    report["interop_cert"]["valid_through"] = iso_utc(i.valid_through)

    report["signatures"] = {
        "ca": _verdict(ca_keys.get(i.ca_index), i.ca_signature, data[9:56]),
        "issuer": _verdict(i.issuer_public_key, u.issuer_signature, data[3 : 198 + ext]),
        "user": _verdict(u.user_public_key, r.user_signature, data[: 267 + ext]),
    }

    earliest_ok = now - u.qr_validity - skew
    gen_status = (
        "expired"
        if r.generated_at < earliest_ok
        else "not-yet-valid"
        if r.generated_at > now + skew
        else "ok"
    )
    checks: dict[str, Any] = {
        "now": iso_utc(now),
        "skew_seconds": skew,
        "interop_cert_expiry": {
            "valid_through": iso_utc(i.valid_through),
            "status": "ok" if now <= i.valid_through else "expired",
        },
        "user_cert_expiry": {
            "expires_at": iso_utc(u.expires_at),
            "status": "ok" if now <= u.expires_at else "expired",
        },
        "generation_time": {
            "generated_at": iso_utc(r.generated_at),
            "accepted_from": iso_utc(max(0, earliest_ok)),
            "accepted_until": iso_utc(now + skew),
            "status": gen_status,
        },
        "issuer_whitelist": (
            "not-checked"
            if not accepted_issuers
            else "listed"
            if i.issuer_id in accepted_issuers
            else "not-listed"
        ),
    }
    if fare is not None:
        checks["fare"] = {
            "fare": fare,
            "single_ride_limit": u.single_ride_limit,
            "status": "ok" if fare <= u.single_ride_limit else "over-limit",
        }
    verifier = PayloadVerifier(
        ca_keys=ca_keys,
        accepted_issuers=accepted_issuers,
        clock=FixedClock(now),
        skew=skew,
        cache_size=0,
    )
    try:
        verifier.verify(data, fare=fare)
        checks["acceptor"] = {"accepted": True, "reason": None, "message": None}
    except Rejected as exc:
        checks["acceptor"] = {
            "accepted": False,
            "reason": exc.reason_code.value,
            "message": exc.message,
        }
    report["checks"] = checks
    return report


def field_rows(data: bytes) -> list[FieldRow]:
    """The decoded fields with offsets, for a table (raises CodecError when malformed)."""
    return _rows(decode_payload(data), data)
