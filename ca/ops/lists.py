"""Operations of the lists area (see ca/ops/base.py): the publisher, published versions and
their bytes, the root terminals trust, operators and their acknowledgments (第十二条), emergency
publication under dual control (第三十四条), and the views the console shows.

The service publishes into its own publication folder; a client that wants the files (``jtca
publish --out DIR``) mirrors them from the results here and from ``lists.version``. Checking a
list as a terminal does (``jtca lists verify``) needs no service at all.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from ca.ops.base import Empty, Model, operation

ListName = Literal["issuer-whitelist", "city-list", "ca-key-list"]
LIST_NAMES: Final[tuple[ListName, ...]] = ("issuer-whitelist", "city-list", "ca-key-list")
Value = str | int | None  # a field of a list entry, as the JSON rendering shows it
Action = Literal["published", "unchanged", "would-publish"]


# -- the signing key ------------------------------------------------------------------------
class KeyUnlock(Model):
    """How the service opens the token holding the list-signing key: the custodians' shares of
    the root token's PIN (M of N), or the PIN itself (an unattended publisher's credential).
    Never logged, never audited."""

    shares: list[str] = Field(default_factory=list, max_length=16, repr=False)
    pin: str | None = Field(default=None, max_length=256, repr=False)


# -- publishing ------------------------------------------------------------------------------
class Diff(Model):
    """Entries added, removed and changed (key → field → [old, new]) against the previous
    version."""

    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    changed: dict[str, dict[str, list[Value]]] = Field(default_factory=dict)


class PublishRequest(KeyUnlock):
    lists: list[ListName] = Field(default_factory=list)  # empty: every list
    dry_run: bool = False  # report what would change; sign, write and record nothing
    # nextUpdate - thisUpdate, and how close to nextUpdate a list is republished: the publisher
    # checks both (ca.publish.publisher.Settings) and says what is wrong with them
    validity_seconds: int = Field(default=24 * 3600, ge=60, le=366 * 24 * 3600)
    refresh_seconds: int = Field(default=6 * 3600, ge=0, le=366 * 24 * 3600)
    emergency: int | None = None  # run approved emergency request N
    wait_seconds: float = Field(default=120.0, ge=0, le=600)  # for another publisher's lock


class ListOutcome(Model):
    """What one run did with one list."""

    list_type: ListName
    action: Action
    why: str  # first version | content changed | next update due | emergency | up to date
    sequence: int | None
    entries: int
    diff: Diff
    sha256: str | None = None  # of a version published by this run


class CurrentVersion(Model):
    """A list's newest published version, by digest."""

    list_type: ListName
    sequence: int
    sha256: str
    sm3: str
    this_update: int
    next_update: int


class ListFile(CurrentVersion):
    """A published version whole: its signed DER bytes and their digests."""

    der: bytes = Field(repr=False)


class PublishResult(Model):
    outcomes: list[ListOutcome]
    current: list[CurrentVersion]  # every list's newest version after the run
    published: list[ListFile]  # every version this run published, whole
    dry_run: bool = False
    emergency: int | None = None  # the emergency request this run carried out


PUBLISH = operation(
    "lists.publish",
    PublishRequest,
    PublishResult,
    "publish each list whose content changed or whose nextUpdate nears (the publisher)",
)


class VersionRequest(Model):
    list_type: ListName
    sequence: int | None = Field(default=None, ge=1)  # None: the current version


VERSION = operation(
    "lists.version",
    VersionRequest,
    ListFile,
    "a published version's signed bytes (the current one when no sequence is given)",
    mutating=False,
    officer=False,
)


class RootCertificate(Model):
    der: bytes = Field(repr=False)
    pem: str


ROOT = operation(
    "lists.root",
    Empty,
    RootCertificate,
    "the root certificate terminals trust",
    mutating=False,
    officer=False,
)


# -- log proofs (issue #13) ------------------------------------------------------------------
class ProofRequest(Model):
    list_type: ListName
    sequence: int = Field(ge=1)


class LogProofFile(Model):
    """A published version's log proof (``jtca-log-proof/1``, docs/lists.md "The log proof
    file"): the bytes an operator keeps beside the list as ``<list file>.proof`` and checks with
    the audit certificate alone (``jtca lists check-proof``)."""

    list_type: ListName
    sequence: int
    sm3: str  # hex SM3 of the list's DER bytes: the entry's object line
    seq: int  # the log entry that records the publication (leaf index seq - 1)
    size: int  # the tree size of the checkpoint the proof leads to
    cosigners: list[str]  # active witnesses whose cosignature the checkpoint carries
    quorum: int  # policy [log] witness_quorum
    witnessed: bool  # len(cosigners) >= quorum
    proof: bytes = Field(repr=False)  # the file's bytes


