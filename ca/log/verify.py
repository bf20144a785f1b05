"""Verifying the log against evidence from outside the database (issue #13, point 4). Pure.

Inputs: the log's rows as the database holds them, the checkpoint notes found outside it (the
checkpoint folder, witnesses' copies, files an auditor hands in; the database's own notes count
only if their signatures verify, like any other), and the trusted audit public keys — from the
root ceremony's certificate files, never from the database.

What is checked, and the finding each failure gives (always with the entry and the source):

- ``deleted`` / ``reordered``: the sequence numbers run 1, 2, 3… without gap or repeat;
- ``edited``: each entry's content gives its stored leaf hash (and can be encoded at all);
- ``node``: the stored subtree hashes (``log_node``) are the ones the entries give;
- ``bad-checkpoint``: a checkpoint file that is malformed or not signed by a trusted audit key;
- ``split-view``: two validly signed checkpoints of one size with different roots;
- ``rolled-back``: a validly signed checkpoint covers more entries than the database holds;
- ``rewritten``: the entries up to a checkpoint's size do not give its root (rows edited,
  inserted, deleted or swapped, and the leaf hashes and nodes rebuilt to match);
- ``unsealed``: an entry newer than the newest checkpoint is not sealed by a seal key the audit
  key registered (a row added or rebuilt behind the service's back);
- ``unanchored``: no validly signed checkpoint was found at all: nothing to verify against.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ca.core.errors import BadInput, CodecError
from ca.log.checkpoint_folder import MAX_FILE, CheckpointFolder
from ca.log.entry import LogEntry
from ca.log.merkle import MemoryTree
from ca.log.note import (
    CHECKPOINT_TYPE,
    COSIGNATURE_TYPE,
    Checkpoint,
    NoteError,
    SignedNote,
    Verifier,
    check_cosignature,
    key_id,
)
from hsm.errors import InvalidKey, InvalidSignature
from hsm.sm.sm2 import SM2PublicKey

BUNDLE_FORMAT: Final = "jtca-log-bundle/1"
SEAL_DOMAIN: Final = b"jtca-log-seal/1\n"
SEAL_KEY_ACTION: Final = "log.seal-key"


def seal_message(leaf: bytes) -> bytes:
    """What a seal signs: the domain line and the entry's 32-byte leaf hash."""
    return SEAL_DOMAIN + leaf


def seal_key_statement(seq: int, at: int, public_key_hex: str) -> bytes:
    """What the audit key signs to register a session's seal key: the whole ``log.seal-key``
    entry is this statement's (its seq, time and key; actor ``jtca``, subject
    ``seal key <first 16 hex digits>`` and details ``{"public_key","signature"}`` are fixed), so
    no field of a registration can change unnoticed."""
    return f"jtca-log-seal-key/2\nseq {seq}\nat {at}\nkey {public_key_hex}\n".encode()


def seal_key_entry_fields(public_key_hex: str, signature_hex: str) -> tuple[str, str, str]:
    """``(actor, subject, details)`` of the registration entry of ``public_key_hex``."""
    from ca.log.entry import canonical

    details = canonical({"public_key": public_key_hex, "signature": signature_hex})
    return "jtca", f"seal key {public_key_hex[:16]}", details


@dataclass(frozen=True)
class Finding:
    seq: int  # the entry concerned (0: the log as a whole)
    problem: str
    message: str


@dataclass(frozen=True)
class FoundCheckpoint:
    source: str
    checkpoint: Checkpoint
    note: SignedNote


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0  # validly signed checkpoints found
    newest: FoundCheckpoint | None = None
    witnesses: list[str] = field(default_factory=list)  # who cosigned the newest, verified
    sealed: int = 0  # entries after the newest checkpoint, each sealed
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _signed_by(note: SignedNote, keys: Sequence[SM2PublicKey]) -> SM2PublicKey | None:
    """The trusted key whose checkpoint signature on ``note`` verifies (any key name)."""
    for signature in note.signatures:
        for key in keys:
            if signature.key_id != key_id(signature.name, CHECKPOINT_TYPE, key):
                continue
            try:
                key.verify_der(signature.signature, note.body)
            except (InvalidSignature, InvalidKey):
                raise NoteError(
                    f"the signature by {signature.name} (a trusted audit key) does not verify"
                ) from None
            return key
    return None


