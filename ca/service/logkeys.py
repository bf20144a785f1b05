"""The service's own log keys (issue #13): sealing every entry, signing checkpoints unattended.

The audit key lives in the service's own token ``MOT-LOG`` (its PIN is the service's, like
``MOT-OFFICERS``): the root ceremony makes it there and the root key certifies it
(``ca.ceremony.run``), so the service signs the log's checkpoints without a custodian present.

Sealing. A checkpoint protects the entries it covers; the entries written after it are protected
by a seal: when a process starts, it makes a fresh SM2 key in memory, registers its public key
in the log (a ``log.seal-key`` entry carrying the audit key's signature over it,
``ca.log.audit.register_seal_key``) and from then on every entry it appends carries that key's
signature over its leaf hash (``ca.log.audit.install_sealer``). A row forged or edited in the
database after the last checkpoint has no valid seal: the checkpointer refuses to sign over it
(``LogHalted``), loudly, and keeps refusing, so the forgery is never certified.

Checkpointing. ``checkpoint_now`` signs a checkpoint (C2SP tlog-checkpoint, key name = the
policy's ``[log] origin``) when the tree grew since the latest one, after checking the seals of
the new entries, and writes it to the checkpoint folder outside the database
(``ca.log.checkpoint_folder``). The ``Checkpointer`` thread calls it after every batch of changes,
at most
every ``[log] checkpoint_seconds``. Errors are logged, never raised into the service.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Final

from sqlalchemy import event
from sqlmodel import Session, select

from ca.core.clock import Clock, SystemClock
from ca.core.errors import BadInput, JtcaError
from ca.log import audit
from ca.log.anchors import LOG_TOKEN
from ca.log.note import Checkpoint
from ca.policy.in_force import load_policy
from ca.service.runtime import Runtime
from ca.store.db import transaction
from ca.store.models import KeyRecord, LogCheckpoint
from ca.vault.embedded import EmbeddedVault
from ca.vault.signers import token_signer
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import TokenError, find_module, rescan
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.signer import Signer, SoftwareSigner
from hsm.sm.sm2 import SM2PublicKey

__all__ = [
    "LOG_TOKEN",
    "Checkpointer",
    "LogHalted",
    "LogKeyError",
    "audit_signer",
    "checkpoint_now",
    "halted",
    "seal_in",
    "start_sealing",
    "start_sealing_quietly",
    "stop_sealing",
]

log = logging.getLogger("jtca.log")
TOKEN_WAIT: Final = 5.0  # seconds the checkpointer waits for the tokens before its next turn
HALT_ACTION: Final = "log.halted"


class LogHalted(JtcaError):
    """An entry after the latest checkpoint has no valid seal: no checkpoint is signed over it."""

    title = "Audit log halted"
    exit_code = 8
    http_status = 503


class LogKeyError(JtcaError):
    """The audit key cannot be used by the service (not in its log token, no public key)."""

    title = "Audit key"
    exit_code = 5


# -- the audit key -----------------------------------------------------------------------------
def audit_key_record(session: Session) -> KeyRecord | None:
    """The active audit key's record, or None before the root ceremony."""
    return session.exec(
        select(KeyRecord).where(KeyRecord.key_class == "audit").where(KeyRecord.state == "active")
    ).first()


def audit_public_key(record: KeyRecord) -> SM2PublicKey:
    if not record.public_key:
        raise LogKeyError(f"the audit key {record.uri} has no public key on record")
    return SM2PublicKey.from_bytes(bytes.fromhex(record.public_key))


def audit_signer(store: KeyStore, record: KeyRecord) -> Signer:
    """The audit key's signer in the log token ``store``; refused for a key held elsewhere."""
    uri = Pkcs11Uri.parse(record.uri)
    if uri.token != LOG_TOKEN:
        raise LogKeyError(
            f"the audit key {record.uri} is in token {uri.token!r}, not in the service's log "
            f"token {LOG_TOKEN!r}: the service cannot sign checkpoints with it unattended"
        )
    return token_signer(store, uri, "audit")


# -- sealing -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sealing:
    owner: int  # id() of the runtime that started it
    audit_key: str  # the audit key's compressed public key, hex
    sealer: audit.SessionSealer


