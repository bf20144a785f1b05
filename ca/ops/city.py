"""Operations of the city area: the city key lifecycle (一城一密, 第九至十一条); see ca/ops/base.py.

Apply → approve → generate (the token-holding steps, transport keys, delivery and import, are
``ca.ops.packages``); the officers' queries (expiring, renewal due, dormant, suspended,
violations) and one key; renewal and the time sweep; usage reports; suspend, resume, revoke,
dormant cleanup and material destruction under dual control; the expiry report's rows; the purge
of records past retention.

Conventions of every model here: times are Unix seconds UTC (``ca.core.clock``; a client formats
them),
divisions are GB/T 2260 six-digit codes, a key class is a policy class name (``city-card``,
``city-qr``). A provincial officer reads and acts on their own province only: the use cases
decide it (``ca.service.city``), so every client gets the same answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ca.ops.base import Empty, Model, operation

# -- applications (第九条) ---------------------------------------------------------------------


class Application(Model):
    """A province's application for its cities' key sets."""

    id: int
    province: str
    cities: list[str]
    applicant: str
    state: str  # pending | approved | rejected | generated
    created_at: int
    decided_at: int | None = None


class ApplyRequest(Model):
    cities: list[str]  # city codes (地级市 or 直辖市) of the applicant's province


class ApplicationsRequest(Model):
    state: str | None = None  # only applications in this state (e.g. "pending")
    decidable: bool = False  # only those the calling officer may decide (not their own)


class ApplicationList(Model):
    applications: list[Application]  # oldest first


class ActionOutcome(Model):
    """Where a key action stands after a request or a decision (dual control)."""

    action_id: int | None  # None: it needed no approver and ran at once
    action: str  # city-key.suspend | resume | revoke | cleanup-dormant | destroy-material
    state: str  # pending | done | rejected
    approvals: int
    required: int
    keys: list[str]  # labels


class GenerateRequest(Model):
    application: int  # an approved application


class DecideRequest(Model):
    """One officer's approval or rejection of an application or of a pending key action,
    signed by that officer's token (issue #12): ``signature`` is the raw SM2 r‖s over
    ``ca.officers.statements.approval_statement`` for the subject ``"{kind} {id}"`` (the request
    that
    opened it, this decision, the officer, their certificate serial and ``at``)."""

    kind: Literal["application", "action"]
    id: int
    approve: bool
    reason: str = ""  # required to reject; at most 400 characters
    at: int  # the time the approver's client signed the decision (Unix seconds)
    signature: bytes = Field(min_length=64, max_length=64)  # raw r‖s


class Decision(Model):
    kind: Literal["application", "action"]
    id: int
    state: str  # the application's or the action's state after this decision
    application: Application | None = None  # kind == "application"
    outcome: ActionOutcome | None = None  # kind == "action"


# -- keys --------------------------------------------------------------------------------------


class KeyView(Model):
    """One city key as officers and scripts see it (the fields of the key record that matter,
    its city's name, its time flags, whole days left)."""

    id: int
    label: str  # e.g. city-qr-440100-g1
    city: str
    city_name: str  # e.g. 广州市
    province: str
    key_class: str
    kind: str  # sm2 | sm4
    generation: int
    application: int | None  # the application it was generated for
    state: str  # ca.citykeys.lifecycle.KeyState value
    stage: str  # generated … installed
    flags: list[str]  # renewal-due, expired, dormant, violation
    not_before: int
    not_after: int
    days_left: int  # whole days until not_after, rounded down (negative: overdue)
    delivered_at: int | None = None
    installed_at: int | None = None
    activated_at: int | None = None
    first_use: int | None = None
    last_use: int | None = None
    predecessor: int | None = None
    successor: int | None = None
    supersede_at: int | None = None
    reason: str = ""  # of the last suspension or revocation
    destroy_after: int | None = None
    destroyed_at: int | None = None
    # holders (a province, a city) whose copy awaits destruction at their site: the service
    # destroyed the ministry's copy; each site destroys its own (jtca city destroy-copies)
    copies_awaiting_destruction: list[str] = Field(default_factory=list)
    open_violations: int = 0
    public_key: str | None = None  # SM2 point, compressed, hex
    check_value: str | None = None  # SM4 key check value, hex


class KeyQuery(Model):
    """Filters of the key queries; every one given must hold."""

    province: str | None = None
    city: str | None = None
    key_class: str | None = None
    state: str | None = None
    expiring: int | None = None  # still live and ending within this many days
    renewal_due: bool = False
    dormant: bool = False
    suspended: bool = False
    violations: bool = False


class KeysRequest(KeyQuery):
    limit: int | None = None  # at most this many, soonest end first


SortKey = Literal[
    "id", "label", "city", "city_name", "class", "state", "stage", "not_after", "days_left"
]


class PageRequest(KeyQuery):
    """One page of keys for a table: free text over label, city code and city name."""

    text: str = ""
    sort: SortKey = "not_after"
    descending: bool = False
    limit: int = 500


class KeyList(Model):
    keys: list[KeyView]  # soonest end first


class KeyPage(Model):
    keys: list[KeyView]
    total: int  # how many match in all


class KeyRequest(Model):
    key: int


class SummaryRequest(Model):
    province: str | None = None


class KeySummary(Model):
    """The dashboard's counts."""

    total: int
    expiring_30: int
    expiring_90: int
    renewal_due: int
    dormant: int
    suspended: int
    violations: int
    states: dict[str, int]  # every lifecycle state → how many keys are in it


class SweptKey(Model):
    label: str
    state: str


class SweepResult(Model):
    changed: list[SweptKey]


# -- usage reports (第十、十一条) --------------------------------------------------------------


class UsageRequest(Model):
    report: str  # the report's text (the client reads the file)
    format: Literal["csv", "json"]
    source: str = ""  # where it came from (a file name), for the audit log


class RefusedRow(Model):
    line: int
    field: str
    problem: str


class UsageViolation(Model):
    line: int
    key: str  # the key as the report named it
    reason: str  # scope-violation | unknown-key | city-mismatch | used-before-… | used-after-…
    granted: str  # the key's city, "" for an unknown key
    used_in: str


class UsageResult(Model):
    report: str  # SHA-256 of the report
    accepted: int
    refused: list[RefusedRow]
    violations: list[UsageViolation]
    activated: list[str]  # labels of keys whose first use activated them


# -- key actions under dual control (第十、十一条) ---------------------------------------------


class KeyActionRequest(Model):
    """Suspend, resume or revoke the keys named, or every key of a city that can take it."""

    keys: list[int] = Field(default_factory=list)
    city: str | None = None
    reason: str


class CleanupRequest(Model):
    """Revoke dormant keys; no keys named: every dormant key in the officer's scope."""

    keys: list[int] = Field(default_factory=list)
    reason: str


class DestroyRequest(Model):
    """Destroy material after the grace period; no keys named: every key due in scope."""

    keys: list[int] = Field(default_factory=list)


class ActionsRequest(Model):
    decidable: bool = False  # only those the calling officer may decide (not their own)


class PendingActionView(Model):
    id: int
    action: str
    keys: list[int]
    labels: list[str]
    reason: str
    requested_by: str
    requested_at: int
    required: int
    approvals: int


class PendingActions(Model):
    actions: list[PendingActionView]  # oldest first


# -- report and retention ----------------------------------------------------------------------


class ReportRequest(Model):
    province: str | None = None


class KeyReport(Model):
    """The rows of the expiry report; the client draws report.csv, report.md and timeline.png
    from them with ``ca.citykeys.report_format`` (pure)."""

    generated_at: int  # the service's now: days left are counted from it
    title: str
    scope: str  # "national" or "province 440000"
    keys: list[KeyView]


class PurgeResult(Model):
    keys: list[str]  # labels of the key records deleted
    usage_reports: int


# -- the operations ----------------------------------------------------------------------------

APPLY = operation(
    "city.apply", ApplyRequest, Application, "a province applies for its cities' key sets (第九条)"
)
APPLICATIONS = operation(
    "city.applications",
    ApplicationsRequest,
    ApplicationList,
    "applications and their state (a provincial officer: their province's)",
    mutating=False,
)
DECIDE = operation(
    "city.decide",
    DecideRequest,
    Decision,
    "approve or reject an application or a pending key action (dual control)",
)
GENERATE = operation(
    "city.generate",
    GenerateRequest,
    KeyList,
    "generate an approved application's keys in the ministry token",
)
KEYS = operation(
    "city.keys",
    KeysRequest,
    KeyList,
    "city keys matching every filter, soonest end first",
    mutating=False,
)
PAGE = operation(
    "city.page",
    PageRequest,
    KeyPage,
    "one sorted page of the keys matching the filters and free text, and the total",
    mutating=False,
)
SHOW = operation("city.show", KeyRequest, KeyView, "one key, whole", mutating=False)
SUMMARY = operation(
    "city.summary",
    SummaryRequest,
    KeySummary,
    "the dashboard's counts",
    mutating=False,
)
RENEW = operation(
    "city.renew", KeyRequest, KeyView, "make an active key's successor in its renewal window"
)
# No officer, by design: the request carries nothing, and the sweep applies only the
# transitions the service's own clock has already made due (a renewed key superseded after its
# overlap, a key expired after not_after), each once, audited as ``sweeper``. Whoever triggers
# it, the outcome is the one the next timer run would reach; no caller chooses a key or a state.
SWEEP = operation(
    "city.sweep",
    Empty,
    SweepResult,
    "supersede and expire keys whose time has come (time-driven, idempotent)",
    officer=False,
)
USAGE = operation("city.usage", UsageRequest, UsageResult, "import an activation and usage report")
SUSPEND = operation(
    "city.suspend", KeyActionRequest, ActionOutcome, "suspend keys or a city's keys (第十一条)"
)
RESUME = operation(
    "city.resume", KeyActionRequest, ActionOutcome, "resume suspended keys or a city's keys"
)
REVOKE = operation(
    "city.revoke", KeyActionRequest, ActionOutcome, "revoke keys or a city's keys (第十一条)"
)
CLEANUP = operation("city.cleanup", CleanupRequest, ActionOutcome, "revoke dormant keys (第十条)")
DESTROY_MATERIAL = operation(
    "city.destroy-material",
    DestroyRequest,
    ActionOutcome,
    "destroy revoked or deactivated keys' material after the grace period",
)
ACTIONS = operation(
    "city.actions",
    ActionsRequest,
    PendingActions,
    "key actions awaiting approvers",
    mutating=False,
)
REPORT = operation(
    "city.report",
    ReportRequest,
    KeyReport,
    "the expiry report's rows",
    mutating=False,
)
PURGE = operation(
    "city.purge",
    Empty,
    PurgeResult,
    "delete records whose retention period has ended (第二十九条)",
)
