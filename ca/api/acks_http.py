"""POST /acks: operators' signed load acknowledgments (issue #16, point 2).

No officer session: the body (``ca.ops.operators.SignedAck``) is a statement signed with the
operator's registered SM2 key, checked and kept by ``ca.publish.acks.accept_signed_ack``. Every
refusal is a problem answer naming the check (unknown operator, invalid signature, a statement
from the future or stale, a replayed nonce, a version never published or other bytes than it, a
city outside the operator's scope, already acknowledged); nothing is kept for a refused one.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from ca.core.clock import Clock
from ca.ops.operators import AckReceipt, SignedAck
from ca.publish import acks
from ca.service.runtime import Runtime


def register(app: FastAPI, runtime: Runtime, clock: Clock) -> None:
    """Add this module's routes to ``app``."""

    @app.post(
        "/acks",
        response_model=AckReceipt,
        status_code=201,
        summary="an operator's signed acknowledgment that it loaded a list version (第十二条)",
        tags=["operators"],
    )
    async def post_ack(body: SignedAck) -> AckReceipt:
        return await run_in_threadpool(
            acks.accept_signed_ack, runtime.engine, body, now=clock.now()
        )
