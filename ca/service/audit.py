"""Use cases of the audit area: verify the log against evidence from outside the database, sign
a checkpoint now, export a verifiable bundle (see ca/service/__init__.py). Verifying an exported
bundle is the auditor's own business, done without the service (``ca.log.audit.verify_bundle``)."""

from __future__ import annotations

import contextlib
import json

from sqlmodel import Session

from ca.core.errors import BadInput
from ca.log import audit
from ca.ops import audit as ops
from ca.ops.base import Empty
from ca.policy.authorization import require
from ca.policy.in_force import load_policy
from ca.service.context import Context, NotSignedIn
from ca.service.registry import handles
from ca.store.db import transaction
from hsm.sm.sm2 import SM2PublicKey
from policies.rules import Action, Subject


def trust_anchors(
    ctx: Context, audit_files: list[ops.CertificateFile], root_files: list[ops.CertificateFile]
) -> tuple[list[SM2PublicKey], list[str]]:
    """The audit public keys to trust and where each came from: the certificates the caller
    gave, else the anchor files the ceremonies left in the state folder. Never the database."""
    from ca.log.anchors import Anchor, anchor_files, read_anchor, verifiers_from

    if audit_files:
        anchors = [Anchor(f.source, f.data) for f in audit_files]
        roots = [Anchor(f.source, f.data) for f in root_files]
    else:
        audit_paths, root_paths = anchor_files(ctx.runtime.state)
        if not audit_paths:
            raise BadInput(
                "no audit certificate: give the root ceremony's audit-<serial>.pem "
                f"(there is none in {ctx.runtime.state / 'ceremonies'})"
            )
        anchors = [read_anchor(p) for p in audit_paths]
        roots = [read_anchor(p) for p in root_paths]
    verifiers = verifiers_from(anchors, roots, load_policy().log.origin)
    described = [
        f"{anchor.name}: audit key {v.public_key.compressed.hex()[:16]}…"
        for anchor, v in zip(anchors, verifiers, strict=False)
    ]
    return [v.public_key for v in verifiers], described


@handles(ops.VERIFY)
def verify(ctx: Context, req: ops.VerifyRequest) -> ops.VerifyResult:
    """The log walked here, against checkpoints from outside the database: those the caller
    sends, the service's checkpoint folder, and the database's own (trusted only if signed)."""
    if ctx.officer is not None:
        require(ctx.officer, Action.AUDIT_VERIFY, Subject(), ctx.now())
    elif not ctx.runtime.embedded:
        raise NotSignedIn("audit.verify needs a signed-in officer: sign in first (jtca login)")
    from ca.log.checkpoint_folder import CheckpointFolder

    keys, anchors = trust_anchors(ctx, req.audit_certificates, req.root_certificates)
    sources = [(c.source, c.note.encode("utf-8")) for c in req.checkpoints]
    sources += [(str(p), data) for p, data in CheckpointFolder(ctx.runtime.log_folder).read_all()]
    with Session(ctx.engine) as session:
        report = audit.verify(
            session,
            checkpoints=sources,
            audit_keys=keys,
            progress=lambda done, total: ctx.progress("verifying the audit log", done, total),
        )
    from ca.service.logkeys import halted

    return ops.VerifyResult.of(
        report,
        anchors=anchors,
        witness_quorum=load_policy().log.witness_quorum,
        halted=halted(ctx.runtime),
    )


@handles(ops.CHECKPOINT)
def checkpoint(ctx: Context, _request: Empty) -> ops.CheckpointResult:
    """A checkpoint now, asked for by a signed-in officer the policy allows ``audit.checkpoint``
    (the publisher's role): the audit key in the service's log token signs it."""
    from ca.service.logkeys import checkpoint_now

    require(ctx.actor(), Action.AUDIT_CHECKPOINT, Subject(), ctx.now())
    made = checkpoint_now(ctx.runtime, ctx.now(), force=True)
    if made is None:
        raise BadInput("the log is empty: nothing to checkpoint")
    return ops.CheckpointResult(size=made.size, root=made.root, key=made.key_uri, note=made.note)


@handles(ops.RESUME)
def resume(ctx: Context, req: ops.ResumeRequest) -> ops.ResumeResult:
    """The way out of a halt, for a signed-in officer the policy allows ``audit.resume`` (a
    ministry root officer) who investigated it: the unsealed entries up to ``through`` stay in
    the log, a sealed ``log.resume`` entry records who let them through and why, and the next
    checkpoint covers them. A tree that no longer extends the checkpoints outside the database
    (rolled back, rewritten) cannot be resumed: its checkpoints would contradict the witnessed
    ones."""
    from ca.service import logkeys

    officer = ctx.actor()
    require(officer, Action.AUDIT_RESUME, Subject(), ctx.now())
    with transaction(ctx.engine) as session:
        record = logkeys.audit_key_record(session)
        if record is None:
            raise BadInput("no audit key: run the root ceremony first")
        public = logkeys.audit_public_key(record)
        size = audit.tree_size(session)
        if req.through > size:
            raise BadInput(f"through {req.through}: the log holds {size} entries")
        _, findings = logkeys.pending_findings(session, ctx.runtime, public)
        other = [f for f in findings if f.problem != "unsealed"]
        if other:
            raise BadInput(
                f"the log cannot be resumed: {other[0].message} (only entries without a valid "
                "seal can be let through; investigate with jtca audit verify)"
            )
        entries = [f.seq for f in findings if f.seq <= req.through]
        if not entries:
            raise BadInput(
                f"through {req.through}: no entry up to it lacks a valid seal; nothing to resume"
            )
        if audit.current_sealer(audit.database_of(session)) is None:
            raise BadInput("the service is not sealing entries (see its log): cannot resume")
        audit.append(
            session,
            actor=officer.id,
            action=audit.RESUME_ACTION,
            subject=f"entries up to {req.through}",
            details={
                "through": req.through,
                "reason": req.reason,
                "unsealed": entries,
                "halted": logkeys.halted(ctx.runtime),
            },
            at=ctx.now(),
        )
    made = None
    with contextlib.suppress(logkeys.LogHalted):  # later entries still need a look; it stands
        made = logkeys.checkpoint_now(ctx.runtime, ctx.now(), force=True)
    return ops.ResumeResult(
        through=req.through, entries=entries, checkpoint=made.size if made is not None else None
    )


@handles(ops.EXPORT)
def export(ctx: Context, _request: Empty) -> ops.AuditBundle:
    """The whole log, for a signed-in officer the policy allows ``audit.export`` (the
    auditor's role): every officer, key and province is named in it."""
    require(ctx.actor(), Action.AUDIT_EXPORT, Subject(), ctx.now())
    with Session(ctx.engine) as session:
        bundle = audit.export_bundle(session)
    return ops.AuditBundle(bundle=bundle, events=len(json.loads(bundle)["entries"]))
