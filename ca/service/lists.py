"""Use cases of the lists area (see ``ca.ops.lists``): the publisher runs here, against the
service's own publication folder (``ctx.runtime.published``), with the list-signing key opened
from the shares or PIN the request carries; published versions and the root are served from the
database; operators, acknowledgments and emergency publication under dual control call
``ca.publish`` (acks, emergency, publisher), which hold the rules and write the audit events.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final, cast

from sqlmodel import Session, col, select

from ca.core.errors import BadInput, JtcaError
from ca.lists.asn1 import ListType
from ca.log import audit, proofbundle
from ca.officers.dual_control import deciding
from ca.ops import lists as ops
from ca.ops.base import Empty
from ca.policy.authorization import require
from ca.policy.in_force import load_policy
from ca.publish import acks, emergency, publisher
from ca.service.approvals import verify_decision
from ca.service.context import Context
from ca.service.recovery import recover_before, recoverer
from ca.service.registry import handles
from ca.store.intents import IntentRef
from ca.store.models import AuditEvent, ListVersion, LogCheckpoint, LogCosignature, LogWitness
from ca.vault.embedded import open_token
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import PinSource, QuorumPin, Token
from policies.rules import Actor, Subject

if TYPE_CHECKING:
    from ca.service.runtime import Runtime

NAMES: Final[dict[ListType, ops.ListName]] = {ListType(n): n for n in ops.LIST_NAMES}
NO_KEY: Final = (
    "the list-signing key needs the root token's shares (--share-file, M of N) or its PIN "
    "(--pin-source SPEC)"
)


class VersionMissing(JtcaError):
    """No such list version, or its bytes are nowhere the service can read them (HTTP 404)."""

    title = "No such list version"
    exit_code = 3
    http_status = 404


class _GivenPin:
    """The PIN a request carried, handed to the token once."""

    def __init__(self, pin: str) -> None:
        self._pin = pin

    def pin(self) -> str:
        return self._pin

    def describe(self) -> str:
        return "the PIN the request carried"


def _pin_source(unlock: ops.KeyUnlock) -> PinSource:
    if unlock.shares and unlock.pin:
        raise BadInput("give the root token's shares or its PIN, not both")
    if unlock.shares:
        return QuorumPin(list(unlock.shares))
    if unlock.pin:
        return _GivenPin(unlock.pin)
    raise BadInput(NO_KEY)


def _open_token(label: str, source: PinSource) -> Token:
    """The token ``label``; a token made by another process since this one loaded the module
    (a ceremony, another service process on the same tokens) is found after a rescan, and one
    another process is logging in to meanwhile is looked for again
    (``ca.vault.embedded.open_token``:
    the caller holds the runtime's token lock, no session is in use)."""
    return open_token(label, source)


@recoverer(publisher.OPERATION)
def _recover_publish(runtime: Runtime, intent: IntentRef, actor: str, now: int) -> None:
    """A publisher run that died: its recorded version's files written, or nothing of an
    unrecorded one kept, stray temporary files removed (``ca.publish.publisher.recover``)."""
    publisher.recover(runtime.engine, intent, actor=actor, now=now)


def _diff(diff: publisher.Diff | dict[str, object]) -> ops.Diff:
    data = diff.as_dict() if isinstance(diff, publisher.Diff) else diff
    return ops.Diff.model_validate(data)


def _current(row: ListVersion) -> ops.CurrentVersion:
    return ops.CurrentVersion(
        list_type=NAMES[ListType(row.list_type)],
        sequence=row.sequence,
        sha256=row.sha256,
        sm3=row.sm3,
        this_update=row.this_update,
        next_update=row.next_update,
    )


def _file(row: ListVersion, der: bytes) -> ops.ListFile:
    return ops.ListFile(**_current(row).model_dump(), der=der)


# -- publishing -------------------------------------------------------------------------------
def run_publisher(
    ctx: Context,
    actor: Actor,
    unlock: ops.KeyUnlock,
    *,
    types: tuple[ListType, ...] = tuple(ListType),
    dry_run: bool = False,
    validity: int = publisher.DEFAULT_VALIDITY,
    refresh: int = publisher.DEFAULT_REFRESH,
    wait: float = 120.0,
    emergency_id: int | None = None,
) -> ops.PublishResult:
    """One publisher run into the service's folder (``ca.publish.publisher``), then what it
    did, each list's current version and the bytes of every version it published."""
    now = ctx.now()
    settings = publisher.Settings(
        ctx.runtime.published, types, validity=validity, refresh=refresh, lock_timeout=wait
    )
    urgent = emergency_id is not None
    require(actor, publisher.EMERGENCY if urgent else publisher.PUBLISH, Subject(), now)
    if not dry_run:
        for list_type in types:  # what a dead run of these lists left, first (issue #14)
            recover_before(ctx.runtime, publisher.OPERATION, list_type.value, now=now)
    reason = ""
    if emergency_id is not None:
        reason = emergency.approved(ctx.engine, emergency_id).reason
    if dry_run:
        outcomes = publisher.publish(
            ctx.engine, None, settings, actor=actor, now=now, dry_run=True, emergency=urgent
        )
    else:
        source = _pin_source(unlock)
        with ctx.runtime.tokens():  # the service's token calls, one at a time
            from hsm.pkcs11.softhsm2 import use_softhsm

            use_softhsm(ctx.runtime.state / "softhsm2")
            opened: list[Token] = []

            def store_of(label: str) -> KeyStore:
                opened.append(_open_token(label, source))
                return KeyStore(opened[-1])

            try:
                signing = publisher.list_signing(ctx.engine, now, store_of)
                outcomes = publisher.publish(
                    ctx.engine,
                    signing,
                    settings,
                    actor=actor,
                    now=now,
                    emergency=urgent,
                    reason=reason,
                    progress=lambda done, total: ctx.progress(
                        "building, signing and checking the lists", done, total
                    ),
                )
            finally:
                for token in opened:
                    token.close()
        if emergency_id is not None:
            emergency.mark_done(
                ctx.engine,
                emergency_id,
                actor,
                {o.list_type.value: o.sequence or 0 for o in outcomes},
                ctx.now(),
            )
    with Session(ctx.engine) as session:
        current = [
            _current(row) for t in ListType if (row := publisher.latest(session, t)) is not None
        ]
        published = []
        for o in outcomes:
            if o.action == "published" and o.data is not None:
                row = publisher.version(session, o.list_type, o.sequence)
                if row is not None:
                    published.append(_file(row, o.data))
    return ops.PublishResult(
        outcomes=[
            ops.ListOutcome(
                list_type=NAMES[o.list_type],
                action=cast(ops.Action, o.action),
                why=o.why,
                sequence=o.sequence,
                entries=o.entries,
                diff=_diff(o.diff),
                sha256=o.sha256,
            )
            for o in outcomes
        ],
        current=current,
        published=published,
        dry_run=dry_run,
        emergency=emergency_id if not dry_run else None,
    )


@handles(ops.PUBLISH)
def publish(ctx: Context, req: ops.PublishRequest) -> ops.PublishResult:
    return run_publisher(
        ctx,
        ctx.actor(),
        req,
        types=tuple(ListType(t) for t in dict.fromkeys(req.lists)) or tuple(ListType),
        dry_run=req.dry_run,
        validity=req.validity_seconds,
        refresh=req.refresh_seconds,
        wait=req.wait_seconds,
        emergency_id=req.emergency,
    )


@handles(ops.VERSION)
def version(ctx: Context, req: ops.VersionRequest) -> ops.ListFile:
    list_type = ListType(req.list_type)
    with Session(ctx.engine) as session:
        row = publisher.version(session, list_type, req.sequence)
        if row is None:
            which = "nothing" if req.sequence is None else f"no version {req.sequence}"
            raise VersionMissing(f"{which} of the {list_type.value} is published")
        data = publisher.version_bytes(session, ctx.runtime.published, row)
    if data is None:
        raise VersionMissing(
            f"{list_type.value} version {row.sequence} is recorded but its bytes are neither in "
            "the database nor in this service's publication folder (published before this "
            "release by a publisher with another folder)"
        )
    return _file(row, data)


@handles(ops.ROOT)
def root(ctx: Context, _req: Empty) -> ops.RootCertificate:
    from ca.pki.x509 import pem

    with Session(ctx.engine) as session:
        record = publisher.current_certificate(session, "root", ctx.now())
    if record is None:
        raise BadInput("no valid root certificate: run the root ceremony first")
    der = bytes.fromhex(record.der)
    return ops.RootCertificate(der=der, pem=pem(der).decode("ascii"))


# -- log proofs (issue #13) ------------------------------------------------------------------
class NoLogEntry(JtcaError):
    """A published version whose bytes no log entry records (published before lists were
    logged by digest, issue #13): there is nothing to prove (HTTP 404)."""

    title = "No log entry"
    exit_code = 3
    http_status = 404


class NotYetInCheckpoint(JtcaError):
    """The entry is in the log but no signed checkpoint covers it yet (HTTP 409: ask again
    after the next checkpoint)."""

    title = "Not yet in a checkpoint"
    exit_code = 75
    http_status = 409


WITNESS_SCAN: Final = 32  # checkpoints looked at for one that meets the witness quorum


def _active_cosigners(session: Session, record: LogCheckpoint) -> list[str]:
    names = session.exec(
        select(LogWitness.name)
        .join(LogCosignature, col(LogCosignature.witness_id) == col(LogWitness.id))
        .where(LogCosignature.checkpoint_id == record.id)
        .where(LogWitness.state == "active")
    )
    return sorted(set(names))


def _covering(session: Session, seq: int, what: str) -> tuple[LogCheckpoint, list[str]]:
    """The checkpoint a proof of entry ``seq`` leads to: the newest covering it that the policy's
    witness quorum cosigned, else the newest covering it. NotYetInCheckpoint when none does."""
    newest = audit.latest_checkpoint(session)
    if newest is None or newest.size < seq:
        covered = f"covers {newest.size} entries" if newest is not None else "does not exist yet"
        raise NotYetInCheckpoint(
            f"{what} is log entry {seq} and the newest checkpoint {covered}: not yet in a "
            f"checkpoint; the next one is due within {load_policy().log.checkpoint_seconds} "
            "seconds"
        )
    quorum = load_policy().log.witness_quorum
    candidates = session.exec(
        select(LogCheckpoint)
        .where(col(LogCheckpoint.size) >= seq)
        .order_by(col(LogCheckpoint.size).desc(), col(LogCheckpoint.id).desc())
        .limit(WITNESS_SCAN)
    )
    for record in candidates:
        cosigners = _active_cosigners(session, record)
        if len(cosigners) >= quorum:
            return record, cosigners
    return newest, _active_cosigners(session, newest)


def object_proof(session: Session, seq: int, what: str) -> tuple[bytes, LogCheckpoint, list[str]]:
    """The ``jtca-log-proof/1`` file of log entry ``seq`` (``ca.log.proofbundle``), the
    checkpoint it leads to and that checkpoint's active cosigners; ``what`` names the object
    in a refusal."""
    record, cosigners = _covering(session, seq, what)
    entry = audit.entry(session, seq)
    inclusion = audit.inclusion_proof(session, seq - 1, record.size)
    bundle = proofbundle.build(
        entry.encode(), seq - 1, record.size, inclusion, audit.cosigned_note(session, record)
    )
    return bundle, record, cosigners


def list_entry(session: Session, row: ListVersion) -> int:
    """The seq of the log entry that records ``row``'s publication: kind ``list``, its subject
    and the SM3 of its bytes."""
    found = session.exec(
        select(AuditEvent.seq)
        .where(AuditEvent.kind == "list")
        .where(AuditEvent.object_sm3 == row.sm3)
        .where(AuditEvent.subject == f"{row.list_type} {row.sequence}")
        .order_by(col(AuditEvent.seq))
    ).first()
    if found is None:
        raise NoLogEntry(
            f"{row.list_type} version {row.sequence} was published before lists were logged by "
            "their digest (issue #13): no log entry records its bytes, so it has no log proof"
        )
    return found


@handles(ops.PROOF)
def proof(ctx: Context, req: ops.ProofRequest) -> ops.LogProofFile:
    """A published version's log proof, public like the version itself: the entry names the
    publishing officer and the diff, which ``lists.history`` shows anyone already."""
    list_type = ListType(req.list_type)
    with Session(ctx.engine) as session:
        row = publisher.version(session, list_type, req.sequence)
        if row is None:
            raise VersionMissing(f"no version {req.sequence} of the {list_type.value} is published")
        seq = list_entry(session, row)
        what = f"{list_type.value} version {row.sequence}"
        bundle, record, cosigners = object_proof(session, seq, what)
    quorum = load_policy().log.witness_quorum
    return ops.LogProofFile(
        list_type=NAMES[list_type],
        sequence=row.sequence,
        sm3=row.sm3,
        seq=seq,
        size=record.size,
        cosigners=cosigners,
        quorum=quorum,
        witnessed=len(cosigners) >= quorum,
        proof=bundle,
    )


# -- views --------------------------------------------------------------------------------------
@handles(ops.HISTORY)
def history(ctx: Context, req: ops.HistoryRequest) -> ops.History:
    chosen = ListType(req.list_type) if req.list_type else None
    with Session(ctx.engine) as session:
        rows = publisher.history(session, chosen)
    return ops.History(
        versions=[
            ops.HistoryEntry(
                list_type=NAMES[ListType(v.list_type)],
                sequence=v.sequence,
                this_update=v.this_update,
                next_update=v.next_update,
                entries=v.entries,
                sha256=v.sha256,
                sm3=v.sm3,
                file=v.file,
                published_at=v.published_at,
                published_by=v.published_by,
                emergency=v.emergency,
                diff=_diff(json.loads(v.diff)),
            )
            for v in rows
        ]
    )


@handles(ops.FRESHNESS)
def freshness(ctx: Context, _req: Empty) -> ops.FreshnessView:
    now = ctx.now()
    found = []
    with Session(ctx.engine) as session:
        for list_type in ListType:
            row = publisher.latest(session, list_type)
            found.append(
                ops.Freshness(
                    list_type=NAMES[list_type],
                    sequence=row.sequence if row else None,
                    this_update=row.this_update if row else None,
                    next_update=row.next_update if row else None,
                    stale=row is None or now > row.next_update,
                )
            )
    return ops.FreshnessView(now=now, lists=found)


# -- operators and acknowledgments (第十二条) -----------------------------------------------
@handles(ops.OPERATOR_ADD)
def operator_add(ctx: Context, req: ops.OperatorRequest) -> ops.Operator:
    row = acks.register_operator(
        ctx.engine,
        ctx.actor(),
        operator_id=req.operator_id,
        name=req.name,
        province=req.province,
        now=ctx.now(),
    )
    return ops.Operator(
        operator_id=row.operator_id,
        name=row.name,
        province=row.province,
        registered_at=row.registered_at,
        registered_by=row.registered_by,
    )


@handles(ops.ACK)
def ack(ctx: Context, req: ops.AckRequest) -> ops.AckResult:
    result = acks.import_acks(
        ctx.engine,
        ctx.actor(),
        req.text,
        req.kind,
        source=req.source or "(a report)",
        now=ctx.now(),
    )
    return ops.AckResult(
        report=result.report,
        accepted=[ops.AckRow(operator=o, list_type=t, sequence=s) for o, t, s in result.accepted],
        refused=[
            ops.RefusedRow(line=e.line, field=e.field, problem=e.problem) for e in result.refused
        ],
    )


@handles(ops.OVERDUE)
def overdue(ctx: Context, req: ops.OverdueRequest) -> ops.OverdueList:
    with Session(ctx.engine) as session:
        rows = acks.overdue(session, now=ctx.now(), days=req.days)
    return ops.OverdueList(
        days=req.days,
        operators=[
            ops.OverdueOperator(
                operator_id=r.operator_id,
                name=r.name,
                list_type=r.list_type,
                loaded=r.loaded,
                oldest_missing=r.oldest_missing,
                published_at=r.published_at,
                days_since=r.days_since,
            )
            for r in rows
        ],
    )


# -- emergency publication (第三十四条) ------------------------------------------------------
def _carried_out(
    ctx: Context, actor: Actor, unlock: ops.KeyUnlock, request_id: int, required: int
) -> ops.EmergencyOutcome:
    """An approved request published at once: every list, whatever its content."""
    done = run_publisher(ctx, actor, unlock, emergency_id=request_id)
    return ops.EmergencyOutcome(
        request=request_id, state="done", required=required, publication=done
    )


@handles(ops.EMERGENCY)
def request_emergency(ctx: Context, req: ops.EmergencyRequest) -> ops.EmergencyOutcome:
    actor = ctx.actor()
    row = emergency.request(ctx.engine, actor, reason=req.reason, now=ctx.now())
    if row.state == "approved":  # the policy asks no second officer
        return _carried_out(ctx, actor, req, row.id or 0, row.required)
    return ops.EmergencyOutcome(request=row.id or 0, state=row.state, required=row.required)


def _decide(ctx: Context, req: ops.DecideRequest, *, approve: bool) -> ops.EmergencyOutcome:
    """A decision counts only with the approver's token signature over the emergency request
    (``ca.service.approvals.verify_decision``: refused and audited otherwise)."""
    actor = ctx.actor()
    signed = verify_decision(
        ctx,
        subject=f"action {req.request}",  # as ca.publish.emergency names it
        approve=approve,
        at=req.at,
        signature=req.signature,
    )
    with deciding(signed):
        row = emergency.decide(
            ctx.engine, actor, req.request, approve=approve, now=ctx.now(), reason=req.reason
        )
    if row.state == "approved":
        return _carried_out(ctx, actor, req, row.id or 0, row.required)
    return ops.EmergencyOutcome(request=row.id or 0, state=row.state, required=row.required)


@handles(ops.APPROVE)
def approve(ctx: Context, req: ops.DecideRequest) -> ops.EmergencyOutcome:
    return _decide(ctx, req, approve=True)


@handles(ops.REJECT)
def reject(ctx: Context, req: ops.DecideRequest) -> ops.EmergencyOutcome:
    return _decide(ctx, req, approve=False)
