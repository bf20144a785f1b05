"""Officer certificates (issue #12): the officer CA, issuing, and the certificate in force.

The officer CA is an SM2 key generated in the authority's own token ``MOT-OFFICERS`` the first
time an officer is certified; its self-signed certificate is recorded (role ``officer-ca``) and
served to anyone by ``officer.ca`` (``jtca officer ca --out FILE``) for offline checks. An
officer certificate certifies the SM2 key the officer's personal token generated: the officer
id is the subject's commonName (OU ``jtca officers``), the serial is unique and unpredictable,
the validity is the policy's ``officers.certificate_days``, key usage digitalSignature and
nonRepudiation (approvals are commitments), extended key usage officer authentication and
clientAuth.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlmodel import Session, col, select

from ca.core.errors import JtcaError
from ca.log import audit
from ca.policy.in_force import load_policy
from ca.store.models import CertificateRecord, OfficerCertificate
from ca.vault.signers import token_signer
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

OFFICER_CA_TOKEN: Final = "MOT-OFFICERS"  # noqa: S105 - a token label, not a secret
OFFICER_CA_LABEL: Final = "officer-ca"
OFFICER_CA_ROLE: Final = "officer-ca"
OFFICER_CA_SUBJECT: Final = {"C": "CN", "O": "Ministry of Transport", "CN": "jtca Officer CA"}
OFFICER_CA_YEARS: Final = 10


class OfficerCertificateError(JtcaError):
    title = "Officer certificate"
    exit_code = 6


@dataclass(frozen=True, slots=True)
class OfficerCa:
    record: CertificateRecord
    signer: Signer


def _serial() -> int:
    return secrets.randbits(63) | 1 << 62  # positive, 8 octets, unpredictable (RFC 5280 §4.1.2.2)


def officer_ca_record(session: Session) -> CertificateRecord | None:
    return session.exec(
        select(CertificateRecord)
        .where(CertificateRecord.role == OFFICER_CA_ROLE)
        .order_by(col(CertificateRecord.id).desc())
    ).first()


def open_officer_ca(session: Session, store: KeyStore, *, now: int, actor: str) -> OfficerCa:
    """The officer CA, made on first use: key in the token, certificate and audit event in the
    caller's transaction. A key left in the token by a crash before its record is reused (found
    by its label), never duplicated."""
    from ca.pki.x509 import certificate_info, self_signed_root

    record = officer_ca_record(session)
    if record is not None:
        return OfficerCa(record, token_signer(store, Pkcs11Uri.parse(record.key_uri), "officer-ca"))
    existing = [k for k in store.list_keys() if k.label == OFFICER_CA_LABEL]
    key = (
        existing[0]
        if existing
        else store.generate_sm2(
            OFFICER_CA_LABEL, host_assisted=load_policy().host_assisted_allowed("officer-ca")
        )
    )
    signer = token_signer(store, key.uri, "officer-ca")
    start = datetime.fromtimestamp(now, UTC)
    der = self_signed_root(
        signer,
        subject=OFFICER_CA_SUBJECT,
        serial=_serial(),
        not_before=start,
        not_after=start + timedelta(days=365 * OFFICER_CA_YEARS),
        path_length=0,
        key_usage=frozenset({"key_cert_sign", "crl_sign", "digital_signature"}),
    )
    info = certificate_info(der)
    record = CertificateRecord(
        role=OFFICER_CA_ROLE,
        subject=info.subject,
        serial=info.serial,
        der=der.hex(),
        sha256=info.sha256_fingerprint,
        sm3=info.sm3_fingerprint,
        not_before=int(info.not_before.timestamp()),
        not_after=int(info.not_after.timestamp()),
        key_uri=str(key.uri),
    )
    session.add(record)
    audit.append(
        session,
        actor=actor,
        action="officer-ca.create",
        subject=f"certificate {info.serial}",
        kind="certificate",  # issue #13: the DER certificate is in the log by digest
        object_sm3=sm3(der).hex(),
        details={"key_uri": str(key.uri), "sm3": record.sm3, "subject": info.subject},
        at=now,
    )
    return OfficerCa(record, signer)


def issue_officer_certificate(
    session: Session,
    ca: OfficerCa,
    *,
    officer_id: str,
    name: str,
    public_key: SM2PublicKey,
    token_label: str,
    issued_by: str,
    now: int,
) -> OfficerCertificate:
    """Issue, record and audit an officer certificate; the officer's earlier certificates in
    force are superseded (one key per officer at a time)."""
    days = load_policy().officers.certificate_days
    start = datetime.fromtimestamp(now, UTC)
    serial = _serial()
    while session.get(OfficerCertificate, serial) is not None:  # pragma: no cover - 2^-62
        serial = _serial()
    subject = {"C": "CN", "O": "Ministry of Transport", "OU": "jtca officers", "CN": officer_id}
    der = issue_certificate_for(
        ca, subject, public_key, serial, start, start + timedelta(days=days)
    )
    for old in session.exec(
        select(OfficerCertificate)
        .where(OfficerCertificate.officer_id == officer_id)
        .where(col(OfficerCertificate.status).in_(["active", "suspended"]))
    ):
        old.status, old.status_at, old.status_reason = "superseded", now, f"by {serial}"
        session.add(old)
    cert = OfficerCertificate(
        serial=serial,
        officer_id=officer_id,
        public_key=public_key.uncompressed,
        der=der,
        not_before=now,
        not_after=int((start + timedelta(days=days)).timestamp()),
        issued_at=now,
        issued_by=issued_by,
        token_label=token_label,
    )
    session.add(cert)
    audit.append(
        session,
        actor=issued_by,
        action="officer.certificate.issue",
        subject=f"officer {officer_id}",
        kind="certificate",  # issue #13: the DER certificate is in the log by digest
        object_sm3=sm3(der).hex(),
        details={
            "serial": serial,
            "name": name,
            "not_after": cert.not_after,
            "public_key_sm3": sm3(public_key.uncompressed).hex(),
            "certificate_sm3": sm3(der).hex(),
            "token_label": token_label,
        },
        at=now,
    )
    return cert


def issue_certificate_for(
    ca: OfficerCa,
    subject: dict[str, str],
    public_key: SM2PublicKey,
    serial: int,
    start: datetime,
    end: datetime,
) -> bytes:
    from ca.pki.x509 import CLIENT_AUTH_EKU, OFFICER_AUTH_EKU, issue_certificate, key_identifier

    ca_end = datetime.fromtimestamp(ca.record.not_after, UTC)
    if end > ca_end:
        end = ca_end  # never outlive the officer CA
    return issue_certificate(
        ca.signer,
        subject=subject,
        subject_public_key=public_key,
        issuer_name=OFFICER_CA_SUBJECT,
        serial=serial,
        not_before=start,
        not_after=end,
        ca=False,
        path_length=None,
        key_usage={"digital_signature", "non_repudiation"},
        extended_key_usage=[OFFICER_AUTH_EKU, CLIENT_AUTH_EKU],
        issuer_key_id=key_identifier(ca.signer.public_key),
    )


def certificate_in_force(session: Session, officer_id: str, now: int) -> OfficerCertificate:
    """The officer's active certificate valid at ``now``; refused with the reason otherwise."""
    certs = list(
        session.exec(
            select(OfficerCertificate)
            .where(OfficerCertificate.officer_id == officer_id)
            .order_by(col(OfficerCertificate.issued_at).desc())
        )
    )
    if not certs:
        raise OfficerCertificateError(f"officer {officer_id} has no certificate: enrol them first")
    newest = certs[0]
    if newest.status != "active":
        raise OfficerCertificateError(
            f"officer {officer_id}'s certificate {newest.serial} is {newest.status}"
            + (f" ({newest.status_reason})" if newest.status_reason else "")
        )
    if not newest.not_before <= now < newest.not_after:
        raise OfficerCertificateError(
            f"officer {officer_id}'s certificate {newest.serial} is not valid now "
            f"(valid {newest.not_before}..{newest.not_after}): renew it"
        )
    return newest


def destroy_unrecorded_ca_key(store: KeyStore, uri: str) -> None:
    """Undo a CA key made in a transaction that did not commit (no key without its record)."""
    with contextlib.suppress(JtcaError):
        store.destroy(Pkcs11Uri.parse(uri))
