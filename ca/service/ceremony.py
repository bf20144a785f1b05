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

from ca import audit
from ca.ceremony import init_token_shares, load_ceremony, run
from ca.errors import BadInput
from ca.ops import ceremony as ops
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.db import transaction
from hsm.pkcs11.token import QuorumPin, Token
from hsm.softhsm import init_token, token_labels, use_softhsm

SOFTHSM: str = "softhsm2"  # the embedded SoftHSM2 folder under the state folder (ca.tokens)


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


@handles(ops.INIT_TOKEN)
def init_ceremony_token(ctx: Context, req: ops.CeremonyFile) -> ops.TokenShares:
    ceremony = load_ceremony(req.plan)
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
            actor=f"ceremony:{ceremony.name}",
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
    ceremony = load_ceremony(req.plan)
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
