"""Use cases of the issuance area: the central QR CA's keys, interop certificates issued and
revoked, and the QR issuers (see ca/service/__init__.py).

One place per operation: the command line and the console both come here, so an issuer's
registration is decided on ``Subject(issuer_id=…)`` and a revocation by CA index and serial is
found by one query (``ca.qr.issuance.certificate_at``) whoever asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from ca.ops import issuance as ops
from ca.ops.base import Empty
from ca.policy.authorization import interop_authorizer, require
from ca.qr import issuance
from ca.qr.cert_request import read_request
from ca.registry.issuers import issuers, register_issuer
from ca.service.ceremony import quorum_token
from ca.service.context import Context
from ca.service.recovery import recover_before, recoverer
from ca.service.registry import handles
from ca.store.intents import IntentRef
from ca.store.models import CaKey, InteropCertificateRecord, Issuer
from ca.vault.signers import token_signer
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import Subject

if TYPE_CHECKING:
    from ca.service.runtime import Runtime

ACTION_REGISTER_ISSUER = "issuer.register"


@recoverer(issuance.OPERATION)
def _recover_issue(runtime: Runtime, intent: IntentRef, actor: str, now: int) -> None:
    """An issuance whose process died after reserving its serial: the serial voided (audit
    ``qr.serial-void``), never reused (``ca.qr.issuance.recover``)."""
    issuance.recover(runtime.engine, intent, actor=actor, now=now)


def ca_key_view(key: CaKey) -> ops.CaKeyView:
    return ops.CaKeyView(
        ca_index=key.ca_index,
        public_key=key.public_key,
        status=key.status,
        verify_until=key.verify_until,
        key_uri=key.key_uri,
    )


def certificate_view(record: InteropCertificateRecord) -> ops.InteropCertificateView:
    return ops.InteropCertificateView(
        ca_index=record.ca_index,
        ca_key=record.ca_key,
        serial=record.serial,
        issuer_id=record.issuer_id,
        expiry=record.expiry,
        issuer_public_key=record.issuer_public_key,
        certificate=record.encoded,
        issued_at=record.issued_at,
        issued_by=record.issued_by,
        status=record.status,
        revoked_at=record.revoked_at,
        revocation_reason=record.revocation_reason,
    )


def issuer_view(
    issuer: Issuer, certificates: list[InteropCertificateRecord] | None = None
) -> ops.IssuerView:
    return ops.IssuerView(
        issuer_id=issuer.issuer_id,
        name=issuer.name,
        status=issuer.status,
        registered_at=issuer.registered_at,
        registered_by=issuer.registered_by,
        certificates=[certificate_view(c) for c in certificates or []],
    )


# -- the central CA ----------------------------------------------------------------------------
@handles(ops.KEYS)
def ca_keys(ctx: Context, _request: Empty) -> ops.CaKeys:
    with Session(ctx.engine) as session:
        return ops.CaKeys(keys=[ca_key_view(k) for k in issuance.ca_keys(session)])


@handles(ops.ISSUE)
def issue_interop(ctx: Context, req: ops.IssueRequest) -> ops.InteropCertificateView:
    """Policy first (before the root token is touched), then serial, signature in the root
    token opened by the custodians' share quorum, record and audit (``ca.qr.issuance.issue``)."""
    actor = ctx.actor()
    request = read_request(req.request)
    now = ctx.now()
    authorize = interop_authorizer(actor, req.ca_index, now)
    authorize(issuance.ACTION_ISSUE, request)
    with Session(ctx.engine) as session:
        ca_key = issuance.active_ca_key(session, req.ca_index)
    # the serials a dead issuance under this key reserved are voided first (issue #14)
    recover_before(
        ctx.runtime, issuance.OPERATION, issuance.intent_subject(ca_key.public_key), now=now
    )
    uri = Pkcs11Uri.parse(ca_key.key_uri)
    with quorum_token(ctx, uri.token, req.shares) as token:
        signer = token_signer(KeyStore(token), uri, "central-qr-ca")
        record = issuance.issue(
            ctx.engine,
            request,
            issuance.IssueContext(
                actor=actor.id,
                ca_signer=signer,
                ca_index=req.ca_index,
                now=now,
                authorize=authorize,
            ),
        )
    return certificate_view(record)


@handles(ops.REVOKE)
def revoke_interop(ctx: Context, req: ops.RevokeRequest) -> ops.InteropCertificateView:
    actor = ctx.actor()
    now = ctx.now()
    require(actor, issuance.ACTION_REVOKE, Subject(ca_index=req.ca_index), now)
    record = issuance.revoke_at(
        ctx.engine,
        ca_index=req.ca_index,
        serial=req.serial,
        reason=req.reason,
        actor=actor.id,
        now=now,
    )
    return certificate_view(record)


@handles(ops.CERTIFICATES)
def certificates(ctx: Context, req: ops.CertificatesRequest) -> ops.InteropCertificates:
    with Session(ctx.engine) as session:
        records = issuance.certificates(session, req.issuer_id)
        return ops.InteropCertificates(certificates=[certificate_view(r) for r in records])


# -- issuers -----------------------------------------------------------------------------------
@handles(ops.REGISTER_ISSUER)
def register(ctx: Context, req: ops.RegisterIssuerRequest) -> ops.IssuerView:
    actor = ctx.actor()
    now = ctx.now()
    require(actor, ACTION_REGISTER_ISSUER, Subject(issuer_id=req.issuer_id), now)
    issuer = register_issuer(
        ctx.engine, issuer_id=req.issuer_id, name=req.name, actor=actor.id, now=now
    )
    return issuer_view(issuer)


@handles(ops.ISSUERS)
def list_issuers(ctx: Context, _request: Empty) -> ops.Issuers:
    with Session(ctx.engine) as session:
        by_issuer: dict[str, list[InteropCertificateRecord]] = {}
        for record in issuance.certificates(session):
            by_issuer.setdefault(record.issuer_id, []).append(record)
        return ops.Issuers(
            issuers=[issuer_view(i, by_issuer.get(i.issuer_id)) for i in issuers(session)]
        )
