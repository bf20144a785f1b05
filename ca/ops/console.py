"""Operations of the officers' console (``tui/``): the views that are the console's own — the
dashboard, the approvals waiting for this officer, the audit log a page at a time. Every other
action of the console is an operation of its area (``ca.ops.city``, ``ca.ops.lists``,
``ca.ops.officers``...), the same one the command line calls.

The console signs in exactly as ``jtca login`` does (issue #12): the officer's own token signs
the service's challenge (``ca.ops.auth``), and every request of the session is signed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ca.ops.base import Empty, Model, operation
from ca.ops.city import KeySummary, KeyView


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
PendingKind = Literal["application", "action", "emergency", "enrolment"]


class PendingItem(Model):
    """A request awaiting a decision: a key application (第九条), a key action (第十、十一条),
    an emergency publication (第三十四条) or an officer's enrolment (issue #12)."""

    kind: PendingKind
    id: int
    subject: str  # what the approver signs a decision on: "application 7", "enrolment 2"
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
    actor: str = Field(default="", max_length=200)  # actor contains this text
    subject: str = Field(default="", max_length=200)  # subject contains this text
    since: int | None = Field(default=None, ge=0)  # at or after this time (Unix seconds)
    until: int | None = Field(default=None, ge=0)  # before this time (Unix seconds)


class AuditEventView(Model):
    seq: int
    at: int
    actor: str
    action: str
    subject: str
    details: str  # as stored (JSON text)
    kind: str  # event | certificate | list | package
    object_sm3: str | None  # SM3 of the certificate, list or package logged
    leaf_hash: str  # SM3(0x00 || entry): its leaf in the Merkle log
    sealed: bool  # signed by the service's registered seal key


class AuditPage(Model):
    events: list[AuditEventView]  # newest first
    total: int  # every event in the log
    matching: int = 0  # the events the filters match (all pages)


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