_state_lock = threading.RLock()
_sealing: dict[int, _Sealing] = {}  # id(runtime) -> its sealing
_halts_recorded: set[tuple[str, int]] = set()  # (database URL, entry seq) logged as log.halted
_halted: dict[str, str] = {}  # database URL -> the refusal, while the log is halted
_seen: dict[str, int] = {}  # database URL -> the largest log size this process saw committed
_sealing_problems: dict[int, str] = {}  # id(runtime) -> why sealing could not start (logged)


def log_store(vault: EmbeddedVault) -> KeyStore:
    """The service's log token; rescanned once when missing (a root ceremony run by another
    service process made it after this one loaded the PKCS#11 module)."""
    try:
        return vault.store(LOG_TOKEN)
    except TokenError:
        rescan(find_module())
        return vault.store(LOG_TOKEN)


def late_sealing(runtime: Runtime) -> audit.SealerFactory:
    """What ``ca.log.audit.append`` calls when it finds no sealer for ``runtime``'s database: once
    the log has a checkpoint and an audit key (a root ceremony ran, maybe in another process),
    register a seal key in the appender's own transaction and seal from that entry on. If the
    transaction rolls back, the sealer goes with it (its registration never existed)."""

    def factory(session: Session) -> audit.Sealer | None:
        if session.exec(select(LogCheckpoint.id).limit(1)).first() is None:
            return None  # before the root ceremony's checkpoint, which covers these entries
        record = audit_key_record(session)
        if record is None:
            return None
        database = audit.database_of(session)
        try:
            with runtime.tokens(timeout=TOKEN_WAIT) as vault:
                sealer = seal_in(session, audit_signer(log_store(vault), record), int(time.time()))
        except JtcaError as exc:
            _loud(f"jtca: cannot seal the audit log: {exc.title}: {exc.message}")
            return None
        public = audit_public_key(record).compressed.hex()
        with _state_lock:
            _sealing[id(runtime)] = _Sealing(id(runtime), public, sealer)
        committed: list[bool] = []

        def undo(_session: Session) -> None:
            if committed:
                return
            with _state_lock:
                if audit.current_sealer(database) is sealer:
                    audit.install_sealer(None, database=database)
                current = _sealing.get(id(runtime))
                if current is not None and current.sealer is sealer:
                    del _sealing[id(runtime)]

        event.listen(session, "after_commit", lambda _s: committed.append(True), once=True)
        event.listen(session, "after_rollback", undo, once=True)
        log.info("sealing log entries late with seal key entry %d", sealer.key_seq)
        return sealer

    return factory


def seal_in(session: Session, signer: Signer, at: int) -> audit.SessionSealer:
    """A fresh in-process SM2 session key registered under the audit key ``signer`` in the
    caller's transaction, and installed as the process's sealer at once (so an entry appended
    by another transaction after this one commits is sealed). A caller whose transaction fails
    must put the previous sealer back before it rolls back (``ca.log.audit.install_sealer``)."""
    session_key = SoftwareSigner.generate()
    key_seq = audit.register_seal_key(session, signer, session_key.public_key, at)
    database = audit.database_of(session)
    sealer = audit.SessionSealer(key_seq, session_key, database)
    audit.install_sealer(sealer, database=database)
    return sealer


def _ours(runtime: Runtime) -> _Sealing | None:
    current = _sealing.get(id(runtime))
    if (
        current is None
        or audit.current_sealer(audit.database_of(runtime.engine)) is not current.sealer
    ):
        return None
    return current


def adopt_sealer(runtime: Runtime, audit_key: str, sealer: audit.SessionSealer) -> None:
    """Remember that ``sealer`` (installed by a root ceremony in ``runtime``'s service) is this
    process's sealing, so ``start_sealing`` does not register another key."""
    with _state_lock:
        _sealing[id(runtime)] = _Sealing(id(runtime), audit_key, sealer)


