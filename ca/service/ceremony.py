"""Use cases of the ceremony area: make the ceremony's token, run the ceremony (see
ca/service/__init__.py).

Only the service holds the ministry's tokens, so both run here, on the embedded SoftHSM2 of the
service's state folder, one caller at a time (``Runtime.tokens``). ``quorum_token`` is how every
ceremony-class operation (issuing an interop certificate, an audit checkpoint) opens the root
token: with the custodians' shares of its PIN, which travel in the request and are kept nowhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlmodel import Session, select

from ca import audit
from ca.authorization import require
from ca.ceremony import Ceremony, init_token_shares, load_ceremony, run
from ca.errors import BadInput
from ca.ops import ceremony as ops
from ca.service.context import Context, NotSignedIn
from ca.service.registry import handles
from ca.store.db import transaction
from ca.store.models import OfficerCertificate
from hsm.pkcs11.token import QuorumPin, Token
from hsm.softhsm import init_token, token_labels, use_softhsm
from policies.rules import Subject

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
    must ask for it too (``authorize``)."""
    ceremony = load_ceremony(req.plan)
    authorize(ctx, ceremony)
    with ctx.runtime.tokens():
        use_softhsm(softhsm_folder(ctx))
        transcript = run(
            ceremony,
            ctx.engine,
            module=None,
            shares=list(req.shares),
            witnesses_present=list(req.witnesses),
            now=datetime.fromtimestamp(ctx.now(), UTC),
        )
    data = transcript.data
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
            ops.CeremonyCertificate(role=c["role"], subject=c["subject"], sha256=c["sha256"])
            for c in data["certificates"]
        ],
    )
