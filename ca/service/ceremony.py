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

A ceremony cut by a power cut (issue #14) is recovered here at service start, with ``jtca
recover`` and before the same ceremony runs again (``recover_ceremony``): records committed, it
is rolled forward (the anchors and the transcript written from the records); records not
committed, it is rolled back — the unrecorded keys it made in ``MOT-LOG`` destroyed, and for a
root ceremony whose token held nothing else, the root token itself removed (its keys need the
custodians' quorum, which is kept nowhere; the custodians make it again with ``jtca ceremony
init-token``). A ca-rollover's keys in the root token are destroyed by the rerun, which has the
quorum (``ca.ceremony.run.run``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlmodel import Session, select

from ca.ceremony.run import (
    OPERATION,
    Ceremony,
    CeremonyError,
    Transcript,
    init_token_shares,
    load_ceremony,
    roll_back_keys,
    run,
)
from ca.core.errors import BadInput, JtcaError
from ca.core.files import stray_temporaries, write_atomically
from ca.log import audit
from ca.log.anchors import CEREMONIES, LOG_TOKEN, anchor_name
from ca.ops import ceremony as ops
from ca.policy.authorization import require
from ca.service.context import Context, NotSignedIn
from ca.service.recovery import RecoveryFailed, recover_before, recoverer
from ca.service.registry import handles
from ca.service.runtime import Runtime
from ca.store import intents
from ca.store.db import transaction
from ca.store.intents import IntentRef
from ca.store.models import CeremonyRun, CertificateRecord, KeyRecord, OfficerCertificate
from ca.vault.embedded import EmbeddedVault, open_token
from hsm.crashpoints import crash_point
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.softhsm2 import init_token, softhsm_util, token_labels, use_softhsm
from hsm.pkcs11.token import QuorumPin, Token, find_module, rescan
from policies.rules import Subject

log = logging.getLogger("jtca.ceremony")

SOFTHSM: Final = (
    "softhsm2"  # the embedded SoftHSM2 folder under the state folder (ca.vault.embedded)
)
ACTION_OF_KIND: Final = {"root": "ceremony.run", "ca-rollover": "qr-ca.rollover"}


def softhsm_folder(ctx: Context) -> Path:
    return ctx.runtime.state / SOFTHSM


@contextmanager
def quorum_token(ctx: Context, label: str, shares: Sequence[str]) -> Iterator[Token]:
    """The ministry token ``label`` opened by a quorum of its custodians' PIN shares, holding
    the runtime's token lock while it is open."""
    with ctx.runtime.tokens():
        use_softhsm(softhsm_folder(ctx))
        # open_token: a token another process's login is rewriting is not taken for missing
        with open_token(label, QuorumPin(list(shares))) as token:
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
    """The ceremony as its file says (``ca.ceremony.run.run``); the token's share quorum is its
    authority, and once officers are enrolled a signed-in officer allowed the ceremony's kind
    must ask for it too (``authorize``). The audit key goes to the service's log token; after
    the commit the trust anchors and the closing checkpoint are written outside the database."""
    from ca.policy.in_force import load_policy
    from ca.service import logkeys

    ceremony = load_ceremony(req.plan)
    authorize(ctx, ceremony)
    origin = load_policy().log.origin
    # a cut run of this ceremony: rolled forward from its records, or back; what needs the
    # custodians' quorum is rolled back by run(), which holds it
    with contextlib.suppress(RecoveryFailed):
        recover_before(ctx.runtime, OPERATION, ceremony.name, now=ctx.now())
    written: list[str] = []
    warnings: list[str] = []

    def write_files(transcript: Transcript) -> None:
        written[:], warnings[:] = write_outside(ctx.runtime, transcript, copies=True)

    with ctx.runtime.tokens(create=ceremony.kind == "root") as vault:
        crash_point(f"{OPERATION}:before-log-token")
        log_store = _log_store(vault, ceremony)
        crash_point(f"{OPERATION}:after-log-token")
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
            write_files=write_files,
        )
    if isinstance(transcript.sealer, audit.SessionSealer):
        audit_key = next(k["public_key"] for k in transcript.data["keys"] if k["class"] == "audit")
        logkeys.adopt_sealer(ctx.runtime, audit_key, transcript.sealer)
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
    from ca.pki.x509 import pem as armour

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


def write_outside(
    runtime: Runtime, transcript: Transcript, *, copies: bool = False
) -> tuple[list[str], list[str]]:
    """After the commit: the root and audit certificates as trust anchors beside the ceremony
    transcripts (``<state>/ceremonies/root-<serial>.pem``, ``audit-<serial>.pem``), the signed
    transcript itself (``<file sha12>.json``), and the closing checkpoint in the checkpoint
    folder; ``(files written, warnings)``; with ``copies``, the command line's copies of the
    certificates beside the transcript too (``ceremony_files``). A failure here does not undo the
    ceremony (it is committed, and the outcome carries all of it): it is reported."""
    from ca.log.checkpoint_folder import CheckpointFolder

    files = ceremony_files(
        str(transcript.data.get("file_sha256", "")),
        [(role, serial, der) for role, serial, der in transcript.anchors],
        transcript.json().encode("utf-8"),
    )
    if not copies:
        files = [f for f in files if not f[0].endswith(" copy")]
    written, warnings = _write_files(runtime, files)
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
    # the anchors (the outcome's list); the transcript and its copies are there too
    anchors = {anchor_name(role, serial) for role, serial, _ in transcript.anchors}
    return [w for w in written if Path(w).name in anchors], warnings


def ceremony_files(
    file_sha256: str, anchors: list[tuple[str, int, bytes]], transcript: bytes
) -> list[tuple[str, str, bytes]]:
    """``(what, name, bytes)`` of every file a ceremony leaves in ``ceremonies/``: the trust
    anchors ``root-<serial>.pem`` and ``audit-<serial>.pem``, the signed transcript
    ``<sha12>.json`` and, beside it, the copies the command line keeps as ``<sha12>-root.pem``
    and ``<sha12>-audit.pem`` (the same names, so an embedded client finds them written)."""
    stem = file_sha256[:12]
    files = [(role, anchor_name(role, serial), pem(der)) for role, serial, der in anchors]
    files.append(("transcript", f"{stem}.json", transcript))
    files += [(f"{role} copy", f"{stem}-{role}.pem", pem(der)) for role, _, der in anchors]
    return files


def _write_files(
    runtime: Runtime, files: list[tuple[str, str, bytes]]
) -> tuple[list[str], list[str]]:
    written: list[str] = []
    warnings: list[str] = []
    folder = runtime.state / CEREMONIES
    for what, name, data in files:
        target = folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            crash_point(f"{OPERATION}:before-file")
            write_atomically(target, data)
            crash_point(f"{OPERATION}:after-file")
            written.append(str(target))
        except (OSError, JtcaError) as exc:
            warnings.append(f"the {what} was not written to {target}: {exc}")
    return written, warnings


# -- recovery (issue #14) ----------------------------------------------------------------------
def _stray_temporaries(folder: Path, names: list[str]) -> list[Path]:
    """``write_atomically``'s temporary files of the planned names a cut left behind."""
    return sorted(p for name in names for p in stray_temporaries(folder, name))


def _from_records(
    session: Session, plan: dict[str, object], run_row: CeremonyRun
) -> list[tuple[str, str, bytes]]:
    """The files a committed ceremony writes, made again from its records."""
    serials = {int(str(v)) for v in dict(plan.get("serials") or {}).values()}  # type: ignore[call-overload]
    anchors: list[tuple[str, int, bytes]] = []
    for cert in session.exec(select(CertificateRecord)):
        if cert.serial in serials and cert.role in ("root", "audit"):
            anchors.append((cert.role, cert.serial, bytes.fromhex(cert.der)))
    transcript = Transcript(
        json.loads(run_row.transcript), run_row.signature, run_row.signer_public_key
    )
    return ceremony_files(run_row.file_sha256, sorted(anchors), transcript.json().encode())


def delete_softhsm_token(runtime: Runtime, label: str) -> bool:
    """Remove the embedded SoftHSM2 token ``label`` (no PIN needed: its folder goes). Returns
    whether it was there."""
    use_softhsm(runtime.state / SOFTHSM)
    if label not in token_labels():
        return False
    result = subprocess.run(
        [softhsm_util(), "--delete-token", "--token", label],
        capture_output=True,
        text=True,
        check=False,
    )
    rescan(find_module())
    if result.returncode != 0 and label in token_labels():
        raise RecoveryFailed(f"softhsm2-util could not remove token {label!r}: {result.stderr}")
    return True


@recoverer(OPERATION)
def recover_ceremony(runtime: Runtime, intent: IntentRef, actor: str, now: int) -> None:
    """A ceremony whose process died. Records committed: rolled forward (the missing anchor
    and transcript files written from them, stray temporaries removed). Not committed: rolled
    back (see the module doc). Idempotent: recovery itself may be cut and run again."""
    plan = dict(intent.plan)
    folder = runtime.state / CEREMONIES
    names = [Path(str(f)).name for f in plan.get("files", [])]
    for stray in _stray_temporaries(folder, names):
        stray.unlink(missing_ok=True)
    with Session(runtime.engine) as session:
        run_row = session.get(CeremonyRun, str(plan.get("ceremony")))
        recorded = set(session.exec(select(KeyRecord.uri)))
        committed = run_row is not None and run_row.file_sha256 == plan.get("file_sha256")
        files = _from_records(session, plan, run_row) if committed and run_row else []
    if committed:
        missing = [f for f in files if not (folder / f[1]).is_file()]
        written, warnings = _write_files(runtime, missing)
        if warnings:
            raise RecoveryFailed("; ".join(warnings))
        with transaction(runtime.engine) as session:
            intents.settle(
                session,
                intent,
                state=intents.ROLLED_FORWARD,
                outcome=f"records committed; {len(written)} missing file(s) written",
                now=now,
                actor=actor,
                details={"written": [Path(w).name for w in written]},
            )
        return
    root_token = str(plan.get("token"))
    log_token = plan.get("log_token")
    destroyed: list[str] = []
    with runtime.tokens() as vault:
        stores: dict[str, KeyStore] = {}
        if isinstance(log_token, str):
            use_softhsm(runtime.state / SOFTHSM)
            if log_token in token_labels():
                stores[log_token] = vault.store(log_token)
        destroyed, missed = roll_back_keys(intent, stores, recorded)
        touched = set(intent.progress.get("tokens_touched") or [])
        removed = False
        if root_token in missed and root_token in touched:
            if plan.get("kind") != "root" or not plan.get("token_was_empty"):
                raise CeremonyError(
                    f"ceremony {plan.get('ceremony')!r} was cut after making keys in token "
                    f"{root_token!r}, which only its custodians' quorum opens: run the ceremony "
                    "again (it destroys them first)"
                )
            crash_point(f"{OPERATION}:recover-before-remove-token")
            delete_softhsm_token(runtime, root_token)
            removed = True  # now or by a recovery cut before it settled
    outcome = f"records never committed; {len(destroyed)} unrecorded key(s) destroyed"
    if removed:
        outcome += (
            f"; token {root_token} removed (it held only this ceremony's keys): its custodians "
            "make it again with `jtca ceremony init-token` and run the ceremony from the start"
        )
    with transaction(runtime.engine) as session:
        intents.settle(
            session,
            intent,
            state=intents.ROLLED_BACK,
            outcome=outcome,
            now=now,
            actor=actor,
            details={"destroyed": destroyed, "token_removed": root_token if removed else None},
        )