def start_sealing(runtime: Runtime, now: int | None = None) -> int | None:
    """Seal every entry this process appends from now on: register a fresh session key under
    the audit key in MOT-LOG (one ``log.seal-key`` entry) and install its sealer. Returns the
    seal key's entry seq, or None when there is no audit key yet (before the root ceremony).
    Idempotent for a runtime: a second call registers nothing."""
    at = int(time.time()) if now is None else now
    with _state_lock:
        current = _ours(runtime)
        if current is not None:
            return current.sealer.key_seq
        with Session(runtime.engine) as session:  # no write lock while there is no audit key
            if audit_key_record(session) is None:
                return None
        database = audit.database_of(runtime.engine)
        previous = audit.current_sealer(database)
        with transaction(runtime.engine) as session:
            record = audit_key_record(session)
            if record is None:
                return None
            public = audit_public_key(record).compressed.hex()
            try:
                with runtime.tokens() as vault:
                    signer = audit_signer(log_store(vault), record)
                    sealer = seal_in(session, signer, at)
                session.flush()
            except BaseException:
                audit.install_sealer(previous, database=database)  # before the rollback
                raise
        _sealing[id(runtime)] = _Sealing(id(runtime), public, sealer)
        log.info("sealing log entries with seal key %s (entry %d)", public[:16], sealer.key_seq)
        return sealer.key_seq


def start_sealing_quietly(runtime: Runtime, now: int | None = None) -> int | None:
    """``start_sealing``, a failure logged once (the service serves on; its checkpointer tries
    again, and refuses to sign over entries that carry no seal). From now on an append that
    finds no sealer starts sealing itself (``late_sealing``)."""
    audit.install_sealer_factory(audit.database_of(runtime.engine), late_sealing(runtime))
    try:
        key_seq = start_sealing(runtime, now)
    except JtcaError as exc:
        problem = f"{exc.title}: {exc.message}"
    except Exception as exc:  # a service must not die of its log keeper
        problem = f"{type(exc).__name__}: {exc}"
    else:
        _sealing_problems.pop(id(runtime), None)
        return key_seq
    if _sealing_problems.get(id(runtime)) != problem:
        _sealing_problems[id(runtime)] = problem
        _loud(f"jtca: cannot seal the audit log: {problem}")
    return None


def stop_sealing(runtime: Runtime | None = None) -> None:
    """Entries are no longer sealed by this process (by ``runtime``'s sealing only, if given)."""
    with _state_lock:
        if runtime is None:
            _sealing.clear()
            audit.install_sealer(None)
            audit.clear_sealer_factories()
            return
        audit.install_sealer_factory(audit.database_of(runtime.engine), None)
        current = _sealing.pop(id(runtime), None)
        if current is None:
            return
        database = audit.database_of(runtime.engine)
        if audit.current_sealer(database) is current.sealer:
            audit.install_sealer(None, database=database)


# -- checkpoints -------------------------------------------------------------------------------
def halted(runtime: Runtime) -> str | None:
    """Why the checkpointer refuses to sign for ``runtime``'s log, or None."""
    return _halted.get(runtime.url)


def _loud(message: str) -> None:
    """An error on stderr: through ``logging`` (``jtca serve`` configures it; without a
    handler Python's last resort writes errors to stderr)."""
    log.error("%s", message)


def _halt(runtime: Runtime, size: int, findings: list[audit.Finding], now: int) -> LogHalted:
    first = findings[0]
    more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
    if first.problem in ("unsealed", "edited"):
        message = (
            f"entry {first.seq} of the audit log has no valid seal ({first.message}){more}, "
            f"after the checkpoint of {size} entries: no checkpoint is signed over it. The "
            "database was changed outside jtca, or by a process that did not seal; check it "
            "(jtca audit verify)"
        )
    else:
        message = (
            f"{first.message}{more}: no checkpoint is signed over this log. The database was "
            "changed outside jtca; check it (jtca audit verify)"
        )
    _halted[runtime.url] = message
    key = (runtime.url, first.seq)
    if key not in _halts_recorded:
        _halts_recorded.add(key)
        _loud(f"jtca: AUDIT LOG HALTED: {message}")
        try:
            with transaction(runtime.engine) as session:
                audit.append(
                    session,
                    actor="jtca",
                    action=HALT_ACTION,
                    subject=f"entry {first.seq}",
                    details={
                        "checkpoint_size": size,
                        "findings": [{"seq": f.seq, "problem": f.problem} for f in findings[:20]],
                    },
                    at=now,
                )
        except Exception as exc:  # the refusal stands whether or not it could be logged
            log.error("could not record the halt in the audit log: %s", exc)
    return LogHalted(message)


