"""Operators' use cases (issue #16, point 2): registration with an SM2 key and the list of
operators. Signed acknowledgments arrive without an officer (``POST /acks``,
``ca.api.acks_http``); the rules of both live in ``ca.publish.acks``."""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from ca.ops import operators as ops
from ca.ops.base import Empty
from ca.publish import acks
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.models import ListAcknowledgment, ListOperator


def _view(row: ListOperator, newest: dict[str, int]) -> ops.OperatorView:
    return ops.OperatorView(
        operator_id=row.operator_id,
        name=row.name,
        province=row.province,
        cities=acks.cities_of(row),
        public_key=row.public_key,
        registered_at=row.registered_at,
        registered_by=row.registered_by,
        newest_ack=newest,
    )


@handles(ops.REGISTER)
def register(ctx: Context, req: ops.OperatorKeyRequest) -> ops.OperatorView:
    row = acks.register_operator_key(
        ctx.engine,
        ctx.actor(),
        operator_id=req.operator_id,
        name=req.name,
        province=req.province,
        cities=req.cities,
        public_key=req.public_key,
        proof=req.proof,
        now=ctx.now(),
    )
    return _view(row, {})


@handles(ops.LIST)
def list_operators(ctx: Context, req: Empty) -> ops.OperatorList:
    with Session(ctx.engine) as session:
        newest: dict[str, dict[str, int]] = {}
        for operator_id, list_type, sequence in session.exec(
            select(
                ListAcknowledgment.operator_id,
                ListAcknowledgment.list_type,
                func.max(ListAcknowledgment.sequence),
            ).group_by(col(ListAcknowledgment.operator_id), col(ListAcknowledgment.list_type))
        ):
            newest.setdefault(operator_id, {})[list_type] = sequence
        rows = session.exec(select(ListOperator).order_by(col(ListOperator.operator_id))).all()
        return ops.OperatorList(operators=[_view(r, newest.get(r.operator_id, {})) for r in rows])