def read_checkpoints(
    sources: Iterable[tuple[str, bytes]], audit_keys: Sequence[SM2PublicKey], report: Report
) -> list[FoundCheckpoint]:
    """The validly signed checkpoints among ``sources``; the others become findings."""
    found: list[FoundCheckpoint] = []
    for source, data in sources:
        try:
            note = SignedNote.parse(data)
            if _signed_by(note, audit_keys) is None:
                names = ", ".join(sorted({s.name for s in note.signatures}))
                raise NoteError(f"not signed by a trusted audit key (signed by: {names})")
            checkpoint = note.checkpoint()
        except (NoteError, UnicodeDecodeError) as exc:
            report.findings.append(Finding(0, "bad-checkpoint", f"{source}: {exc}"))
            continue
        found.append(FoundCheckpoint(source, checkpoint, note))
    by_size: dict[int, FoundCheckpoint] = {}
    for item in found:
        other = by_size.setdefault(item.checkpoint.size, item)
        if other.checkpoint.root != item.checkpoint.root:
            report.findings.append(
                Finding(
                    item.checkpoint.size,
                    "split-view",
                    f"two signed checkpoints of size {item.checkpoint.size} with different roots: "
                    f"{other.source} and {item.source} (the log showed two different histories)",
                )
            )
    report.checkpoints = len(found)
    # by size; of equal trees a copy from outside the database is named first as the newest
    return sorted(
        found, key=lambda f: (f.checkpoint.size, not f.source.startswith("database checkpoint"))
    )


def _entry(row: Mapping[str, Any]) -> LogEntry:
    return LogEntry(
        seq=int(row["seq"]),
        at=int(row["at"]),
        kind=str(row["kind"]),
        actor=str(row["actor"]),
        action=str(row["action"]),
        subject=str(row["subject"]),
        object_sm3=row["object_sm3"],
        details=str(row["details"]),
    )


