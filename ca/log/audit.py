"""The audit log: a Merkle log (RFC 9162 §2.1 with SM3) of every audit event and of every
certificate, list and key package the authority makes (issue #13).

Every state change calls ``append`` inside its own transaction, so the change and its entry
commit together or not at all. The single-row head is locked while appending, so the log has one
writer at a time (a row lock on PostgreSQL; SQLite's write transaction begins immediately). Each
entry's leaf hash is stored with it, and every perfect subtree it completes goes to ``log_node``:
any root, inclusion proof or consistency proof then costs O(log n) reads (``DbTree``).

``checkpoint`` signs the tree head with the audit key as a C2SP signed note; the service writes it
to the checkpoint folder outside the database (``ca.log.checkpoint_folder``), where verification and
witnesses find it. Entries newer than the last checkpoint are sealed: the service signs each leaf
hash with a per-process session key that the audit key registered in a ``log.seal-key`` entry,
so a row added behind the service's back is found before the next checkpoint could cover it.
Verification is pure (``ca.log.verify``) and trusts only audit keys from certificate files.
Retention (第二十九条: at least 10 years): jtca has no way to delete an entry.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, func, select

from ca.core.errors import BadInput, CodecError, JtcaError
from ca.log.entry import LogEntry, canonical
from ca.log.merkle import (
    ProofError,
    completed_nodes,
    root_hash,
)
from ca.log.merkle import (
    consistency_proof as _consistency_proof,
)
from ca.log.merkle import (
    inclusion_proof as _inclusion_proof,
)
from ca.log.note import (
    COSIGNATURE_TYPE,
    Checkpoint,
    NoteSignature,
    SignedNote,
    Verifier,
    check_cosignature,
    sign_checkpoint,
)
from ca.log.verify import (
    BUNDLE_FORMAT,
    SEAL_KEY_ACTION,
    Finding,
    Report,
    registered_seal_key,
    seal_key_entry_fields,
    seal_key_statement,
    seal_message,
    seal_problem,
    verify_log,
)
from ca.store.models import (
    AuditEvent,
    AuditHead,
    KeyRecord,
    LogCheckpoint,
    LogCosignature,
    LogNode,
    LogWitness,
)
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey, raw_to_der

RESUME_ACTION: Final = "log.resume"

__all__ = [
    "BUNDLE_FORMAT",
    "AuditError",
    "DbTree",
    "Finding",
    "Report",
    "Sealer",
    "SessionSealer",
    "active_audit_key",
    "add_cosignature",
    "append",
    "canonical",
    "checkpoint",
    "checkpoint_at",
    "consistency_proof",
    "cosigned_note",
    "current_sealer",
    "database_of",
    "entry",
    "export_bundle",
    "inclusion_proof",
    "install_sealer",
    "install_sealer_factory",
    "latest_checkpoint",
    "register_seal_key",
    "resumed_through",
    "root",
    "rows",
    "tree_size",
    "unsealed_since",
    "verify",
]


class AuditError(JtcaError):
    title = "Audit log"
    exit_code = 8


# -- sealing -----------------------------------------------------------------------------------
class Sealer(Protocol):
    """Signs the leaf hash of every entry this process appends (see the module's docstring)."""

    @property
    def key_seq(self) -> int: ...

    def seal(self, leaf: bytes) -> bytes:
        """Raw r || s over ``seal_message(leaf)``."""
        ...


@dataclass(frozen=True)
class SessionSealer:
    """A sealer over a session signer registered in entry ``key_seq`` of the log in
    ``database`` (``database_of``; "" seals in any database: tests)."""

    key_seq: int
    signer: Signer
    database: str = ""

    def seal(self, leaf: bytes) -> bytes:
        return self.signer.sign(seal_message(leaf))


_sealers: dict[str, Sealer] = {}  # database (``database_of``) -> its sealer in this process
_sealer_lock = threading.Lock()


def database_of(bind: Session | Engine) -> str:
    """The database a session or engine writes to, as sealers are keyed (password hidden)."""
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    url = engine.engine.url if isinstance(engine, Connection) else engine.url
    return url.render_as_string(hide_password=True)


def install_sealer(sealer: Sealer | None, *, database: str | None = None) -> None:
    """Seal this process's entries in ``database`` (default: the sealer's own, else any) with
    ``sealer`` from now on. ``None`` stops sealing in ``database``, or everywhere when no
    database is named. One process may serve several databases (tests): each has its own."""
    with _sealer_lock:
        if sealer is None:
            if database is None:
                _sealers.clear()
            else:
                _sealers.pop(database, None)
            return
        key = database if database is not None else str(getattr(sealer, "database", ""))
        _sealers[key] = sealer


def current_sealer(database: str | None = None) -> Sealer | None:
    """The sealer of ``database`` (exactly), or with none named, the only one installed."""
    with _sealer_lock:
        if database is not None:
            return _sealers.get(database)
        if len(_sealers) == 1:
            return next(iter(_sealers.values()))
        return _sealers.get("")


def _sealer_for(session: Session) -> Sealer | None:
    with _sealer_lock:
        if not _sealers:
            return None
        return _sealers.get(database_of(session)) or _sealers.get("")


SealerFactory = Callable[[Session], "Sealer | None"]
_factories: dict[str, SealerFactory] = {}  # database -> how this process starts sealing late
_making = threading.local()


def install_sealer_factory(database: str, factory: SealerFactory | None) -> None:
    """How this process starts sealing ``database`` at its first append that finds no sealer
    (the root ceremony ran in another process after this one started): ``factory(session)``
    registers a seal key in the caller's transaction and installs its sealer, or returns None."""
    with _sealer_lock:
        if factory is None:
            _factories.pop(database, None)
        else:
            _factories[database] = factory


def clear_sealer_factories() -> None:
    with _sealer_lock:
        _factories.clear()


def _late_sealer(session: Session) -> Sealer | None:
    if getattr(_making, "active", False):  # the factory's own registration entry
        return None
    with _sealer_lock:
        factory = _factories.get(database_of(session))
    if factory is None:
        return None
    _making.active = True
    try:
        return factory(session)
    finally:
        _making.active = False


# -- appending ---------------------------------------------------------------------------------
_policy_named: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def name_policy(engine: Engine, policy_sm3: str) -> None:
    """From now on every event appended on ``engine`` (but the log's own ``log.*`` entries)
    names ``policy_sm3``, the SM3 of the policy in force its decision was taken under (issue
    #16, point 4; set by the service at start and when an approved change takes effect)."""
    _policy_named[engine] = policy_sm3


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    at: int,
    kind: str = "event",
    object_sm3: str | None = None,
) -> AuditEvent:
    """Add an entry to the log in the caller's transaction (it commits with the change)."""
    if not actor or not action:
        raise AuditError("an audit entry needs an actor and an action")
    sealer = _sealer_for(session) or _late_sealer(session)
    head = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    seq = head.seq + 1
    bind = session.get_bind()
    named = _policy_named.get(bind) if isinstance(bind, Engine) else None
    if named and kind == "event" and not action.startswith("log.") and details is not None:
        details = {**details, "policy_sm3": details.get("policy_sm3", named)}
    elif named and kind == "event" and not action.startswith("log."):
        details = {"policy_sm3": named}
    text = canonical(details or {})
    try:
        leaf = LogEntry(seq, at, kind, actor, action, subject, object_sm3, text).leaf_hash()
    except CodecError as exc:
        raise AuditError(f"cannot log {action} on {subject!r}: {exc}") from None
    event = AuditEvent(
        seq=seq,
        at=at,
        kind=kind,
        actor=actor,
        action=action,
        subject=subject,
        object_sm3=object_sm3,
        details=text,
        leaf_hash=leaf.hex(),
        seal=sealer.seal(leaf).hex() if sealer is not None else None,
        seal_key=sealer.key_seq if sealer is not None else None,
    )
    tree = DbTree(session, seq - 1)
    for level, index, digest in completed_nodes(seq - 1, leaf, tree.perfect):
        session.add(LogNode(level=level, idx=index, hash=digest.hex()))
    head.seq = seq
    session.add(event)
    session.add(head)
    session.flush()
    return event


