"""Use cases of the audit area: verify the chain in the database, sign a checkpoint with the
audit key, export a verifiable bundle (see ca/service/__init__.py). Verifying an exported bundle
is the auditor's own business, done without the service (``ca.audit_chain``)."""

from __future__ import annotations

import json

from sqlmodel import Session

from ca import audit
from ca.authorization import require
from ca.ops import audit as ops
from ca.ops.base import Empty
from ca.service.ceremony import quorum_token
from ca.service.context import Context
from ca.service.registry import handles
from ca.signing import token_signer
from ca.store.db import transaction
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import Action, Subject


@handles(ops.VERIFY)
def verify(ctx: Context, req: ops.VerifyRequest) -> ops.VerifyResult:
    """The chain and its checkpoints walked here, for a signed-in officer the policy allows
    ``audit.verify`` (the auditor's role, and the ministry officers' who run the ceremonies)."""
    require(ctx.actor(), Action.AUDIT_VERIFY, Subject(), ctx.now())
    trusted = audit.trusted_keys(req.audit_keys)
    with Session(ctx.engine) as session:
        report = audit.verify(session, trusted or None)
    return ops.VerifyResult.of(report)


@handles(ops.CHECKPOINT)
def checkpoint(ctx: Context, req: ops.CheckpointRequest) -> ops.CheckpointResult:
    """The head signed by the audit key in the root token, opened by the share quorum, asked
    for by a signed-in officer the policy allows ``audit.checkpoint`` (the publisher's role):
    the quorum opens the token, the officer answers for the request."""
    officer = ctx.actor()
    require(officer, Action.AUDIT_CHECKPOINT, Subject(), ctx.now())
    with Session(ctx.engine) as session:
        uri = Pkcs11Uri.parse(audit.active_audit_key(session).uri)
    with quorum_token(ctx, uri.token, req.shares) as token:
        signer = token_signer(KeyStore(token), uri, "audit")
        with transaction(ctx.engine) as session:
            made = audit.checkpoint(session, signer, at=ctx.now(), actor=officer.id)
            return ops.CheckpointResult(seq=made.seq, hash=made.hash, key=made.key_uri)


@handles(ops.EXPORT)
def export(ctx: Context, _request: Empty) -> ops.AuditBundle:
    """The whole log, for a signed-in officer the policy allows ``audit.export`` (the
    auditor's role): every officer, key and province is named in it."""
    require(ctx.actor(), Action.AUDIT_EXPORT, Subject(), ctx.now())
    with Session(ctx.engine) as session:
        bundle = audit.export_bundle(session)
    return ops.AuditBundle(bundle=bundle, events=len(json.loads(bundle)["events"]))
