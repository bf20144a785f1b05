"""The audit chain without the database: hashing, checkpoint messages, and verification of a
chain given as plain rows — from the database (``ca.audit.verify``) or from an exported bundle
(``verify_bundle``), which an auditor checks on their own machine with no service at all.

Pure: no SQL, no PKCS#11 (SM2 and SM3 in software, ``hsm.sm``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ca.errors import BadInput, JtcaError
from hsm.errors import InvalidKey, InvalidSignature
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

GENESIS: Final = "0" * 64
BUNDLE_FORMAT: Final = "jtca-audit-bundle/1"


class AuditError(JtcaError):
    title = "Audit log"
    exit_code = 8


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(
    prev_hash: str, seq: int, at: int, actor: str, action: str, subject: str, details: str
) -> str:
    content = canonical([seq, at, actor, action, subject, details])
    return sm3(bytes.fromhex(prev_hash), content.encode("utf-8")).hex()


def checkpoint_message(seq: int, head_hash: str, at: int) -> bytes:
    return canonical(["jtca audit checkpoint", seq, head_hash, at]).encode("utf-8")


# -- verification ------------------------------------------------------------------------------
@dataclass
class Finding:
    seq: int
    problem: str  # edited | deleted | inserted-or-reordered | bad-checkpoint | truncated | head

    message: str


@dataclass
class VerifyReport:
    events: int = 0
    checkpoints: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_chain(
    events: Iterable[dict[str, Any]],
    checkpoints: Sequence[dict[str, Any]],
    *,
    head: tuple[int, str] | None = None,
    trusted_audit_keys: Sequence[SM2PublicKey] | None = None,
) -> VerifyReport:
    """Check a chain given as plain rows (from the database or a bundle)."""
    report = VerifyReport()
    expected_seq = 1
    previous_hash = GENESIS
    hashes: dict[int, str] = {0: GENESIS}
    for row in events:
        report.events += 1
        seq = int(row["seq"])
        if seq > expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            report.findings.append(
                Finding(expected_seq, "deleted", f"rows {missing} are missing before row {seq}")
            )
        recomputed = event_hash(
            row["prev_hash"],
            seq,
            int(row["at"]),
            row["actor"],
            row["action"],
            row["subject"],
            row["details"],
        )
        if recomputed != row["hash"]:
            report.findings.append(
                Finding(seq, "edited", f"row {seq} was edited: its content does not give its hash")
            )
        elif row["prev_hash"] != previous_hash and seq == expected_seq:
            report.findings.append(
                Finding(
                    seq,
                    "inserted-or-reordered",
                    f"row {seq} does not follow row {seq - 1}: a row was inserted, removed and "
                    "renumbered, or reordered here",
                )
            )
        hashes[seq] = row["hash"]
        previous_hash = row["hash"]
        expected_seq = seq + 1
    last_seq = expected_seq - 1
    if head is not None and head != (last_seq, previous_hash):
        report.findings.append(
            Finding(
                min(last_seq, head[0]) + 1,
                "head",
                f"the chain ends at row {last_seq} but its head records row {head[0]}: rows were "
                "cut off or the head was altered",
            )
        )
    trusted = {k.compressed.hex() for k in trusted_audit_keys or []}
    for cp in checkpoints:
        report.checkpoints += 1
        seq = int(cp["seq"])
        try:
            key = SM2PublicKey.from_bytes(bytes.fromhex(cp["public_key"]))
            if trusted and cp["public_key"] not in trusted:
                raise InvalidSignature("the checkpoint is signed by a key that is not trusted")
            key.verify(
                bytes.fromhex(cp["signature"]), checkpoint_message(seq, cp["hash"], int(cp["at"]))
            )
        except (InvalidSignature, InvalidKey, ValueError) as exc:
            report.findings.append(
                Finding(seq, "bad-checkpoint", f"checkpoint at row {seq} does not verify: {exc}")
            )
            continue
        if seq > last_seq:
            report.findings.append(
                Finding(
                    seq,
                    "truncated",
                    f"a signed checkpoint covers row {seq}, the chain ends at {last_seq}",
                )
            )
        elif hashes.get(seq) != cp["hash"]:
            report.findings.append(
                Finding(seq, "bad-checkpoint", f"row {seq} differs from what the checkpoint signed")
            )
    return report


def verify_bundle(
    data: bytes, trusted_audit_keys: Sequence[SM2PublicKey] | None = None
) -> VerifyReport:
    try:
        bundle = json.loads(data)
        if bundle.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"format is not {BUNDLE_FORMAT}")
        head = (int(bundle["head"]["seq"]), str(bundle["head"]["hash"]))
        events, checkpoints = list(bundle["events"]), list(bundle["checkpoints"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuditError(f"not a jtca audit bundle: {exc}") from None
    return verify_chain(events, checkpoints, head=head, trusted_audit_keys=trusted_audit_keys)


def trusted_keys(points: Sequence[str], option: str = "--audit-key") -> list[SM2PublicKey]:
    """The trusted audit public keys given as hex SM2 points (refused one by one, by value)."""
    keys = []
    for text in points:
        try:
            keys.append(SM2PublicKey.from_bytes(bytes.fromhex(text)))
        except (ValueError, InvalidKey) as exc:
            raise BadInput(f"{option} {text[:16]}…: not an SM2 point ({exc})") from None
    return keys
