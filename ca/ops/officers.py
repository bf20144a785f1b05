"""Operations of the officers area: enrolment, certificates, the registry (see ca/ops/base.py).

An officer is enrolled with the SM2 key their personal token generated. The first officers are
enrolled under the root token's share quorum (no officer exists yet to sign); after that a
ministry root officer requests the enrolment and a second one approves it with a signature made
by their own token (dual control). Suspension and revocation take effect at the next request.
"""

from __future__ import annotations

from pydantic import Field

from ca.ops.base import Empty, Model, operation

MAX_SHARES = 16


class CertificateView(Model):
    serial: int
    status: str  # active | suspended | revoked | superseded
    not_before: int
    not_after: int
    token_label: str
    issued_by: str
    pem: str


class OfficerView(Model):
    """An officer as the policy sees them, with their certificate in force if any."""

    id: str
    name: str
    roles: list[str]  # sorted
    province: str | None
    status: str  # active | …
    certificate: CertificateView | None = None


class Officers(Model):
    officers: list[OfficerView]


class EnrolRequest(Model):
    """Enrol an officer (or a new key for one): the public key their token generated, and a
    proof of possession — the token's signature over ``ca.officers.statements`` enrolment bytes.

    Without a signed-in officer, ``shares`` (the root token's share quorum) authorise it at
    once: the bootstrap of the first officers. With one, it waits for a second approval."""

    officer_id: str = Field(max_length=100)
    name: str = Field(default="", max_length=200)
    roles: list[str] = Field(max_length=10)
    province: str | None = None
    public_key: bytes = Field(min_length=65, max_length=65)
    proof: bytes = Field(min_length=64, max_length=64)
    token_label: str = Field(default="", max_length=100)
    shares: list[str] = Field(default_factory=list, max_length=MAX_SHARES)


class Enrolment(Model):
    id: int
    subject: str  # "enrolment N", what approvers sign
    officer_id: str
    roles: list[str]
    province: str | None
    state: str  # pending | approved | rejected
    requested_by: str
    certificate: CertificateView | None = None


class Enrolments(Model):
    enrolments: list[Enrolment]


class Decision(Model):
    """A decision on a pending subject, with the approver's token signature over
    ``ca.officers.statements.approval_statement`` (subject, the request's SM3, decision, officer,
    certificate serial, time)."""

    id: int
    approve: bool = True
    reason: str = Field(default="", max_length=400)
    at: int
    signature: bytes = Field(min_length=64, max_length=64)


class OfficerAction(Model):
    officer_id: str = Field(max_length=100)
    reason: str = Field(default="", max_length=400)


class OfficerId(Model):
    officer_id: str = Field(max_length=100)


class ProofRequest(Model):
    """What a new key's proof of possession signs (``ca.officers.statements.enrolment_message``)."""

    officer_id: str = Field(max_length=100)
    public_key: bytes = Field(min_length=65, max_length=65)


class OfficerCaView(Model):
    pem: str
    sm3: str


ENROL = operation(
    "officer.enrol",
    EnrolRequest,
    Enrolment,
    "enrol an officer's token key: under the root share quorum (bootstrap) or requested by a "
    "ministry root officer for a second one's approval (audited)",
    officer=False,
)
DECIDE = operation(
    "officer.decide",
    Decision,
    Enrolment,
    "approve or reject an enrolment, signed by the deciding officer's token (dual control)",
)
ENROLMENTS = operation(
    "officer.enrolments", Empty, Enrolments, "enrolments waiting for a decision", mutating=False
)
SUSPEND = operation(
    "officer.suspend", OfficerAction, OfficerView, "suspend an officer's certificate (at once)"
)
REINSTATE = operation(
    "officer.reinstate", OfficerAction, OfficerView, "lift an officer certificate's suspension"
)
REVOKE = operation(
    "officer.revoke", OfficerAction, OfficerView, "revoke an officer's certificate (final)"
)
RENEW = operation(
    "officer.renew",
    OfficerId,
    OfficerView,
    "a fresh certificate for the same token key, before the old one ends (audited)",
)
CERTIFICATE = operation(
    "officer.certificate",
    OfficerId,
    OfficerView,
    "an officer and their certificate in force (PEM)",
    mutating=False,
    officer=False,
)
OFFICER_CA = operation(
    "officer.ca",
    Empty,
    OfficerCaView,
    "the officer CA's certificate (PEM), to check officer certificates offline",
    mutating=False,
    officer=False,
)
LIST = operation(
    "officer.list",
    Empty,
    Officers,
    "the registered officers, their roles and certificates, by id",
    mutating=False,
    officer=False,
)
