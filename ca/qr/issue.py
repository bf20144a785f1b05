"""Issuing the three signed parts of a transport QR code (annex 交通一卡通二维码技术规则).

Who signs what (spec, "Who signs what"): the central CA signs the interop certificate it issues
to a QR issuer; the issuer signs each user certificate; the user's wallet signs every ride.
All three go through one ``Signer``, whether the key is in software or in a token.
"""

from __future__ import annotations

from dataclasses import replace

from ca.core.errors import JtcaError
from ca.qr.codec import Guide, InteropCertificate, QrPayload, Ride, UserCertificate
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey


class SignerMismatch(JtcaError):
    title = "Wrong signing key"


def issue_interop_certificate(
    ca_signer: Signer,
    *,
    ca_index: int,
    issuer_id: str,
    expiry: str,
    serial: int,
    issuer_public_key: SM2PublicKey,
) -> InteropCertificate:
    """The central CA's certificate for a QR issuer: the 117-byte 互通证书域.

    The CA signs bytes [9, 56) of the payload: cert format through the issuer public key.
    Every field is checked before anything is signed.
    """
    # The dataclass checks every field; a placeholder signature keeps a bad field from ever
    # reaching the signer.
    draft = InteropCertificate(
        ca_index=ca_index,
        issuer_id=issuer_id,
        expiry=expiry,
        serial=serial,
        issuer_public_key=issuer_public_key,
        ca_signature=bytes(64),
    )
    return replace(draft, ca_signature=ca_signer.sign(draft.to_be_signed()))


def issue_user_certificate(
    issuer_signer: Signer,
    interop_cert: InteropCertificate,
    *,
    issuer_data: str,
    account_number: str,
    account_type: int,
    single_ride_limit: int,
    user_public_key: SM2PublicKey,
    expires_at: int,
    qr_validity: int,
    extension: bytes = b"",
    card_issuer_code: bytes = bytes(4),
    platform_id: bytes = bytes(4),
) -> UserCertificate:
    """The issuer's certificate for one user: the 用户证书域.

    The issuer signs bytes [3, 198+L) of the payload: the whole interop certificate domain
    through the extension data. The signer must hold the key the interop certificate certifies,
    or every acceptor would refuse the result.
    """
    if issuer_signer.public_key != interop_cert.issuer_public_key:
        raise SignerMismatch(
            f"the issuer signer's key {issuer_signer.public_key.compressed.hex()} is not the key "
            f"certified for issuer {interop_cert.issuer_id} "
            f"({interop_cert.issuer_public_key.compressed.hex()})"
        )
    draft = UserCertificate(
        issuer_data=issuer_data,
        account_number=account_number,
        card_issuer_code=card_issuer_code,
        platform_id=platform_id,
        account_type=account_type,
        single_ride_limit=single_ride_limit,
        user_public_key=user_public_key,
        expires_at=expires_at,
        qr_validity=qr_validity,
        extension=extension,
        issuer_signature=bytes(64),
    )
    signature = issuer_signer.sign(interop_cert.encode() + draft.encode_fields())
    return replace(draft, issuer_signature=signature)


def sign_ride(
    user_signer: Signer,
    interop_cert: InteropCertificate,
    user_cert: UserCertificate,
    *,
    generated_at: int,
    structure_version: int = 0,
) -> QrPayload:
    """The wallet's ride signature at ``generated_at``: the whole payload.

    The user signs bytes [0, 267+L): type byte through generation time, the issuer signature
    included.
    """
    if user_signer.public_key != user_cert.user_public_key:
        raise SignerMismatch(
            f"the user signer's key {user_signer.public_key.compressed.hex()} is not the key in "
            f"the user certificate ({user_cert.user_public_key.compressed.hex()})"
        )
    guide = Guide(structure_version=structure_version)
    Ride(generated_at=generated_at, user_signature=bytes(64))
    signed = QrPayload.unsigned_prefix(guide, interop_cert, user_cert, generated_at)
    ride = Ride(generated_at=generated_at, user_signature=user_signer.sign(signed))
    return QrPayload(guide=guide, interop_cert=interop_cert, user_cert=user_cert, ride=ride)