def verify_log(
    rows: Iterable[Mapping[str, Any]],
    *,
    checkpoints: Iterable[tuple[str, bytes]],
    audit_keys: Sequence[SM2PublicKey],
    nodes: Iterable[tuple[int, int, str]] | None = None,
    witnesses: Sequence[Verifier] = (),
    head: int | None = None,
) -> Report:
    """Check the log's rows (ordered by seq) against the checkpoints. ``nodes`` are the stored
    subtree hashes ``(level, index, hex)``; ``witnesses`` the keys whose cosignatures on the
    newest checkpoint are counted; ``head`` the size the log's head records (the size the
    service has served proofs for)."""
    report = Report()
    found = read_checkpoints(checkpoints, audit_keys, report)
    tree = MemoryTree()
    expected = 1
    seal_keys: dict[int, SM2PublicKey] = {}
    later: list[tuple[int, bytes, Mapping[str, Any]]] = []  # (seq, leaf, row) to check seals
    for row in rows:
        report.entries += 1
        seq = int(row["seq"])
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}–{seq - 1}"
            report.findings.append(
                Finding(expected, "deleted", f"entries {missing} are missing before entry {seq}")
            )
        elif seq < expected:
            report.findings.append(
                Finding(seq, "reordered", f"entry {seq} comes after entry {expected - 1}")
            )
        try:
            entry = _entry(row)
            leaf = entry.leaf_hash()
        except (CodecError, ValueError, TypeError) as exc:
            report.findings.append(Finding(seq, "edited", f"entry {seq} cannot be encoded: {exc}"))
            leaf = bytes.fromhex(str(row["leaf_hash"])) if row.get("leaf_hash") else bytes(32)
        else:
            if leaf.hex() != row["leaf_hash"]:
                report.findings.append(
                    Finding(
                        seq,
                        "edited",
                        f"entry {seq} was edited: its content gives leaf hash {leaf.hex()[:16]}…, "
                        f"the database stores {str(row['leaf_hash'])[:16]}…",
                    )
                )
            if entry.action == SEAL_KEY_ACTION:
                key = registered_seal_key(entry, audit_keys)
                if key is not None and all(
                    k.compressed != key.compressed for k in seal_keys.values()
                ):
                    seal_keys[seq] = key  # a registration replayed in a later row is none
        tree.append_leaf_hash(leaf)
        later.append((seq, leaf, row))
        expected = max(expected, seq + 1)
    size = tree.size
    if head is not None and head > expected - 1:
        missing = f"{expected}" if head == expected else f"{expected}–{head}"
        report.findings.append(
            Finding(
                expected,
                "deleted",
                f"entries {missing} are missing: the log's head records {head} entries, the "
                f"rows end at {expected - 1} (the tail was cut)",
            )
        )
    elif head is not None and head < expected - 1:
        report.findings.append(
            Finding(
                head + 1,
                "reordered",
                f"entries {head + 1}–{expected - 1} are beyond the log's head ({head}): rows "
                "were added behind the service's back",
            )
        )
    if nodes is not None:
        recomputed = {(level, index): digest.hex() for level, index, digest in tree.nodes()}
        for level, index, digest in nodes:
            if recomputed.pop((level, index), None) != digest:
                report.findings.append(
                    Finding(
                        (index << level) + 1,
                        "node",
                        f"the stored subtree hash (level {level}, index {index}) is not the one "
                        "the entries give: proofs served from it would be wrong",
                    )
                )
        for level, index in sorted(recomputed):
            report.findings.append(
                Finding(
                    (index << level) + 1,
                    "node",
                    f"the subtree hash (level {level}, index {index}) is missing from the database",
                )
            )
    if not found:
        report.findings.append(
            Finding(
                0,
                "unanchored",
                "no checkpoint signed by a trusted audit key was found outside the database: "
                "nothing to verify the log against (give --checkpoint or --witness-dir, or check "
                "the checkpoint folder)",
            )
        )
        return report
    matched = 0
    for item in found:
        cp = item.checkpoint
        if cp.size > size:
            report.findings.append(
                Finding(
                    size + 1,
                    "rolled-back",
                    f"{item.source} (signed) covers {cp.size} entries; the database holds {size}: "
                    f"entries {size + 1}–{cp.size} were cut off, or the database was replaced by "
                    "an earlier copy of itself",
                )
            )
            continue
        if cp.size and tree.root(cp.size) != cp.root:
            report.findings.append(
                Finding(
                    matched + 1,
                    "rewritten",
                    f"the database's first {cp.size} entries do not give the root {item.source} "
                    f"signed; the newest checkpoint they match covers {matched}: entries "
                    f"{matched + 1}–{cp.size} were changed, inserted, deleted or reordered, or "
                    "the database is another log",
                )
            )
        else:
            matched = cp.size
    newest = found[-1]
    report.newest = newest
    report.witnesses = _cosigners(found, newest, witnesses)
    covered = min(newest.checkpoint.size, size)
    for seq, leaf, row in later[covered:]:
        problem = seal_problem(row, leaf, seal_keys)
        if problem and seq not in seal_keys:  # a registration the audit key signed is sealed
            report.findings.append(
                Finding(
                    seq,
                    "unsealed",
                    f"entry {seq} is newer than the newest checkpoint ({newest.checkpoint.size}) "
                    f"and {problem}: it was not written by the service",
                )
            )
        else:
            report.sealed += 1
    return report


def registered_seal_key(entry: LogEntry, audit_keys: Sequence[SM2PublicKey]) -> SM2PublicKey | None:
    """The session key a ``log.seal-key`` entry registers, if a trusted audit key signed the
    statement of exactly this entry (``seal_key_statement``); else None."""
    try:
        details = json.loads(entry.details)
        public_hex = str(details["public_key"])
        signature_hex = str(details["signature"])
        signature = bytes.fromhex(signature_hex)
        key = SM2PublicKey.from_bytes(bytes.fromhex(public_hex))
    except (ValueError, KeyError, TypeError, InvalidKey, RecursionError):
        return None
    fields = (entry.actor, entry.subject, entry.details)
    if (entry.kind, entry.object_sm3) != ("event", None) or fields != seal_key_entry_fields(
        public_hex, signature_hex
    ):
        return None
    statement = seal_key_statement(entry.seq, entry.at, public_hex)
    for audit_key in audit_keys:
        try:
            audit_key.verify_der(signature, statement)
        except InvalidSignature:
            continue
        return key
    return None


def seal_problem(row: Mapping[str, Any], leaf: bytes, seal_keys: Mapping[int, SM2PublicKey]) -> str:
    if not row.get("seal") or row.get("seal_key") is None:
        return "has no seal"
    key = seal_keys.get(int(row["seal_key"]))
    if key is None or int(row["seal_key"]) >= int(row["seq"]):
        return f"names seal key {row['seal_key']}, which is no seal key the audit key registered"
    try:
        key.verify(bytes.fromhex(str(row["seal"])), seal_message(leaf))
    except (InvalidSignature, ValueError):
        return f"its seal does not verify under seal key {row['seal_key']}"
    return ""