def register_seal_key(
    session: Session, audit_signer: Signer, public_key: SM2PublicKey, at: int
) -> int:
    """Register a session's seal key: a ``log.seal-key`` entry whose every field the audit key's
    DER signature over ``seal_key_statement`` binds; returns the entry's seq (the sealer's
    ``key_seq``)."""
    head = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    seq = head.seq + 1  # the head stays locked: append gives this entry exactly this seq
    public_hex = public_key.compressed.hex()
    signature = raw_to_der(audit_signer.sign(seal_key_statement(seq, at, public_hex))).hex()
    actor, subject, details = seal_key_entry_fields(public_hex, signature)
    outer = getattr(_making, "active", False)
    _making.active = True  # a registration is its own proof: it never starts late sealing
    try:
        event = append(
            session,
            actor=actor,
            action=SEAL_KEY_ACTION,
            subject=subject,
            details=json.loads(details),
            at=at,
        )
    finally:
        _making.active = outer
    if event.seq != seq:
        raise AuditError(f"the seal key's entry became {event.seq}, not {seq}")
    return event.seq


# -- reading the tree --------------------------------------------------------------------------
class DbTree:
    """The database's tree as a ``SubtreeSource``: leaves from ``audit_event.leaf_hash``, the
    perfect subtrees above them from ``log_node``."""

    def __init__(self, session: Session, size: int | None = None) -> None:
        self._session = session
        self._size = tree_size(session) if size is None else size

    @property
    def size(self) -> int:
        return self._size

    def perfect(self, level: int, index: int) -> bytes:
        if level == 0:
            found = self._session.exec(
                select(AuditEvent.leaf_hash).where(AuditEvent.seq == index + 1)
            ).first()
        else:
            found = self._session.exec(
                select(LogNode.hash).where(LogNode.level == level).where(LogNode.idx == index)
            ).first()
        if found is None:
            what = f"entry {index + 1}" if level == 0 else f"subtree (level {level}, {index})"
            raise ProofError(f"the log's {what} is missing from the database")
        return bytes.fromhex(found)


