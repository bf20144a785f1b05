"""The publisher: build, check, sign and write the lists; keep every version.

It runs in the authority service (``lists.publish``) against the service's own publication
folder (``state/published``); ``jtca publish --out DIR`` mirrors what the service published.

One run holds two locks, always in this order, and gives up with ``PublisherBusy`` (exit 75)
when it cannot have them within ``Settings.lock_timeout``:

- the folder's lock (``.publish.lock``, ``flock``: released if the process dies) — one writer of
  the folder's files at a time, including the current files written after the commit;
- the **database's publication lock**: the run is one transaction that first takes, on
  PostgreSQL, the transaction-level advisory lock ``PUBLISH_LOCK_KEY``
  (``pg_try_advisory_xact_lock(7670865335468515948)``, the bytes "jtcapubl"), on SQLite the
  database's write lock (``BEGIN IMMEDIATE``). Publishers of several service processes on one
  database, each with a folder of its own, take turns; the lock ends with the transaction, so a
  publisher that dies never leaves it held.

Inside them:

1. repair: if the folder's current file of a list is not the newest recorded version (a crash
   between the record and the rename, or a version another service process published), the
   version is put back from the folder's archive, else from the database's copy of its bytes;
2. for each list type, read its entries from the records; publish a new version when the
   content changed, when the current one's nextUpdate is within the refresh margin, when there
   is none yet, or when an emergency publish (第三十四条) asks for it;
3. a new version gets the next sequence number, thisUpdate now, nextUpdate now + validity; it
   is signed by the list-signing key, then loaded back exactly as a terminal would (signature,
   signer certified by the root, type, sequence, freshness) — a list a terminal would refuse is
   never published;
4. before the token signs, one intent per list type (``lists.publish``, subject the type;
   ``ca.store.intents``) is committed naming the folder, the sequence expected, the archive
   file and the current files; the version is recorded with its bytes and audited, and its
   sequence noted on the intent, in the run's transaction; after the commit it is written to
   ``archive/<type>/<type>-<sequence>.der`` and the current ``<type>.json`` and ``<type>.der``
   are replaced (each write: a temporary file, fsync, rename), so a reader sees the old list
   or the new one, never a part; then the folder's ``lists/`` layout (issue #16,
   ``ca.publish.http_layout``: a file per recorded version, current, index, the nginx map) is
   made whole from the records (``sync_http_layout``, also run by ``recover``; the sweep
   removes its temporary files and version files no record backs); then the intents are
   completed.

A run killed anywhere leaves at most: stray ``.<name>.<random>.tmp`` files (removed by the next
run's sweep, under the folder lock), or a recorded version whose files are missing (written from
the database's copy by recovery, ``recover``, or the next run's repair). A version never
recorded leaves no file. See docs/publisher.md, "A publisher killed mid-run".

``dry_run`` reads only (no lock, no token): it reports what would change and why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from ca.core.clock import iso_utc
from ca.core.errors import JtcaError
from ca.core.files import write_atomically
from ca.lists.asn1 import ListEntry, ListType, decode_signed_list
from ca.lists.build import build_list
from ca.lists.render import entry_to_dict, render_json
from ca.lists.verify import VerifiedList, load_list
from ca.log import audit
from ca.policy.authorization import require
from ca.publish import http_layout
from ca.publish.sources import content_digest, entries_for
from ca.store import intents
from ca.store.db import transaction
from ca.store.intents import IntentRef
from ca.store.models import CertificateRecord, ListVersion, ListVersionFile
from hsm.crashpoints import crash_point
from hsm.pkcs11.keys import KeyStore
from hsm.signer import Signer
from hsm.sm.sm3 import sm3
from policies.rules import Actor, Subject

PUBLISH: Final = "list.publish"
OPERATION: Final = "lists.publish"  # the intent's operation (issue #14); its subject: the type
TEMP_SUFFIX: Final = (
    ".tmp"  # ca.core.files.write_atomically's temporary files: .<name>.<random>.tmp
)
EMERGENCY: Final = "list.emergency-publish"
HOUR: Final = 3600
DEFAULT_VALIDITY: Final = 24 * HOUR  # nextUpdate = thisUpdate + 24 h
DEFAULT_REFRESH: Final = 6 * HOUR  # republish when nextUpdate is 6 h away or closer
LOCK_NAME: Final = ".publish.lock"
# The PostgreSQL advisory lock of the publisher: one per database, whatever the folder.
PUBLISH_LOCK_KEY: Final = 0x6A7463617075626C  # b"jtcapubl" = 7670865335468515948
_POLL: Final = 0.05  # seconds between two tries of a busy lock
log = logging.getLogger("jtca.publisher")  # JSON lines in the service's log (ca.obs.logs)


class PublishError(JtcaError):
    title = "Publishing refused"
    exit_code = 4


class PublisherBusy(PublishError):
    title = "Publisher busy"
    exit_code = 75  # EX_TEMPFAIL: the timer tries again at its next tick


@dataclass(frozen=True, slots=True)
class Settings:
    out_dir: Path
    types: tuple[ListType, ...] = tuple(ListType)
    validity: int = DEFAULT_VALIDITY
    refresh: int = DEFAULT_REFRESH
    lock_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.validity <= 0:
            raise PublishError(f"validity {self.validity}s: must be positive")
        if not 0 <= self.refresh < self.validity:
            raise PublishError(
                f"refresh margin {self.refresh}s: must be at least 0 and below the validity "
                f"({self.validity}s)"
            )
        if not self.lock_timeout >= 0:  # NaN too
            raise PublishError(f"lock timeout {self.lock_timeout}s: 0 or more")


@dataclass(frozen=True, slots=True)
class Signing:
    signer: Signer
    certificate_der: bytes  # the list-signing certificate
    root_der: bytes  # the ministry root terminals trust


@dataclass(slots=True)
class Diff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, list[Any]]] = field(
        default_factory=dict
    )  # key -> field -> [old, new]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


@dataclass(frozen=True, slots=True)
class Outcome:
    list_type: ListType
    action: str  # published | unchanged | would-publish
    why: str  # first version | content changed | next update due | emergency | up to date
    sequence: int | None
    entries: int
    diff: Diff
    file: Path | None = None  # the current file in the publication folder (published only)
    sha256: str | None = None
    sm3: str | None = None
    data: bytes | None = field(default=None, repr=False)  # the signed list (published only)


def _key(entry: ListEntry) -> str:
    return str(entry.key)


def diff_entries(old: Sequence[ListEntry], new: Sequence[ListEntry]) -> Diff:
    before = {_key(e): entry_to_dict(e) for e in old}
    after = {_key(e): entry_to_dict(e) for e in new}
    result = Diff(added=sorted(set(after) - set(before)), removed=sorted(set(before) - set(after)))
    for key in sorted(set(before) & set(after)):
        fields = {
            name: [before[key][name], value]
            for name, value in after[key].items()
            if before[key].get(name) != value
        }
        if fields:
            result.changed[key] = fields
    return result


# -- locks -----------------------------------------------------------------------------------
@contextlib.contextmanager
def folder_lock(out_dir: Path, timeout: float) -> Iterator[None]:
    """An exclusive lock on the publication folder (flock: released if the process dies)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PublisherBusy(
                        f"another publisher has held {out_dir / LOCK_NAME} for {timeout:.0f}s"
                    ) from None
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _busy(error: OperationalError) -> bool:
    return "locked" in str(error.orig).lower()  # SQLite: "database is locked"