def _cosigners(
    found: Sequence[FoundCheckpoint], newest: FoundCheckpoint, witnesses: Sequence[Verifier]
) -> list[str]:
    """The witnesses whose cosignature on the newest tree verifies (from any copy of it)."""
    names: set[str] = set()
    for item in found:
        if item.checkpoint != newest.checkpoint:
            continue
        for witness in witnesses:
            verifier = Verifier(witness.name, witness.public_key, COSIGNATURE_TYPE)
            for signature in item.note.signatures:
                if (signature.name, signature.key_id) != (verifier.name, verifier.key_id):
                    continue
                try:
                    check_cosignature(item.note.body, signature, verifier)
                except NoteError:
                    continue
                names.add(witness.name)
    return sorted(names)


def verify_bundle(
    data: bytes,
    *,
    checkpoints: Sequence[tuple[str, bytes]],
    audit_keys: Sequence[SM2PublicKey],
    source: str = "bundle",
    track: Callable[[list[Any]], Iterable[Any]] | None = None,
) -> Report:
    """An exported bundle checked like the database (pure: no service, no database).
    ``track`` wraps the list of entries as they are checked (the command line's progress bar)."""
    try:
        bundle = json.loads(data)
        if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"format is not {BUNDLE_FORMAT}")
        entries = list(bundle["entries"])
        for n, entry in enumerate(entries):
            _check_bundle_entry(n, entry)
        head = int(bundle["size"])
        nodes = [(int(a), int(b), str(c)) for a, b, c in bundle["nodes"]]
        own = [
            (f"database checkpoint {n} (in {source})", str(text).encode())
            for n, text in enumerate(bundle["checkpoints"], 1)
        ]
        witnesses = [
            Verifier(
                str(w["name"]),
                SM2PublicKey.from_bytes(bytes.fromhex(str(w["public_key"]))),
                COSIGNATURE_TYPE,
            )
            for w in bundle.get("witnesses", [])
            if w.get("state") == "active"
        ]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise BadInput(f"{source}: not a jtca log bundle: {exc}") from None
    return verify_log(
        entries if track is None else track(entries),
        checkpoints=[*checkpoints, *own],
        audit_keys=audit_keys,
        nodes=nodes,
        witnesses=witnesses,
        head=head,
    )


# every key of an entry a bundle holds (ca.log.audit.rows); seal and seal_key may be absent
_ENTRY_KEYS: Final = ("seq", "at", "kind", "actor", "action", "subject", "object_sm3",
                      "details", "leaf_hash")  # fmt: skip


def _check_bundle_entry(n: int, entry: object) -> None:
    """The shape ``verify_log`` needs of a bundle's entry (its contents are checked there, a
    wrong value becoming a finding): an object with every key, an integer ``seq``, a
    ``seal_key`` that is an integer or null. ValueError names the entry and the key."""
    if not isinstance(entry, dict):
        raise ValueError(f"entries[{n}]: not an object")
    missing = [key for key in _ENTRY_KEYS if key not in entry]
    if missing:
        raise ValueError(f"entries[{n}]: no {', '.join(missing)}")
    for key, optional in (("seq", False), ("seal_key", True)):
        value = entry.get(key)
        if (value is None and optional) or (type(value) is int):
            continue
        raise ValueError(f"entries[{n}].{key}: {str(value)[:40]!r} is not an integer")
    if not isinstance(entry["leaf_hash"], str | None):
        raise ValueError(f"entries[{n}].leaf_hash: not a string")


def read_checkpoint_files(paths: Sequence[Path]) -> list[tuple[str, bytes]]:
    """Checkpoint files and folders (a checkpoint folder or a witness's folder) as sources."""

    found: list[tuple[str, bytes]] = []
    for path in paths:
        if path.is_dir():
            found += [(str(p), data) for p, data in CheckpointFolder(path).read_all()]
            continue
        try:
            with path.open("rb") as f:
                found.append((str(path), f.read(MAX_FILE + 1)))
        except OSError as exc:
            raise BadInput(f"cannot read the checkpoint {path}: {exc.strerror}") from None
    return found