def tree_size(session: Session) -> int:
    return session.exec(select(AuditHead.seq).where(AuditHead.id == 1)).one()


def root(session: Session, size: int | None = None) -> bytes:
    return root_hash(DbTree(session), size)


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    return _inclusion_proof(DbTree(session), index, size)


def consistency_proof(session: Session, first: int, second: int) -> list[bytes]:
    return _consistency_proof(DbTree(session), first, second)


def _as_entry(row: AuditEvent) -> LogEntry:
    return LogEntry(
        row.seq, row.at, row.kind, row.actor, row.action, row.subject, row.object_sm3, row.details
    )


def entry(session: Session, seq: int) -> LogEntry:
    row = session.get(AuditEvent, seq)
    if row is None:
        raise BadInput(f"no log entry {seq}")
    return _as_entry(row)


# -- checkpoints and cosignatures --------------------------------------------------------------
def checkpoint(session: Session, signer: Signer, *, at: int, origin: str) -> LogCheckpoint:
    """Sign the current tree head with the audit key (a C2SP checkpoint, key name = origin)."""
    size = tree_size(session)
    head = root(session, size)
    note = sign_checkpoint(
        Checkpoint(origin, size, head),
        origin,
        signer.public_key,
        lambda message: raw_to_der(signer.sign(message)),
    )
    record = LogCheckpoint(
        size=size,
        root=head.hex(),
        at=at,
        note=note.text(),
        key_uri=signer.key_uri,
        signing_path=signer.path.value,
    )
    session.add(record)
    session.flush()
    return record


def latest_checkpoint(session: Session) -> LogCheckpoint | None:
    return session.exec(
        select(LogCheckpoint).order_by(col(LogCheckpoint.size).desc(), col(LogCheckpoint.id).desc())
    ).first()


def checkpoint_at(session: Session, size: int) -> LogCheckpoint | None:
    return session.exec(
        select(LogCheckpoint)
        .where(LogCheckpoint.size == size)
        .order_by(col(LogCheckpoint.id).desc())
    ).first()


