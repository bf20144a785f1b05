"""Use cases about the service itself."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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
