"""The log proof file ``jtca-log-proof/1``: an object (a list, a certificate, a key package)
together with the proof that the audit log holds it (docs/lists.md, "The log proof file").

The file is one JSON object in UTF-8, written as canonical JSON (keys sorted, no spaces,
non-ASCII as itself) followed by one LF:

    format      "jtca-log-proof/1"
    entry       base64 (RFC 4648 §4, padded) of the exact log entry bytes (``ca.log.entry``)
    index       the entry's leaf index (its seq - 1), a JSON integer
    size        the tree size of the checkpoint, a JSON integer
    inclusion   the RFC 9162 §2.1.3 inclusion proof: a JSON array of base64 32-byte SM3 hashes
    checkpoint  the checkpoint's signed note text (C2SP tlog-checkpoint) with the audit key's
                signature line and every witness cosignature line, as one JSON string

``verify_proof`` checks, in this order, and raises ``LogProofError`` naming the failed step:
``bundle`` (the file's form), ``entry`` (it parses; its kind carries an object; its seq is
index + 1), ``object`` (the entry's object digest is SM3 of the bytes in hand), ``checkpoint``
(the note is spelled canonically and signed by a trusted audit key; its size is ``size``),
``inclusion`` (the proof leads from the entry's leaf hash to the checkpoint's root) and
``witnesses`` (at least ``quorum`` of the trusted witnesses cosigned it). Every base64 value
must be spelled canonically (its unused low bits zero), so a proof has one spelling. Nothing
here touches a database or a token.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ca.core.errors import CodecError
from ca.log.entry import LogEntry, canonical
from ca.log.merkle import HASH_SIZE, ProofError, verify_inclusion
from ca.log.note import (
    COSIGNATURE_TYPE,
    Checkpoint,
    NoteError,
    SignedNote,
    Verifier,
    check_cosignature,
    verify_checkpoint,
)
from hsm.errors import InvalidKey, JtcaError
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

FORMAT: Final = "jtca-log-proof/1"
SUFFIX: Final = ".proof"  # the proof of ``<list file>`` travels as ``<list file>.proof``
MAX_BUNDLE: Final = 4 << 20  # an entry (≤ 1 MiB) in base64, 64 hashes and a note
MAX_PROOF_HASHES: Final = 64  # a tree of 2^63 entries needs 63
FIELDS: Final = ("checkpoint", "entry", "format", "inclusion", "index", "size")
STEPS: Final = ("bundle", "entry", "object", "checkpoint", "inclusion", "witnesses")


class LogProofError(JtcaError):
    """A log proof that is malformed or does not verify; ``step`` names which check failed."""

    title = "Log proof"
    exit_code = 8

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclass(frozen=True, slots=True)
class LogProof:
    """The fields of a log proof file, decoded (``encode`` gives the file's bytes)."""

    entry: bytes
    index: int
    size: int
    inclusion: tuple[bytes, ...]
    checkpoint: str

    def encode(self) -> bytes:
        value = {
            "format": FORMAT,
            "entry": _b64(self.entry),
            "index": self.index,
            "size": self.size,
            "inclusion": [_b64(h) for h in self.inclusion],
            "checkpoint": self.checkpoint,
        }
        return (canonical(value) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> LogProof:
        """The fields of a proof file; LogProofError (step ``bundle``) names what is wrong."""
        if len(data) > MAX_BUNDLE:
            raise LogProofError("bundle", f"{len(data)} bytes, more than {MAX_BUNDLE}")
        try:
            value: Any = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_members)
        except UnicodeDecodeError as exc:
            raise LogProofError("bundle", f"not UTF-8 (byte {exc.start})") from None
        except ValueError as exc:
            raise LogProofError("bundle", f"not JSON: {exc}") from None
        except RecursionError:
            raise LogProofError("bundle", "not JSON: nested too deeply") from None
        if not isinstance(value, dict):
            raise LogProofError("bundle", "not a JSON object")
        if sorted(value) != list(FIELDS):
            missing = sorted(set(FIELDS) - set(value))
            extra = sorted(set(value) - set(FIELDS))
            raise LogProofError(
                "bundle",
                "fields "
                + "; ".join(
                    part
                    for part in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"unknown {', '.join(extra)}" if extra else "",
                    )
                    if part
                ),
            )
        if value["format"] != FORMAT:
            raise LogProofError("bundle", f"format {str(value['format'])[:40]!r} is not {FORMAT!r}")
        for name in ("index", "size"):
            number = value[name]
            if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 1 << 63:
                raise LogProofError("bundle", f"{name} {str(number)[:40]!r} is not an integer ≥ 0")
        if not isinstance(value["checkpoint"], str):
            raise LogProofError("bundle", "checkpoint is not a JSON string")
        hashes = value["inclusion"]
        if not isinstance(hashes, list) or len(hashes) > MAX_PROOF_HASHES:
            raise LogProofError(
                "bundle", f"inclusion is not an array of at most {MAX_PROOF_HASHES} hashes"
            )
        inclusion = []
        for i, text in enumerate(hashes):
            digest = _unb64(text, f"inclusion[{i}]")
            if len(digest) != HASH_SIZE:
                raise LogProofError(
                    "bundle", f"inclusion[{i}] is {len(digest)} bytes, an SM3 hash is {HASH_SIZE}"
                )
            inclusion.append(digest)
        return cls(
            entry=_unb64(value["entry"], "entry"),
            index=value["index"],
            size=value["size"],
            inclusion=tuple(inclusion),
            checkpoint=value["checkpoint"],
        )


