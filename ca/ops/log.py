"""Operations of the log area: the audit log's checkpoints, proofs and witnesses (issue #13;
see ca/ops/base.py and docs/witness.md).

- ``log.checkpoint-get``, ``log.inclusion``, ``log.consistency``: public, no sign-in (they reveal
  only hashes). The same use cases answer the plain ``GET /log/checkpoint`` (the C2SP signed
  note as text), ``GET /log/proof/inclusion?index=…&size=…`` and
  ``GET /log/proof/consistency?from=…&to=…`` (``ca.api.app``).
- ``log.cosign``: a witness hands in its cosignature of a checkpoint. No officer: the
  cosignature itself is the credential, checked against the registered witness's key.
- ``log.witness-add``, ``log.witness-remove``: a signed-in officer allowed ``log.witness`` (the
  ministry root officers) registers or removes a witness; ``log.witnesses`` lists them for any
  signed-in officer, each with the newest checkpoint it cosigned.

Hashes in proofs are standard base64 (RFC 4648 §4, as in the checkpoint's root line), not the
URL-safe alphabet pydantic gives ``bytes``.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import ConfigDict, Field

from ca.ops.base import Empty, Model, operation

MAX_WITNESS_NAME: Final = 200
# A schema-less, URL-like name (signed-note key names: no spaces, no '+'), e.g.
# ``witness.gd.gov.cn/jtca`` or ``audit-office-1``.
WITNESS_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._~-]+)*")


def witness_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a witness, or None (the same rule for service and client)."""
    if not name:
        return "a witness needs a name"
    if len(name) > MAX_WITNESS_NAME:
        return f"{len(name)} characters, at most {MAX_WITNESS_NAME}"
    if "://" in name:
        return f"{name[:60]!r} has a scheme: give the name without it (witness.example.gov.cn/x)"
    if not WITNESS_NAME.fullmatch(name):
        return (
            f"{name[:60]!r} is not a witness name: letters, digits, '.', '_', '-' and '/' "
            "between parts, no spaces and no '+'"
        )
    return None


# -- witnesses ---------------------------------------------------------------------------------
class WitnessAddRequest(Model):
    name: str = Field(max_length=MAX_WITNESS_NAME)
    public_key: str = Field(max_length=200)  # hex SM2 point, compressed or uncompressed
    note: str = Field(default="", max_length=500)  # who runs it, for the record


class WitnessRemoveRequest(Model):
    name: str = Field(max_length=MAX_WITNESS_NAME)
    reason: str = Field(max_length=500)


class WitnessView(Model):
    name: str
    public_key: str  # hex, compressed SM2 point
    state: str  # active | removed
    added_at: int
    added_by: str
    last_size: int | None = None  # the newest checkpoint it cosigned
    last_at: int | None = None  # when that cosignature arrived


class Witnesses(Model):
    witnesses: list[WitnessView]
    quorum: int  # policy [log] witness_quorum: K cosignatures make a checkpoint witnessed


# -- checkpoints and cosignatures --------------------------------------------------------------
class CheckpointNote(Model):
    """The newest checkpoint: the C2SP signed note with every stored cosignature line."""

    size: int
    root: str  # standard base64, as in the note
    at: int
    note: str
    cosigners: list[str]  # active witnesses whose cosignature is stored, sorted
    quorum: int
    witnessed: bool
    log_size: int  # entries in the log now: the next checkpoint will cover those past ``size``


class CosignRequest(Model):
    """A witness's cosignature of the checkpoint of ``size`` entries: its signature line,
    ``— <witness name> <base64(key ID ‖ timestamp ‖ DER SM2 signature)>`` (docs/witness.md)."""

    size: int = Field(ge=0)
    line: str = Field(max_length=1000)


class CosignResult(Model):
    size: int
    witness: str
    timestamp: int
    cosigners: int  # distinct active witnesses that cosigned this checkpoint
    quorum: int
    witnessed: bool  # cosigners >= quorum


# -- proofs ------------------------------------------------------------------------------------
class InclusionRequest(Model):
    index: int
    size: int


class InclusionProof(Model):
    index: int
    size: int
    leaf_hash: str  # standard base64
    proof: list[str]  # standard base64, leaf side first (RFC 9162 §2.1.3.1)


class ConsistencyRequest(Model):
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    first: int = Field(alias="from")
    second: int = Field(alias="to")


class ConsistencyProof(Model):
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    first: int = Field(alias="from")
    second: int = Field(alias="to")
    proof: list[str]  # standard base64 (RFC 9162 §2.1.4.1)


CHECKPOINT_GET = operation(
    "log.checkpoint-get",
    Empty,
    CheckpointNote,
    "the newest signed checkpoint of the audit log with its witnesses' cosignatures (public)",
    mutating=False,
    officer=False,
)
INCLUSION = operation(
    "log.inclusion",
    InclusionRequest,
    InclusionProof,
    "an inclusion proof of entry `index` (seq − 1) in the log's tree of `size` entries (public)",
    mutating=False,
    officer=False,
)
CONSISTENCY = operation(
    "log.consistency",
    ConsistencyRequest,
    ConsistencyProof,
    "a consistency proof between the log's trees of `from` and `to` entries (public)",
    mutating=False,
    officer=False,
)
COSIGN = operation(
    "log.cosign",
    CosignRequest,
    CosignResult,
    "a registered witness's cosignature of a stored checkpoint (the cosignature is the "
    "credential; no officer)",
    officer=False,
)
WITNESS_ADD = operation(
    "log.witness-add",
    WitnessAddRequest,
    WitnessView,
    "register a witness of the log: its name and SM2 public key (an officer allowed log.witness)",
)
WITNESS_REMOVE = operation(
    "log.witness-remove",
    WitnessRemoveRequest,
    WitnessView,
    "remove a witness: its cosignatures no longer count (an officer allowed log.witness)",
)
WITNESSES = operation(
    "log.witnesses",
    Empty,
    Witnesses,
    "the log's witnesses, each with the newest checkpoint it cosigned (a signed-in officer)",
    mutating=False,
)

__all__ = [
    "CHECKPOINT_GET",
    "CONSISTENCY",
    "COSIGN",
    "INCLUSION",
    "WITNESSES",
    "WITNESS_ADD",
    "WITNESS_REMOVE",
    "Empty",
    "witness_name_problem",
]
