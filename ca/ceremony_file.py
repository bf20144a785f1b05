"""The ceremony file: what a key ceremony will do, parsed strictly and planned for review.

Pure (no SQL, no PKCS#11): ``jtca ceremony plan`` runs it on the reviewer's machine, and the
service parses the same file text before it runs the ceremony (``ca.ceremony``). Every key of
the file is checked and an unknown key is refused, so a typo never passes unnoticed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ca.errors import JtcaError
from ca.log.anchors import LOG_TOKEN  # the service's own token of the audit key (issue #13)
from hsm.names import object_label, token_label
from policies.bounded import BadFile, load_toml

KINDS: Final = frozenset({"root", "ca-rollover"})
SUBJECT_KEYS: Final = frozenset({"CN", "O", "OU", "C", "L", "ST"})
AUDIT_CN: Final = "交通一卡通审计日志签名"  # the default CN of the audit key's certificate
# X.509 upper bounds (RFC 5280 appendix A, ub-*): a longer value fails only at signing time
SUBJECT_LENGTHS: Final = {"CN": 64, "O": 64, "OU": 64, "C": 2, "L": 128, "ST": 128}
MAX_TEXT: Final = 200  # characters of a ceremony name, a custodian, a witness, an officer name
MAX_PEOPLE: Final = 16  # custodians, witnesses, officers named in one file


class CeremonyError(JtcaError):
    title = "Ceremony refused"
    exit_code = 3


@dataclass(frozen=True, slots=True)
class KeySpec:
    label: str
    validity_years: int
    subject: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QrCaSpec:
    index: int
    label: str
    validity_years: int


@dataclass(frozen=True, slots=True)
class OfficerSpec:
    officer_id: str
    name: str
    roles: tuple[str, ...]
    province: str | None


@dataclass(frozen=True, slots=True)
class Ceremony:
    name: str
    kind: str
    token: str
    custodians: tuple[str, ...]
    threshold: int
    witnesses: tuple[str, ...]
    root: KeySpec | None
    qr_cas: tuple[QrCaSpec, ...]
    list_signing: KeySpec | None
    audit_key: KeySpec | None
    file_sha256: str
    officers: tuple[OfficerSpec, ...] = ()


# -- the file ----------------------------------------------------------------------------------
def _need(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise CeremonyError(f"{where}.{key}: missing")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CeremonyError(f"{where}.{key}: must be {kind.__name__}, got {_shown(value)}")
    if isinstance(value, str) and not value.strip():
        raise CeremonyError(f"{where}.{key}: must not be empty")
    return value


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise CeremonyError(f"{where}.{extra[0]}: unknown key (a typo must not pass unnoticed)")


def _key_spec(
    table: Any, where: str, with_subject: bool, *, subject_optional: bool = False
) -> KeySpec:
    if not isinstance(table, dict):
        raise CeremonyError(f"{where}: must be a table")
    _only(
        table,
        {"label", "validity_years", "subject"} if with_subject else {"label", "validity_years"},
        where,
    )
    years = _need(table, "validity_years", int, where)
    if not 1 <= years <= 30:
        raise CeremonyError(f"{where}.validity_years: {years} is outside 1-30")
    subject: dict[str, str] = {}
    if with_subject and not (subject_optional and "subject" not in table):
        raw = _need(table, "subject", dict, where)
        unknown = sorted(set(raw) - SUBJECT_KEYS)
        if unknown:
            raise CeremonyError(f"{where}.subject.{unknown[0]}: not one of {sorted(SUBJECT_KEYS)}")
        if "CN" not in raw:
            raise CeremonyError(f"{where}.subject.CN: missing")
        for key, value in raw.items():
            _text(value, f"{where}.subject.{key}", SUBJECT_LENGTHS[key])
        if "C" in raw and not (raw["C"].isascii() and raw["C"].isalpha()):
            raise CeremonyError(f"{where}.subject.C: {raw['C']!r} is not a two-letter country code")
        subject = dict(raw)
    label = object_label(_need(table, "label", str, where), f"{where}.label")
    return KeySpec(label, years, subject)


def _text(value: Any, where: str, longest: int = MAX_TEXT) -> str:
    """A non-empty single-line string of at most ``longest`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise CeremonyError(f"{where}: must be a non-empty string, got {_shown(value)}")
    if len(value) > longest:
        raise CeremonyError(f"{where}: {len(value)} characters, at most {longest}")
    if not value.isprintable():
        raise CeremonyError(f"{where}: {_shown(value)} contains a control character")
    return value


def _shown(value: Any) -> str:
    """A value for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def load_ceremony(text: str | bytes, *, source: str = "(file)") -> Ceremony:
    """The ceremony in ``text`` (the file's text, or its bytes), every key checked; labels
    that become token or object labels pass ``hsm.names`` (``BadName`` naming the key)."""
    try:
        doc = load_toml(text, source=source)
    except BadFile as exc:  # too big, not UTF-8, nested too deep, a number too long, not TOML
        raise CeremonyError(exc.message) from None
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # load_toml has checked it is UTF-8
    _only(
        doc,
        {"ceremony", "token", "witnesses", "root", "qr_ca", "list_signing", "audit_key", "officer"},
        "",
    )
    head = _need(doc, "ceremony", dict, "(file)")
    _only(head, {"name", "kind"}, "ceremony")
    kind = _need(head, "kind", str, "ceremony")
    if kind not in KINDS:
        raise CeremonyError(f"ceremony.kind: {kind!r} is not one of {sorted(KINDS)}")
    token = _need(doc, "token", dict, "(file)")
    _only(token, {"label", "custodians", "threshold"}, "token")
    custodians = _need(token, "custodians", list, "token")
    if len(custodians) < 2 or not all(isinstance(c, str) and c.strip() for c in custodians):
        raise CeremonyError("token.custodians: at least two named custodians")
    if len(custodians) > MAX_PEOPLE:
        raise CeremonyError(f"token.custodians: {len(custodians)} named, at most {MAX_PEOPLE}")
    for i, custodian in enumerate(custodians):
        _text(custodian, f"token.custodians[{i}]")
    if len(set(custodians)) != len(custodians):
        raise CeremonyError("token.custodians: a custodian is named twice")
    threshold = _need(token, "threshold", int, "token")
    if not 2 <= threshold <= len(custodians):
        raise CeremonyError(f"token.threshold: {threshold} must be 2..{len(custodians)}")
    witness_table = doc.get("witnesses", {})
    if not isinstance(witness_table, dict):
        raise CeremonyError("witnesses: must be a table with names = [...]")
    _only(witness_table, {"names"}, "witnesses")
    witnesses = witness_table.get("names", [])
    if (
        not isinstance(witnesses, list)
        or not witnesses
        or not all(isinstance(w, str) for w in witnesses)
    ):
        raise CeremonyError("witnesses.names: at least one witness must be named")
    if len(witnesses) > MAX_PEOPLE:
        raise CeremonyError(f"witnesses.names: {len(witnesses)} named, at most {MAX_PEOPLE}")
    for i, witness in enumerate(witnesses):
        _text(witness, f"witnesses.names[{i}]")
    qr_cas = []
    raw_cas = doc.get("qr_ca", [])
    if not isinstance(raw_cas, list):
        raise CeremonyError("qr_ca: must be an array of tables ([[qr_ca]])")
    for i, table in enumerate(raw_cas):
        where = f"qr_ca[{i}]"
        if not isinstance(table, dict):
            raise CeremonyError(f"{where}: must be a table")
        _only(table, {"index", "label", "validity_years"}, where)
        index = _need(table, "index", int, where)
        if not 0 <= index <= 255:
            raise CeremonyError(f"{where}.index: {index} is outside 0-255 (annex 中心CA公钥索引)")
        spec = _key_spec({k: v for k, v in table.items() if k != "index"}, where, False)
        qr_cas.append(QrCaSpec(index, spec.label, spec.validity_years))
    if len({c.index for c in qr_cas}) != len(qr_cas):
        raise CeremonyError("qr_ca: two CA keys with the same index")
    root = _key_spec(doc["root"], "root", True) if "root" in doc else None
    list_signing = (
        _key_spec(doc["list_signing"], "list_signing", True) if "list_signing" in doc else None
    )
    audit_key = (
        _key_spec(doc["audit_key"], "audit_key", True, subject_optional=True)
        if "audit_key" in doc
        else None
    )
    if kind == "root":
        for name, value in (
            ("root", root),
            ("list_signing", list_signing),
            ("audit_key", audit_key),
        ):
            if value is None:
                raise CeremonyError(f"{name}: a root ceremony must define it")
        if not qr_cas:
            raise CeremonyError("qr_ca: a root ceremony makes at least one central QR CA key")
    elif not qr_cas or root or list_signing or audit_key:
        raise CeremonyError("a ca-rollover ceremony defines [[qr_ca]] and nothing else")
    officers = []
    raw_officers = doc.get("officer", [])
    if not isinstance(raw_officers, list):
        raise CeremonyError("officer: must be an array of tables ([[officer]])")
    for i, table in enumerate(raw_officers):
        where = f"officer[{i}]"
        if not isinstance(table, dict):
            raise CeremonyError(f"{where}: must be a table")
        _only(table, {"id", "name", "roles", "province"}, where)
        roles = _need(table, "roles", list, where)
        if not roles or not all(isinstance(r, str) for r in roles):
            raise CeremonyError(f"{where}.roles: a non-empty list of role names")
        for j, role in enumerate(roles):
            _text(role, f"{where}.roles[{j}]", 100)
        province = table.get("province")
        if province is not None:
            _text(province, f"{where}.province", 6)
        name = table.get("name", "")
        if name != "":
            _text(name, f"{where}.name")
        officer_id = _text(_need(table, "id", str, where), f"{where}.id", 100)
        officers.append(OfficerSpec(officer_id, name, tuple(roles), province))
    if len(officers) > MAX_PEOPLE:
        raise CeremonyError(f"officer: {len(officers)} named, at most {MAX_PEOPLE}")
    if kind == "root" and not any("ministry-root-officer" in o.roles for o in officers):
        raise CeremonyError("officer: a root ceremony names at least one ministry-root-officer")
    if kind == "ca-rollover" and officers:
        raise CeremonyError("officer: a ca-rollover adds no officers (jtca officer add does)")
    labels = [s.label for s in (root, list_signing, audit_key) if s] + [c.label for c in qr_cas]
    if len(set(labels)) != len(labels):
        raise CeremonyError("labels: two keys share a label")
    return Ceremony(
        name=_text(_need(head, "name", str, "ceremony"), "ceremony.name"),
        kind=kind,
        token=token_label(_need(token, "label", str, "token"), "token.label"),
        custodians=tuple(custodians),
        threshold=threshold,
        witnesses=tuple(witnesses),
        root=root,
        qr_cas=tuple(qr_cas),
        list_signing=list_signing,
        audit_key=audit_key,
        file_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        officers=tuple(officers),
    )


def read_ceremony(path: Path) -> Ceremony:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CeremonyError(f"cannot read {path}: {exc.strerror}") from None
    return load_ceremony(data, source=str(path))


def plan(ceremony: Ceremony) -> list[str]:
    """What ``run`` will do, step by step, for review before anyone touches the token."""
    steps = [
        f"ceremony {ceremony.name!r} ({ceremony.kind}), file SHA-256 {ceremony.file_sha256}",
        f"unlock token {ceremony.token!r} with {ceremony.threshold} of {len(ceremony.custodians)}"
        f" custodians' shares ({', '.join(ceremony.custodians)})",
        f"witnesses: {', '.join(ceremony.witnesses)}",
    ]
    if ceremony.root:
        steps.append(
            f"generate the ministry root key {ceremony.root.label!r}; self-sign its X.509 "
            f"certificate for {ceremony.root.subject['CN']!r}, {ceremony.root.validity_years} years"
        )
    for ca in ceremony.qr_cas:
        steps.append(
            f"generate central QR CA key {ca.label!r} at CA public key index {ca.index}, "
            f"{ca.validity_years} years"
        )
    if ceremony.kind == "ca-rollover":
        steps.append(
            "keep the CA keys this replaces for verification until their certificates expire"
        )
    if ceremony.list_signing:
        steps.append(
            f"generate list-signing key {ceremony.list_signing.label!r} with a certificate from "
            f"the root for {ceremony.list_signing.subject['CN']!r}, "
            f"{ceremony.list_signing.validity_years} years"
        )
    if ceremony.audit_key:
        steps.append(
            f"generate the audit key {ceremony.audit_key.label!r} in the service's log token "
            f"{LOG_TOKEN!r}, with a certificate from the root for "
            f"{audit_subject(ceremony, None)['CN']!r}, {ceremony.audit_key.validity_years} years "
            "(it signs the audit log's checkpoints unattended)"
        )
    for officer in ceremony.officers:
        where = f" of {officer.province}" if officer.province else ""
        steps.append(
            f"register officer {officer.officer_id!r} as {', '.join(officer.roles)}{where}"
        )
    steps.append(
        "record keys, CA keys and certificates, each certificate an entry of the audit log; sign "
        "the transcript with the root key; log it; checkpoint the log with the audit key"
    )
    if ceremony.kind == "root":
        steps.append(
            "write the root and audit certificates as trust anchors outside the database "
            "(ceremonies/root-<serial>.pem, ceremonies/audit-<serial>.pem)"
        )
    return steps


def audit_subject(ceremony: Ceremony, year: int | None) -> dict[str, str]:
    """The audit key certificate's subject: ``[audit_key] subject`` when the file gives one,
    else CN "交通一卡通审计日志签名 <year>" with the O and C of the list-signing certificate
    (or of the root's). ``year`` None shows ``<year>`` (the year the ceremony runs)."""
    spec = ceremony.audit_key
    if spec is not None and spec.subject:
        return dict(spec.subject)
    like = (ceremony.list_signing.subject if ceremony.list_signing else {}) or (
        ceremony.root.subject if ceremony.root else {}
    )
    subject: dict[str, str] = {k: like[k] for k in ("C", "O") if k in like}
    subject["CN"] = f"{AUDIT_CN} {'<year>' if year is None else year}"
    return subject
