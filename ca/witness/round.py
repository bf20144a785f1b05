"""One round of a witness (docs/witness.md, "What a witness promises").

1. Fetch the newest checkpoint from the log (``LogSource.checkpoint``).
2. Verify the log's signature with the audit certificate(s) in the witness's folder only
   (``ca.log.anchors``), under the origin pinned at the first round.
3. Compare with the last checkpoint it cosigned (its own copy, ``DIR/checkpoint``):
   - the same size: the roots must be equal (then its cosignature is handed in again, as a
     retry: the service keeps one per witness and checkpoint);
   - a larger size: the log's consistency proof from the old size must verify (RFC 9162
     §2.1.4.2, ``ca.log.merkle.verify_consistency``);
   - a smaller size: a rollback;
   and a checkpoint of a size it cosigned before must have the root it cosigned then.
4. Cosign with its own key (C2SP tlog-cosignature, jtca's SM2 type: ``ca.log.note.cosign``),
   keep its copy (the note with the log's signature and its cosignature) atomically, then hand
   the cosignature in (``log.cosign``). The copy is kept first: a cosignature the service never
   received is handed in again at the next round.

A split view — two roots for one size, a proof that fails, a rollback — is refused before
anything is signed: the evidence goes to ``DIR/split-view-<size>-<time>/`` and ``SplitView``
is raised (exit 9). Since every later checkpoint is checked against the witness's own copies, it
can never cosign the other view afterwards.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from pydantic import ValidationError

from ca.core.errors import JtcaError
from ca.log.anchors import audit_verifiers
from ca.log.merkle import ProofError, verify_consistency
from ca.log.note import (
    COSIGNATURE_TYPE,
    Checkpoint,
    NoteError,
    NoteSignature,
    SignedNote,
    Verifier,
    cosign,
    verify_checkpoint,
)
from ca.ops import log as log_ops
from ca.witness.folder import WitnessConfig, WitnessFolder, WitnessFolderError
from hsm.sm.sm2 import SM2PublicKey

if TYPE_CHECKING:
    from ca.client.http import Client

EXIT_SPLIT_VIEW: Final = 9
CHECKPOINT_PATH: Final = "/log/checkpoint"
CONSISTENCY_PATH: Final = "/log/proof/consistency"


class SplitView(JtcaError):
    """The log showed two views: refused, with the evidence written (docs/witness.md)."""

    title = "SPLIT VIEW"
    exit_code = EXIT_SPLIT_VIEW

    def __init__(self, headline: str, detail: str, evidence: Path) -> None:
        super().__init__(f"{headline}; {detail}; the evidence is in {evidence}")
        self.headline = headline
        self.detail = detail
        self.evidence = evidence


class LogRefused(JtcaError):
    """What the log answered cannot be checked (not a split view: nothing was cosigned)."""

    title = "Checkpoint refused"
    exit_code = 8


class LogSource(Protocol):
    """Where the witness reads the log and hands its cosignatures in."""

    def where(self) -> str: ...

    def checkpoint(self) -> str:
        """The newest checkpoint, as the signed note's text."""
        ...

    def consistency(self, first: int, second: int) -> list[bytes]: ...

    def submit(self, size: int, line: str) -> log_ops.CosignResult: ...


