"""Operations about the service itself."""

from __future__ import annotations

from ca.ops.base import Empty, Model, operation


class ServiceInfo(Model):
    """Who the service is and what it serves (no secret, no database URL)."""

    version: str
    schema_revision: str
    embedded: bool
    state: str | None  # the state folder of an embedded service, else None
    database: str  # 'sqlite' or 'postgresql'
    officer: str | None  # the officer this request was made as, if any


INFO = operation(
    "system.info",
    Empty,
    ServiceInfo,
    "the service's version and schema",
    mutating=False,
    officer=False,
)
