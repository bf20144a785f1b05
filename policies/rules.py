"""The authority policy (``policies/authority.toml``): schema, validation, pure evaluation.

``parse_policy(text)`` validates the whole file with a declarative pydantic model (``_File``
and its tables, on ``policies.filemodel``) and names the key of any error
(``key_classes.city-card.validity_days: …``); ``decide(policy, actor, action, subject, now)``
returns a ``Decision`` with a reason code. No I/O and nothing of jtca is imported here but
``policies.bounded`` and ``policies.filemodel`` (the file is parsed within size, depth and
number limits first, issue #14): the caller reads the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final

from pydantic import AfterValidator, Field, ValidationError, model_validator

from policies.bounded import BadFile, load_toml
from policies.filemodel import FileModel, fail, first_problem, rule, shown, whole

DEFAULT_POLICY_PATH: Final = Path(__file__).parent / "authority.toml"

ALGORITHMS: Final = frozenset({"sm2", "sm4"})  # 第八条: national commercial algorithms only
SCOPE_LEVELS: Final = frozenset({"national", "province", "city"})
ROLE_SCOPES: Final = frozenset({"national", "province"})


class Action:
    """The actions the policy knows; roles and dual control may name only these."""

    CEREMONY_RUN: Final = "ceremony.run"
    QR_CA_ISSUE_INTEROP_CERT: Final = "qr-ca.issue-interop-cert"
    QR_CA_REVOKE_INTEROP_CERT: Final = "qr-ca.revoke-interop-cert"
    QR_CA_ROLLOVER: Final = "qr-ca.rollover"
    ISSUER_REGISTER: Final = "issuer.register"
    CITY_KEY_APPLY: Final = "city-key.apply"  # 第九条: the province applies to the ministry
    CITY_KEY_APPROVE: Final = "city-key.approve"
    CITY_KEY_GENERATE: Final = "city-key.generate"
    CITY_KEY_DELIVER: Final = "city-key.deliver"  # 第九条: 一城一密, handed on to the city
    CITY_KEY_IMPORT: Final = "city-key.import"
    CITY_KEY_RENEW: Final = "city-key.renew"  # 第十条: renewed before the validity ends
    CITY_KEY_SUSPEND: Final = "city-key.suspend"  # 第十一条: misuse suspends the right
    CITY_KEY_RESUME: Final = "city-key.resume"
    CITY_KEY_REVOKE: Final = "city-key.revoke"  # 第十一条: or cancels it
    CITY_KEY_DESTROY_MATERIAL: Final = "city-key.destroy-material"
    CITY_KEY_CLEANUP_DORMANT: Final = "city-key.cleanup-dormant"  # 第十条: 长期未使用…清理撤销
    CITY_KEY_USAGE_IMPORT: Final = "city-key.usage-import"  # activation and usage reports
    CITY_KEY_PURGE_RECORDS: Final = "city-key.purge-records"  # only past retention (第二十九条)
    TRANSPORT_KEY_REGISTER: Final = "transport-key.register"  # the keys packages are sealed to
    LIST_PUBLISH: Final = "list.publish"  # 第十二条: the city list
    LIST_EMERGENCY_PUBLISH: Final = "list.emergency-publish"  # 第三十四条
    LIST_OPERATOR_REGISTER: Final = "list.register-operator"  # operators that load the lists
    LIST_IMPORT_ACK: Final = "list.import-ack"  # 第十二条: operators report loading
    AUDIT_VERIFY: Final = "audit.verify"
    AUDIT_EXPORT: Final = "audit.export"
    AUDIT_CHECKPOINT: Final = "audit.checkpoint"
    LOG_WITNESS: Final = "log.witness"  # issue #13: register or remove a witness of the log
    AUDIT_RESUME: Final = "audit.resume"  # issue #13: let checkpoints cover a halt's entries
    SYSTEM_RECOVER: Final = "system.recover"  # issue #14: finish or undo what a crash left
    OFFICER_ENROL: Final = "officer.enrol"  # issue #12: certify an officer's token key
    OFFICER_APPROVE: Final = "officer.approve"  # the second officer of an enrolment
    OFFICER_SUSPEND: Final = "officer.suspend"  # suspend, reinstate, revoke a certificate
    OFFICER_RENEW: Final = "officer.renew"
    POLICY_CHANGE: Final = "policy.change"  # issue #16: propose or approve a new policy


ACTIONS: Final = frozenset(v for k, v in vars(Action).items() if k.isupper() and isinstance(v, str))
REASONS: Final = frozenset(
    {
        "allow",
        "deny/unknown-action",
        "deny/no-role",
        "deny/province-unbound",
        "deny/other-province",
        "deny/unknown-key-class",
        "deny/national-scope",
        "deny/lifetime-too-long",
        "deny/unknown-ca-index",
        "deny/missing-subject",
        "deny/bad-division-code",
        "deny/lifetime-not-positive",
    }
)


class PolicyFileError(Exception):
    """A policy file that does not validate; ``key`` is the dotted path of the culprit."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        self.message = f"{key}: {problem}"
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class KeyClass:
    name: str
    algorithm: str
    purpose: str
    scope_level: str
    validity_days: int
    renewal_window_days: int
    overlap_days: int
    dormancy_days: int | None
    host_assisted: bool


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    scope: str
    actions: frozenset[str]


