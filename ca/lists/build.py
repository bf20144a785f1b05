"""Making a signed list (issue #6): check the content, sort it, sign the DER TBSList with the
list-signing key (SM2 with SM3, Z over the default ID 1234567812345678, GM/T 0009-2012 §10).

Pure: the key is behind a ``Signer`` (a token key in the publisher, a software key in tests).
The format is in ca/lists/der.py and docs/lists.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ca.lists.asn1 import (
    ListContent,
    ListContentError,
    ListEntry,
    ListType,
    encode_signed_list,
    encode_tbs,
    make_content,
)
from ca.pki.x509 import (
    LIST_SIGNING_EKU,
    CertificateError,
    CertificateInfo,
    certificate_info,
    has_extended_key_usage,
)
from hsm.errors import InvalidSignature
from hsm.signer import Signer
from hsm.sm.sm2 import raw_to_der

SIGNER_CERTIFICATE: Final = "signer_certificate_der"


def check_signer_certificate(
    signer_certificate_der: bytes, signer: Signer, *, at: int
) -> CertificateInfo:
    """The signer's certificate, checked as a terminal will check it (apart from the root):
    it certifies the signer's key, is valid at ``at``, is not a CA certificate, and has key
    usage digitalSignature and the list-signing extended key usage."""
    try:
        info = certificate_info(signer_certificate_der)
    except CertificateError as exc:
        raise ListContentError(SIGNER_CERTIFICATE, str(exc)) from None
    if info.public_key != signer.public_key:
        raise ListContentError(
            SIGNER_CERTIFICATE,
            f"certifies another key than the signer's ({signer.key_uri})",
        )
    if not info.not_before.timestamp() <= at <= info.not_after.timestamp():
        raise ListContentError(
            SIGNER_CERTIFICATE,
            f"valid {info.not_before:%Y-%m-%dT%H:%M:%SZ} to {info.not_after:%Y-%m-%dT%H:%M:%SZ}, "
            f"not at this_update ({at})",
        )
    if info.is_ca:
        raise ListContentError(
            SIGNER_CERTIFICATE,
            "is a CA certificate; lists are signed by an end-entity list-signing certificate",
        )
    if "digital_signature" not in info.key_usage:
        raise ListContentError(SIGNER_CERTIFICATE, "lacks key usage digitalSignature")
    if not has_extended_key_usage(info, LIST_SIGNING_EKU):  # the pre-#15 OID too (migration)
        raise ListContentError(
            SIGNER_CERTIFICATE, f"lacks the list-signing extended key usage {LIST_SIGNING_EKU}"
        )
    return info


def sign_content(content: ListContent, *, signer: Signer, signer_certificate_der: bytes) -> bytes:
    """The DER SignedList of checked ``content`` (entries in ascending key order)."""
    check_signer_certificate(signer_certificate_der, signer, at=content.this_update)
    tbs = encode_tbs(content)
    raw = signer.sign(tbs)
    try:
        signer.public_key.verify(raw, tbs)
    except InvalidSignature:
        raise InvalidSignature(
            f"the signer {signer.key_uri} made a signature its own public key does not verify; "
            "no list was made"
        ) from None
    return encode_signed_list(tbs, raw_to_der(raw), (bytes(signer_certificate_der),))


def build_list(
    list_type: ListType | str,
    entries: Iterable[ListEntry],
    *,
    sequence: int,
    this_update: int,
    next_update: int,
    signer: Signer,
    signer_certificate_der: bytes,
) -> bytes:
    """A DER SignedList of ``entries``, signed by ``signer`` (the list-signing key).

    Times are Unix seconds (UTC). Entries are checked one by one (errors name the field, the
    index and the value: ``entries[3].city_code: '4403' is not …``), duplicates of an issuer id,
    city code or CA index are refused, ``next_update`` must be later than ``this_update``, and
    the entries are sorted by key so two builds of the same content have the same TBSList.

    Raises ListContentError for unusable content or a signer certificate a terminal would
    refuse, InvalidSignature for a signer whose signature its own public key does not verify.
    """
    content = make_content(
        list_type, entries, sequence=sequence, this_update=this_update, next_update=next_update
    )
    return sign_content(content, signer=signer, signer_certificate_der=signer_certificate_der)
