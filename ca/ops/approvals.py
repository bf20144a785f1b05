"""What an approver signs: the exact request that opened a pending subject (issue #12).

Before deciding, the approver's client fetches the request here, shows it, recomputes its SM3
and signs ``ca.officer_auth.approval_statement`` over it with the approver's own token.
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


REQUEST = operation(
    "approvals.request",
    SubjectRequest,
    PendingRequestView,
    "the signed request that opened a pending subject, as the approver signs it",
    mutating=False,
)
