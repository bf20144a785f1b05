"""Which function implements which operation: ``@handles(ops.city.APPLY)`` on a use case.

``dispatch`` is the one way in, for the HTTP adapter and for in-process callers (benchmarks):
it validates the request against the operation's model and the result against its result
model, so an adapter can never pass or return an untyped value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ca.ops.base import OPERATIONS, Model, Operation
from ca.service.context import Context

Req = TypeVar("Req", bound=Model)
Res = TypeVar("Res", bound=Model)

Handler = Callable[[Context, Any], Model]
HANDLERS: dict[str, Handler] = {}


def handles(
    op: Operation[Req, Res],
) -> Callable[[Callable[[Context, Req], Res]], Callable[[Context, Req], Res]]:
    def register(function: Callable[[Context, Req], Res]) -> Callable[[Context, Req], Res]:
        if op.name in HANDLERS:
            raise ValueError(f"operation {op.name} has two handlers")
        HANDLERS[op.name] = function
        return function

    return register


def load_all() -> dict[str, Handler]:
    """Every operation's handler; an operation without one is a programming error."""
    import ca.ops.all
    import ca.service.all  # noqa: F401

    missing = sorted(set(OPERATIONS) - set(HANDLERS))
    if missing:
        raise RuntimeError(f"operations without a handler: {', '.join(missing)}")
    return HANDLERS


def call(ctx: Context, op: Operation[Req, Res], request: Req) -> Res:
    """Run ``op`` in-process (benchmarks, the service's own jobs)."""
    load_all()
    result = HANDLERS[op.name](ctx, op.request.model_validate(request))
    return op.result.model_validate(result)
