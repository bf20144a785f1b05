"""Shared helpers for the QR codec, fuzz and issue/verify tests (imported, not a conftest).

``SPEC_TABLE`` is the layout table of ``shared/spec/qr-payload.md`` typed in again by hand, so
that the tests check the codec against the spec rather than against the codec's own table.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from typing import Final

from ca.core.clock import FixedClock
from ca.qr.codec import InteropCertificate, QrPayload, Ride, UserCertificate
from ca.qr.issue import issue_interop_certificate, issue_user_certificate, sign_ride
from ca.qr.verify import PayloadVerifier
from hsm.signer import SoftwareSigner


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


# A fixed "now" for the tests: 2026-03-15T08:00:00Z.
NOW: Final = utc(2026, 3, 15, 8)
CA_INDEX: Final = 1
ISSUER_ID: Final = "02113450"
INTEROP_EXPIRY: Final = "1230"  # valid through 2030-12-31T23:59:59Z
ISSUER_DATA: Final = "JTCA-TEST-000001"
ACCOUNT_NUMBER: Final = "31040000000000000001"
SINGLE_RIDE_LIMIT: Final = 20000  # fen
QR_VALIDITY: Final = 60
USER_CERT_LIFETIME: Final = 30 * 86400
EXTENSION_32: Final = bytes(range(0xA0, 0xA0 + 32))


# (offset for L = 0, length, moves with L) — spec "Layout" table, row for row.
SPEC_TABLE: Final[dict[str, tuple[int, int, bool]]] = {
    "guide.type_version": (0, 1, False),
    "guide.data_length": (1, 2, False),
    "interop_cert.record_header": (3, 1, False),
    "interop_cert.service_id": (4, 4, False),
    "interop_cert.ca_index": (8, 1, False),
    "interop_cert.cert_format": (9, 1, False),
    "interop_cert.issuer_id": (10, 4, False),
    "interop_cert.expiry": (14, 2, False),
    "interop_cert.serial": (16, 3, False),
    "interop_cert.signature_algorithm": (19, 1, False),
    "interop_cert.encryption_algorithm": (20, 1, False),
    "interop_cert.public_key_parameter": (21, 1, False),
    "interop_cert.public_key_length": (22, 1, False),
    "interop_cert.issuer_public_key": (23, 33, False),
    "interop_cert.ca_signature": (56, 64, False),
    "user_cert.issuer_data": (120, 16, False),
    "user_cert.account_number": (136, 10, False),
    "user_cert.card_issuer_code": (146, 4, False),
    "user_cert.platform_id": (150, 4, False),
    "user_cert.account_type": (154, 1, False),
    "user_cert.single_ride_limit": (155, 3, False),
    "user_cert.user_public_key": (158, 33, False),
    "user_cert.expires_at": (191, 4, False),
    "user_cert.qr_validity": (195, 2, False),
    "user_cert.extension_length": (197, 1, False),
    "user_cert.extension": (198, 0, False),  # L bytes
    "user_cert.issuer_signature": (198, 65, True),
    "ride.generated_at": (263, 4, True),
    "ride.user_signature": (267, 65, True),
}


def spec_offset(field: str, extension_length: int = 0) -> int:
    offset, _length, moves = SPEC_TABLE[field]
    return offset + (extension_length if moves else 0)


def spec_length(field: str, extension_length: int = 0) -> int:
    _offset, length, _moves = SPEC_TABLE[field]
    return extension_length if field == "user_cert.extension" else length


@dataclass(frozen=True)
class Chain:
    """CA → issuer → user → ride, with the signers that made it."""

    ca: SoftwareSigner
    issuer: SoftwareSigner
    user: SoftwareSigner
    interop: InteropCertificate
    user_cert: UserCertificate
    payload: QrPayload

    @property
    def data(self) -> bytes:
        return self.payload.encode()

    @property
    def extension_length(self) -> int:
        return len(self.user_cert.extension)

    def verifier(self, clock: FixedClock | None = None, **overrides: object) -> PayloadVerifier:
        kwargs: dict[str, object] = {
            "ca_keys": {self.interop.ca_index: self.ca.public_key},
            "accepted_issuers": {self.interop.issuer_id},
            "clock": clock if clock is not None else FixedClock(self.payload.ride.generated_at),
        }
        kwargs.update(overrides)
        return PayloadVerifier(**kwargs)  # type: ignore[arg-type]

    def resign_ride(self, generated_at: int, structure_version: int | None = None) -> bytes:
        version = (
            self.payload.guide.structure_version if structure_version is None else structure_version
        )
        return sign_ride(
            self.user,
            self.interop,
            self.user_cert,
            generated_at=generated_at,
            structure_version=version,
        ).encode()


def make_chain(
    *,
    ca: SoftwareSigner | None = None,
    issuer: SoftwareSigner | None = None,
    user: SoftwareSigner | None = None,
    ca_index: int = CA_INDEX,
    issuer_id: str = ISSUER_ID,
    expiry: str = INTEROP_EXPIRY,
    serial: int = 1,
    issuer_data: str = ISSUER_DATA,
    account_number: str = ACCOUNT_NUMBER,
    account_type: int = 1,
    single_ride_limit: int = SINGLE_RIDE_LIMIT,
    expires_at: int = NOW + USER_CERT_LIFETIME,
    qr_validity: int = QR_VALIDITY,
    extension: bytes = b"",
    generated_at: int = NOW,
    structure_version: int = 0,
    card_issuer_code: bytes = bytes(4),
    platform_id: bytes = bytes(4),
) -> Chain:
    ca = ca or SoftwareSigner.generate()
    issuer = issuer or SoftwareSigner.generate()
    user = user or SoftwareSigner.generate()
    interop = issue_interop_certificate(
        ca,
        ca_index=ca_index,
        issuer_id=issuer_id,
        expiry=expiry,
        serial=serial,
        issuer_public_key=issuer.public_key,
    )
    user_cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data=issuer_data,
        account_number=account_number,
        account_type=account_type,
        single_ride_limit=single_ride_limit,
        user_public_key=user.public_key,
        expires_at=expires_at,
        qr_validity=qr_validity,
        extension=extension,
        card_issuer_code=card_issuer_code,
        platform_id=platform_id,
    )
    payload = sign_ride(
        user, interop, user_cert, generated_at=generated_at, structure_version=structure_version
    )
    return Chain(ca, issuer, user, interop, user_cert, payload)


def forge_user_cert_signature(chain: Chain, signer: SoftwareSigner) -> Chain:
    """The same user certificate, its issuer signature made by ``signer`` over the right bytes;
    the ride re-signed by the real user so that only the issuer signature is wrong."""
    signed = chain.interop.encode() + chain.user_cert.encode_fields()
    user_cert = replace(chain.user_cert, issuer_signature=signer.sign(signed))
    payload = sign_ride(
        chain.user,
        chain.interop,
        user_cert,
        generated_at=chain.payload.ride.generated_at,
        structure_version=chain.payload.guide.structure_version,
    )
    return replace(chain, user_cert=user_cert, payload=payload)


def forge_ride_signature(chain: Chain, signer: SoftwareSigner) -> bytes:
    """The chain's payload with the ride signed by ``signer`` (not the certified user key)."""
    p = chain.payload
    signed = QrPayload.unsigned_prefix(p.guide, p.interop_cert, p.user_cert, p.ride.generated_at)
    ride = Ride(generated_at=p.ride.generated_at, user_signature=signer.sign(signed))
    return replace(p, ride=ride).encode()


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    """``data`` with ``new`` written at ``offset`` (same length)."""
    assert offset + len(new) <= len(data)
    return data[:offset] + new + data[offset + len(new) :]