@dataclass(frozen=True, slots=True)
class ProofResult:
    """What a verified proof shows: the entry, where it sits and the checkpoint that holds it."""

    entry: LogEntry
    index: int
    size: int
    checkpoint: Checkpoint
    signed_by: tuple[str, ...]  # the trusted audit key names whose signature verified
    witnessed_by: tuple[tuple[str, int], ...]  # (witness, cosignature timestamp)


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"the member {name[:40]!r} appears twice")
    return dict(pairs)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise LogProofError("bundle", f"{what} is not a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise LogProofError("bundle", f"{what}: {text[:40]!r} is not base64") from None
    if _b64(data) != text:
        raise LogProofError("bundle", f"{what}: {text[-8:]!r} ends in non-canonical base64")
    return data


# -- making ----------------------------------------------------------------------------------
def build(
    entry: bytes, index: int, size: int, inclusion: Sequence[bytes], checkpoint: str
) -> bytes:
    """The proof file's bytes. Refuses a bundle that could not verify: an entry that does not
    parse or sits at another index, a note whose size is not ``size``, or a proof that does not
    lead to the note's root (the signature is the reader's to check)."""
    proof = LogProof(entry, index, size, tuple(inclusion), checkpoint)
    parsed = _entry(proof)
    note = _canonical_note(checkpoint)
    try:
        point = note.checkpoint()
    except (NoteError, UnicodeDecodeError) as exc:
        raise LogProofError("checkpoint", str(exc)) from None
    _size(point, size)
    _inclusion(parsed, proof, point)
    data = proof.encode()
    LogProof.parse(data)  # the limits a reader applies
    return data


# -- checking --------------------------------------------------------------------------------
def verify_proof(
    bundle: bytes,
    object_bytes: bytes,
    verifiers: Sequence[Verifier],
    witnesses: Sequence[Verifier] = (),
    quorum: int = 0,
) -> ProofResult:
    """Check a log proof file against the object's bytes, trusting only ``verifiers`` (the
    audit key, from the ceremony's certificate) and ``witnesses`` (cosignature keys; ``quorum``
    of them must have cosigned). Raises LogProofError naming the step; returns what it showed."""
    proof = LogProof.parse(bundle)
    entry = _entry(proof)
    digest = sm3(object_bytes).hex()
    if entry.object_sm3 != digest:
        raise LogProofError(
            "object",
            f"entry {entry.seq} logs object {entry.object_sm3}, the file given has SM3 {digest}",
        )
    _canonical_note(proof.checkpoint)
    try:
        point, note = verify_checkpoint(proof.checkpoint, verifiers)
    except NoteError as exc:
        raise LogProofError("checkpoint", exc.message) from None
    _size(point, proof.size)
    _inclusion(entry, proof, point)
    witnessed = _witnessed(note, witnesses, quorum)
    signed = tuple(v.name for v in verifiers if v.find(note) is not None)
    return ProofResult(entry, proof.index, proof.size, point, signed, witnessed)


def _entry(proof: LogProof) -> LogEntry:
    try:
        entry = LogEntry.parse(proof.entry)
    except CodecError as exc:
        raise LogProofError("entry", str(exc)) from None
    if entry.object_sm3 is None:
        raise LogProofError("entry", f"entry {entry.seq} is an {entry.kind}: it logs no object")
    if entry.seq != proof.index + 1:
        raise LogProofError(
            "entry",
            f"entry {entry.seq} sits at index {entry.seq - 1}, the proof says {proof.index}",
        )
    return entry


def _canonical_note(text: str) -> SignedNote:
    """The note, refused unless it is exactly as written (base64 leaves the low bits of its
    last character free: a signature line spelled two ways is one line, and a proof has one
    spelling)."""
    try:
        note = SignedNote.parse(text)
    except NoteError as exc:
        raise LogProofError("checkpoint", exc.message) from None
    if note.text() != text:
        raise LogProofError("checkpoint", "the note is not in its canonical form (base64 spelling)")
    return note


def _size(point: Checkpoint, size: int) -> None:
    if point.size != size:
        raise LogProofError(
            "checkpoint", f"the checkpoint is of size {point.size}, the proof says {size}"
        )


def _inclusion(entry: LogEntry, proof: LogProof, point: Checkpoint) -> None:
    try:
        verify_inclusion(proof.index, proof.size, entry.leaf_hash(), proof.inclusion, point.root)
    except ProofError as exc:
        raise LogProofError("inclusion", exc.message) from None


def _witnessed(
    note: SignedNote, witnesses: Sequence[Verifier], quorum: int
) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for witness in witnesses:
        line = witness.find(note)
        if line is None:
            continue
        try:
            found.append((witness.name, check_cosignature(note.body, line, witness)))
        except NoteError as exc:
            raise LogProofError("witnesses", exc.message) from None
    if len(found) < quorum:
        names = ", ".join(name for name, _ in found) or "none"
        raise LogProofError(
            "witnesses",
            f"{len(found)} of the {len(witnesses)} trusted witnesses cosigned the checkpoint "
            f"(cosigned by: {names}); {quorum} are needed",
        )
    return tuple(found)


# -- trusted keys ----------------------------------------------------------------------------
def origin_of(bundle: bytes) -> str:
    """The log origin on the proof's checkpoint: the name its audit key signs under
    (``ca.log.anchors.verifiers_from`` makes the verifiers of that name from certificate files;
    trust is in the certified key, whatever the origin says)."""
    proof = LogProof.parse(bundle)
    try:
        return SignedNote.parse(proof.checkpoint).checkpoint().origin
    except (NoteError, UnicodeDecodeError) as exc:
        raise LogProofError("checkpoint", str(exc)) from None


def witness_verifier(spec: str) -> Verifier:
    """A witness as ``NAME=HEX`` (its SM2 public key, compressed or uncompressed, in hex)."""
    name, sep, key = spec.partition("=")
    if not sep or not name or " " in name:
        raise LogProofError("witnesses", f"{spec[:60]!r} is not NAME=PUBLIC-KEY-HEX")
    try:
        public_key = SM2PublicKey.from_bytes(bytes.fromhex(key))
    except (ValueError, InvalidKey) as exc:
        raise LogProofError("witnesses", f"{name}: {key[:40]!r} is not an SM2 key: {exc}") from None
    return Verifier(name, public_key, COSIGNATURE_TYPE)


__all__ = [
    "FORMAT",
    "STEPS",
    "SUFFIX",
    "LogProof",
    "LogProofError",
    "ProofResult",
    "build",
    "origin_of",
    "verify_proof",
    "witness_verifier",
]