@contextlib.contextmanager
def database_lock(engine: Engine, timeout: float) -> Iterator[Session]:
    """A write transaction holding the database's publication lock (see the module docstring):
    committed whole when the block ends, rolled back whole when it raises."""
    started = time.monotonic()
    deadline = started + timeout

    def busy() -> PublisherBusy:
        return PublisherBusy(
            "another publisher has held the database's publication lock for "
            f"{time.monotonic() - started:.0f}s"
        )

    with contextlib.ExitStack() as stack:
        while True:
            try:
                session = stack.enter_context(transaction(engine))  # SQLite: BEGIN IMMEDIATE
                break
            except OperationalError as exc:
                if not _busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise busy() from None
                time.sleep(_POLL)
        if engine.dialect.name == "postgresql":
            connection = session.connection()
            query = text("SELECT pg_try_advisory_xact_lock(:key)")
            while not connection.execute(query, {"key": PUBLISH_LOCK_KEY}).scalar_one():
                if time.monotonic() >= deadline:
                    raise busy()
                time.sleep(_POLL)
        yield session


# -- the folder ------------------------------------------------------------------------------
def archive_path(out_dir: Path, list_type: ListType, sequence: int) -> Path:
    return out_dir / "archive" / list_type.value / f"{list_type.value}-{sequence:010d}.der"