@dataclass(frozen=True, slots=True)
class MechanismEntry:
    """A vendor SM2 signing mechanism and the tokens it is for: ``manufacturer`` is matched
    exactly against CK_TOKEN_INFO.manufacturerID, ``model`` against CK_TOKEN_INFO.model (a
    literal, or a pattern: ``*`` any run of characters, ``?`` one; ``"*"`` any model)."""

    vendor: str
    mechanism: int
    input: str
    output: str
    manufacturer: str = ""
    model: str = "*"


@dataclass(frozen=True, slots=True)
class UriPolicy:
    """Issue #15: PKCS#11 URIs. ``allow_pin_value`` lets a URI carry its PIN in clear
    (RFC 7512 ``pin-value``); off, such a URI is refused and a PIN comes from ``pin-source``."""

    allow_pin_value: bool = False


@dataclass(frozen=True, slots=True)
class Retention:
    """第二十九条: transaction data kept at least 5 years, statements and reports at least 10.
    A key's material is destroyed ``destroy_grace_days`` after it is revoked or deactivated;
    its record is kept ``record_years`` after that."""

    destroy_grace_days: int = 30
    record_years: int = 10
    transaction_years: int = 5


@dataclass(frozen=True, slots=True)
class OfficerPolicy:
    """Issue #12: officer certificates and sessions. A session ends ``session_idle_seconds``
    after its last request and ``session_absolute_seconds`` after sign-in, whichever is first;
    a signed request's time may differ from the service's by ``clock_skew_seconds``."""

    certificate_days: int = 365
    session_idle_seconds: int = 900  # 15 minutes
    session_absolute_seconds: int = 28800  # 8 hours
    clock_skew_seconds: int = 300
    challenge_seconds: int = 120


@dataclass(frozen=True, slots=True)
class LogPolicy:
    """Issue #13: the audit log as a witnessed Merkle log. ``origin`` is the first line of every
    checkpoint and the name its signature line carries (C2SP tlog-checkpoint: no spaces, no
    '+'); a checkpoint is signed after every batch of changes, at most every
    ``checkpoint_seconds``; it counts as witnessed when ``witness_quorum`` witnesses cosigned it.
    """

    origin: str = "jtca.mot.gov.cn/audit"
    checkpoint_seconds: int = 10
    witness_quorum: int = 1


MAX_ORIGIN: Final = 200  # characters of a log origin line
MAX_TEXT: Final = 200  # characters of a purpose, a vendor's name
MAX_NAME: Final = 64  # characters of a key class or role name (they appear in labels and logs)
TOKEN_INFO_MANUFACTURER: Final = 32  # bytes of CK_TOKEN_INFO.manufacturerID (PKCS#11 §3.2)
TOKEN_INFO_MODEL: Final = 16  # bytes of CK_TOKEN_INFO.model

MIN_RECORD_YEARS: Final = 10  # 第二十九条: 报表等 ≥ 10 年
MIN_TRANSACTION_YEARS: Final = 5  # 第二十九条: 交易数据 ≥ 5 年


@dataclass(frozen=True, slots=True)
class Policy:
    key_classes: dict[str, KeyClass]
    roles: dict[str, Role]
    dual_control: dict[str, int]
    max_interop_lifetime_months: int
    ca_indexes: frozenset[int]
    vendor_mechanisms: tuple[MechanismEntry, ...] = ()
    retention: Retention = Retention()
    officers: OfficerPolicy = OfficerPolicy()
    log: LogPolicy = LogPolicy()
    pkcs11_uri: UriPolicy = UriPolicy()

    @property
    def city_key_classes(self) -> list[KeyClass]:
        """The key set each city gets (一城一密): the classes of scope ``city``, in file order."""
        return [c for c in self.key_classes.values() if c.scope_level == "city"]

    def approvals_required(self, action: str) -> int:
        return self.dual_control.get(action, 0)

    def host_assisted_allowed(self, key_class: str) -> bool:
        """An unknown class is refused: a class must be named to be allowed."""
        cls = self.key_classes.get(key_class)
        return cls is not None and cls.host_assisted


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    roles: frozenset[str]
    province: str | None = None  # GB/T 2260 province code (…0000) for provincial officers


