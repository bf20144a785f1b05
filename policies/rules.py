"""The authority policy (``policies/authority.toml``): schema, validation, pure evaluation.

``parse_policy(text)`` validates the whole file and names the key of any error
(``key_classes.city-card.validity_days: …``); ``decide(policy, actor, action, subject, now)``
returns a ``Decision`` with a reason code. No I/O and nothing of jtca is imported here but
``policies.bounded`` (the file is parsed within size, depth and number limits first, issue #14):
the caller reads the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from policies.bounded import BadFile, load_toml

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


# -- parsing -------------------------------------------------------------------------------
def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise PolicyFileError(f"{where}{key}", "must be a table")
    return value


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        name = extra[0] if len(extra[0]) <= MAX_NAME and extra[0].isprintable() else None
        raise PolicyFileError(
            f"{where}.{name if name is not None else _shown(extra[0])}",
            "unknown key (typos must not pass)",
        )


def _shown(value: Any) -> str:
    """A value for an error message: its repr, cut short (a file may hold a long one)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _whole(value: Any, key: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PolicyFileError(key, f"must be a whole number {low}-{high}, got {_shown(value)}")
    return value


def _int(table: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    if key not in table:
        raise PolicyFileError(f"{where}.{key}", "missing")
    return _whole(table[key], f"{where}.{key}", low, high)


def _str(table: dict[str, Any], key: str, where: str, choices: frozenset[str] | None = None) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PolicyFileError(f"{where}.{key}", f"must be a non-empty string, got {_shown(value)}")
    if choices is not None and value not in choices:
        raise PolicyFileError(
            f"{where}.{key}", f"must be one of {sorted(choices)}, got {_shown(value)}"
        )
    if len(value) > MAX_TEXT or not value.isprintable():
        raise PolicyFileError(
            f"{where}.{key}", f"{_shown(value)}: at most {MAX_TEXT} printable characters"
        )
    return value


def _key_class(name: str, table: Any) -> KeyClass:
    where = f"key_classes.{name}"
    if not isinstance(table, dict):
        raise PolicyFileError(where, "must be a table")
    _only(
        table,
        {
            "algorithm",
            "purpose",
            "scope_level",
            "validity_days",
            "renewal_window_days",
            "overlap_days",
            "dormancy_days",
            "host_assisted",
        },
        where,
    )
    validity = _int(table, "validity_days", where, 1, 36500)
    window = _int(table, "renewal_window_days", where, 0, 36500)
    overlap = _int(table, "overlap_days", where, 0, 36500)
    if window >= validity:
        raise PolicyFileError(
            f"{where}.renewal_window_days", f"must be shorter than the validity ({validity})"
        )
    if overlap > window:
        raise PolicyFileError(
            f"{where}.overlap_days", f"must not exceed the renewal window ({window})"
        )
    dormancy = _int(table, "dormancy_days", where, 1, 36500) if "dormancy_days" in table else None
    host = table.get("host_assisted")
    if not isinstance(host, bool):
        raise PolicyFileError(
            f"{where}.host_assisted", f"must be true or false, got {_shown(host)}"
        )
    return KeyClass(
        name,
        _str(table, "algorithm", where, ALGORITHMS),
        _str(table, "purpose", where),
        _str(table, "scope_level", where, SCOPE_LEVELS),
        validity,
        window,
        overlap,
        dormancy,
        host,
    )


def _role(name: str, table: Any) -> Role:
    where = f"roles.{name}"
    if not isinstance(table, dict):
        raise PolicyFileError(where, "must be a table")
    _only(table, {"scope", "actions"}, where)
    actions = table.get("actions")
    if not isinstance(actions, list) or not actions:
        raise PolicyFileError(f"{where}.actions", "must be a non-empty list of actions")
    for i, action in enumerate(actions):
        if not isinstance(action, str) or action not in ACTIONS:
            raise PolicyFileError(f"{where}.actions[{i}]", f"unknown action {_shown(action)}")
    return Role(name, _str(table, "scope", where, ROLE_SCOPES), frozenset(actions))


def _mechanism(i: int, raw: Any, seen: set[tuple[str, str, int]]) -> MechanismEntry:
    where = f"vendor_mechanism[{i}]"
    if not isinstance(raw, dict):
        raise PolicyFileError(where, "must be a table")
    _only(raw, {"vendor", "manufacturer", "model", "mechanism", "input", "output"}, where)
    number = _int(raw, "mechanism", where, 0x80000000, 0xFFFFFFFF)
    manufacturer = _token_info(raw, "manufacturer", where, TOKEN_INFO_MANUFACTURER)
    if "*" in manufacturer or "?" in manufacturer:
        raise PolicyFileError(
            f"{where}.manufacturer",
            f"{_shown(manufacturer)}: a manufacturer is matched exactly, never as a pattern "
            "(a vendor-defined number must not reach another maker's token)",
        )
    model = _token_info(raw, "model", where, TOKEN_INFO_MODEL)
    key = (manufacturer, model, number)
    if key in seen:
        raise PolicyFileError(
            f"{where}.mechanism",
            f"0x{number:08x} is listed twice for manufacturer {manufacturer!r}, model {model!r}",
        )
    seen.add(key)
    output = raw.get("output", "raw")
    if not isinstance(output, str) or output not in ("raw", "der"):
        raise PolicyFileError(f"{where}.output", f"must be 'raw' or 'der', got {_shown(output)}")
    return MechanismEntry(
        _str(raw, "vendor", where),
        number,
        _str(raw, "input", where, frozenset({"message", "digest"})),
        output,
        manufacturer,
        model,
    )


def _token_info(raw: dict[str, Any], key: str, where: str, size: int) -> str:
    """A CK_TOKEN_INFO text field as the policy names it: required, no blank padding (the token
    pads; jtca strips), at most ``size`` bytes of UTF-8."""
    if key not in raw:
        raise PolicyFileError(
            f"{where}.{key}",
            "missing: a vendor mechanism names the token manufacturer and model it is for "
            "(CK_TOKEN_INFO; model may be '*')",
        )
    value = _str(raw, key, where)
    if value != value.strip():
        raise PolicyFileError(f"{where}.{key}", f"{_shown(value)}: no leading or trailing blanks")
    if len(value.encode("utf-8")) > size:
        raise PolicyFileError(
            f"{where}.{key}", f"{_shown(value)}: CK_TOKEN_INFO holds at most {size} bytes"
        )
    return value


def _name(name: str, where: str) -> None:
    """A key class, role or table name: printable, at most MAX_NAME characters."""
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise PolicyFileError(
            f"{where}.{_shown(name)}", f"a name is 1-{MAX_NAME} printable characters"
        )


def parse_policy(text: str | bytes) -> Policy:
    """The policy in ``text`` (the file's text or bytes), every key checked. A file too big,
    not UTF-8, nested too deep or with a number too long is refused before it is parsed, the
    place named (line, column, byte offset); every whole number is checked against its range."""
    try:
        doc = load_toml(text, source="(file)")
    except BadFile as exc:
        key = exc.field or "(file)"
        where = exc.place.removeprefix(", ")
        if exc.field is not None:
            where = where.removesuffix(f"field {exc.field}").rstrip(", ")
        raise PolicyFileError(key, f"{where}: {exc.problem}" if where else exc.problem) from None
    _only(
        doc,
        {
            "key_classes",
            "roles",
            "dual_control",
            "qr_issuance",
            "vendor_mechanism",
            "retention",
            "officers",
            "log",
            "pkcs11_uri",
        },
        "(file)",
    )
    for table_name in ("key_classes", "roles", "dual_control"):
        for name in _table(doc, table_name, ""):
            _name(name, table_name)
    classes = {n: _key_class(n, t) for n, t in _table(doc, "key_classes", "").items()}
    if not classes:
        raise PolicyFileError("key_classes", "at least one key class")
    roles = {n: _role(n, t) for n, t in _table(doc, "roles", "").items()}
    if not roles:
        raise PolicyFileError("roles", "at least one role")
    dual: dict[str, int] = {}
    for action, count in _table(doc, "dual_control", "").items():
        if action not in ACTIONS:
            raise PolicyFileError(f"dual_control.{action}", "unknown action")
        dual[action] = _whole(count, f"dual_control.{action}", 1, 10)
    qr = _table(doc, "qr_issuance", "")
    _only(qr, {"max_interop_lifetime_months", "ca_indexes"}, "qr_issuance")
    lifetime = _int(qr, "max_interop_lifetime_months", "qr_issuance", 1, 1200)
    indexes = qr.get("ca_indexes")
    if not isinstance(indexes, list) or not indexes:
        raise PolicyFileError("qr_issuance.ca_indexes", "must be a non-empty list")
    if len(indexes) > 256:
        raise PolicyFileError("qr_issuance.ca_indexes", f"{len(indexes)} indexes: at most 256")
    for i, index in enumerate(indexes):
        _whole(index, f"qr_issuance.ca_indexes[{i}]", 0, 255)
    if len(set(indexes)) != len(indexes):
        raise PolicyFileError("qr_issuance.ca_indexes", "an index is listed twice")
    raw_mechanisms = doc.get("vendor_mechanism", [])
    if not isinstance(raw_mechanisms, list):
        raise PolicyFileError("vendor_mechanism", "must be an array of tables")
    seen: set[tuple[str, str, int]] = set()
    mechanisms = tuple(_mechanism(i, m, seen) for i, m in enumerate(raw_mechanisms))
    return Policy(
        classes,
        roles,
        dual,
        lifetime,
        frozenset(indexes),
        mechanisms,
        _retention(doc),
        _officers(doc),
        _log(doc),
        _pkcs11_uri(doc),
    )


def _pkcs11_uri(doc: dict[str, Any]) -> UriPolicy:
    table = _table(doc, "pkcs11_uri", "")
    _only(table, {"allow_pin_value"}, "pkcs11_uri")
    allow = table.get("allow_pin_value", UriPolicy().allow_pin_value)
    if not isinstance(allow, bool):
        raise PolicyFileError(
            "pkcs11_uri.allow_pin_value", f"must be true or false, got {_shown(allow)}"
        )
    return UriPolicy(allow)


def _retention(doc: dict[str, Any]) -> Retention:
    table = _table(doc, "retention", "")
    _only(table, {"destroy_grace_days", "record_years", "transaction_years"}, "retention")
    default = Retention()
    grace = table.get("destroy_grace_days", default.destroy_grace_days)
    records = table.get("record_years", default.record_years)
    transactions = table.get("transaction_years", default.transaction_years)
    return Retention(
        _whole(grace, "retention.destroy_grace_days", 0, 3650),
        # 第二十九条 sets the floor: a policy may keep longer, never shorter
        _whole(records, "retention.record_years", MIN_RECORD_YEARS, 100),
        _whole(transactions, "retention.transaction_years", MIN_TRANSACTION_YEARS, 100),
    )


def _officers(doc: dict[str, Any]) -> OfficerPolicy:
    table = _table(doc, "officers", "")
    default = OfficerPolicy()
    names = {
        "certificate_days": (1, 3650),
        "session_idle_seconds": (60, 86400),
        "session_absolute_seconds": (300, 7 * 86400),
        "clock_skew_seconds": (5, 3600),
        "challenge_seconds": (10, 3600),
    }
    _only(table, set(names), "officers")
    values = {
        name: _whole(table.get(name, getattr(default, name)), f"officers.{name}", low, high)
        for name, (low, high) in names.items()
    }
    chosen = OfficerPolicy(**values)
    if chosen.session_idle_seconds > chosen.session_absolute_seconds:
        raise PolicyFileError(
            "officers.session_idle_seconds", "may not exceed officers.session_absolute_seconds"
        )
    return chosen


def _log(doc: dict[str, Any]) -> LogPolicy:
    table = _table(doc, "log", "")
    _only(table, {"origin", "checkpoint_seconds", "witness_quorum"}, "log")
    default = LogPolicy()
    origin = table.get("origin", default.origin)
    # C2SP tlog-checkpoint: the origin line is non-empty and has no spaces and no '+'
    if not isinstance(origin, str) or not origin:
        raise PolicyFileError("log.origin", f"must be a non-empty string, got {_shown(origin)}")
    if len(origin) > MAX_ORIGIN:
        raise PolicyFileError("log.origin", f"is {len(origin)} characters, at most {MAX_ORIGIN}")
    bad = next((ch for ch in origin if ch.isspace() or ch == "+" or not ch.isprintable()), None)
    if bad is not None:
        raise PolicyFileError(
            "log.origin", f"{origin!r} contains {bad!r}: an origin has no spaces and no '+'"
        )
    return LogPolicy(
        origin,
        _whole(
            table.get("checkpoint_seconds", default.checkpoint_seconds),
            "log.checkpoint_seconds",
            1,
            3600,
        ),
        _whole(table.get("witness_quorum", default.witness_quorum), "log.witness_quorum", 0, 16),
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