def current_path(out_dir: Path, list_type: ListType) -> Path:
    return out_dir / f"{list_type.value}.der"


def latest(session: Session, list_type: ListType) -> ListVersion | None:
    return session.exec(
        select(ListVersion)
        .where(ListVersion.list_type == list_type.value)
        .order_by(col(ListVersion.sequence).desc())
    ).first()


def version(session: Session, list_type: ListType, sequence: int | None) -> ListVersion | None:
    """Version ``sequence`` of the list, or its newest when ``sequence`` is None."""
    if sequence is None:
        return latest(session, list_type)
    return session.exec(
        select(ListVersion)
        .where(ListVersion.list_type == list_type.value)
        .where(ListVersion.sequence == sequence)
    ).first()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_bytes(session: Session, out_dir: Path, recorded: ListVersion) -> bytes | None:
    """The signed bytes of a recorded version: the folder's archived copy when it is the one
    recorded, else the database's copy; None when neither holds it (a version published before
    the database kept the bytes, by a publisher with another folder)."""
    with contextlib.suppress(OSError):
        data = (out_dir / recorded.file).read_bytes()
        if _sha256(data) == recorded.sha256:
            return data
    stored = session.get(ListVersionFile, recorded.id)
    if stored is not None and _sha256(bytes(stored.der)) == recorded.sha256:
        return bytes(stored.der)
    return None


def _repair(session: Session, out_dir: Path, recorded: ListVersion) -> None:
    """Make the newest recorded version the folder's current file, and its archive file whole,
    if they are not (a crash after the record, a version another service process published)."""
    list_type = ListType(recorded.list_type)
    current = current_path(out_dir, list_type)
    with contextlib.suppress(OSError):
        held = current.read_bytes()
        if _sha256(held) == recorded.sha256:
            _ensure_archived(session, out_dir, recorded, held)
            return
    data = _ensure_archived(session, out_dir, recorded)
    _write_current(out_dir, list_type, data, decode_signed_list(data).content)
    log.warning(
        "repaired %s: its current file is now version %s",
        list_type.value,
        recorded.sequence,
        extra={"list_type": list_type.value, "sequence": recorded.sequence, "folder": str(out_dir)},
    )


def _ensure_archived(
    session: Session, out_dir: Path, recorded: ListVersion, known: bytes | None = None
) -> bytes:
    """The recorded version's bytes, its archive file in ``out_dir`` written (from ``known``,
    bytes already checked against the record, else the database's copy) when it is missing or
    not the one recorded."""
    list_type = ListType(recorded.list_type)
    archived = archive_path(out_dir, list_type, recorded.sequence)
    with contextlib.suppress(OSError):
        data = archived.read_bytes()
        if _sha256(data) == recorded.sha256:
            return data
    data_or_none = known if known is not None else version_bytes(session, out_dir, recorded)
    if data_or_none is None:
        raise PublishError(
            f"version {recorded.sequence} of the {list_type.value} is recorded but neither its "
            f"archive file {archived} nor the database holds its bytes: restore the file from "
            "backup before publishing"
        )
    archived.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(archived, data_or_none)
    return data_or_none


def _write_current(out_dir: Path, list_type: ListType, data: bytes, content: Any) -> None:
    """The JSON rendering first, then the DER list terminals load: each replaced whole (a
    reader sees the old file or the new one); a crash between leaves the old DER current,
    which the next run or recovery replaces."""
    write_atomically(out_dir / f"{list_type.value}.json", render_json(content).encode("utf-8"))
    crash_point(f"{OPERATION}:after-json")
    write_atomically(current_path(out_dir, list_type), data)