@dataclass(frozen=True, slots=True)
class Subject:
    province: str | None = None
    city: str | None = None
    key_class: str | None = None
    ca_index: int | None = None
    interop_lifetime_months: int | None = None
    issuer_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    approvals_required: int = 0


# -- parsing: a declarative model of the file (issue #17) -----------------------------------
def _choice(choices: frozenset[str]) -> AfterValidator:
    return rule(
        lambda v: None if v in choices else f"must be one of {sorted(choices)}, got {shown(v)}"
    )


def _text_problem(value: str) -> str | None:
    if not value.strip():
        return f"must be a non-empty string, got {shown(value)}"
    if len(value) > MAX_TEXT or not value.isprintable():
        return f"{shown(value)}: at most {MAX_TEXT} printable characters"
    return None


Text = Annotated[str, rule(_text_problem)]
Name = Annotated[  # a key class, role or table name
    str,
    rule(
        lambda v: (
            None
            if v and len(v) <= MAX_NAME and v.isprintable()
            else f"a name is 1-{MAX_NAME} printable characters"
        )
    ),
]
KnownAction = Annotated[str, rule(lambda v: None if v in ACTIONS else f"unknown action {shown(v)}")]
ActionName = Annotated[Name, rule(lambda v: None if v in ACTIONS else "unknown action")]
Days = Annotated[int, whole(0, 36500)]
_MAKER_UNNAMED: Final = (
    "missing: a vendor mechanism names the token manufacturer and model it is for "
    "(CK_TOKEN_INFO; model may be '*')"
)


class _KeyClass(FileModel):
    algorithm: Annotated[Text, _choice(ALGORITHMS)]
    purpose: Text
    scope_level: Annotated[Text, _choice(SCOPE_LEVELS)]
    validity_days: Annotated[int, whole(1, 36500)]
    renewal_window_days: Days
    overlap_days: Days
    dormancy_days: Annotated[int, whole(1, 36500)] | None = None
    host_assisted: bool

    @model_validator(mode="after")
    def _windows(self) -> _KeyClass:
        if self.renewal_window_days >= self.validity_days:
            fail(f"must be shorter than the validity ({self.validity_days})", "renewal_window_days")
        if self.overlap_days > self.renewal_window_days:
            fail(f"must not exceed the renewal window ({self.renewal_window_days})", "overlap_days")
        return self


class _Role(FileModel):
    scope: Annotated[Text, _choice(ROLE_SCOPES)]
    actions: Annotated[
        list[
            Annotated[str, rule(lambda v: None if v in ACTIONS else f"unknown action {shown(v)}")]
        ],
        rule(lambda v: None if v else "must be a non-empty list of actions"),
    ]


class _QrIssuance(FileModel):
    max_interop_lifetime_months: Annotated[int, whole(1, 1200)]
    ca_indexes: Annotated[
        list[Annotated[int, whole(0, 255)]],
        rule(lambda v: None if v else "must be a non-empty list"),
        rule(lambda v: None if len(v) <= 256 else f"{len(v)} indexes: at most 256"),
        rule(lambda v: None if len(set(v)) == len(v) else "an index is listed twice"),
    ]


def _token_info(size: int) -> AfterValidator:
    """A CK_TOKEN_INFO text field as the policy names it: no blank padding (the token pads;
    jtca strips), at most ``size`` bytes of UTF-8."""

    def problem(value: str) -> str | None:
        if value != value.strip():
            return f"{shown(value)}: no leading or trailing blanks"
        if len(value.encode("utf-8")) > size:
            return f"{shown(value)}: CK_TOKEN_INFO holds at most {size} bytes"
        return None

    return rule(problem)


