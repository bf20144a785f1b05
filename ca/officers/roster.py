"""Officers: who may act, with which policy roles, bound to which province.

The root ceremony file names the first officers; after that officers are enrolled with their
own token's key (``ca.service.officers``, issue #12) and prove who they are by signing in. The
roles come from here, never from the command line.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from ca.core.errors import JtcaError
from ca.log import audit
from ca.policy.in_force import load_policy
from ca.store.db import transaction
from ca.store.models import Officer
from policies.rules import Actor, is_province_code


class OfficerError(JtcaError):
    title = "Officer registry"
    exit_code = 6


def check_officer(officer_id: str, roles: list[str], province: str | None) -> None:
    policy = load_policy()
    if not officer_id.strip():
        raise OfficerError("an officer needs an id")
    unknown = sorted(set(roles) - set(policy.roles))
    if not roles or unknown:
        raise OfficerError(f"roles {unknown or '(none)'}: use some of {sorted(policy.roles)}")
    provincial = [r for r in roles if policy.roles[r].scope == "province"]
    if provincial and (province is None or not is_province_code(province)):
        raise OfficerError(f"role {provincial[0]} needs a province code (GB/T 2260, e.g. 440000)")
    if province is not None and not is_province_code(province):
        raise OfficerError(f"province {province!r} is not a GB/T 2260 province code")


def add_officer_in(
    session: Session,
    *,
    officer_id: str,
    name: str,
    roles: list[str],
    province: str | None,
    actor: str,
    now: int,
) -> Officer:
    check_officer(officer_id, roles, province)
    if session.get(Officer, officer_id) is not None:
        raise OfficerError(f"officer {officer_id} already exists")
    officer = Officer(
        officer_id=officer_id,
        name=name or officer_id,
        roles=",".join(sorted(roles)),
        province=province,
        added_at=now,
        added_by=actor,
    )
    session.add(officer)
    audit.append(
        session,
        actor=actor,
        action="officer.add",
        subject=f"officer {officer_id}",
        details={"roles": sorted(roles), "province": province, "name": officer.name},
        at=now,
    )
    return officer


def add_officer(
    engine: Engine,
    *,
    by: Actor,
    officer_id: str,
    name: str,
    roles: list[str],
    province: str | None,
    now: int,
) -> None:
    if "ministry-root-officer" not in by.roles:
        raise OfficerError(f"{by.id} may not add officers: only a ministry root officer may")
    with transaction(engine) as session:
        add_officer_in(
            session,
            officer_id=officer_id,
            name=name,
            roles=roles,
            province=province,
            actor=by.id,
            now=now,
        )


def actor_of(engine: Engine, officer_id: str) -> Actor:
    """The registered, active officer ``officer_id`` as the policy sees them (in-process
    callers: the demo's history and benchmarks; a client is an officer only by signing in)."""
    with Session(engine) as session:
        officer = session.get(Officer, officer_id)
    if officer is None or officer.status != "active":
        raise OfficerError(f"{officer_id}: not a registered, active officer")
    return Actor(officer.officer_id, frozenset(officer.roles.split(",")), officer.province)


def officers(engine: Engine) -> list[Officer]:
    with Session(engine) as session:
        return list(session.exec(select(Officer).order_by(Officer.officer_id)))