def _stray(folder: Path) -> list[Path]:
    """The temporary files ``write_atomically`` left in ``folder`` when its process died."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / n for n in names if n.startswith(".") and n.endswith(TEMP_SUFFIX)]


def sweep(session: Session, out_dir: Path, list_types: Sequence[ListType]) -> list[str]:
    """Remove what a dead run left in the folder (called with the folder's lock held, so no
    live writer of it is mid-write): stray temporary files in the folder and its archive
    folders, and archive files above the newest recorded sequence of their list (written by a
    run before this release, which archived before recording, and never recorded). Returns the
    paths removed, relative to the folder."""
    removed: list[Path] = _stray(out_dir)
    for list_type in list_types:
        folder = out_dir / "archive" / list_type.value
        removed += _stray(folder)
        newest = latest(session, list_type)
        top = newest.sequence if newest is not None else 0
        prefix = f"{list_type.value}-"
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                number = name[len(prefix) : -len(".der")]
                ours = name.startswith(prefix) and name.endswith(".der") and number.isdigit()
                if ours and int(number) > top:
                    removed.append(folder / name)
    newest_of = {t: row.sequence for t in ListType if (row := latest(session, t)) is not None}
    removed += http_layout.strays(out_dir, newest_of)
    for path in removed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if removed:
        log.warning(
            "swept %d file(s) a dead run left in %s",
            len(removed),
            out_dir,
            extra={"folder": str(out_dir), "removed": [p.name for p in removed][:20]},
        )
    return [p.relative_to(out_dir).as_posix() for p in removed]


def sync_http_layout(session: Session, out_dir: Path) -> list[str]:
    """The folder's ``lists/`` layout (``ca.publish.http_layout``) made whole from the records:
    every recorded version's file, the current files, the indexes and the nginx map."""
    rows = {t: list(history(session, t)) for t in ListType}
    return http_layout.sync(out_dir, rows, lambda row: version_bytes(session, out_dir, row))


# -- the intent (issue #14) ----------------------------------------------------------------
def _plan_of(out_dir: Path, list_type: ListType, sequence: int) -> dict[str, Any]:
    """What a run may leave behind for ``list_type``: the folder (on this host), the version
    it expects to publish, its archive file and the current files, relative to the folder."""
    return {
        "host": socket.gethostname(),
        "folder": str(out_dir.resolve()),
        "list_type": list_type.value,
        "sequence": sequence,
        "archive": archive_path(out_dir, list_type, sequence).relative_to(out_dir).as_posix(),
        "current": [f"{list_type.value}.der", f"{list_type.value}.json"],
    }


def _begin(
    engine: Engine, settings: Settings, actor: Actor, now: int, deadline: float
) -> dict[ListType, IntentRef]:
    """One intent per list type (subject: the type), committed before the token signs or a
    file is written. Not exclusive: publishers of several folders run at once and take turns
    on the database's lock; the sequence a run really publishes is noted with its record."""
    while True:
        try:
            with transaction(engine) as session:
                begun: dict[ListType, IntentRef] = {}
                for list_type in settings.types:
                    previous = latest(session, list_type)
                    expected = (previous.sequence if previous else 0) + 1
                    begun[list_type] = intents.begin_in(
                        session,
                        OPERATION,
                        list_type.value,
                        _plan_of(settings.out_dir, list_type, expected),
                        actor=actor.id,
                        now=now,
                        exclusive=False,
                    )
                return begun
        except OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(_POLL)


def _end_intents(
    engine: Engine, begun: dict[ListType, IntentRef], now: int, outcomes: dict[ListType, str]
) -> None:
    with transaction(engine) as session:
        for list_type, intent in begun.items():
            intents.complete(session, intent.id, now=now, outcome=outcomes.get(list_type, "done"))


def _abandon(engine: Engine, begun: dict[ListType, IntentRef], now: int, why: str) -> None:
    for intent in begun.values():
        with contextlib.suppress(Exception):  # the error being raised is the one to report
            intents.abandon(engine, intent.id, now=now, outcome=why)