class _Mechanism(FileModel):
    vendor: Text
    manufacturer: Annotated[
        Text,
        _token_info(TOKEN_INFO_MANUFACTURER),
        rule(
            lambda v: (
                None
                if "*" not in v and "?" not in v
                else f"{shown(v)}: a manufacturer is matched exactly, never as a pattern "
                "(a vendor-defined number must not reach another maker's token)"
            )
        ),
    ] = ""
    model: Annotated[Text, _token_info(TOKEN_INFO_MODEL)] = ""
    mechanism: Annotated[int, whole(0x80000000, 0xFFFFFFFF)]
    input: Annotated[Text, _choice(frozenset({"message", "digest"}))]
    output: Annotated[
        str, rule(lambda v: None if v in ("raw", "der") else f"must be 'raw' or 'der', got {v!r}")
    ] = "raw"

    @model_validator(mode="after")
    def _names_its_token(self) -> _Mechanism:
        for key in ("manufacturer", "model"):
            if key not in self.model_fields_set:
                fail(_MAKER_UNNAMED, key)
        return self


class _PkcsUri(FileModel):
    allow_pin_value: bool = UriPolicy().allow_pin_value


class _Retention(FileModel):
    destroy_grace_days: Annotated[int, whole(0, 3650)] = Retention().destroy_grace_days
    # 第二十九条 sets the floor: a policy may keep longer, never shorter
    record_years: Annotated[int, whole(MIN_RECORD_YEARS, 100)] = Retention().record_years
    transaction_years: Annotated[int, whole(MIN_TRANSACTION_YEARS, 100)] = (
        Retention().transaction_years
    )


class _Officers(FileModel):
    certificate_days: Annotated[int, whole(1, 3650)] = OfficerPolicy().certificate_days
    session_idle_seconds: Annotated[int, whole(60, 86400)] = OfficerPolicy().session_idle_seconds
    session_absolute_seconds: Annotated[int, whole(300, 7 * 86400)] = (
        OfficerPolicy().session_absolute_seconds
    )
    clock_skew_seconds: Annotated[int, whole(5, 3600)] = OfficerPolicy().clock_skew_seconds
    challenge_seconds: Annotated[int, whole(10, 3600)] = OfficerPolicy().challenge_seconds

    @model_validator(mode="after")
    def _idle_within_absolute(self) -> _Officers:
        if self.session_idle_seconds > self.session_absolute_seconds:
            fail("may not exceed officers.session_absolute_seconds", "session_idle_seconds")
        return self


def _origin_problem(origin: str) -> str | None:
    """C2SP tlog-checkpoint: the origin line is non-empty and has no spaces and no '+'."""
    if not origin:
        return f"must be a non-empty string, got {shown(origin)}"
    if len(origin) > MAX_ORIGIN:
        return f"is {len(origin)} characters, at most {MAX_ORIGIN}"
    bad = next((ch for ch in origin if ch.isspace() or ch == "+" or not ch.isprintable()), None)
    if bad is not None:
        return f"{origin!r} contains {bad!r}: an origin has no spaces and no '+'"
    return None


class _Log(FileModel):
    origin: Annotated[str, rule(_origin_problem)] = LogPolicy().origin
    checkpoint_seconds: Annotated[int, whole(1, 3600)] = LogPolicy().checkpoint_seconds
    witness_quorum: Annotated[int, whole(0, 16)] = LogPolicy().witness_quorum


class _File(FileModel):
    key_classes: Annotated[
        dict[Name, _KeyClass],
        rule(lambda v: None if v else "at least one key class"),
        Field(default_factory=dict, validate_default=True),
    ]
    roles: Annotated[
        dict[Name, _Role],
        rule(lambda v: None if v else "at least one role"),
        Field(default_factory=dict, validate_default=True),
    ]
    dual_control: dict[ActionName, Annotated[int, whole(1, 10)]] = Field(default_factory=dict)
    qr_issuance: _QrIssuance
    vendor_mechanism: list[_Mechanism] = Field(default_factory=list)
    retention: _Retention = _Retention()
    officers: _Officers = _Officers()
    log: _Log = _Log()
    pkcs11_uri: _PkcsUri = _PkcsUri()

    @model_validator(mode="after")
    def _one_number_per_token(self) -> _File:
        seen: set[tuple[str, str, int]] = set()
        for i, m in enumerate(self.vendor_mechanism):
            key = (m.manufacturer, m.model, m.mechanism)
            if key in seen:
                fail(
                    f"0x{m.mechanism:08x} is listed twice for manufacturer {m.manufacturer!r}, "
                    f"model {m.model!r}",
                    f"vendor_mechanism[{i}].mechanism",
                )
            seen.add(key)
        return self