def _folder_newest(runtime: Runtime, public: SM2PublicKey) -> Checkpoint | None:
    """The newest checkpoint in the folder outside the database that the audit key signed (a
    file that does not verify is reported, and not trusted)."""
    from ca.log.checkpoint_folder import CheckpointFolder
    from ca.log.verify import Report, read_checkpoints

    report = Report()
    files = [(str(path), data) for path, data in CheckpointFolder(runtime.log_folder).read_all()]
    found = read_checkpoints(files, [public], report)
    for finding in report.findings:
        if finding.problem == "bad-checkpoint":
            log.warning("checkpoint folder: %s", finding.message)
    return found[-1].checkpoint if found else None


def _against_outside(
    session: Session, runtime: Runtime, public: SM2PublicKey, size: int
) -> tuple[int, list[audit.Finding]]:
    """The log checked against what lives outside its database before anything is signed:
    the newest checkpoint in the folder (the tree must extend it) and the largest size this
    process has seen committed (a log never shrinks). ``(its size, findings)``."""
    findings: list[audit.Finding] = []
    seen = _seen.get(runtime.url, 0)
    if size < seen:
        findings.append(
            audit.Finding(
                size + 1,
                "rolled-back",
                f"the log holds {size} entries, this service saw {seen}: entries "
                f"{size + 1}–{seen} were cut off or the database was rolled back",
            )
        )
    outside = _folder_newest(runtime, public)
    if outside is None:
        return 0, findings
    if outside.size > size:
        findings.append(
            audit.Finding(
                size + 1,
                "rolled-back",
                f"the log holds {size} entries, the checkpoint in {runtime.log_folder} covers "
                f"{outside.size}: entries {size + 1}–{outside.size} were cut off or the "
                "database was rolled back to an earlier copy",
            )
        )
    elif outside.size and audit.root(session, outside.size) != outside.root:
        findings.append(
            audit.Finding(
                1,
                "rewritten",
                f"the log's first {outside.size} entries do not give the root of the checkpoint "
                f"in {runtime.log_folder}: entries were changed and the hashes rebuilt, or the "
                "database is another log",
            )
        )
    return outside.size, findings


def _folder_catch_up(runtime: Runtime, latest: LogCheckpoint) -> None:
    """Write the latest checkpoint to the folder if a crash after its commit kept it out."""
    from ca.log.checkpoint_folder import CheckpointFolder

    folder = CheckpointFolder(runtime.log_folder)
    newest = folder.newest_size()
    if newest is None or newest < latest.size:
        folder.write(latest.note, latest.size)


def pending_findings(
    session: Session, runtime: Runtime, public: SM2PublicKey
) -> tuple[int, list[audit.Finding]]:
    """What stops a checkpoint now: ``(the size checked from, findings)``. The tree must extend
    the newest checkpoint outside the database and not have shrunk; then every entry after the
    newer of the latest checkpoints (the database's, the folder's) needs a valid seal, except
    the unsealed entries an officer investigated and let through (``audit.resume``)."""
    latest = audit.latest_checkpoint(session)
    size = audit.tree_size(session)
    outside, findings = _against_outside(session, runtime, public, size)
    since = max(latest.size if latest is not None else 0, outside)
    # The first checkpoint covers the history before any seal (the root ceremony's does);
    # every later one — in the database or in the folder — only entries with a valid seal.
    if not findings and (latest is not None or outside):
        through = audit.resumed_through(session, public)
        findings = [
            f
            for f in audit.unsealed_since(session, since, public)
            if not (f.problem == "unsealed" and f.seq <= through)
        ]
    return since, findings