# -- one run ---------------------------------------------------------------------------------
def publish(
    engine: Engine,
    signing: Signing | None,
    settings: Settings,
    *,
    actor: Actor,
    now: int,
    dry_run: bool = False,
    emergency: bool = False,
    reason: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> list[Outcome]:
    """One publisher run (see the module docstring). ``signing`` may be None for a dry run.
    ``progress(done, total)`` is told of each list built, signed and checked."""
    action = EMERGENCY if emergency else PUBLISH
    require(actor, action, Subject(), now)
    if dry_run:
        with Session(engine) as session:
            return [
                _planned(session, settings, t, latest(session, t), now, emergency=emergency)
                for t in settings.types
            ]
    if signing is None:
        raise PublishError("publishing needs the list-signing key")
    deadline = time.monotonic() + settings.lock_timeout
    with folder_lock(settings.out_dir, settings.lock_timeout):
        with Session(engine) as session:
            sweep(session, settings.out_dir, settings.types)
        begun = _begin(engine, settings, actor, now, deadline)
        crash_point(f"{OPERATION}:after-intent")
        outcomes: list[Outcome] = []
        made: list[tuple[ListType, int, bytes, VerifiedList]] = []
        try:
            with database_lock(engine, max(0.0, deadline - time.monotonic())) as session:
                for list_type in settings.types:
                    if progress is not None:
                        progress(len(outcomes), len(settings.types))
                    previous = latest(session, list_type)
                    if previous is not None:
                        _repair(session, settings.out_dir, previous)
                    outcome, verified = _one(
                        session,
                        signing,
                        settings,
                        list_type,
                        previous,
                        actor,
                        now,
                        emergency=emergency,
                        reason=reason,
                    )
                    outcomes.append(outcome)
                    if verified is not None and outcome.data is not None and outcome.sequence:
                        made.append((list_type, outcome.sequence, outcome.data, verified))
                        # with the record: recovery rolls forward exactly what was recorded
                        intents.note_in(
                            session,
                            begun[list_type].id,
                            sequence=outcome.sequence,
                            sha256=outcome.sha256,
                            recorded=True,
                        )
                if progress is not None:
                    progress(len(outcomes), len(settings.types))
                crash_point(f"{OPERATION}:before-commit")
        except IntegrityError:
            log.warning("publication abandoned: a version was published meanwhile")
            _abandon(engine, begun, now, "a version was published meanwhile; nothing recorded")
            raise PublishError(
                "a list version was published meanwhile by another publisher: run again"
            ) from None
        except BaseException as exc:
            log.error("publication failed before recording: %s", type(exc).__name__)
            _abandon(engine, begun, now, f"failed before recording: {exc}"[:500])
            raise
        crash_point(f"{OPERATION}:after-record")
        try:
            for list_type, sequence, data, verified in made:
                path = archive_path(settings.out_dir, list_type, sequence)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, data)
                crash_point(f"{OPERATION}:after-archive")
                _write_current(settings.out_dir, list_type, data, verified)
                crash_point(f"{OPERATION}:after-current")
            with Session(engine) as session:
                sync_http_layout(session, settings.out_dir)
        except BaseException as exc:
            # the versions are recorded: the next run in this folder (or recovery) writes them
            why = f"recorded; files not written ({exc}): the next run writes them"
            log.error("publication recorded, files not written: %s", type(exc).__name__)
            _end_intents(engine, begun, now, dict.fromkeys(begun, why))
            raise
        _end_intents(
            engine,
            begun,
            now,
            {o.list_type: f"{o.action} {o.sequence or 0}" for o in outcomes},
        )
        crash_point(f"{OPERATION}:after-complete")
    for o in outcomes:
        log.info(
            "%s %s %s (%s)",
            o.list_type.value,
            o.action,
            o.sequence or "-",
            o.why,
            extra={
                "actor": actor.id,
                "list_type": o.list_type.value,
                "action": o.action,
                "why": o.why,
                "sequence": o.sequence,
                "entries": o.entries,
                "sm3": o.sm3,
                "emergency": emergency,
            },
        )
    return outcomes


