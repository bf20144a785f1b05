"""Signed decisions (issue #12): the approver's token signature over the request approved.

``verify_decision`` builds ``ca.officers.statements.approval_statement`` from the subject, the SM3
of
the request that opened it (kept by ``ca.officers.dual_control.bind_request``), the decision, the
approver and the serial of their certificate in force, and checks the approver's signature with
that certificate's key. The use case then decides inside ``ca.officers.dual_control.deciding``, so
the
Approval row and the audit event keep the statement, the DER signature and the serial: anyone
can check them offline with OpenSSL and the officer's certificate (docs/officers.md).
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from ca.core.errors import JtcaError
from ca.officers.certificates import (
    OfficerCertificateError,
    certificate_in_force,
    officer_ca_record,
)
from ca.officers.dual_control import SignedDecision
from ca.officers.statements import AuthError, approval_statement, verify
from ca.ops import approvals as ops
from ca.pki.x509 import pem
from ca.policy.in_force import load_policy
from ca.service.auth import refuse
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.models import Approval, OfficerCertificate, PendingRequest
from hsm.sm.sm2 import SM2PublicKey, raw_to_der


class NoSignedRequest(JtcaError):
    title = "Nothing to approve"
    exit_code = 5


def pending_request(session: Session, subject: str) -> PendingRequest:
    row = session.get(PendingRequest, subject)
    if row is None:
        raise NoSignedRequest(
            f"{subject}: no signed request is on record for it (made before officers signed "
            "their requests, or not a pending subject); ask for it again"
        )
    return row


@handles(ops.EVIDENCE)
def evidence(ctx: Context, req: ops.SubjectRequest) -> ops.Evidence:
    ctx.actor()
    with Session(ctx.engine) as session:
        row = pending_request(session, req.subject)
        ca = officer_ca_record(session)
        decisions = []
        for approval in session.exec(
            select(Approval).where(Approval.subject == req.subject).order_by(col(Approval.id))
        ):
            cert = (
                session.get(OfficerCertificate, approval.certificate_serial)
                if approval.certificate_serial is not None
                else None
            )
            decisions.append(
                ops.SignedDecisionView(
                    officer=approval.approver,
                    decision=approval.decision,
                    reason=approval.reason,
                    at=approval.at,
                    statement=approval.statement,
                    signature=approval.signature,
                    certificate_serial=approval.certificate_serial,
                    certificate_pem=pem(cert.der).decode() if cert else None,
                )
            )
    if ca is None:  # pragma: no cover - a signed request implies an enrolled officer
        raise NoSignedRequest("no officer CA yet")
    return ops.Evidence(
        subject=row.subject,
        request=_view(row),
        officer_ca_pem=pem(bytes.fromhex(ca.der)).decode(),
        decisions=decisions,
    )


def _view(row: PendingRequest) -> ops.PendingRequestView:
    return ops.PendingRequestView(
        subject=row.subject,
        officer=row.officer_id,
        operation=row.operation,
        body=row.body,
        digest=row.digest,
        at=row.at,
    )


@handles(ops.REQUEST)
def request(ctx: Context, req: ops.SubjectRequest) -> ops.PendingRequestView:
    ctx.actor()
    with Session(ctx.engine) as session:
        row = pending_request(session, req.subject)
    return _view(row).model_copy(update={"signer_certificate_serial": ctx.certificate_serial or 0})


def verify_decision(
    ctx: Context, *, subject: str, approve: bool, at: int, signature: bytes
) -> SignedDecision:
    """The approver's verified signed decision on ``subject``, or refused (audited)."""
    actor = ctx.actor()
    now = ctx.now()
    try:
        skew = load_policy().officers.clock_skew_seconds
        if abs(now - at) > skew:
            raise AuthError(
                f"the decision's signed time {at} is {abs(now - at)} s from the service's; "
                f"at most {skew} s",
                reason="clock-skew",
            )
        with Session(ctx.engine) as session:
            row = pending_request(session, subject)
            try:
                cert = certificate_in_force(session, actor.id, now)
            except OfficerCertificateError as exc:
                raise AuthError(exc.message, reason="certificate-not-in-force") from None
        statement = approval_statement(
            subject=subject,
            request_digest=row.digest,
            approve=approve,
            officer=actor.id,
            serial=cert.serial,
            at=at,
        )
        verify(
            SM2PublicKey.from_bytes(cert.public_key),
            signature,
            statement,
            f"{actor.id}'s signed decision on {subject} (made with another key, or over "
            "another request?)",
        )
    except AuthError as exc:
        refuse(
            ctx.engine,
            officer=actor.id,
            reason=exc.reason,
            message=exc.message,
            where=subject,
            now=now,
        )
        raise
    return SignedDecision(
        subject=subject,
        officer=actor.id,
        approve=approve,
        statement=statement.decode(),
        signature_der=raw_to_der(signature),
        certificate_serial=cert.serial,
        request_digest=row.digest,
    )