class Signer(Protocol):
    """The witness's key: ``ca.witness.token.WitnessToken``."""

    @property
    def public_key(self) -> SM2PublicKey: ...

    def sign_der(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class RoundResult:
    size: int
    root: bytes
    previous: int | None  # the size it cosigned before this round (None: its first)
    new: bool  # False: the same checkpoint as last time, its cosignature handed in again
    copy: Path
    accepted: log_ops.CosignResult | None  # the service's answer
    submit_error: JtcaError | None = None  # the service refused or could not be reached


def decode_proof(data: bytes, first: int, second: int) -> list[bytes]:
    """The hashes of a ``GET /log/proof/consistency`` answer for ``first`` → ``second``."""
    try:
        answer = log_ops.ConsistencyProof.model_validate_json(data)
    except ValidationError as exc:
        raise LogRefused(
            f"the consistency proof {first}→{second} is not the expected JSON "
            f"({exc.error_count()} problem(s))"
        ) from None
    if (answer.first, answer.second) != (first, second):
        raise LogRefused(
            f"asked for a consistency proof {first}→{second}, the log answered "
            f"{answer.first}→{answer.second}"
        )
    hashes = []
    for i, text in enumerate(answer.proof):
        try:
            digest = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise LogRefused(f"consistency proof hash {i}: {text[:40]!r} is not base64") from None
        if len(digest) != 32:
            raise LogRefused(f"consistency proof hash {i}: {len(digest)} bytes, SM3 gives 32")
        hashes.append(digest)
    return hashes


class ServiceLog:
    """The authority service: ``GET /log/checkpoint``, ``GET /log/proof/consistency``,
    ``log.cosign`` (``ca.client.http.Client``, anonymous)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def where(self) -> str:
        target = self.client.target
        return target.url if target else str(self.client.http.base_url)

    def checkpoint(self) -> str:
        response = self.client.read(CHECKPOINT_PATH)
        try:
            return response.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LogRefused(f"the checkpoint is not UTF-8 (byte {exc.start})") from None

    def consistency(self, first: int, second: int) -> list[bytes]:
        response = self.client.read(CONSISTENCY_PATH, {"from": first, "to": second})
        return decode_proof(response.content, first, second)

    def submit(self, size: int, line: str) -> log_ops.CosignResult:
        return self.client.call(log_ops.COSIGN, log_ops.CosignRequest(size=size, line=line))


def verifiers(folder: WitnessFolder, config: WitnessConfig, origin: str) -> list[Verifier]:
    """The log's keys, from the certificates in the witness's folder only."""
    if not config.audit_certs:
        raise WitnessFolderError(f"{folder.config_path}: no audit certificate to trust")
    return audit_verifiers(
        [folder.resolve(p) for p in config.audit_certs],
        [folder.resolve(p) for p in config.root_certs],
        origin,
    )


def _parse_own(data: bytes, where: Path) -> tuple[Checkpoint, SignedNote]:
    try:
        note = SignedNote.parse(data)
        return note.checkpoint(), note
    except (NoteError, UnicodeDecodeError) as exc:
        raise WitnessFolderError(f"{where}: not a checkpoint ({exc})") from None


class Witness:
    """A witness at work: its folder, its key and the log it watches."""

    def __init__(
        self,
        folder: WitnessFolder,
        key: Signer,
        log: LogSource,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.folder = folder
        self.key = key
        self.log = log
        self.clock = clock or (lambda: int(time.time()))
        self._log_keys: list[Verifier] = []

    def round(self) -> RoundResult:
        with self.folder.locked():
            return self._round()

    def _round(self) -> RoundResult:
        config = self.folder.load()
        if self.key.public_key.uncompressed.hex() != config.public_key:
            raise WitnessFolderError(
                f"{self.folder.config_path}: the token's key is not this witness's "
                f"({config.public_key[:16]}…); wrong --token?"
            )
        offered = self.log.checkpoint()
        checkpoint, note = self._verify(config, offered)
        # its newest copy: the largest size kept (``checkpoint`` names it too, unless lost)
        sizes = self.folder.sizes()
        last = self.folder.copy_at(sizes[-1]) if sizes else self.folder.newest()
        previous: int | None = None
        proof: list[bytes] = []
        if last is not None:
            where = (
                self.folder.checkpoints.history(sizes[-1])
                if sizes
                else self.folder.checkpoints.newest
            )
            mine, mine_note = _parse_own(last, where)
            previous = mine.size
            at_size = self.folder.copy_at(checkpoint.size)
            if at_size is not None:
                same, _ = _parse_own(at_size, self.folder.checkpoints.history(checkpoint.size))
                if same.root != checkpoint.root:
                    self._split(
                        f"the log showed two different trees of size {checkpoint.size}",
                        f"it cosigned root {same.root.hex()} and now shows {checkpoint.root.hex()}",
                        checkpoint.size,
                        offered,
                        at_size,
                    )
            if checkpoint.size < mine.size:
                self._split(
                    f"the log went back from size {mine.size} to size {checkpoint.size}",
                    "a log only grows (a rollback, or a second log under the same key)",
                    checkpoint.size,
                    offered,
                    last,
                )
            if checkpoint.size == mine.size:
                own = self._own_line(config, mine_note)
                if own is not None:
                    return self._submit(checkpoint, previous, False, own, mine_note.text())
            elif mine.size > 0:
                proof = self.log.consistency(mine.size, checkpoint.size)
                try:
                    verify_consistency(
                        mine.size, checkpoint.size, mine.root, checkpoint.root, proof
                    )
                except ProofError as exc:
                    self._split(
                        f"the log's tree of size {checkpoint.size} does not extend the tree of "
                        f"size {mine.size} it showed before",
                        exc.message,
                        checkpoint.size,
                        offered,
                        last,
                        proof=(mine.size, checkpoint.size, proof, exc.message),
                    )
        signature = cosign(note, config.name, self.key.public_key, self.clock(), self.key.sign_der)
        log_signatures = tuple(s for s in note.signatures if self._is_log_signature(config, s))
        kept = SignedNote(note.body, (*log_signatures, signature)).text()
        return self._submit(checkpoint, previous, True, signature, kept)

    # -- steps -----------------------------------------------------------------------------
    def _verify(self, config: WitnessConfig, offered: str) -> tuple[Checkpoint, SignedNote]:
        try:
            claimed = SignedNote.parse(offered).checkpoint().origin
        except (NoteError, UnicodeDecodeError) as exc:
            raise LogRefused(f"{self.log.where()}: not a checkpoint: {exc}") from None
        if config.origin is not None and claimed != config.origin:
            raise LogRefused(
                f"{self.log.where()}: the checkpoint is of the log {claimed!r}, this witness "
                f"watches {config.origin!r}"
            )
        self._log_keys = verifiers(self.folder, config, claimed)
        try:
            checkpoint, note = verify_checkpoint(offered, self._log_keys)
        except NoteError as exc:
            raise LogRefused(f"{self.log.where()}: {exc.message}") from None
        if config.origin is None:  # pinned: the audit key signed this origin line
            self.folder.save(_with_origin(config, checkpoint.origin))
        return checkpoint, note

    def _is_log_signature(self, config: WitnessConfig, signature: NoteSignature) -> bool:
        return any((v.name, v.key_id) == (signature.name, signature.key_id) for v in self._log_keys)

    def _own_line(self, config: WitnessConfig, note: SignedNote) -> NoteSignature | None:
        me = Verifier(config.name, self.key.public_key, COSIGNATURE_TYPE)
        return me.find(note)

    def _submit(
        self,
        checkpoint: Checkpoint,
        previous: int | None,
        new: bool,
        signature: NoteSignature,
        kept: str,
    ) -> RoundResult:
        copy = (
            self.folder.keep(kept, checkpoint.size)
            if new
            else self.folder.checkpoints.history(checkpoint.size)
        )
        try:
            accepted: log_ops.CosignResult | None = self.log.submit(
                checkpoint.size, signature.line().rstrip("\n")
            )
            error: JtcaError | None = None
        except JtcaError as exc:
            accepted, error = None, exc
        return RoundResult(checkpoint.size, checkpoint.root, previous, new, copy, accepted, error)

    def _split(
        self,
        headline: str,
        detail: str,
        size: int,
        offered: str,
        cosigned: bytes,
        *,
        proof: tuple[int, int, list[bytes], str] | None = None,
    ) -> None:
        at = self.clock()
        files = {
            "offered.note": offered.encode("utf-8"),
            "cosigned.note": cosigned,
        }
        if proof is not None:
            first, second, hashes, error = proof
            files["consistency-proof.json"] = (
                json.dumps(
                    {
                        "from": first,
                        "to": second,
                        "proof": [base64.b64encode(h).decode() for h in hashes],
                        "error": error,
                    },
                    indent=2,
                )
                + "\n"
            ).encode()
        files["README.txt"] = (
            f"SPLIT VIEW: {headline}.\n{detail}.\n\n"
            f"log: {self.log.where()}\n"
            f"seen at: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))} ({at})\n\n"
            "offered.note   the checkpoint the log showed in this round (signed by the audit key)\n"
            "cosigned.note  this witness's own copy of the checkpoint it cosigned before\n"
            + (
                "consistency-proof.json  the log's consistency proof, which does not verify\n"
                if proof
                else ""
            )
            + "\nThis witness refused to cosign. See docs/witness.md, 'Split view'.\n"
        ).encode()
        evidence = self.folder.record_split_view(size, at, files)
        raise SplitView(headline, detail, evidence)


def _with_origin(config: WitnessConfig, origin: str) -> WitnessConfig:
    from dataclasses import replace

    return replace(config, origin=origin)