def checkpoint_now(
    runtime: Runtime, now: int, *, force: bool = False, origin: str | None = None
) -> LogCheckpoint | None:
    """Sign a checkpoint over the log if it grew since the latest one, after checking every
    new entry's seal; commit it, then write it to ``runtime.log_folder``. Returns the new
    checkpoint, or None when there is nothing to sign (an empty log, no growth, no audit key
    yet). With ``force`` (an officer asked for it) a log that did not grow returns its latest
    checkpoint, and a missing audit key is an error. Raises LogHalted (and records the halt once
    in the log) when an entry after the latest checkpoint has no valid seal."""
    from ca.log.checkpoint_folder import CheckpointFolder

    chosen = origin or load_policy().log.origin
    with Session(runtime.engine) as session:
        size = audit.tree_size(session)
        latest = audit.latest_checkpoint(session)
        record = audit_key_record(session)
    if latest is not None:
        _folder_catch_up(runtime, latest)
    if size == 0:
        return None
    if latest is not None and latest.size >= size:
        return latest if force else None
    if record is None:
        if force:
            raise BadInput("no audit key: run the root ceremony first")
        return None
    public = audit_public_key(record)
    made: LogCheckpoint | None = None
    with transaction(runtime.engine) as session:
        since, findings = pending_findings(session, runtime, public)
        if not findings:
            with runtime.tokens(timeout=TOKEN_WAIT) as vault:
                signer = audit_signer(log_store(vault), record)
                made = audit.checkpoint(session, signer, at=now, origin=chosen)
            session.flush()
            session.expunge(made)  # still readable after the commit
    if findings:
        raise _halt(runtime, since, findings, now)
    if made is None:  # pragma: no cover - signed whenever nothing was found
        raise LogKeyError("no checkpoint was signed")
    _halted.pop(runtime.url, None)
    _seen[runtime.url] = max(_seen.get(runtime.url, 0), made.size)
    CheckpointFolder(runtime.log_folder).write(made.note, made.size)
    log.info("checkpoint of %d entries signed", made.size)
    return made


# -- the checkpointer thread ---------------------------------------------------------------------
class Checkpointer:
    """Signs a checkpoint after every batch of changes, at most every ``seconds`` (the policy's
    ``[log] checkpoint_seconds``): it wakes every min(1, seconds/2) s and signs when the log has
    grown and ``seconds`` have passed since the latest checkpoint. A daemon thread; ``stop``
    ends it. Its errors are logged and it goes on."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        seconds: int | None = None,
        origin: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        policy = load_policy().log
        self.runtime = runtime
        self.seconds = policy.checkpoint_seconds if seconds is None else seconds
        self.origin = origin or policy.origin
        self.clock: Clock = clock or SystemClock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.signed = 0  # checkpoints this checkpointer signed
        self.last_error: str | None = None

    def due(self, now: int) -> bool:
        """Whether a checkpoint may be signed at ``now``: the log grew since the latest
        checkpoint and ``seconds`` have passed since it was signed."""
        with Session(self.runtime.engine) as session:
            size = audit.tree_size(session)
            latest = audit.latest_checkpoint(session)
        with _state_lock:  # a log never shrinks: checkpoint_now refuses one smaller than this
            _seen[self.runtime.url] = max(_seen.get(self.runtime.url, 0), size)
        if size == 0:
            return False
        if latest is None:
            return True
        return size > latest.size and now - latest.at >= self.seconds

    def tick(self, now: int | None = None) -> LogCheckpoint | None:
        """One turn: a checkpoint if one is due, else None. Never raises."""
        at = self.clock.now() if now is None else now
        if audit.current_sealer(audit.database_of(self.runtime.engine)) is None:
            # no one seals yet: the root ceremony ran since
            start_sealing_quietly(self.runtime, at)
        try:
            if not self.due(at):
                return None
            made = checkpoint_now(self.runtime, at, origin=self.origin)
        except LogHalted as exc:
            self.last_error = exc.message
            return None
        except JtcaError as exc:
            self.last_error = f"{exc.title}: {exc.message}"
            log.warning("checkpoint not signed: %s", self.last_error)
            return None
        except Exception as exc:  # the service must not die of its log keeper
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("checkpoint not signed")
            return None
        if made is not None:
            self.signed += 1
            self.last_error = None
        return made

    def run(self) -> None:
        interval = min(1.0, self.seconds / 2)
        while not self._stop.wait(interval):
            self.tick()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self.run, name="jtca-checkpointer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0, *, final: bool = True) -> LogCheckpoint | None:
        """End the thread; with ``final``, sign a last checkpoint over the changes made since
        the latest one (the service is stopping: they would wait for its next start)."""
        self._stop.set()
        if self._thread is None:
            return None
        self._thread.join(timeout)
        self._thread = None
        if not final:
            return None
        try:
            made = checkpoint_now(self.runtime, self.clock.now(), origin=self.origin)
        except JtcaError as exc:
            log.warning("no checkpoint on stopping: %s: %s", exc.title, exc.message)
            return None
        except Exception:  # stopping must finish whatever happens
            log.exception("no checkpoint on stopping")
            return None
        if made is not None:
            self.signed += 1
        return made