PROOF = operation(
    "lists.proof",
    ProofRequest,
    LogProofFile,
    "a published version's log proof: its log entry, the inclusion proof and the cosigned "
    "checkpoint covering it (409 until a checkpoint covers it)",
    mutating=False,
    officer=False,
)


# -- views -----------------------------------------------------------------------------------
class HistoryRequest(Model):
    list_type: ListName | None = None  # None: every list


class HistoryEntry(Model):
    list_type: ListName
    sequence: int
    this_update: int
    next_update: int
    entries: int
    sha256: str
    sm3: str
    file: str  # relative to a publication folder
    published_at: int
    published_by: str
    emergency: bool
    diff: Diff


class History(Model):
    versions: list[HistoryEntry]


HISTORY = operation(
    "lists.history",
    HistoryRequest,
    History,
    "every published version, with its digests, publisher and diff",
    mutating=False,
    officer=False,
)


class Freshness(Model):
    list_type: ListName
    sequence: int | None  # None: never published
    this_update: int | None
    next_update: int | None
    stale: bool  # never published, or its nextUpdate has passed


class FreshnessView(Model):
    now: int
    lists: list[Freshness]


FRESHNESS = operation(
    "lists.freshness",
    Empty,
    FreshnessView,
    "each list's current version and whether it is stale",
    mutating=False,
    officer=False,
)


# -- operators and acknowledgments (第十二条) ----------------------------------------------------
class OperatorRequest(Model):
    operator_id: str = Field(max_length=1000)  # the use case names what an id may be
    name: str = Field(default="", max_length=200)
    province: str | None = Field(default=None, max_length=100)


class Operator(Model):
    operator_id: str
    name: str
    province: str | None
    registered_at: int
    registered_by: str


OPERATOR_ADD = operation(
    "lists.operator-add",
    OperatorRequest,
    Operator,
    "register an operator that loads the lists into its terminals",
)


class AckRequest(Model):
    """An operators' load report, as the file's text."""

    text: str
    kind: Literal["csv", "json"]
    source: str = Field(default="", max_length=1000)  # the file's name, for the audit log


class AckRow(Model):
    operator: str
    list_type: str
    sequence: int


class RefusedRow(Model):
    line: int
    field: str
    problem: str


class AckResult(Model):
    report: str  # SHA-256 of the report's text
    accepted: list[AckRow]
    refused: list[RefusedRow]


ACK = operation("lists.ack", AckRequest, AckResult, "import operators' load reports (CSV or JSON)")


class OverdueRequest(Model):
    days: int = Field(default=15, ge=0, le=36500)  # 第十二条: within 15 days


class OverdueOperator(Model):
    operator_id: str
    name: str
    list_type: str
    loaded: int | None  # the newest version it reported loading
    oldest_missing: int  # the oldest published version it has not loaded
    published_at: int
    days_since: int


class OverdueList(Model):
    days: int
    operators: list[OverdueOperator]


OVERDUE = operation(
    "lists.overdue",
    OverdueRequest,
    OverdueList,
    "operators that have not loaded a list version published more than N days ago",
    mutating=False,
    officer=False,
)


# -- emergency publication (第三十四条) ------------------------------------------------------------
class EmergencyRequest(KeyUnlock):
    reason: str = Field(max_length=400)


class DecideRequest(KeyUnlock):
    """An approval or rejection of emergency request ``request``, signed by the deciding
    officer's token (issue #12): ``signature`` is the raw SM2 r‖s over
    ``ca.officers.statements.approval_statement`` for the subject ``"action {request}"``."""

    request: int = Field(ge=1)
    reason: str = Field(default="", max_length=2000)  # ca.officers.dual_control allows 400
    at: int  # the time the approver's client signed the decision (Unix seconds)
    signature: bytes = Field(min_length=64, max_length=64)  # raw r‖s


class EmergencyOutcome(Model):
    """An emergency request after the call; ``publication`` when it was carried out (the last
    approval publishes every list at once)."""

    request: int
    state: str  # pending | approved | rejected | done
    required: int  # approvals the policy asks for
    publication: PublishResult | None = None


EMERGENCY = operation(
    "lists.emergency",
    EmergencyRequest,
    EmergencyOutcome,
    "ask for an emergency publication of every list (dual control)",
)
APPROVE = operation(
    "lists.approve",
    DecideRequest,
    EmergencyOutcome,
    "approve an emergency publication; the last approval publishes",
)
REJECT = operation(
    "lists.reject", DecideRequest, EmergencyOutcome, "reject an emergency publication request"
)
