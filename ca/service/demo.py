"""Use cases of the demo area (see ``ca.ops.demo``): the demo world's history is seeded here, in
the service that holds the database and the ministry's tokens; the officers' personal tokens and
the day's signed work are the demo client's (``ca.demo.officer_work``)."""

from __future__ import annotations

from sqlmodel import Session, select

from ca.ceremony.run import Transcript
from ca.core.errors import JtcaError
from ca.ops import demo as ops
from ca.ops.base import Empty
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.models import AuditEvent, CeremonyRun, Officer


class DemoRefused(JtcaError):
    title = "Demo refused"
    exit_code = 2


@handles(ops.STATUS)
def status(ctx: Context, _req: Empty) -> ops.DemoStatus:
    from ca.demo.seed import is_seeded

    seeded = ctx.runtime.embedded and is_seeded(ctx.runtime.state)
    return ops.DemoStatus(
        seeded=seeded,
        credentials=str((ctx.runtime.state / ops.CREDENTIALS).resolve()) if seeded else None,
    )


@handles(ops.SEED)
def seed(ctx: Context, _req: Empty) -> ops.Seeded:
    """The demo world's history, on an embedded service whose database is empty (no officer,
    no ceremony, no audit event); refused anywhere else."""
    from ca.demo.seed import is_seeded
    from ca.demo.seed import seed as seed_world

    runtime = ctx.runtime
    if not runtime.embedded:
        raise DemoRefused(
            "demo data is seeded only into the embedded default (jtca demo in a fresh state "
            "folder), never into a served authority"
        )
    with Session(ctx.engine) as session:
        used = any(
            session.exec(select(table).limit(1)).first() is not None
            for table in (Officer, CeremonyRun)
        ) or (  # a fresh service's first start audits only the policy it adopts (issue #16)
            session.exec(
                select(AuditEvent).where(AuditEvent.action != "policy.adopt").limit(1)
            ).first()
            is not None
        )
    if used or is_seeded(runtime.state):
        raise DemoRefused(
            f"the database of {runtime.state} is not empty: demo data goes only into a fresh "
            "state folder (set JTCA_STATE to a new folder and run jtca demo)"
        )
    from ca.log import audit
    from ca.service import logkeys
    from ca.service.ceremony import write_outside

    def after_ceremony(transcript: Transcript) -> None:  # as ceremony.run does
        if isinstance(transcript.sealer, audit.SessionSealer):
            key = next(k["public_key"] for k in transcript.data["keys"] if k["class"] == "audit")
            logkeys.adopt_sealer(runtime, key, transcript.sealer)
        write_outside(runtime, transcript)

    with runtime.tokens(create=True) as vault:
        try:
            seeded = seed_world(
                runtime.state,
                ctx.engine,
                vault,
                ctx.now(),
                on_audit_key=logkeys.seal_in,
                on_ceremony=after_ceremony,
            )
        except FileExistsError as exc:
            raise DemoRefused(f"{exc}: demo data goes only into a fresh state folder") from None
    return ops.Seeded(
        credentials=str((runtime.state / ops.CREDENTIALS).resolve()),
        officers=[o.id for o in seeded.officers],
    )
