"""Operations of the officers' console (``tui/``): signing in, and the views that are the
console's own — the dashboard, the approvals waiting for this officer, the audit log a page at
a time. Every other action of the console is an operation of its area (``ca.ops.city``,
``ca.ops.lists``, ...), the same one the command line calls.

Signing in proves the officer with the PIN of a token they hold (their province's key token,
or the ministry's) or with the root token's share quorum: the secret travels in the request body
to the service, which holds the tokens and lets the token itself check it. Issue #12 replaces
this with personal tokens and signed challenges.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from ca.ops.base import Empty, Model, operation
from ca.ops.city import KeySummary, KeyView

MAX_SECRET: Final = 256  # a PIN or one share of the root token's PIN


class Officer(Model):
    """An officer as the policy sees them."""

    id: str
    name: str
    roles: list[str]
    province: str | None  # GB/T 2260 province code of a provincial officer, else None


class SignInRequest(Model):
    """The officer id and either the PIN of their token or the root token's shares."""

    officer: str = Field(max_length=200)
    pin: str | None = Field(default=None, max_length=MAX_SECRET)
    shares: list[str] = Field(default_factory=list, max_length=16)


class SignedIn(Model):
    officer: Officer
    actions: list[str]  # the policy actions the officer's roles grant (scope decided per subject)
    how: str  # which secret proved them: 'PIN of the 440000 key token', 'share quorum …'
    now: int  # the service's time at sign-in (Unix seconds)


SIGN_IN = operation(
    "console.sign-in",
    SignInRequest,
    SignedIn,
    "sign an officer in with their token's PIN or the root token's share quorum (audited)",
    officer=False,
)


# -- the dashboard ------------------------------------------------------------------------------
class ListFreshness(Model):
    list_type: str  # issuer-whitelist, city-list, ca-key-list
    sequence: int | None  # the newest version published, None if never
    next_update: int | None
    stale: bool  # never published, or past its nextUpdate


class Dashboard(Model):
    now: int
    keys: KeySummary  # city keys in the officer's scope (a province's own, or all)
    lists: list[ListFreshness]
    overdue_acks: int  # operators × lists not acknowledged within 15 days (第十二条)
    pending_approvals: int  # what awaits this officer's decision (``console.pending``)


DASHBOARD = operation(
    "console.dashboard",
    Empty,
    Dashboard,
    "the officer's dashboard: key counts, list freshness, overdue acknowledgments, approvals",
    mutating=False,
)


# -- approvals ----------------------------------------------------------------------------------
PendingKind = Literal["application", "action", "emergency"]


class PendingItem(Model):
    """A request awaiting a decision: a key application (第九条), a key action (第十、十一条) or
    an emergency publication (第三十四条)."""

    kind: PendingKind
    id: int
    what: str
    by: str  # the requesting officer
    at: int  # when it was requested
    reason: str


class Pending(Model):
    items: list[PendingItem]


PENDING = operation(
    "console.pending",
    Empty,
    Pending,
    "what awaits this officer's decision (never their own requests)",
    mutating=False,
)


# -- the audit log ------------------------------------------------------------------------------
class AuditPageRequest(Model):
    before: int | None = Field(default=None, ge=0)  # events with a smaller seq (older)
    size: int = Field(default=200, ge=1, le=1000)
    action: str = Field(default="", max_length=200)  # action contains this text


class AuditEventView(Model):
    seq: int
    at: int
    actor: str
    action: str
    subject: str
    details: str  # as stored (JSON text)
    hash: str
    prev_hash: str


class AuditPage(Model):
    events: list[AuditEventView]  # newest first
    total: int  # every event in the log


AUDIT_PAGE = operation(
    "console.audit-page",
    AuditPageRequest,
    AuditPage,
    "a page of the audit log, newest first, filtered by action",
    mutating=False,
)


# -- cleanup ------------------------------------------------------------------------------------
class CleanupView(Model):
    """The Cleanup screen's two lists, in the officer's scope: dormant keys — delivered, never
    activated within their class's threshold (第十条) — and keys whose grace period after
    revocation or deactivation has ended, whose material is due for destruction (第二十九条)."""

    dormant: list[KeyView]
    destroy_due: list[KeyView]


CLEANUP = operation(
    "console.cleanup",
    Empty,
    CleanupView,
    "dormant keys and keys whose material is due for destruction, in the officer's scope",
    mutating=False,
)


# -- ceremonies ---------------------------------------------------------------------------------
class CeremonyRunView(Model):
    name: str
    kind: str  # root | ca-rollover
    file_sha256: str
    at: int


class CeremonyRuns(Model):
    runs: list[CeremonyRunView]  # oldest first


CEREMONIES = operation(
    "console.ceremonies",
    Empty,
    CeremonyRuns,
    "the key ceremonies that have run (the Ceremony screen warns before a second run)",
    mutating=False,
)


# -- emergency publication requests ---------------------------------------------------------------
class EmergencyRequestView(Model):
    id: int
    state: str  # pending | approved | rejected | done
    by: str
    at: int
    required: int  # approvals the policy asks for
    reason: str


class EmergencyRequests(Model):
    requests: list[EmergencyRequestView]  # newest first


EMERGENCY_REQUESTS = operation(
    "console.emergency-requests",
    Empty,
    EmergencyRequests,
    "the latest emergency publication requests (第三十四条), in every state",
    mutating=False,
)