def parse_policy(text: str | bytes) -> Policy:
    """The policy in ``text`` (the file's text or bytes), every key checked by the file's
    model (``_File``: unknown keys refused, types strict, each range beside its field). A file
    too big, not UTF-8, nested too deep or with a number too long is refused before it is
    parsed, the place named (line, column, byte offset)."""
    try:
        doc = load_toml(text, source="(file)")
    except BadFile as exc:
        key = exc.field or "(file)"
        where = exc.place.removeprefix(", ")
        if exc.field is not None:
            where = where.removesuffix(f"field {exc.field}").rstrip(", ")
        raise PolicyFileError(key, f"{where}: {exc.problem}" if where else exc.problem) from None
    try:
        model = _File.model_validate(doc)
    except ValidationError as exc:
        raise PolicyFileError(*first_problem(exc)) from None
    return Policy(
        key_classes={
            name: KeyClass(
                name,
                c.algorithm,
                c.purpose,
                c.scope_level,
                c.validity_days,
                c.renewal_window_days,
                c.overlap_days,
                c.dormancy_days,
                c.host_assisted,
            )
            for name, c in model.key_classes.items()
        },
        roles={name: Role(name, r.scope, frozenset(r.actions)) for name, r in model.roles.items()},
        dual_control=dict(model.dual_control),
        max_interop_lifetime_months=model.qr_issuance.max_interop_lifetime_months,
        ca_indexes=frozenset(model.qr_issuance.ca_indexes),
        vendor_mechanisms=tuple(
            MechanismEntry(m.vendor, m.mechanism, m.input, m.output, m.manufacturer, m.model)
            for m in model.vendor_mechanism
        ),
        retention=Retention(**model.retention.model_dump()),
        officers=OfficerPolicy(**model.officers.model_dump()),
        log=LogPolicy(**model.log.model_dump()),
        pkcs11_uri=UriPolicy(**model.pkcs11_uri.model_dump()),
    )


# -- evaluation ----------------------------------------------------------------------------
def is_division_code(code: str) -> bool:
    """GB/T 2260: six ASCII digits, not all zero."""
    return len(code) == 6 and code.isascii() and code.isdigit() and code != "000000"


def is_province_code(code: str) -> bool:
    return is_division_code(code) and code.endswith("0000")


def province_of(code: str) -> str:
    """GB/T 2260: a division's province is its first two digits followed by 0000."""
    return code[:2] + "0000"


def decide(policy: Policy, actor: Actor, action: str, subject: Subject, now: datetime) -> Decision:
    """May ``actor`` do ``action`` to ``subject`` at ``now``? Pure; never raises."""
    del now  # no rule depends on the time yet; kept so rules that do need no new signature
    if action not in ACTIONS:
        return Decision(False, "deny/unknown-action")
    granting = [
        policy.roles[r]
        for r in sorted(actor.roles)
        if r in policy.roles and action in policy.roles[r].actions
    ]
    if not granting:
        return Decision(False, "deny/no-role")
    approvals = policy.approvals_required(action)
    if subject.key_class is not None:
        cls = policy.key_classes.get(subject.key_class)
        if cls is None:
            return Decision(False, "deny/unknown-key-class")
    else:
        cls = None
    national = [r for r in granting if r.scope == "national"]
    if not national:  # only province-scoped roles grant this: the subject must be in province
        if actor.province is None or not is_province_code(actor.province):
            return Decision(False, "deny/province-unbound")
        if cls is not None and cls.scope_level == "national":
            return Decision(False, "deny/national-scope")
        places = [p for p in (subject.city, subject.province) if p is not None]
        if not places:
            return Decision(False, "deny/missing-subject")
        if not all(is_division_code(p) for p in places):
            return Decision(False, "deny/bad-division-code")
        # 第十条: 不得跨地区使用密码 — every place named must lie in the officer's province
        if any(province_of(p) != actor.province for p in places):
            return Decision(False, "deny/other-province")
    if action == "qr-ca.issue-interop-cert":
        if subject.ca_index is None or subject.interop_lifetime_months is None:
            return Decision(False, "deny/missing-subject")
        if type(subject.ca_index) is not int or subject.ca_index not in policy.ca_indexes:
            return Decision(False, "deny/unknown-ca-index")
        if subject.interop_lifetime_months <= 0:
            return Decision(False, "deny/lifetime-not-positive")
        if subject.interop_lifetime_months > policy.max_interop_lifetime_months:
            return Decision(False, "deny/lifetime-too-long")
    return Decision(True, "allow", approvals)