def witness_verifier(witness: LogWitness) -> Verifier:
    return Verifier(
        witness.name, SM2PublicKey.from_bytes(bytes.fromhex(witness.public_key)), COSIGNATURE_TYPE
    )


def add_cosignature(
    session: Session,
    record: LogCheckpoint,
    witness: LogWitness,
    signature: NoteSignature,
    at: int,
) -> LogCosignature:
    """Store a witness's cosignature of ``record`` once it verifies (one per witness and
    checkpoint: a second one is answered with the first). Cosignatures are not log entries: an
    entry per cosignature would grow the log, and the next checkpoint, for ever."""
    if witness.state != "active":
        raise AuditError(f"witness {witness.name} was removed; its cosignatures no longer count")
    note = SignedNote.parse(record.note)
    timestamp = check_cosignature(note.body, signature, witness_verifier(witness))
    if record.id is None or witness.id is None:
        raise AuditError("the checkpoint or the witness is not stored yet")
    existing = session.exec(
        select(LogCosignature)
        .where(LogCosignature.checkpoint_id == record.id)
        .where(LogCosignature.witness_id == witness.id)
    ).first()
    if existing is not None:
        return existing
    stored = LogCosignature(
        checkpoint_id=record.id,
        witness_id=witness.id,
        timestamp=timestamp,
        line=signature.line().rstrip("\n"),
        received_at=at,
    )
    session.add(stored)
    session.flush()
    return stored


def cosignatures(session: Session, record: LogCheckpoint) -> list[LogCosignature]:
    return list(
        session.exec(
            select(LogCosignature)
            .where(LogCosignature.checkpoint_id == record.id)
            .order_by(col(LogCosignature.id))
        )
    )


def cosigned_note(session: Session, record: LogCheckpoint) -> str:
    """The checkpoint with every stored cosignature line after the log's own signature."""
    text = record.note
    for stored in cosignatures(session, record):
        text += stored.line + "\n"
    return text


# -- verification ------------------------------------------------------------------------------
def rows(session: Session) -> Iterator[dict[str, Any]]:
    for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        yield {
            "seq": e.seq,
            "at": e.at,
            "kind": e.kind,
            "actor": e.actor,
            "action": e.action,
            "subject": e.subject,
            "object_sm3": e.object_sm3,
            "details": e.details,
            "leaf_hash": e.leaf_hash,
            "seal": e.seal,
            "seal_key": e.seal_key,
        }


def stored_nodes(session: Session) -> Iterator[tuple[int, int, str]]:
    for n in session.exec(select(LogNode).order_by(col(LogNode.level), col(LogNode.idx))):
        yield n.level, n.idx, n.hash


