"""Operations of the audit area: the witnessed Merkle log (see ca/ops/base.py, docs/audit.md).

``audit.verify`` checks the database's log against checkpoints found outside the database, with
audit keys from the root ceremony's certificate files: a signed-in officer whose role the policy
grants ``audit.verify`` — or, on the embedded state, whoever can reach its socket (they own the
state folder already). ``audit.export`` (the whole log: it names every officer, key and province)
is the auditor's. ``audit.checkpoint`` signs a checkpoint now (the service also signs one after
every batch of changes by itself). Verifying an exported bundle needs no service at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from ca.log.verify import Report
from ca.ops.base import Empty, Model, operation


class CheckpointFile(Model):
    source: str  # where it was found (a path), named in findings
    note: str  # the signed note, as found


class CertificateFile(Model):
    source: str  # the file's name, named when it is refused
    data: bytes  # PEM or DER


class VerifyRequest(Model):
    """Checkpoints from outside the database (the checkpoint folder, witnesses' copies, files
    given by hand) and the trust anchors: the audit certificate(s) from the root ceremony and,
    optionally, the root certificate(s) they must chain to. With no audit certificate, the
    service uses the anchor files its own ceremonies left in its state folder."""

    checkpoints: list[CheckpointFile] = Field(default_factory=list)
    audit_certificates: list[CertificateFile] = Field(default_factory=list)
    root_certificates: list[CertificateFile] = Field(default_factory=list)


class FindingView(Model):
    seq: int  # the entry concerned (0: the log as a whole)
    problem: str  # see ca/log/verify.py: deleted, edited, rewritten, rolled-back, unsealed…
    message: str


class VerifyResult(Model):
    ok: bool
    events: int  # entries in the log
    checkpoints: int  # validly signed checkpoints found
    newest_checkpoint: int | None = None  # its tree size
    newest_source: str | None = None
    witnessed_by: list[str] = Field(default_factory=list)
    witness_quorum: int = 0
    sealed: int = 0  # entries newer than the newest checkpoint, each sealed by the service
    anchors: list[str] = Field(default_factory=list)  # the audit keys trusted, and from where
    halted: str | None = None  # why the service signs no checkpoint now (see audit.resume)
    findings: list[FindingView]

    @classmethod
    def of(
        cls,
        report: Report,
        *,
        anchors: Sequence[str] = (),
        witness_quorum: int = 0,
        halted: str | None = None,
    ) -> VerifyResult:
        newest = report.newest
        return cls(
            ok=report.ok,
            events=report.entries,
            checkpoints=report.checkpoints,
            newest_checkpoint=newest.checkpoint.size if newest else None,
            newest_source=newest.source if newest else None,
            witnessed_by=list(report.witnesses),
            witness_quorum=witness_quorum,
            sealed=report.sealed,
            anchors=list(anchors),
            halted=halted,
            findings=[
                FindingView(seq=f.seq, problem=f.problem, message=f.message)
                for f in report.findings
            ],
        )


class CheckpointResult(Model):
    size: int
    root: str  # hex
    key: str  # the audit key's PKCS#11 URI
    note: str  # the signed note


class ResumeRequest(Model):
    """After a halt (an entry without a valid seal after the newest checkpoint), the officer who
    investigated it lets checkpoints cover the entries up to ``through``: the finding and the
    reason are recorded in the log, the entries stay, and the next checkpoint covers them."""

    through: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=500)


class ResumeResult(Model):
    through: int
    entries: list[int]  # the unsealed entries let through
    checkpoint: int | None  # the size of the checkpoint signed after it, if one could be


class AuditBundle(Model):
    """Every entry, stored subtree, database checkpoint and witness, as the JSON file
    ``jtca audit verify --bundle`` checks."""

    bundle: bytes
    events: int


VERIFY = operation(
    "audit.verify",
    VerifyRequest,
    VerifyResult,
    "check the database's log against checkpoints from outside it, trusting only the audit "
    "certificate files; name every tampered entry (an officer allowed audit.verify; anyone on "
    "the embedded state)",
    mutating=False,
    officer=False,
)
CHECKPOINT = operation(
    "audit.checkpoint",
    Empty,
    CheckpointResult,
    "sign a checkpoint of the log now with the audit key and write it to the checkpoint folder "
    "(an officer allowed audit.checkpoint; the service also does it after every batch)",
)
RESUME = operation(
    "audit.resume",
    ResumeRequest,
    ResumeResult,
    "after investigating a halted log, record the finding and let checkpoints cover the "
    "unsealed entries up to one named (an officer allowed audit.resume)",
)
EXPORT = operation(
    "audit.export",
    Empty,
    AuditBundle,
    "every entry, subtree hash and checkpoint in one verifiable bundle (an officer allowed "
    "audit.export)",
    mutating=False,
)
