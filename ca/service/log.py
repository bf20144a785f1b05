"""Use cases of the log area (issue #13; see ca/ops/log.py and docs/witness.md).

The checkpoint and the proofs are public: they reveal only hashes, and witnesses and auditors
must be able to fetch them without an officer's token. A cosignature needs no officer either:
it is checked against the key of the registered witness it names, and only an active witness's
cosignature of a checkpoint the service signed is stored. Registering or removing a witness is
the ministry root officers' (policy action ``log.witness``) and is audited.
"""

from __future__ import annotations

import base64

from sqlmodel import Session, col, select

from ca.core.errors import BadInput, InvalidKey, JtcaError
from ca.log import audit
from ca.log.note import NoteError, NoteSignature, SignedNote
from ca.ops import log as ops
from ca.ops.base import Empty
from ca.policy.authorization import require
from ca.policy.in_force import load_policy
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.db import transaction
from ca.store.models import LogCheckpoint, LogCosignature, LogWitness
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3
from policies.rules import Action, Subject


class NoCheckpoint(JtcaError):
    """The log has no checkpoint (yet), or none of the size asked for."""

    title = "No checkpoint"
    exit_code = 4
    http_status = 404

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProofRequestError(BadInput):
    """A proof asked for with a parameter that cannot be answered; names it and its value."""

    title = "Bad proof request"
    http_status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownWitness(JtcaError):
    """A cosignature by a name that is not an active registered witness."""

    title = "Unknown witness"
    exit_code = 4
    http_status = 404


class CosignatureRefused(JtcaError):
    """A cosignature that is malformed or does not verify with the witness's key."""

    title = "Cosignature refused"
    exit_code = 4
    http_status = 422
    field = "line"


class WitnessRegistry(JtcaError):
    """A witness that cannot be added or removed as asked."""

    title = "Witness registry"
    exit_code = 3
    http_status = 409


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _quorum() -> int:
    return load_policy().log.witness_quorum


# -- checkpoints -------------------------------------------------------------------------------
def _cosigners(session: Session, record: LogCheckpoint) -> list[str]:
    """The active witnesses whose cosignature of ``record`` is stored (removed ones no longer
    count)."""
    names = session.exec(
        select(LogWitness.name)
        .join(LogCosignature, col(LogCosignature.witness_id) == col(LogWitness.id))
        .where(LogCosignature.checkpoint_id == record.id)
        .where(LogWitness.state == "active")
    )
    return sorted(set(names))


@handles(ops.CHECKPOINT_GET)
def checkpoint_get(ctx: Context, _req: Empty) -> ops.CheckpointNote:
    """The newest checkpoint with every stored cosignature line (public)."""
    with Session(ctx.engine) as session:
        record = audit.latest_checkpoint(session)
        if record is None:
            raise NoCheckpoint("the audit log has no signed checkpoint yet")
        cosigners = _cosigners(session, record)
        quorum = _quorum()
        return ops.CheckpointNote(
            size=record.size,
            root=b64(bytes.fromhex(record.root)),
            at=record.at,
            note=audit.cosigned_note(session, record),
            cosigners=cosigners,
            quorum=quorum,
            witnessed=len(cosigners) >= quorum,
            log_size=audit.tree_size(session),
        )


# -- proofs ------------------------------------------------------------------------------------
def _check_size(field: str, value: int, tree: int) -> None:
    if value < 0:
        raise ProofRequestError(field, f"{field}={value}: a tree size is not negative")
    if value > tree:
        raise ProofRequestError(
            field, f"{field}={value}: the log holds {tree} entries, no tree of that size"
        )