def recover(
    engine: Engine, intent: IntentRef, *, actor: str, now: int, lock_timeout: float = 60.0
) -> None:
    """Recovery of a ``lists.publish`` intent whose run died (``ca.service.lists`` registers
    it). The run noted its sequence in the transaction that recorded the version, so:

    - recorded: rolled forward — the version's archive file, and the current files if it is
      still the newest version, are written from the database's copy of its bytes;
    - not recorded: rolled back — nothing of it is in the database, and the folder keeps
      nothing of it either.

    Either way stray temporary files and archive files above the newest recorded sequence are
    removed, under the folder's lock. A folder on another host (or gone) is left to that
    folder's own next run, which sweeps and repairs it the same way; the database needs
    nothing. Idempotent: a recovery cut short is run again."""
    plan = intent.plan
    list_type = ListType(str(plan.get("list_type", intent.subject)))
    folder = Path(str(plan.get("folder", "")))
    here = plan.get("host") == socket.gethostname() and folder.is_absolute() and folder.is_dir()
    sequence = intent.progress.get("sequence")
    removed: list[str] = []
    written: list[str] = []
    with Session(engine) as session:
        recorded = version(session, list_type, int(sequence)) if isinstance(sequence, int) else None
    if here:
        with folder_lock(folder, lock_timeout), Session(engine) as session:
            removed = sweep(session, folder, (list_type,))
            if recorded is not None:
                archived = archive_path(folder, list_type, recorded.sequence)
                if not archived.exists():
                    written.append(archived.relative_to(folder).as_posix())
                _ensure_archived(session, folder, recorded)
            newest = latest(session, list_type)
            if newest is not None:
                before = _sha_or_none(current_path(folder, list_type))
                _repair(session, folder, newest)
                if before != newest.sha256:
                    written.append(current_path(folder, list_type).name)
            written += sync_http_layout(session, folder)
    state = intents.ROLLED_FORWARD if recorded is not None else intents.ROLLED_BACK
    if recorded is not None:
        outcome = f"version {recorded.sequence} was recorded: its files written"
    else:
        outcome = "no version was recorded: nothing of the run kept"
    if not here:
        outcome += f"; the folder {folder} is not on this host: its next run repairs it"
    log.warning(
        "recovered %s: %s",
        list_type.value,
        outcome,
        extra={"list_type": list_type.value, "intent": intent.id, "state": state},
    )
    with transaction(engine) as session:
        intents.settle(
            session,
            intent,
            state=state,
            outcome=outcome,
            now=now,
            actor=actor,
            details={
                "list_type": list_type.value,
                "sequence": recorded.sequence if recorded is not None else None,
                "folder": str(folder),
                "removed": removed,
                "written": written,
            },
        )


def _sha_or_none(path: Path) -> str | None:
    try:
        return _sha256(path.read_bytes())
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class _Plan:
    entries: list[ListEntry]
    digest: str
    changes: Diff
    why: str
    due: bool  # False: up to date, nothing to publish


def _plan(
    session: Session,
    settings: Settings,
    list_type: ListType,
    previous: ListVersion | None,
    now: int,
    *,
    emergency: bool,
) -> _Plan:
    entries = entries_for(session, list_type, now)
    digest = content_digest(entries)
    if previous is not None and digest == previous.content_digest:
        changes = Diff()  # the same content: nothing to read back or compare
    else:
        old: Sequence[ListEntry] = ()
        if previous is not None:
            data = version_bytes(session, settings.out_dir, previous)
            if data is not None:
                old = decode_signed_list(data).content.entries
        changes = diff_entries(old, entries)
    if previous is None:
        why = "first version"
    elif emergency:
        why = "emergency"
    elif digest != previous.content_digest:
        why = "content changed"
    elif now >= previous.next_update - settings.refresh:
        why = "next update due"
    else:
        why = "up to date"
    return _Plan(entries, digest, changes, why, why != "up to date")


def _planned(
    session: Session,
    settings: Settings,
    list_type: ListType,
    previous: ListVersion | None,
    now: int,
    *,
    emergency: bool,
) -> Outcome:
    """What a run would do with ``list_type`` (a dry run)."""
    plan = _plan(session, settings, list_type, previous, now, emergency=emergency)
    sequence = (previous.sequence if previous else 0) + (1 if plan.due else 0)
    action = "would-publish" if plan.due else "unchanged"
    return Outcome(list_type, action, plan.why, sequence, len(plan.entries), plan.changes)


