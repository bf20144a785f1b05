"""Use cases of the officers area (issue #12): enrolment, certificates, the registry.

- ``officer.enrol`` without a signed-in officer is the bootstrap: the root token's custodians
  present their share quorum (checked by the token itself) and the officer's token key is
  certified at once. With a signed-in ministry root officer it is a request that a *second*
  one approves (``officer.decide``, signed by their own token); the officer is registered and
  certified on approval.
- Every enrolment carries a proof of possession: the new key's signature over
  ``ca.officers.statements.enrolment_message``.
- ``officer.suspend`` / ``officer.revoke`` take effect at the officer's next request (their
  sessions end at once); ``officer.reinstate`` lifts a suspension; ``officer.renew`` certifies
  the same token key again, before the old certificate ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlmodel import Session, col, select

from ca.core.errors import BadInput, JtcaError
from ca.log import audit
from ca.officers.certificates import (
    OFFICER_CA_TOKEN,
    OfficerCa,
    OfficerCertificateError,
    issue_officer_certificate,
    officer_ca_record,
    open_officer_ca,
)
from ca.officers.dual_control import bind_request, deciding, record_decision
from ca.officers.roster import OfficerError, add_officer_in, check_officer
from ca.officers.statements import AuthError, check_officer_id, enrolment_message, verify
from ca.ops import officers as ops
from ca.ops.base import Empty
from ca.pki.x509 import pem
from ca.policy.authorization import require
from ca.policy.in_force import load_policy
from ca.service.approvals import verify_decision
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.db import transaction
from ca.store.models import (
    Officer,
    OfficerCertificate,
    OfficerEnrolment,
    OfficerSession,
)
from hsm.sm.sm2 import SM2PublicKey
from policies.rules import Action, Subject

QUORUM = "root share quorum"


class EnrolmentError(JtcaError):
    title = "Officer enrolment"
    exit_code = 6


def _newest(session: Session, officer_id: str) -> OfficerCertificate | None:
    return session.exec(
        select(OfficerCertificate)
        .where(OfficerCertificate.officer_id == officer_id)
        .order_by(col(OfficerCertificate.issued_at).desc(), col(OfficerCertificate.serial))
    ).first()


def _cert_view(cert: OfficerCertificate | None) -> ops.CertificateView | None:
    if cert is None:
        return None
    return ops.CertificateView(
        serial=cert.serial,
        status=cert.status,
        not_before=cert.not_before,
        not_after=cert.not_after,
        token_label=cert.token_label,
        issued_by=cert.issued_by,
        pem=pem(cert.der).decode(),
    )


def officer_view(session: Session, officer: Officer) -> ops.OfficerView:
    return ops.OfficerView(
        id=officer.officer_id,
        name=officer.name,
        roles=sorted(officer.roles.split(",")),
        province=officer.province,
        status=officer.status,
        certificate=_cert_view(_newest(session, officer.officer_id)),
    )


def _enrolment_view(session: Session, row: OfficerEnrolment) -> ops.Enrolment:
    cert = (
        session.get(OfficerCertificate, row.certificate_serial) if row.certificate_serial else None
    )
    return ops.Enrolment(
        id=row.id or 0,
        subject=f"enrolment {row.id}",
        officer_id=row.officer_id,
        roles=sorted(row.roles.split(",")) if row.roles else [],
        province=row.province,
        state=row.state,
        requested_by=row.requested_by,
        certificate=_cert_view(cert),
    )


@contextmanager
def _officer_ca(ctx: Context, session: Session, actor: str) -> Iterator[OfficerCa]:
    """The officer CA in the authority's own token; a CA key made here and not committed is
    destroyed again (no key without its record)."""
    made = officer_ca_record(session) is None
    with ctx.runtime.tokens(create=True) as vault:
        store = vault.store(OFFICER_CA_TOKEN)
        ca = open_officer_ca(session, store, now=ctx.now(), actor=actor)
        try:
            yield ca
        except BaseException:
            if made:
                from ca.officers.certificates import destroy_unrecorded_ca_key

                destroy_unrecorded_ca_key(store, ca.record.key_uri)
            raise


def _roles_for(
    session: Session, req: ops.EnrolRequest
) -> tuple[Officer | None, list[str], str | None]:
    existing = session.get(Officer, req.officer_id)
    if existing is not None:
        roles = sorted(existing.roles.split(","))
        if req.roles and sorted(req.roles) != roles:
            raise EnrolmentError(
                f"officer {req.officer_id} is registered as {', '.join(roles)}: an enrolment "
                "certifies a key and changes no role"
            )
        if req.province is not None and req.province != existing.province:
            raise EnrolmentError(
                f"officer {req.officer_id} is registered for province {existing.province}, "
                f"not {req.province}"
            )
        return existing, roles, existing.province
    check_officer(req.officer_id, list(req.roles), req.province)
    return None, sorted(req.roles), req.province


def _register(
    session: Session, row: OfficerEnrolment | ops.EnrolRequest, by: str, now: int
) -> Officer:
    """Register the enrolled officer (``ca.officers.roster.add_officer_in``: checked and
    audited)."""
    roles = row.roles if isinstance(row.roles, list) else row.roles.split(",")
    return add_officer_in(
        session,
        officer_id=row.officer_id,
        name=row.name,
        roles=list(roles),
        province=row.province,
        actor=by,
        now=now,
    )


def _check_quorum(ctx: Context, shares: list[str]) -> None:
    from ca.publish.publisher import current_certificate
    from ca.service.ceremony import quorum_token
    from hsm.pkcs11.token import TokenError
    from hsm.pkcs11.uri import Pkcs11Uri

    with Session(ctx.engine) as session:
        root = current_certificate(session, "root", ctx.now())
    if root is None:
        raise EnrolmentError(
            "no root certificate is in force: the root ceremony names the first officers and "
            "its custodians enrol them (jtca ceremony run)"
        )
    try:
        with quorum_token(ctx, Pkcs11Uri.parse(root.key_uri).token, shares) as token:
            token.run(lambda s: None)  # the token itself checks the combined PIN
    except (TokenError, BadInput) as exc:
        raise AuthError(
            f"the root share quorum was refused: {exc.message}", reason="bad-quorum"
        ) from None


@handles(ops.ENROL)
def enrol(ctx: Context, req: ops.EnrolRequest) -> ops.Enrolment:
    now = ctx.now()
    check_officer_id(req.officer_id, "officer_id")
    try:
        public_key = SM2PublicKey.from_bytes(req.public_key)
    except ValueError as exc:
        raise BadInput(f"public_key: not an SM2 point ({exc})") from None
    verify(
        public_key,
        req.proof,
        enrolment_message(officer=req.officer_id, public_key=public_key.uncompressed),
        "proof: the new key's proof of possession",
    )
    shares = [s.strip() for s in req.shares if s.strip()]
    if ctx.officer is None:
        if not shares:
            raise AuthError(
                "officer.enrol needs a signed-in ministry root officer (jtca login), or the root "
                "share quorum to enrol the first officers",
                reason="unauthenticated",
            )
        _check_quorum(ctx, shares)
        with transaction(ctx.engine) as session:
            existing, roles, province = _roles_for(session, req)
            officer = existing or _register(session, req, QUORUM, now)
            with _officer_ca(ctx, session, QUORUM) as ca:
                cert = issue_officer_certificate(
                    session,
                    ca,
                    officer_id=officer.officer_id,
                    name=officer.name,
                    public_key=public_key,
                    token_label=req.token_label,
                    issued_by=QUORUM,
                    now=now,
                )
                row = OfficerEnrolment(
                    officer_id=officer.officer_id,
                    name=officer.name,
                    roles=",".join(roles),
                    province=province,
                    public_key=public_key.uncompressed,
                    token_label=req.token_label,
                    requested_by=QUORUM,
                    requested_at=now,
                    state="approved",
                    certificate_serial=cert.serial,
                )
                session.add(row)
                session.flush()
            return _enrolment_view(session, row)
    if shares:
        raise BadInput(
            "shares: a signed-in officer's enrolment is approved by a second "
            "officer, not by the root quorum (sign out to use the quorum)"
        )
    actor = ctx.actor()
    require(actor, Action.OFFICER_ENROL, Subject(), now)
    with transaction(ctx.engine) as session:
        existing, roles, province = _roles_for(session, req)
        if session.exec(
            select(OfficerEnrolment)
            .where(OfficerEnrolment.officer_id == req.officer_id)
            .where(OfficerEnrolment.state == "pending")
        ).first():
            raise EnrolmentError(f"officer {req.officer_id} already has an enrolment pending")
        row = OfficerEnrolment(
            officer_id=req.officer_id,
            name=req.name or (existing.name if existing else ""),
            roles=",".join(roles),
            province=province,
            public_key=public_key.uncompressed,
            token_label=req.token_label,
            requested_by=actor.id,
            requested_at=now,
        )
        session.add(row)
        session.flush()
        subject = f"enrolment {row.id}"
        audit.append(
            session,
            actor=actor.id,
            action="officer.enrol.request",
            subject=subject,
            details={
                "officer": req.officer_id,
                "roles": roles,
                "province": province,
                "public_key": public_key.uncompressed.hex(),
                "token_label": req.token_label,
            },
            at=now,
        )
        bind_request(session, subject)
        return _enrolment_view(session, row)


@handles(ops.DECIDE)
def decide(ctx: Context, req: ops.Decision) -> ops.Enrolment:
    actor = ctx.actor()
    now = ctx.now()
    require(actor, Action.OFFICER_APPROVE, Subject(), now)
    subject = f"enrolment {req.id}"
    signed = verify_decision(
        ctx, subject=subject, approve=req.approve, at=req.at, signature=req.signature
    )
    with deciding(signed), transaction(ctx.engine) as session:
        row = session.exec(
            select(OfficerEnrolment).where(OfficerEnrolment.id == req.id).with_for_update()
        ).first()
        if row is None:
            raise EnrolmentError(f"no enrolment {req.id}")
        if row.state != "pending":
            raise EnrolmentError(f"enrolment {req.id} is already {row.state}")
        if actor.id == row.officer_id:
            raise EnrolmentError("dual control: an officer cannot approve their own enrolment")
        decided = record_decision(
            session,
            subject=subject,
            approver=actor.id,
            requester=row.requested_by,
            approve=req.approve,
            reason=req.reason,
            required=load_policy().approvals_required(Action.OFFICER_ENROL),
            now=now,
            error=EnrolmentError,
        )
        audit.append(
            session,
            actor=actor.id,
            action=f"officer.enrol.{'approve' if req.approve else 'reject'}",
            subject=subject,
            details={
                **decided.evidence,
                "officer": row.officer_id,
                "state": decided.state,
                "reason": decided.reason,
            },
            at=now,
        )
        if decided.state == "rejected":
            row.state = "rejected"
        elif decided.state == "approved":
            officer = session.get(Officer, row.officer_id) or _register(
                session, row, "+".join((row.requested_by, *decided.approvers)), now
            )
            with _officer_ca(ctx, session, actor.id) as ca:
                cert = issue_officer_certificate(
                    session,
                    ca,
                    officer_id=officer.officer_id,
                    name=officer.name,
                    public_key=SM2PublicKey.from_bytes(row.public_key),
                    token_label=row.token_label,
                    issued_by="+".join((row.requested_by, *decided.approvers)),
                    now=now,
                )
            row.state, row.certificate_serial = "approved", cert.serial
        session.add(row)
        session.flush()
        return _enrolment_view(session, row)


@handles(ops.ENROLMENTS)
def enrolments(ctx: Context, _req: Empty) -> ops.Enrolments:
    ctx.actor()
    with Session(ctx.engine) as session:
        rows = session.exec(
            select(OfficerEnrolment)
            .where(OfficerEnrolment.state == "pending")
            .order_by(col(OfficerEnrolment.id))
        )
        return ops.Enrolments(enrolments=[_enrolment_view(session, r) for r in rows])


def _set_status(
    ctx: Context, req: ops.OfficerAction, *, to: str, allowed_from: set[str], action: str
) -> ops.OfficerView:
    actor = ctx.actor()
    now = ctx.now()
    require(actor, Action.OFFICER_SUSPEND, Subject(), now)
    if to != "revoked" and actor.id == req.officer_id:
        raise EnrolmentError(f"an officer cannot {action} their own certificate")
    if to in {"suspended", "revoked"} and not req.reason.strip():
        raise BadInput(f"reason: say why the certificate is {to} (第十一条)")
    with transaction(ctx.engine) as session:
        officer = session.get(Officer, req.officer_id)
        if officer is None:
            raise OfficerError(f"no officer {req.officer_id}")
        cert = _newest(session, req.officer_id)
        if cert is None or cert.status not in allowed_from:
            raise OfficerCertificateError(
                f"officer {req.officer_id}'s certificate "
                + (f"{cert.serial} is {cert.status}" if cert else "does not exist")
                + f": cannot {action} it"
            )
        cert.status, cert.status_at, cert.status_reason = to, now, req.reason.strip()
        session.add(cert)
        ended = 0
        if to != "active":
            for open_session in session.exec(
                select(OfficerSession)
                .where(OfficerSession.officer_id == req.officer_id)
                .where(col(OfficerSession.ended_at).is_(None))
            ):
                open_session.ended_at, open_session.ended_reason = now, f"certificate {to}"
                session.add(open_session)
                ended += 1
        audit.append(
            session,
            actor=actor.id,
            action=f"officer.certificate.{action}",
            subject=f"officer {req.officer_id}",
            details={"serial": cert.serial, "reason": req.reason.strip(), "sessions_ended": ended},
            at=now,
        )
        session.flush()
        return officer_view(session, officer)


@handles(ops.SUSPEND)
def suspend(ctx: Context, req: ops.OfficerAction) -> ops.OfficerView:
    return _set_status(ctx, req, to="suspended", allowed_from={"active"}, action="suspend")


@handles(ops.REINSTATE)
def reinstate(ctx: Context, req: ops.OfficerAction) -> ops.OfficerView:
    return _set_status(ctx, req, to="active", allowed_from={"suspended"}, action="reinstate")


@handles(ops.REVOKE)
def revoke(ctx: Context, req: ops.OfficerAction) -> ops.OfficerView:
    return _set_status(
        ctx, req, to="revoked", allowed_from={"active", "suspended"}, action="revoke"
    )


@handles(ops.RENEW)
def renew(ctx: Context, req: ops.OfficerId) -> ops.OfficerView:
    actor = ctx.actor()
    now = ctx.now()
    require(actor, Action.OFFICER_RENEW, Subject(), now)
    with transaction(ctx.engine) as session:
        officer = session.get(Officer, req.officer_id)
        if officer is None:
            raise OfficerError(f"no officer {req.officer_id}")
        cert = _newest(session, req.officer_id)
        if cert is None or cert.status != "active" or cert.not_after <= now:
            raise OfficerCertificateError(
                f"officer {req.officer_id} has no certificate in force to renew: a suspended, "
                "revoked or expired one needs a new enrolment"
            )
        with _officer_ca(ctx, session, actor.id) as ca:
            issue_officer_certificate(
                session,
                ca,
                officer_id=officer.officer_id,
                name=officer.name,
                public_key=SM2PublicKey.from_bytes(cert.public_key),
                token_label=cert.token_label,
                issued_by=actor.id,
                now=now,
            )
        session.flush()
        return officer_view(session, officer)


@handles(ops.CERTIFICATE)
def certificate(ctx: Context, req: ops.OfficerId) -> ops.OfficerView:
    with Session(ctx.engine) as session:
        officer = session.get(Officer, req.officer_id)
        if officer is None:
            raise OfficerError(f"no officer {req.officer_id}")
        return officer_view(session, officer)


@handles(ops.OFFICER_CA)
def officer_ca(ctx: Context, _req: Empty) -> ops.OfficerCaView:
    with Session(ctx.engine) as session:
        record = officer_ca_record(session)
    if record is None:
        raise OfficerCertificateError("no officer CA yet: enrol the first officers")
    return ops.OfficerCaView(pem=pem(bytes.fromhex(record.der)).decode(), sm3=record.sm3)


@handles(ops.LIST)
def list_officers(ctx: Context, _request: Empty) -> ops.Officers:
    with Session(ctx.engine) as session:
        rows = session.exec(select(Officer).order_by(Officer.officer_id))
        return ops.Officers(officers=[officer_view(session, o) for o in rows])
