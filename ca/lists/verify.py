"""The terminal's side of signed lists (issue #6): take a list only if it is well formed, of a
known type, signed by a list-signing certificate that the trusted root issued, current and not
older than the one the terminal already holds.

Checks, in this order, each failure with its own stable reason code (``ListRefused.reason``):

1. strict DER, every field valid (ca/lists/der.py) → ``malformed``;
   a listType this version does not know → ``unknown-list-type``
2. the type the caller expects → ``wrong-list-type``
3. the signer certificate: issued by the trusted root (name, key identifier, signature), both
   valid at thisUpdate and now, an end-entity certificate with key usage digitalSignature and
   the list-signing extended key usage → ``untrusted-signer``
4. the list's SM2 signature over the DER TBSList with the certificate's key → ``bad-signature``
5. thisUpdate not later than now + skew → ``not-yet-valid``
6. now not later than nextUpdate + grace → ``stale``
7. sequenceNumber greater than the one held → ``rollback``

Pure: the caller passes the bytes, the trusted root and the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, cast

from ca.core.clock import iso_utc
from ca.core.errors import JtcaError
from ca.core.vocabulary import article
from ca.lists.asn1 import (
    CaKeyEntry,
    CityEntry,
    IssuerEntry,
    ListContent,
    ListContentError,
    ListEntry,
    ListType,
    UnknownListType,
    decode_signed_list,
)
from ca.pki.x509 import (
    LIST_SIGNING_EKU,
    CertificateError,
    CertificateInfo,
    certificate_info,
    has_extended_key_usage,
    verify_certificate,
)
from hsm.errors import InvalidSignature
from hsm.sm.sm2 import der_to_raw
from hsm.sm.sm3 import sm3

DEFAULT_SKEW: Final = 300  # seconds a terminal's clock may run behind the publisher's


class ListReason(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_LIST_TYPE = "unknown-list-type"
    WRONG_LIST_TYPE = "wrong-list-type"
    UNTRUSTED_SIGNER = "untrusted-signer"
    BAD_SIGNATURE = "bad-signature"
    NOT_YET_VALID = "not-yet-valid"
    STALE = "stale"
    ROLLBACK = "rollback"


class ListRefused(JtcaError):
    """A list a terminal must not take. ``reason`` is a ``ListReason``; ``field`` names the
    field for ``malformed`` and ``unknown-list-type`` (``tbsList.entries[3].cityCode``)."""

    title = "List refused"
    exit_code = 4

    def __init__(self, reason: ListReason, message: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{reason.value}: {message}")


@dataclass(frozen=True, slots=True)
class VerifiedList:
    """A list that passed every check. Times are Unix seconds (UTC)."""

    list_type: ListType
    sequence: int
    this_update: int
    next_update: int
    entries: tuple[ListEntry, ...]
    signer: CertificateInfo
    signer_certificate_der: bytes
    sm3: str  # hex SM3 of the whole signed list, for logs and audit records

    @property
    def content(self) -> ListContent:
        return ListContent(
            self.list_type, self.sequence, self.this_update, self.next_update, self.entries
        )

    def _need(self, list_type: ListType) -> None:
        if self.list_type is not list_type:
            raise ListRefused(
                ListReason.WRONG_LIST_TYPE,
                f"this is {article(self.list_type)}, not {article(list_type)}",
            )

    def issuers(self) -> tuple[IssuerEntry, ...]:
        self._need(ListType.ISSUERS)
        return cast(tuple[IssuerEntry, ...], self.entries)

    def cities(self) -> tuple[CityEntry, ...]:
        self._need(ListType.CITIES)
        return cast(tuple[CityEntry, ...], self.entries)

    def ca_keys(self) -> tuple[CaKeyEntry, ...]:
        self._need(ListType.CA_KEYS)
        return cast(tuple[CaKeyEntry, ...], self.entries)


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _untrusted(message: str) -> ListRefused:
    return ListRefused(ListReason.UNTRUSTED_SIGNER, message)


def _check_signer(
    signer_der: bytes, trusted_root_der: bytes, *, this_update: int, now: int
) -> CertificateInfo:
    root = certificate_info(trusted_root_der)  # CertificateError: the terminal's setup is broken
    try:
        signer = certificate_info(signer_der)
    except CertificateError as exc:
        raise ListRefused(ListReason.MALFORMED, str(exc), field="certificates[0]") from None
    if not root.is_ca or "key_cert_sign" not in root.key_usage:
        raise _untrusted(
            f"the trusted root {root.subject} is not a CA certificate with keyCertSign"
        )
    if signer.issuer_name.dump() != root.subject_name.dump():
        raise _untrusted(f"the signer certificate is issued by {signer.issuer}, not {root.subject}")
    if (
        signer.authority_key_id is not None
        and root.subject_key_id is not None
        and signer.authority_key_id != root.subject_key_id
    ):
        raise _untrusted("the signer certificate names another authority key than the root's")
    try:
        verify_certificate(signer_der, root.public_key)
    except CertificateError as exc:  # the signature value inside is not DER
        raise ListRefused(ListReason.MALFORMED, str(exc), field="certificates[0]") from None
    except InvalidSignature:
        raise _untrusted(
            f"the signer certificate {signer.subject} is not signed by the trusted root"
        ) from None
    for what, info in (("signer", signer), ("trusted root", root)):
        for label, moment in (("thisUpdate", this_update), ("now", now)):
            if not info.not_before <= _at(moment) <= info.not_after:
                raise _untrusted(
                    f"the {what} certificate is valid {iso_utc(int(info.not_before.timestamp()))} "
                    f"to {iso_utc(int(info.not_after.timestamp()))}, not at {label} "
                    f"{iso_utc(moment)}"
                )
    if signer.is_ca:
        raise _untrusted("the signer certificate is a CA certificate, not a list-signing one")
    if "digital_signature" not in signer.key_usage:
        raise _untrusted("the signer certificate lacks key usage digitalSignature")
    if not has_extended_key_usage(signer, LIST_SIGNING_EKU):  # the pre-#15 OID too (migration)
        raise _untrusted(
            f"the signer certificate lacks the list-signing extended key usage {LIST_SIGNING_EKU}"
        )
    return signer


def load_list(
    data: bytes,
    *,
    trusted_root_der: bytes,
    expected_type: ListType | None = None,
    previous_sequence: int | None = None,
    now: int,
    grace_seconds: int,
    skew: int = DEFAULT_SKEW,
) -> VerifiedList:
    """Check a signed list as a terminal takes it; raise ``ListRefused`` or return it.

    ``trusted_root_der`` is the ministry root the terminal trusts (a CertificateError if it is
    not a certificate at all). ``previous_sequence`` is the sequence number of the list of this
    type the terminal holds; the new one must be greater. A list is ``stale`` once ``now`` is
    past nextUpdate by more than ``grace_seconds``; ``not-yet-valid`` while thisUpdate is more
    than ``skew`` seconds ahead of ``now``.
    """
    if grace_seconds < 0 or skew < 0:
        raise ValueError("grace_seconds and skew are ≥ 0 seconds")
    try:
        parts = decode_signed_list(data)
    except UnknownListType as exc:
        raise ListRefused(ListReason.UNKNOWN_LIST_TYPE, str(exc), field=exc.field) from None
    except ListContentError as exc:
        raise ListRefused(ListReason.MALFORMED, str(exc), field=exc.field) from None
    content = parts.content
    if expected_type is not None and content.list_type is not ListType(expected_type):
        raise ListRefused(
            ListReason.WRONG_LIST_TYPE,
            f"this is {article(content.list_type)}, the terminal asked for "
            f"{article(ListType(expected_type))}",
        )
    signer = _check_signer(
        parts.certificates[0], trusted_root_der, this_update=content.this_update, now=now
    )
    try:
        signer.public_key.verify(der_to_raw(parts.signature_der), parts.tbs_der)
    except InvalidSignature:
        raise ListRefused(
            ListReason.BAD_SIGNATURE,
            f"the {content.list_type} (sequence {content.sequence}) is not signed by "
            f"{signer.subject}",
        ) from None
    if content.this_update > now + skew:
        raise ListRefused(
            ListReason.NOT_YET_VALID,
            f"thisUpdate {iso_utc(content.this_update)} is more than {skew} s after now "
            f"{iso_utc(now)}",
        )
    if now > content.next_update + grace_seconds:
        raise ListRefused(
            ListReason.STALE,
            f"nextUpdate {iso_utc(content.next_update)} plus {grace_seconds} s grace has passed "
            f"(now {iso_utc(now)})",
        )
    if previous_sequence is not None and content.sequence <= previous_sequence:
        raise ListRefused(
            ListReason.ROLLBACK,
            f"sequence {content.sequence} is not after the {content.list_type} held "
            f"(sequence {previous_sequence})",
        )
    return VerifiedList(
        list_type=content.list_type,
        sequence=content.sequence,
        this_update=content.this_update,
        next_update=content.next_update,
        entries=content.entries,
        signer=signer,
        signer_certificate_der=parts.certificates[0],
        sm3=sm3(bytes(data)).hex(),
    )