@handles(ops.INCLUSION)
def inclusion(ctx: Context, req: ops.InclusionRequest) -> ops.InclusionProof:
    """PATH(index, D[0:size]) for any size up to the log's (not only checkpointed sizes)."""
    with Session(ctx.engine) as session:
        tree = audit.tree_size(session)
        if req.index < 0:
            raise ProofRequestError("index", f"index={req.index}: an index is not negative")
        _check_size("size", req.size, tree)
        if req.index >= req.size:
            raise ProofRequestError(
                "index", f"index={req.index}: not in a tree of size {req.size} (index < size)"
            )
        # a missing node or entry is a ProofError (409): the database lost part of the log
        leaf = audit.entry(session, req.index + 1).leaf_hash()
        proof = audit.inclusion_proof(session, req.index, req.size)
    return ops.InclusionProof(
        index=req.index, size=req.size, leaf_hash=b64(leaf), proof=[b64(p) for p in proof]
    )


@handles(ops.CONSISTENCY)
def consistency(ctx: Context, req: ops.ConsistencyRequest) -> ops.ConsistencyProof:
    """PROOF(from, D[0:to]) for 1 ≤ from ≤ to ≤ the log's size."""
    with Session(ctx.engine) as session:
        tree = audit.tree_size(session)
        if req.first < 1:
            raise ProofRequestError(
                "from", f"from={req.first}: a consistency proof starts from a tree of 1 or more"
            )
        _check_size("from", req.first, tree)
        _check_size("to", req.second, tree)
        if req.first > req.second:
            raise ProofRequestError(
                "from", f"from={req.first}: larger than to={req.second} (from ≤ to)"
            )
        proof = audit.consistency_proof(session, req.first, req.second)
    return ops.ConsistencyProof.model_validate(
        {"from": req.first, "to": req.second, "proof": [b64(p) for p in proof]}
    )


# -- cosignatures ------------------------------------------------------------------------------
def _signature_line(note: SignedNote, line: str) -> NoteSignature:
    """The one signature line a witness sent, parsed as a signed note's line is."""
    text = line.rstrip("\n")
    if not text or "\n" in text:
        raise CosignatureRefused("line: one signature line '— <witness name> <base64>' is expected")
    try:
        parsed = SignedNote.parse(note.body.decode("utf-8") + "\n" + text + "\n")
    except NoteError as exc:
        raise CosignatureRefused(f"line: {exc.message}") from None
    return parsed.signatures[0]


@handles(ops.COSIGN)
def cosign(ctx: Context, req: ops.CosignRequest) -> ops.CosignResult:
    """Store a registered witness's cosignature of the stored checkpoint of ``size`` entries
    (an older checkpoint too) once it verifies with that witness's key.

    The stored cosignature is its own evidence (anyone can verify it with the witness's key)
    and is not a log entry: an entry per cosignature would grow the log, so the checkpoint the
    witnesses just cosigned would at once be replaced by a new one none of them had seen, and a
    checkpoint served would never carry K cosignatures (``ca.log.audit.add_cosignature``)."""
    now = ctx.now()
    with transaction(ctx.engine) as session:
        record = audit.checkpoint_at(session, req.size)
        if record is None:
            raise NoCheckpoint(
                f"size={req.size}: the log signed no checkpoint of that size", field="size"
            )
        note = SignedNote.parse(record.note)
        signature = _signature_line(note, req.line)
        witness = session.exec(select(LogWitness).where(LogWitness.name == signature.name)).first()
        if witness is None or witness.state != "active":
            state = "was removed" if witness is not None else "is not registered"
            raise UnknownWitness(
                f"witness {signature.name!r} {state}: its cosignature does not count "
                "(a ministry root officer registers witnesses: jtca witness register)"
            )
        try:
            stored = audit.add_cosignature(session, record, witness, signature, now)
        except NoteError as exc:
            raise CosignatureRefused(f"witness {witness.name}: {exc.message}") from None
        cosigners = _cosigners(session, record)
        quorum = _quorum()
        return ops.CosignResult(
            size=record.size,
            witness=witness.name,
            timestamp=stored.timestamp,
            cosigners=len(cosigners),
            quorum=quorum,
            witnessed=len(cosigners) >= quorum,
        )


