"""Use cases of the ceremony area: make the ceremony's token, run the ceremony (see
ca/service/__init__.py).

Only the service holds the ministry's tokens, so both run here, on the embedded SoftHSM2 of the
service's state folder, one caller at a time (``Runtime.tokens``). ``quorum_token`` is how every
ceremony-class operation (issuing an interop certificate) opens the root token: with the
custodians' shares of its PIN, which travel in the request and are kept nowhere.

The root ceremony makes the audit key in the service's own log token ``MOT-LOG`` (made here on
first use, its PIN the service's) and starts sealing the log with it in the ceremony's own
transaction. After the commit the service writes the trust anchors outside the database —
``<state>/ceremonies/root-<serial>.pem`` and ``audit-<serial>.pem`` — and the ceremony's closing
checkpoint to its checkpoint folder (issue #13). The outcome carries both certificates' PEM and
the checkpoint, so the caller keeps copies of its own.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlmodel import Session, select

from ca import audit
from ca.authorization import require
from ca.ceremony import Ceremony, Transcript, init_token_shares, load_ceremony, run
from ca.errors import BadInput, JtcaError
from ca.files import write_atomically
from ca.log.anchors import CEREMONIES, LOG_TOKEN, anchor_name
from ca.ops import ceremony as ops
from ca.service.context import Context, NotSignedIn
from ca.service.registry import handles
from ca.service.runtime import Runtime
from ca.store.db import transaction
from ca.store.models import OfficerCertificate
from ca.tokens import EmbeddedVault
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import QuorumPin, Token
from hsm.softhsm import init_token, token_labels, use_softhsm
from policies.rules import Subject

log = logging.getLogger("jtca.ceremony")

SOFTHSM: Final = "softhsm2"  # the embedded SoftHSM2 folder under the state folder (ca.tokens)
ACTION_OF_KIND: Final = {"root": "ceremony.run", "ca-rollover": "qr-ca.rollover"}


def softhsm_folder(ctx: Context) -> Path:
    return ctx.runtime.state / SOFTHSM


@contextmanager
def quorum_token(ctx: Context, label: str, shares: Sequence[str]) -> Iterator[Token]:
    """The ministry token ``label`` opened by a quorum of its custodians' PIN shares, holding
    the runtime's token lock while it is open."""
    with ctx.runtime.tokens():
        use_softhsm(softhsm_folder(ctx))
        with Token(label, QuorumPin(list(shares))) as token:
            yield token


def authorize(ctx: Context, ceremony: Ceremony) -> None:
    """Who may make a ceremony's token or run it. Before any officer holds a certificate, the
    custodians' quorum is the authority (the root ceremony names the first officers, who are
    then enrolled under that quorum). From then on the caller must be a signed-in officer whose
    role the policy allows the ceremony's kind — the quorum alone is not enough."""
    action = ACTION_OF_KIND[ceremony.kind]
    if ctx.officer is None:
        if has_enrolled_officers(ctx):
            raise NotSignedIn(
                f"the authority has enrolled officers: a {ceremony.kind} ceremony needs a "
                f"signed-in officer allowed {action} (jtca login), as well as the custodians"
            )
        return
    require(ctx.officer, action, Subject(), ctx.now())


def has_enrolled_officers(ctx: Context) -> bool:
    """Whether any officer certificate was ever issued (whatever its status now: a revoked
    certificate does not take the authority back to its bootstrap)."""
    with Session(ctx.engine) as session:
        return session.exec(select(OfficerCertificate.serial).limit(1)).first() is not None


@handles(ops.INIT_TOKEN)
def init_ceremony_token(ctx: Context, req: ops.CeremonyFile) -> ops.TokenShares:
    """A new token for the ceremony, nothing of its PINs kept. Before the first officer is
    enrolled anyone who reaches the service may make it (there is no officer to sign in yet);
    after that, only a signed-in officer the policy allows the ceremony (``authorize``)."""
    ceremony = load_ceremony(req.plan)
    authorize(ctx, ceremony)
    with ctx.runtime.tokens():
        use_softhsm(softhsm_folder(ctx))
        if ceremony.token in token_labels():
            raise BadInput(
                f"token {ceremony.token!r} already exists; its custodians hold the shares"
            )
        pin, so_pin = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        init_token(ceremony.token, pin, so_pin)
    pin_shares = init_token_shares(ceremony, pin)
    so_shares = init_token_shares(ceremony, so_pin)
    # Nothing of either PIN is kept: only the custodians' shares leave the service.
    del pin, so_pin
    with transaction(ctx.engine) as session:
        audit.append(
            session,
            actor=ctx.officer.id if ctx.officer else f"ceremony:{ceremony.name}",
            action="ceremony.init-token",
            subject=ceremony.token,
            details={
                "file_sha256": ceremony.file_sha256,
                "custodians": list(ceremony.custodians),
                "threshold": ceremony.threshold,
            },
            at=ctx.now(),
        )
    return ops.TokenShares(
        token=ceremony.token,
        pin_shares=[ops.CustodianShare(custodian=c, share=s) for c, s in pin_shares],
        so_pin_shares=[ops.CustodianShare(custodian=c, share=s) for c, s in so_shares],
    )


