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


class RecoverRequest(Model):
    """Recover unfinished operations: all of them, or those of one operation."""

    operation: str | None = None


class RecoveredIntent(Model):
    intent: int
    operation: str
    subject: str
    result: str  # rolled-forward | rolled-back | failed | settled-elsewhere
    outcome: str


class IntentInfo(Model):
    intent: int
    operation: str
    subject: str
    state: str  # open | completed | rolled-forward | rolled-back
    actor: str
    began_at: int
    ended_at: int | None
    outcome: str | None
    owner_alive: bool


class RecoverResult(Model):
    recovered: list[RecoveredIntent]
    open: list[IntentInfo]  # still open after recovery (owners alive, or failed)


RECOVER = operation(
    "system.recover",
    RecoverRequest,
    RecoverResult,
    "finish or undo every operation a crash left unfinished (an officer allowed "
    "system.recover; the service also does it at start and before a rerun)",
)