# -- witnesses ---------------------------------------------------------------------------------
def _witness_view(session: Session, witness: LogWitness) -> ops.WitnessView:
    newest = session.exec(
        select(LogCheckpoint.size, LogCosignature.received_at)
        .join(LogCosignature, col(LogCosignature.checkpoint_id) == col(LogCheckpoint.id))
        .where(LogCosignature.witness_id == witness.id)
        .order_by(col(LogCheckpoint.size).desc(), col(LogCosignature.received_at).desc())
    ).first()
    return ops.WitnessView(
        name=witness.name,
        public_key=witness.public_key,
        state=witness.state,
        added_at=witness.added_at,
        added_by=witness.added_by,
        last_size=newest[0] if newest else None,
        last_at=newest[1] if newest else None,
    )


def _public_key(text: str) -> SM2PublicKey:
    try:
        return SM2PublicKey.from_bytes(bytes.fromhex(text.strip()))
    except ValueError:
        raise BadInput(f"public_key: {text[:40]!r} is not hex") from None
    except InvalidKey as exc:
        raise BadInput(f"public_key: not an SM2 point ({exc.message})") from None


@handles(ops.WITNESS_ADD)
def witness_add(ctx: Context, req: ops.WitnessAddRequest) -> ops.WitnessView:
    actor = ctx.actor()
    now = ctx.now()
    require(actor, Action.LOG_WITNESS, Subject(), now)
    problem = ops.witness_name_problem(req.name)
    if problem is not None:
        raise BadInput(f"name: {problem}")
    if req.name == load_policy().log.origin:
        raise BadInput(f"name: {req.name!r} is the log's own key name (policy [log] origin)")
    key = _public_key(req.public_key)
    with transaction(ctx.engine) as session:
        existing = session.exec(select(LogWitness).where(LogWitness.name == req.name)).first()
        if existing is not None:
            raise WitnessRegistry(
                f"witness {req.name!r} is already registered ({existing.state}, by "
                f"{existing.added_by}): a name is never reused, so old cosignatures keep their "
                "meaning; choose a new name"
            )
        for other in session.exec(select(LogWitness).where(LogWitness.state == "active")):
            if other.public_key == key.compressed.hex():
                raise WitnessRegistry(
                    f"the key is already witness {other.name}'s: one key per witness"
                )
        witness = LogWitness(
            name=req.name,
            public_key=key.compressed.hex(),
            state="active",
            added_at=now,
            added_by=actor.id,
        )
        session.add(witness)
        session.flush()
        audit.append(
            session,
            actor=actor.id,
            action="log.witness-add",
            subject=f"witness {req.name}",
            details={
                "public_key": key.compressed.hex(),
                "public_key_sm3": sm3(key.uncompressed).hex(),
                "note": req.note.strip(),
            },
            at=now,
        )
        return _witness_view(session, witness)


@handles(ops.WITNESS_REMOVE)
def witness_remove(ctx: Context, req: ops.WitnessRemoveRequest) -> ops.WitnessView:
    actor = ctx.actor()
    now = ctx.now()
    require(actor, Action.LOG_WITNESS, Subject(), now)
    if not req.reason.strip():
        raise BadInput("reason: say why the witness is removed")
    with transaction(ctx.engine) as session:
        witness = session.exec(select(LogWitness).where(LogWitness.name == req.name)).first()
        if witness is None:
            raise UnknownWitness(f"no witness {req.name!r} is registered")
        if witness.state != "active":
            raise WitnessRegistry(f"witness {req.name!r} is already {witness.state}")
        witness.state = "removed"
        session.add(witness)
        session.flush()
        audit.append(
            session,
            actor=actor.id,
            action="log.witness-remove",
            subject=f"witness {req.name}",
            details={"reason": req.reason.strip()},
            at=now,
        )
        return _witness_view(session, witness)


@handles(ops.WITNESSES)
def witnesses(ctx: Context, _req: Empty) -> ops.Witnesses:
    ctx.actor()
    with Session(ctx.engine) as session:
        rows = session.exec(select(LogWitness).order_by(col(LogWitness.name)))
        return ops.Witnesses(witnesses=[_witness_view(session, w) for w in rows], quorum=_quorum())