@handles(ops.RUN)
def run_ceremony(ctx: Context, req: ops.RunRequest) -> ops.CeremonyOutcome:
    """The ceremony as its file says (``ca.ceremony.run``); the token's share quorum is its
    authority, and once officers are enrolled a signed-in officer allowed the ceremony's kind
    must ask for it too (``authorize``). The audit key goes to the service's log token; after
    the commit the trust anchors and the closing checkpoint are written outside the database."""
    from ca.service import logkeys
    from ca.signing import load_policy

    ceremony = load_ceremony(req.plan)
    authorize(ctx, ceremony)
    origin = load_policy().log.origin
    with ctx.runtime.tokens(create=ceremony.kind == "root") as vault:
        log_store = _log_store(vault, ceremony)
        use_softhsm(softhsm_folder(ctx))
        transcript = run(
            ceremony,
            ctx.engine,
            module=None,
            shares=list(req.shares),
            witnesses_present=list(req.witnesses),
            now=datetime.fromtimestamp(ctx.now(), UTC),
            log_store=log_store,
            on_audit_key=logkeys.seal_in,
            origin=origin,
        )
    if isinstance(transcript.sealer, audit.SessionSealer):
        audit_key = next(k["public_key"] for k in transcript.data["keys"] if k["class"] == "audit")
        logkeys.adopt_sealer(ctx.runtime, audit_key, transcript.sealer)
    written, warnings = write_outside(ctx.runtime, transcript)
    data = transcript.data
    pems = {serial: pem(der).decode("ascii") for _, serial, der in transcript.certificates}
    return ops.CeremonyOutcome(
        ceremony=ceremony.name,
        file_sha256=ceremony.file_sha256,
        transcript=transcript.json().encode("utf-8"),
        keys=[
            ops.CeremonyKey(
                key_class=k["class"], label=k["label"], uri=k["uri"], public_key=k["public_key"]
            )
            for k in data["keys"]
        ],
        certificates=[
            ops.CeremonyCertificate(
                role=c["role"],
                subject=c["subject"],
                sha256=c["sha256"],
                serial=str(c["serial"]),
                pem=pems.get(c["serial"], ""),
            )
            for c in data["certificates"]
        ],
        anchors=written,
        checkpoint=transcript.checkpoint[1] if transcript.checkpoint else None,
        warnings=warnings,
    )


def pem(der: bytes) -> bytes:
    from ca.x509 import pem as armour

    return armour(der)


def _log_store(vault: EmbeddedVault, ceremony: Ceremony) -> KeyStore | None:
    """The service's log token: made on first use by the root ceremony; a ca-rollover uses it
    when it is there (a log from before issue #13 keeps its audit key in the root token)."""
    if ceremony.kind == "root":
        return vault.store(LOG_TOKEN)
    try:
        return vault.store(LOG_TOKEN)
    except JtcaError:
        return None


def write_outside(runtime: Runtime, transcript: Transcript) -> tuple[list[str], list[str]]:
    """After the commit: the root and audit certificates as trust anchors beside the ceremony
    transcripts (``<state>/ceremonies/root-<serial>.pem``, ``audit-<serial>.pem``), and the
    closing checkpoint in the checkpoint folder; ``(files written, warnings)``. A failure here
    does not undo the ceremony (it is committed, and the outcome carries both): it is reported.
    """
    from ca.log.folder import CheckpointFolder

    written: list[str] = []
    warnings: list[str] = []
    folder = runtime.state / CEREMONIES
    for role, serial, der in transcript.anchors:
        target = folder / anchor_name(role, serial)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(target, pem(der))
            written.append(str(target))
        except (OSError, JtcaError) as exc:
            warnings.append(f"the {role} certificate was not written to {target}: {exc}")
    if transcript.checkpoint is not None:
        size, note = transcript.checkpoint
        try:
            CheckpointFolder(runtime.log_folder).write(note, size)
        except (OSError, JtcaError) as exc:
            warnings.append(
                f"the checkpoint was not written to {runtime.log_folder}: {exc} (the "
                "checkpointer writes it at its next turn)"
            )
    for warning in warnings:
        log.error("ceremony: %s", warning)
    return written, warnings