def verify(
    session: Session,
    *,
    checkpoints: Sequence[tuple[str, bytes]],
    audit_keys: Sequence[SM2PublicKey],
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """The database's log against ``checkpoints`` (from outside it; the database's own notes are
    added as one more source, trusted only if signed by ``audit_keys``). ``progress(done,
    total)`` is told every ``PROGRESS_EVERY`` entries walked."""
    own = [
        (f"database checkpoint {c.id} (size {c.size})", cosigned_note(session, c).encode())
        for c in session.exec(select(LogCheckpoint).order_by(col(LogCheckpoint.id)))
    ]
    witnesses = [
        witness_verifier(w)
        for w in session.exec(select(LogWitness).where(LogWitness.state == "active"))
    ]
    walked: Iterable[dict[str, Any]] = rows(session)
    if progress is not None:
        total = session.exec(select(func.count()).select_from(AuditEvent)).one()
        walked = _told(walked, total, progress)
    return verify_log(
        walked,
        checkpoints=[*checkpoints, *own],
        audit_keys=audit_keys,
        nodes=stored_nodes(session),
        witnesses=witnesses,
        head=tree_size(session),
    )


PROGRESS_EVERY: Final = 500


def _told(
    items: Iterable[dict[str, Any]], total: int, progress: Callable[[int, int], None]
) -> Iterator[dict[str, Any]]:
    progress(0, total)
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        if done % PROGRESS_EVERY == 0:
            progress(done, max(total, done))
    progress(done, max(total, done))


def _seal_keys(session: Session, audit_key: SM2PublicKey) -> dict[int, SM2PublicKey]:
    """The seal keys the audit key registered, by the seq of their registration."""
    seal_keys: dict[int, SM2PublicKey] = {}
    for e in session.exec(select(AuditEvent).where(AuditEvent.action == SEAL_KEY_ACTION)):
        key = registered_seal_key(_as_entry(e), [audit_key])
        if key is not None and all(k.compressed != key.compressed for k in seal_keys.values()):
            seal_keys[e.seq] = key  # a registration replayed in a later row is none
    return seal_keys


def unsealed_since(session: Session, size: int, audit_key: SM2PublicKey) -> list[Finding]:
    """Entries after ``size`` whose seal does not verify (what a checkpointer must never sign),
    given the audit key the service itself holds."""
    seal_keys = _seal_keys(session, audit_key)
    findings: list[Finding] = []
    for e in session.exec(
        select(AuditEvent).where(AuditEvent.seq > size).order_by(col(AuditEvent.seq))
    ):
        try:
            leaf = _as_entry(e).leaf_hash()
        except CodecError as exc:
            findings.append(Finding(e.seq, "edited", f"entry {e.seq} cannot be encoded: {exc}"))
            continue
        if leaf.hex() != e.leaf_hash:
            findings.append(Finding(e.seq, "edited", f"entry {e.seq} does not give its leaf hash"))
            continue
        problem = seal_problem(
            {"seq": e.seq, "seal": e.seal, "seal_key": e.seal_key}, leaf, seal_keys
        )
        if problem and e.seq not in seal_keys:  # a registration the audit key signed
            findings.append(Finding(e.seq, "unsealed", f"entry {e.seq} {problem}"))
    return findings


def resumed_through(session: Session, audit_key: SM2PublicKey) -> int:
    """The highest entry an officer let checkpoints cover after a halt: the ``through`` of the
    ``log.resume`` entries that carry a valid seal (a resume forged in the database has none
    and lets nothing through); 0 when there is none."""
    seal_keys = _seal_keys(session, audit_key)
    through = 0
    for e in session.exec(select(AuditEvent).where(AuditEvent.action == RESUME_ACTION)):
        try:
            leaf = _as_entry(e).leaf_hash()
            named = int(json.loads(e.details)["through"])
        except (CodecError, ValueError, KeyError, TypeError):
            continue
        if leaf.hex() != e.leaf_hash or named >= e.seq:
            continue
        if seal_problem({"seq": e.seq, "seal": e.seal, "seal_key": e.seal_key}, leaf, seal_keys):
            continue
        through = max(through, named)
    return through


def export_bundle(session: Session) -> bytes:
    """Every entry, stored subtree and database checkpoint in one JSON file that an auditor
    verifies with no service (``jtca audit verify --bundle``, ``ca.log.verify``)."""
    bundle = {
        "format": BUNDLE_FORMAT,
        "size": tree_size(session),
        "entries": list(rows(session)),
        "nodes": [[level, idx, digest] for level, idx, digest in stored_nodes(session)],
        "checkpoints": [
            cosigned_note(session, c)
            for c in session.exec(select(LogCheckpoint).order_by(col(LogCheckpoint.id)))
        ],
        "witnesses": [
            {"name": w.name, "public_key": w.public_key, "state": w.state}
            for w in session.exec(select(LogWitness).order_by(col(LogWitness.id)))
        ],
    }
    return json.dumps(bundle, ensure_ascii=False, indent=1).encode("utf-8")


def active_audit_key(session: Session) -> KeyRecord:
    """The audit key's record (made by the root ceremony); refused when there is none yet."""
    record = session.exec(
        select(KeyRecord).where(KeyRecord.key_class == "audit").where(KeyRecord.state == "active")
    ).first()
    if record is None:
        raise BadInput("no audit key: run the root ceremony first")
    return record
