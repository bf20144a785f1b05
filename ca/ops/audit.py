"""Operations of the audit area: the tamper-evident audit log (see ca/ops/base.py).

Every one needs a signed-in officer whose role the policy grants the action of the same name
(``audit.verify``, ``audit.export``, ``audit.checkpoint``): the log names every officer, key
and province, so it is not for anyone who can reach the service.

Verifying an exported bundle needs no service at all (``ca.audit_chain.verify_bundle``): the
command line does it on the auditor's machine and reports it with the same ``VerifyResult``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import Field

from ca.ops.base import Empty, Model, operation


class VerifyRequest(Model):
    """Trusted audit public keys (hex SM2 points, from the ceremony transcript); with none,
    each checkpoint is checked against the key it names."""

    audit_keys: list[str] = Field(default_factory=list)


class FindingView(Model):
    seq: int
    problem: str  # edited | deleted | inserted-or-reordered | bad-checkpoint | truncated | head
    message: str


class _Finding(Protocol):
    seq: int
    problem: str
    message: str


class _Report(Protocol):
    """``ca.audit_chain.VerifyReport``, as far as a result needs it."""

    events: int
    checkpoints: int

    @property
    def findings(self) -> Sequence[_Finding]: ...

    @property
    def ok(self) -> bool: ...


class VerifyResult(Model):
    ok: bool
    events: int
    checkpoints: int
    findings: list[FindingView]

    @classmethod
    def of(cls, report: _Report) -> VerifyResult:
        return cls(
            ok=report.ok,
            events=report.events,
            checkpoints=report.checkpoints,
            findings=[
                FindingView(seq=f.seq, problem=f.problem, message=f.message)
                for f in report.findings
            ],
        )


class CheckpointRequest(Model):
    """The root token's share quorum: the audit key signs in the root token."""

    shares: list[str]


class CheckpointResult(Model):
    seq: int
    hash: str
    key: str  # the audit key's PKCS#11 URI


class AuditBundle(Model):
    """Every event and checkpoint and the head, as the JSON file ``verify_bundle`` checks."""

    bundle: bytes
    events: int


VERIFY = operation(
    "audit.verify",
    VerifyRequest,
    VerifyResult,
    "walk the audit chain and its checkpoints in the database; name every tampered row "
    "(an officer allowed audit.verify)",
    mutating=False,
)
CHECKPOINT = operation(
    "audit.checkpoint",
    CheckpointRequest,
    CheckpointResult,
    "sign the chain's head with the audit key (in the root token, opened by the share quorum), "
    "asked for by an officer allowed audit.checkpoint",
)
EXPORT = operation(
    "audit.export",
    Empty,
    AuditBundle,
    "every event and checkpoint in one verifiable bundle (an officer allowed audit.export)",
    mutating=False,
)