def _one(
    session: Session,
    signing: Signing,
    settings: Settings,
    list_type: ListType,
    previous: ListVersion | None,
    actor: Actor,
    now: int,
    *,
    emergency: bool,
    reason: str,
) -> tuple[Outcome, VerifiedList | None]:
    plan = _plan(session, settings, list_type, previous, now, emergency=emergency)
    entries, changes, why = plan.entries, plan.changes, plan.why
    sequence = (previous.sequence if previous else 0) + 1
    if not plan.due:
        return Outcome(list_type, "unchanged", why, sequence - 1, len(entries), changes), None
    this_update, next_update = now, now + settings.validity
    data = build_list(
        list_type,
        entries,
        sequence=sequence,
        this_update=this_update,
        next_update=next_update,
        signer=signing.signer,
        signer_certificate_der=signing.certificate_der,
    )
    # what a terminal would do with it, before anyone can
    verified = load_list(
        data,
        trusted_root_der=signing.root_der,
        expected_type=list_type,
        previous_sequence=previous.sequence if previous else None,
        now=now,
        grace_seconds=0,
    )
    crash_point(f"{OPERATION}:after-sign")
    path = archive_path(settings.out_dir, list_type, sequence)  # written after the commit
    sha256, sm3_hex = _sha256(data), sm3(data).hex()
    row = ListVersion(
        list_type=list_type.value,
        sequence=sequence,
        this_update=this_update,
        next_update=next_update,
        entries=len(entries),
        content_digest=plan.digest,
        sha256=sha256,
        sm3=sm3_hex,
        file=path.relative_to(settings.out_dir).as_posix(),
        published_at=now,
        published_by=actor.id,
        emergency=emergency,
        diff=audit.canonical(changes.as_dict()),
    )
    session.add(row)
    session.flush()  # its id, and the unique sequence checked now
    session.add(ListVersionFile(list_version_id=row.id or 0, der=data))
    audit.append(
        session,
        actor=actor.id,
        action=EMERGENCY if emergency else PUBLISH,
        subject=f"{list_type.value} {sequence}",
        kind="list",  # issue #13: the signed DER list is in the log by digest
        object_sm3=sm3_hex,
        details={
            "why": why,
            "reason": reason,
            "entries": len(entries),
            "sha256": sha256,
            "sm3": sm3_hex,
            "this_update": iso_utc(this_update),
            "next_update": iso_utc(next_update),
            "added": changes.added,
            "removed": changes.removed,
            "changed": sorted(changes.changed),
        },
        at=now,
    )
    session.flush()
    published = Outcome(
        list_type,
        "published",
        why,
        sequence,
        len(entries),
        changes,
        current_path(settings.out_dir, list_type),
        sha256,
        sm3_hex,
        data,
    )
    return published, verified


def current_certificate(session: Session, role: str, now: int) -> CertificateRecord | None:
    """The newest certificate the ceremony made for ``role`` (root, list-signing) still valid
    at ``now``."""
    return session.exec(
        select(CertificateRecord)
        .where(CertificateRecord.role == role)
        .where(col(CertificateRecord.not_after) > now)
        .order_by(col(CertificateRecord.not_before).desc())
    ).first()


def list_signing(engine: Engine, now: int, store_of: Callable[[str], KeyStore]) -> Signing:
    """The list-signing key (in the token ``store_of(label)`` opens), its certificate and the
    root: what ``publish`` signs with. BadInput when the root ceremony has not run."""
    from ca.core.errors import BadInput
    from ca.vault.signers import token_signer
    from hsm.pkcs11.uri import Pkcs11Uri

    with Session(engine) as session:
        lists = current_certificate(session, "list-signing", now)
        root = current_certificate(session, "root", now)
    if lists is None or root is None:
        missing = "list-signing" if lists is None else "root"
        raise BadInput(f"no valid {missing} certificate: run the root ceremony first")
    uri = Pkcs11Uri.parse(lists.key_uri)
    signer = token_signer(store_of(uri.token), uri, "list-signing")
    return Signing(signer, bytes.fromhex(lists.der), bytes.fromhex(root.der))


def history(session: Session, list_type: ListType | None = None) -> list[ListVersion]:
    query = select(ListVersion)
    if list_type is not None:
        query = query.where(ListVersion.list_type == list_type.value)
    return list(session.exec(query.order_by(col(ListVersion.list_type), col(ListVersion.sequence))))


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "list": outcome.list_type.value,
        "action": outcome.action,
        "why": outcome.why,
        "sequence": outcome.sequence,
        "entries": outcome.entries,
        "diff": outcome.diff.as_dict(),
        "file": str(outcome.file) if outcome.file else None,
        "sha256": outcome.sha256,
    }
