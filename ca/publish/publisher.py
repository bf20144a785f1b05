"""``jtca publish``: build, check, sign and write the lists; keep every version.

One run, under an exclusive lock on the publication folder (a second run waits for it, then
finds nothing left to do):

1. repair: if the current file of a list is not the newest recorded version (a crash between
   the record and the rename), put the archived version back;
2. for each list type, read its entries from the records; publish a new version when the
   content changed, when the current one's nextUpdate is within the refresh margin, when there
   is none yet, or when an emergency publish (第三十四条) asks for it;
3. a new version gets the next sequence number, thisUpdate now, nextUpdate now + validity; it
   is signed by the list-signing key, then loaded back exactly as a terminal would (signature,
   signer certified by the root, type, sequence, freshness) — a list a terminal would refuse is
   never published;
4. the version is written to ``archive/<type>/<type>-<sequence>.der`` (write, fsync, rename),
   recorded and audited in one transaction, then the current ``<type>.der`` and its JSON
   rendering are replaced atomically: a reader sees the old list or the new one, never a part.

``dry_run`` does everything but sign, write and record, and reports what would change.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ca import audit
from ca.authorization import require
from ca.clock import iso_utc
from ca.errors import JtcaError
from ca.files import write_atomically
from ca.lists.asn1 import ListEntry, ListType, decode_signed_list
from ca.lists.build import build_list
from ca.lists.render import entry_to_dict, render_json
from ca.lists.verify import load_list
from ca.publish.sources import content_digest, entries_for
from ca.store.db import transaction
from ca.store.models import CertificateRecord, ListVersion
from hsm.pkcs11.keys import KeyStore
from hsm.signer import Signer
from hsm.sm.sm3 import sm3
from policies.rules import Actor, Subject

PUBLISH: Final = "list.publish"
EMERGENCY: Final = "list.emergency-publish"
HOUR: Final = 3600
DEFAULT_VALIDITY: Final = 24 * HOUR  # nextUpdate = thisUpdate + 24 h
DEFAULT_REFRESH: Final = 6 * HOUR  # republish when nextUpdate is 6 h away or closer
LOCK_NAME: Final = ".publish.lock"


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
    file: Path | None = None
    sha256: str | None = None


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


@contextlib.contextmanager
def publication_lock(out_dir: Path, timeout: float) -> Iterator[None]:
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
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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


def _repair(out_dir: Path, version: ListVersion) -> None:
    """Put the newest recorded version back as the current file if it is not."""
    list_type = ListType(version.list_type)
    current = current_path(out_dir, list_type)
    with contextlib.suppress(FileNotFoundError):
        if hashlib.sha256(current.read_bytes()).hexdigest() == version.sha256:
            return
    archived = out_dir / version.file
    try:
        data = archived.read_bytes()
    except FileNotFoundError:
        raise PublishError(
            f"version {version.sequence} of the {list_type.value} is recorded but its archive "
            f"file {archived} is missing: restore it from backup before publishing"
        ) from None
    if hashlib.sha256(data).hexdigest() != version.sha256:
        raise PublishError(f"{archived} differs from the recorded version {version.sequence}")
    _write_current(out_dir, list_type, data, decode_signed_list(data).content)


def _write_current(out_dir: Path, list_type: ListType, data: bytes, content: Any) -> None:
    write_atomically(out_dir / f"{list_type.value}.json", render_json(content).encode("utf-8"))
    write_atomically(current_path(out_dir, list_type), data)


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
) -> list[Outcome]:
    """One publisher run (see the module docstring). ``signing`` may be None for a dry run."""
    action = EMERGENCY if emergency else PUBLISH
    require(actor, action, Subject(), now)
    if signing is None and not dry_run:
        raise PublishError("publishing needs the list-signing key")
    outcomes: list[Outcome] = []
    with publication_lock(settings.out_dir, settings.lock_timeout):
        for list_type in settings.types:
            with Session(engine) as session:
                previous = latest(session, list_type)
                entries = entries_for(session, list_type, now)
            if previous is not None and not dry_run:
                _repair(settings.out_dir, previous)
            outcomes.append(
                _one(
                    engine,
                    signing,
                    settings,
                    list_type,
                    previous,
                    entries,
                    actor,
                    now,
                    dry_run=dry_run,
                    emergency=emergency,
                    reason=reason,
                )
            )
    return outcomes


def _one(
    engine: Engine,
    signing: Signing | None,
    settings: Settings,
    list_type: ListType,
    previous: ListVersion | None,
    entries: list[ListEntry],
    actor: Actor,
    now: int,
    *,
    dry_run: bool,
    emergency: bool,
    reason: str,
) -> Outcome:
    digest = content_digest(entries)
    if previous is not None and digest == previous.content_digest:
        changes = Diff()  # the same content: nothing to read back or compare
    else:
        old: Sequence[ListEntry] = ()
        if previous is not None:
            archived = settings.out_dir / previous.file
            with contextlib.suppress(FileNotFoundError):
                old = decode_signed_list(archived.read_bytes()).content.entries
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
        return Outcome(
            list_type, "unchanged", "up to date", previous.sequence, len(entries), changes
        )
    sequence = (previous.sequence if previous else 0) + 1
    if dry_run:
        return Outcome(list_type, "would-publish", why, sequence, len(entries), changes)
    if signing is None:
        raise PublishError("publishing needs the list-signing key")
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
    archived = archive_path(settings.out_dir, list_type, sequence)
    archived.parent.mkdir(parents=True, exist_ok=True)
    relative = archived.relative_to(settings.out_dir).as_posix()
    sha256 = hashlib.sha256(data).hexdigest()
    write_atomically(archived, data)
    try:
        with transaction(engine) as session:
            session.add(
                ListVersion(
                    list_type=list_type.value,
                    sequence=sequence,
                    this_update=this_update,
                    next_update=next_update,
                    entries=len(entries),
                    content_digest=digest,
                    sha256=sha256,
                    sm3=sm3(data).hex(),
                    file=relative,
                    published_at=now,
                    published_by=actor.id,
                    emergency=emergency,
                    diff=audit.canonical(changes.as_dict()),
                )
            )
            audit.append(
                session,
                actor=actor.id,
                action=EMERGENCY if emergency else PUBLISH,
                subject=f"{list_type.value} {sequence}",
                details={
                    "why": why,
                    "reason": reason,
                    "entries": len(entries),
                    "sha256": sha256,
                    "sm3": sm3(data).hex(),
                    "this_update": iso_utc(this_update),
                    "next_update": iso_utc(next_update),
                    "added": changes.added,
                    "removed": changes.removed,
                    "changed": sorted(changes.changed),
                },
                at=now,
            )
            session.flush()
    except IntegrityError:
        raise PublishError(
            f"{list_type.value} version {sequence} was published meanwhile by another publisher"
        ) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            archived.unlink()  # no archived version without its record
        raise
    _write_current(settings.out_dir, list_type, data, verified)
    return Outcome(
        list_type,
        "published",
        why,
        sequence,
        len(entries),
        changes,
        current_path(settings.out_dir, list_type),
        sha256,
    )


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
    from ca.errors import BadInput
    from ca.signing import token_signer
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
