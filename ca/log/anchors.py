"""The audit log's trust anchors outside the database (issue #13, point 4).

The root ceremony makes the audit key in the service's own token ``MOT-LOG`` and certifies it
with the ministry root key. The service writes both certificates as PEM files beside the
ceremony transcripts, ``<state>/ceremonies/root-<serial>.pem`` and
``<state>/ceremonies/audit-<serial>.pem``, and ``jtca ceremony run`` writes the same two
beside the transcript it keeps. A verifier or a witness trusts the audit key only through these
files — never through a key read from the database it checks.

``audit_verifiers`` turns audit certificates (checked against the root certificates when they
are given) into the ``ca.log.note.Verifier`` of checkpoint signatures; its name is the policy's
log origin (``[log] origin``), the key name a checkpoint's signature line carries. Each
refusal names the file. Pure: it reads files only where the caller names them (``*_files``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ca.log.note import NoteError, Verifier
from ca.pki.x509 import (
    LOG_SIGNING_EKU,
    CertificateError,
    CertificateInfo,
    certificate_info,
    has_extended_key_usage,
    pem_to_der,
    verify_certificate,
)
from hsm.errors import InvalidSignature
from hsm.sm.sm2 import SM2PublicKey

LOG_TOKEN: Final = "MOT-LOG"  # noqa: S105 - the service's own token of the audit key
CEREMONIES: Final = "ceremonies"  # the folder of transcripts and anchors under the state folder
ROOT_ROLE: Final = "root"
AUDIT_ROLE: Final = "audit"
MAX_ANCHOR: Final = 64 * 1024  # a certificate file larger than this is not a certificate


class AnchorError(NoteError):
    """A trust anchor file that cannot be trusted; the message names the file."""

    title = "Trust anchor refused"
    exit_code = 3  # a certificate file that cannot be used as given: bad input
    http_status = 422


@dataclass(frozen=True, slots=True)
class Anchor:
    """A certificate file's name (for messages) and its bytes (PEM or DER)."""

    name: str
    data: bytes


def anchor_name(role: str, serial: int) -> str:
    """``root-<serial>.pem`` or ``audit-<serial>.pem`` (decimal serial)."""
    return f"{role}-{serial}.pem"


def anchor_files(state: Path) -> tuple[list[Path], list[Path]]:
    """The audit and root certificate files the service wrote under ``state``:
    ``(<state>/ceremonies/audit-*.pem, <state>/ceremonies/root-*.pem)``, sorted by name."""
    folder = state / CEREMONIES
    if not folder.is_dir():
        return [], []
    return sorted(folder.glob(f"{AUDIT_ROLE}-*.pem")), sorted(folder.glob(f"{ROOT_ROLE}-*.pem"))


def read_anchor(path: Path) -> Anchor:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_ANCHOR + 1)
    except OSError as exc:
        raise AnchorError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_ANCHOR:
        raise AnchorError(f"{path}: more than {MAX_ANCHOR} bytes, not a certificate")
    return Anchor(str(path), data)


def _der(anchor: Anchor) -> bytes:
    if anchor.data.lstrip().startswith(b"-----BEGIN"):
        try:
            return pem_to_der(anchor.data.strip())
        except CertificateError as exc:
            raise AnchorError(f"{anchor.name}: {exc.message}") from None
    return anchor.data


def _info(anchor: Anchor, what: str) -> tuple[bytes, CertificateInfo]:
    der = _der(anchor)
    try:
        return der, certificate_info(der)
    except CertificateError as exc:
        raise AnchorError(f"{anchor.name}: not an SM2 {what} certificate: {exc.message}") from None


def root_keys(roots: Sequence[Anchor]) -> list[tuple[str, SM2PublicKey]]:
    """``(file name, public key)`` of each root certificate: an SM2 CA certificate whose
    self-signature verifies."""
    found = []
    for anchor in roots:
        der, info = _info(anchor, "root")
        if not info.is_ca or "key_cert_sign" not in info.key_usage:
            raise AnchorError(f"{anchor.name}: {info.subject} is not a CA certificate")
        try:
            verify_certificate(der, info.public_key)
        except (InvalidSignature, CertificateError) as exc:
            raise AnchorError(
                f"{anchor.name}: the root certificate's self-signature does not verify ({exc})"
            ) from None
        found.append((anchor.name, info.public_key))
    return found


def audit_key_of(anchor: Anchor, roots: Sequence[tuple[str, SM2PublicKey]]) -> SM2PublicKey:
    """The audit key an audit certificate certifies: SM2, extended key usage log signing,
    digitalSignature, not a CA, and (when ``roots`` are given) signed by one of them."""
    der, info = _info(anchor, "audit key")
    if not has_extended_key_usage(info, LOG_SIGNING_EKU):  # the pre-#15 OID too (migration)
        raise AnchorError(
            f"{anchor.name}: {info.subject} is not an audit key certificate (no log-signing "
            f"extended key usage {LOG_SIGNING_EKU})"
        )
    if info.is_ca or "digital_signature" not in info.key_usage:
        raise AnchorError(
            f"{anchor.name}: {info.subject} must be an end-entity certificate with key usage "
            "digitalSignature"
        )
    if roots:
        for _, root in roots:
            try:
                verify_certificate(der, root)
            except (InvalidSignature, CertificateError):
                continue
            break
        else:
            names = ", ".join(name for name, _ in roots)
            raise AnchorError(
                f"{anchor.name}: {info.subject} is not signed by the root certificate ({names})"
            )
    return info.public_key


def verifiers_from(audit: Sequence[Anchor], roots: Sequence[Anchor], origin: str) -> list[Verifier]:
    """The checkpoint verifiers of the audit certificates given (see ``audit_verifiers``)."""
    if not audit:
        raise AnchorError(
            "no audit key certificate given: the root ceremony wrote it as "
            f"{CEREMONIES}/audit-<serial>.pem (and <transcript>-audit.pem)"
        )
    if not origin or any(c.isspace() or c == "+" for c in origin):
        raise AnchorError(f"log origin {origin!r}: an origin has no spaces and no '+'")
    trusted_roots = root_keys(roots)
    verifiers: list[Verifier] = []
    for anchor in audit:
        key = audit_key_of(anchor, trusted_roots)
        if all(v.public_key.compressed != key.compressed for v in verifiers):
            verifiers.append(Verifier(origin, key))
    return verifiers


def audit_verifiers(
    audit_pems: Sequence[Path], root_pems: Sequence[Path], origin: str
) -> list[Verifier]:
    """Checkpoint verifiers named ``origin`` for the audit certificate files ``audit_pems``,
    each checked against the root certificate files ``root_pems`` when any are given. Raises
    AnchorError (a NoteError) naming the file refused."""
    return verifiers_from(
        [read_anchor(p) for p in audit_pems], [read_anchor(p) for p in root_pems], origin
    )


__all__ = [
    "AUDIT_ROLE",
    "CEREMONIES",
    "LOG_TOKEN",
    "ROOT_ROLE",
    "Anchor",
    "AnchorError",
    "anchor_files",
    "anchor_name",
    "audit_key_of",
    "audit_verifiers",
    "read_anchor",
    "root_keys",
    "verifiers_from",
]
