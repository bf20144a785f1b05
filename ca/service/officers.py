"""Use cases of the officers area: add an officer, list them (see ca/service/__init__.py)."""

from __future__ import annotations

from sqlmodel import Session

from ca.officers import OfficerError, add_officer, officers
from ca.ops import officers as ops
from ca.ops.base import Empty
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.models import Officer


def officer_view(officer: Officer) -> ops.OfficerView:
    return ops.OfficerView(
        id=officer.officer_id,
        name=officer.name,
        roles=sorted(officer.roles.split(",")),
        province=officer.province,
        status=officer.status,
    )


@handles(ops.ADD)
def add(ctx: Context, req: ops.AddOfficerRequest) -> ops.OfficerView:
    """Only a ministry root officer adds officers (``ca.officers.add_officer``), audited."""
    add_officer(
        ctx.engine,
        by=ctx.actor(),
        officer_id=req.officer_id,
        name=req.name,
        roles=list(req.roles),
        province=req.province,
        now=ctx.now(),
    )
    with Session(ctx.engine) as session:
        added = session.get(Officer, req.officer_id)
        if added is None:  # pragma: no cover - committed just above
            raise OfficerError(f"officer {req.officer_id} was not recorded")
        return officer_view(added)


@handles(ops.LIST)
def list_officers(ctx: Context, _request: Empty) -> ops.Officers:
    return ops.Officers(officers=[officer_view(o) for o in officers(ctx.engine)])
