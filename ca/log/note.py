"""Checkpoints and cosignatures as C2SP signed notes (c2sp.org/signed-note, tlog-checkpoint,
tlog-cosignature), with SM2 signatures.

A checkpoint's note text is the origin line, the tree size in decimal and the base64 root hash,
each ending in LF, then any extension lines. Signature lines follow a blank line:
``— <key name> <base64(4-byte key ID ‖ signature)>``.

jtca signature types (signed-note §"Signature types": 0xff is reserved for types without an
assigned byte, followed by an identifier):

- checkpoint signature: type ``0xff ‖ "jtca/sm2-sm3"``; the signature is the DER SM2 signature
  (SM3, Z over the ID 1234567812345678) of the note text, so OpenSSL alone can check it.
- cosignature: type ``0xff ‖ "jtca/sm2-sm3-cosignature/v1"``; the signature is an 8-byte
  big-endian POSIX timestamp followed by the DER SM2 signature of
  ``"cosignature/v1\\ntime <timestamp>\\n" ‖ note text`` (tlog-cosignature's signed message).

Key ID = the first 4 bytes of SM3(key name ‖ 0x0A ‖ type ‖ 65-byte uncompressed SM2 point).
(signed-note recommends SHA-256 here; jtca hashes with SM3 like everything else in the scheme.)
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ca.core.errors import CodecError
from hsm.errors import InvalidKey, InvalidSignature, JtcaError
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

CHECKPOINT_TYPE: Final = b"\xff" + b"jtca/sm2-sm3"
COSIGNATURE_TYPE: Final = b"\xff" + b"jtca/sm2-sm3-cosignature/v1"
MAX_NOTE: Final = 64 * 1024
MAX_SIGNATURES: Final = 100
_SIGNATURE_LINE: Final = re.compile(r"— (\S+) ([A-Za-z0-9+/=]+)")
_DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,18}")


class NoteError(JtcaError):
    """A checkpoint or cosignature that is malformed or does not verify."""

    title = "Checkpoint"
    exit_code = 8


def key_id(name: str, signature_type: bytes, public_key: SM2PublicKey) -> bytes:
    return sm3(name.encode("utf-8"), b"\n", signature_type, public_key.uncompressed)[:4]


def _b64decode(text: str, what: str) -> bytes:
    """Standard base64 in its one canonical spelling (so one note has one text)."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what}: {text[:40]!r} is not base64") from None
    if base64.b64encode(data).decode() != text:
        raise NoteError(f"{what}: {text[:40]!r} is not base64 in its canonical spelling")
    return data


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The note text of a checkpoint (tlog-checkpoint)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> bytes:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def parse_body(cls, body: bytes) -> Checkpoint:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"the checkpoint text is not UTF-8 (byte {exc.start})") from None
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin line, a size line and a root hash line")
        origin, size, root, *extensions = lines[:-1]
        if not origin or origin != origin.strip() or "+" in origin or " " in origin:
            raise NoteError(f"line 1: {origin[:60]!r} is not an origin (no spaces, no '+')")
        if not _DECIMAL.fullmatch(size):
            raise NoteError(f"line 2: {size[:40]!r} is not a tree size in decimal")
        digest = _b64decode(root, "line 3 (root hash)")
        if len(digest) != 32:
            raise NoteError(f"line 3: the root hash is {len(digest)} bytes, an SM3 hash is 32")
        if any(not line for line in extensions):
            raise NoteError("an empty extension line")
        return cls(origin, int(size), digest, tuple(extensions))


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"— {self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True, slots=True)
class SignedNote:
    body: bytes
    signatures: tuple[NoteSignature, ...]

    def text(self) -> str:
        return self.body.decode("utf-8") + "\n" + "".join(s.line() for s in self.signatures)

    def checkpoint(self) -> Checkpoint:
        return Checkpoint.parse_body(self.body)

    def with_signature(self, signature: NoteSignature) -> SignedNote:
        kept = tuple(
            s for s in self.signatures if (s.name, s.key_id) != (signature.name, signature.key_id)
        )
        return SignedNote(self.body, (*kept, signature))

    @classmethod
    def parse(cls, data: bytes | str) -> SignedNote:
        try:
            raw = data.encode("utf-8") if isinstance(data, str) else data
        except UnicodeEncodeError as exc:
            raise NoteError(f"the note cannot be written in UTF-8 (offset {exc.start})") from None
        if len(raw) > MAX_NOTE:
            raise NoteError(f"the note is {len(raw)} bytes, more than {MAX_NOTE}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"the note is not UTF-8 (byte {exc.start})") from None
        for i, ch in enumerate(text):
            if (ch < " " and ch != "\n") or ch == "\x7f":
                raise NoteError(f"a control character U+{ord(ch):04X} at offset {i}")
        cut = text.rfind("\n\n")
        if cut < 0 or not text.endswith("\n"):
            raise NoteError("no blank line between the note text and its signature lines")
        body, tail = text[: cut + 1], text[cut + 2 :]
        lines = tail[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"{len(lines)} signature lines, more than {MAX_SIGNATURES}")
        signatures = []
        for number, line in enumerate(lines, 1):
            match = _SIGNATURE_LINE.fullmatch(line)
            if match is None:
                raise NoteError(f"signature line {number}: {line[:60]!r} is not '— name base64'")
            blob = _b64decode(match.group(2), f"signature line {number}")
            if len(blob) < 5:
                raise NoteError(f"signature line {number}: {len(blob)} bytes, too short")
            signatures.append(NoteSignature(match.group(1), blob[:4], blob[4:]))
        return cls(body.encode("utf-8"), tuple(signatures))


# -- the log's signature -----------------------------------------------------------------------
def sign_checkpoint(
    checkpoint: Checkpoint, name: str, public_key: SM2PublicKey, sign_der: Callable[[bytes], bytes]
) -> SignedNote:
    body = checkpoint.body()
    signature = NoteSignature(name, key_id(name, CHECKPOINT_TYPE, public_key), sign_der(body))
    return SignedNote(body, (signature,))


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted key: its name, its public key, and which signature type it makes."""

    name: str
    public_key: SM2PublicKey
    signature_type: bytes = CHECKPOINT_TYPE

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.signature_type, self.public_key)

    def find(self, note: SignedNote) -> NoteSignature | None:
        for s in note.signatures:
            if s.name == self.name and s.key_id == self.key_id:
                return s
        return None


def verify_checkpoint(
    data: bytes | str, log_keys: Sequence[Verifier]
) -> tuple[Checkpoint, SignedNote]:
    """A checkpoint signed by one of the trusted log keys (signed-note: signatures by unknown
    keys are ignored; one by a known key must verify). Raises NoteError naming the reason."""
    note = SignedNote.parse(data)
    known = [(v, s) for v in log_keys if (s := v.find(note)) is not None]
    if not known:
        names = ", ".join(sorted({s.name for s in note.signatures})) or "none"
        raise NoteError(f"the checkpoint is signed by no trusted audit key (signed by: {names})")
    for verifier, signature in known:
        try:
            verifier.public_key.verify_der(signature.signature, note.body)
        except (InvalidSignature, InvalidKey) as exc:
            raise NoteError(f"the signature of {verifier.name} does not verify: {exc}") from None
    try:
        checkpoint = note.checkpoint()
    except UnicodeDecodeError:
        raise NoteError("the checkpoint text is not UTF-8") from None
    return checkpoint, note


# -- cosignatures ------------------------------------------------------------------------------
def cosignature_message(body: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + body


def cosign(
    note: SignedNote,
    name: str,
    public_key: SM2PublicKey,
    timestamp: int,
    sign_der: Callable[[bytes], bytes],
) -> NoteSignature:
    if not 0 <= timestamp < 1 << 63:
        raise NoteError(f"cosignature time {timestamp} out of range")
    signature = sign_der(cosignature_message(note.body, timestamp))
    return NoteSignature(
        name, key_id(name, COSIGNATURE_TYPE, public_key), timestamp.to_bytes(8, "big") + signature
    )


def verify_cosignature(note: SignedNote, witness: Verifier) -> int:
    """The cosignature by ``witness`` on ``note``: its timestamp. Raises NoteError."""
    signature = witness.find(note)
    if signature is None:
        raise NoteError(f"no cosignature by {witness.name}")
    return check_cosignature(note.body, signature, witness)


def check_cosignature(body: bytes, signature: NoteSignature, witness: Verifier) -> int:
    if signature.name != witness.name or signature.key_id != witness.key_id:
        raise NoteError(
            f"the cosignature line names {signature.name}, not the witness {witness.name}"
        )
    if len(signature.signature) < 9:
        raise NoteError(f"the cosignature by {witness.name} is too short")
    timestamp = int.from_bytes(signature.signature[:8], "big")
    try:
        witness.public_key.verify_der(signature.signature[8:], cosignature_message(body, timestamp))
    except (InvalidSignature, InvalidKey) as exc:
        raise NoteError(f"the cosignature by {witness.name} does not verify: {exc}") from None
    return timestamp


def body_of(data: bytes) -> bytes:
    """The note text alone (for CodecError-free callers that hold a checkpoint file)."""
    return SignedNote.parse(data).body


__all__ = [
    "CHECKPOINT_TYPE",
    "COSIGNATURE_TYPE",
    "Checkpoint",
    "CodecError",
    "NoteError",
    "NoteSignature",
    "SignedNote",
    "Verifier",
    "check_cosignature",
    "cosign",
    "cosignature_message",
    "key_id",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_cosignature",
]
