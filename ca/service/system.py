"""Use cases about the service itself."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ca.core.errors import BadInput
from ca.ops import system as ops
from ca.ops.base import Empty
from ca.service.context import Context
from ca.service.registry import handles


def jtca_version() -> str:
    try:
        return version("jtca")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


@handles(ops.INFO)
def info(ctx: Context, _request: Empty) -> ops.ServiceInfo:
    schema = ctx.runtime.schema()
    return ops.ServiceInfo(
        version=jtca_version(),
        schema_revision=schema.current or "",
        embedded=ctx.runtime.embedded,
        state=str(ctx.runtime.state.resolve()) if ctx.runtime.embedded else None,
        database=ctx.runtime.database,
        officer=ctx.officer.id if ctx.officer else None,
    )


@handles(ops.RECOVER)
def recover(ctx: Context, req: ops.RecoverRequest) -> ops.RecoverResult:
    """``jtca recover``: every unfinished intent whose process is gone, rolled forward or back
    (audited as ``intent.recover`` by the officer who asked); what stays open is listed."""
    from sqlmodel import Session

    from ca.policy.authorization import require
    from ca.service.recovery import recover as run_recovery
    from ca.service.recovery import registered
    from ca.store import intents
    from policies.rules import Action, Subject

    officer = ctx.actor()
    now = ctx.now()
    require(officer, Action.SYSTEM_RECOVER, Subject(), now)
    if req.operation is not None and req.operation not in registered():
        raise BadInput(
            f"operation {req.operation!r}: not one that recovery knows ({', '.join(registered())})"
        )
    from ca.service.recovery import sweep_state

    if req.operation is None:
        sweep_state(ctx.runtime)  # temporary files dead writers left
    done = run_recovery(ctx.runtime, now=now, actor=officer.id, operation=req.operation)
    with Session(ctx.engine) as session:
        still = intents.open_intents(session, operation=req.operation)
    return ops.RecoverResult(
        recovered=[
            ops.RecoveredIntent(
                intent=d.intent,
                operation=d.operation,
                subject=d.subject,
                result=d.result,
                outcome=d.outcome,
            )
            for d in done
        ],
        open=[
            ops.IntentInfo(
                intent=i.id,
                operation=i.operation,
                subject=i.subject,
                state=i.state,
                actor=i.actor,
                began_at=i.began_at,
                ended_at=i.ended_at,
                outcome=i.outcome,
                owner_alive=intents.owner_alive(i.owner, began_at=i.began_at, now=now),
            )
            for i in still
        ],
    )
