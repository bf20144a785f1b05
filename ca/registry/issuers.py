"""QR issuers (发行机构): registered once, by cn8 id; only registered, active issuers receive
interop certificates."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from ca.core.errors import JtcaError
from ca.log import audit
from ca.registry.divisions import validate_issuer_id
from ca.store.db import transaction
from ca.store.models import Issuer


class IssuerError(JtcaError):
    title = "Issuer registry"
    exit_code = 3


def register_issuer(engine: Engine, *, issuer_id: str, name: str, actor: str, now: int) -> Issuer:
    issuer_id = validate_issuer_id(issuer_id)
    if not name.strip():
        raise IssuerError("an issuer needs a name")
    with transaction(engine) as session:
        if session.get(Issuer, issuer_id) is not None:
            raise IssuerError(f"issuer {issuer_id} is already registered")
        issuer = Issuer(
            issuer_id=issuer_id, name=name.strip(), registered_at=now, registered_by=actor
        )
        session.add(issuer)
        audit.append(
            session,
            actor=actor,
            action="issuer.register",
            subject=f"issuer {issuer_id}",
            details={"name": issuer.name},
            at=now,
        )
        session.flush()
        session.expunge(issuer)
        return issuer


def active_issuer(session: Session, issuer_id: str) -> Issuer:
    issuer = session.get(Issuer, issuer_id)
    if issuer is None:
        raise IssuerError(f"issuer {issuer_id} is not registered (jtca issuer register)")
    if issuer.status != "active":
        raise IssuerError(f"issuer {issuer_id} is {issuer.status}")
    return issuer


def issuers(session: Session) -> list[Issuer]:
    return list(session.exec(select(Issuer).order_by(Issuer.issuer_id)))
