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


# -- progress of long work (issue #17, point 1) ---------------------------------------------------
# A client that wants to show a progress bar for one long operation (generating many keys,
# publishing the lists, verifying a long log) sends ``Jtca-Progress: <token>`` with it — a fresh
# random token of its own (32 bytes, base64url) — and polls ``GET /v1/progress/<token>`` while
# it waits. The token is the capability: only who made it can ask; the answer holds counts and a
# phrase, no data of the operation, and no database is read to give it. See docs/service.md.
PROGRESS_HEADER = "Jtca-Progress"
PROGRESS_PREFIX = "/v1/progress/"
PROGRESS_ID_PATTERN = r"[A-Za-z0-9_-]{43}"  # 32 random bytes, base64url without padding


class ProgressView(Model):
    """Where the operation sent under a progress token has got to."""

    what: str  # what it is doing, in words ('generating keys in the ministry token')
    done: int
    total: int | None  # None: not known yet
    finished: bool  # the operation has answered (with its result or a problem)
