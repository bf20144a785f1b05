"""What an approver signs: the exact request that opened a pending subject (issue #12).

Before deciding, the approver's client fetches the request here, shows it, recomputes its SM3
and signs ``ca.officers.statements.approval_statement`` over it with the approver's own token.
"""

from __future__ import annotations

from pydantic import Field

from ca.ops.base import Model, operation


class SubjectRequest(Model):
    subject: str = Field(max_length=100)  # "application 7", "action 3", "enrolment 2"


class PendingRequestView(Model):
    subject: str
    officer: str  # who asked
    operation: str
    body: bytes  # exactly the bytes they signed
    digest: str  # hex SM3 of body
    at: int
    # the asking officer's certificate in force, which their signed decision names (0 in the
    # evidence of a decision, where each decision carries its own)
    signer_certificate_serial: int = 0


REQUEST = operation(
    "approvals.request",
    SubjectRequest,
    PendingRequestView,
    "the signed request that opened a pending subject, as the approver signs it",
    mutating=False,
)


class SignedDecisionView(Model):
    """One decision on the subject with what checks it offline: the signed statement, the
    approver's DER signature and the certificate it was made under (PEM)."""

    officer: str
    decision: str  # approve | reject
    reason: str
    at: int
    statement: str | None  # None: decided before decisions were signed (issue #12)
    signature: bytes | None  # DER SM2 signature over statement
    certificate_serial: int | None
    certificate_pem: str | None


class Evidence(Model):
    subject: str
    request: PendingRequestView
    officer_ca_pem: str
    decisions: list[SignedDecisionView]


EVIDENCE = operation(
    "approvals.evidence",
    SubjectRequest,
    Evidence,
    "the request that opened a subject and every signed decision on it, with the approvers' "
    "certificates and the officer CA: what an auditor checks offline with OpenSSL",
    mutating=False,
)
