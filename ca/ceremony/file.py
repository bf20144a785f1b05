"""The ceremony file: what a key ceremony will do, parsed strictly and planned for review.

Pure (no SQL, no PKCS#11): ``jtca ceremony plan`` runs it on the reviewer's machine, and the
service parses the same file text before it runs the ceremony (``ca.ceremony.run``). The file is
read by a declarative pydantic model (``_File`` and its tables, on ``policies.filemodel``):
every key is typed strictly and an unknown key is refused, so a typo never passes unnoticed;
an error names the file and the field's path (``token.custodians[2]: …``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, ValidationError, model_validator

from ca.core.errors import JtcaError
from ca.log.anchors import LOG_TOKEN  # the service's own token of the audit key (issue #13)
from hsm.names import BadName, object_label, token_label
from policies.bounded import BadFile, load_toml
from policies.filemodel import FileModel, fail, first_problem, rule, shown

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


# -- the file: a declarative model (issue #17) ------------------------------------------------
def _text_problem(value: str, longest: int = MAX_TEXT) -> str | None:
    """Why ``value`` is not a non-empty single-line string of at most ``longest`` characters."""
    if not value.strip():
        return f"must be a non-empty string, got {shown(value)}"
    if len(value) > longest:
        return f"{len(value)} characters, at most {longest}"
    if not value.isprintable():
        return f"{shown(value)} contains a control character"
    return None


def _text(longest: int = MAX_TEXT) -> AfterValidator:
    return rule(lambda v: _text_problem(v, longest))


Text = Annotated[str, _text()]
People = Annotated[
    list[Text],
    rule(lambda v: f"{len(v)} named, at most {MAX_PEOPLE}" if len(v) > MAX_PEOPLE else None),
]
Years = Annotated[int, rule(lambda v: None if 1 <= v <= 30 else f"{v} is outside 1-30")]
SubjectKey = Annotated[
    str, rule(lambda k: None if k in SUBJECT_KEYS else f"not one of {sorted(SUBJECT_KEYS)}")
]


class _Head(FileModel):
    name: Text
    kind: Annotated[
        str, rule(lambda v: None if v in KINDS else f"{v!r} is not one of {sorted(KINDS)}")
    ]


class _Token(FileModel):
    label: str  # hsm.names.token_label checks it (BadName naming token.label)
    custodians: Annotated[
        People,
        rule(lambda v: "at least two named custodians" if len(v) < 2 else None),
        rule(lambda v: "a custodian is named twice" if len(set(v)) != len(v) else None),
    ]
    threshold: int

    @model_validator(mode="after")
    def _quorum(self) -> _Token:
        if not 2 <= self.threshold <= len(self.custodians):
            fail(f"{self.threshold} must be 2..{len(self.custodians)}", "threshold")
        return self


class _Witnesses(FileModel):
    names: Annotated[
        People,
        rule(lambda v: None if v else "at least one witness must be named"),
        Field(default_factory=list, validate_default=True),
    ]


class _Key(FileModel):
    label: str  # hsm.names.object_label checks it (BadName naming the key's label)
    validity_years: Years
    subject: dict[SubjectKey, Text] | None = None

    @model_validator(mode="after")
    def _subject(self) -> _Key:
        if self.subject is None:
            return self
        if "CN" not in self.subject:
            fail("missing", "subject.CN")
        for key, value in self.subject.items():
            if len(value) > SUBJECT_LENGTHS[key]:
                fail(f"{len(value)} characters, at most {SUBJECT_LENGTHS[key]}", f"subject.{key}")
        country = self.subject.get("C")
        if country is not None and not (country.isascii() and country.isalpha()):
            fail(f"{country!r} is not a two-letter country code", "subject.C")
        return self


class _SignedKey(_Key):
    """A key whose certificate's subject the file must give (root, list signing)."""

    @model_validator(mode="after")
    def _named(self) -> _SignedKey:
        if self.subject is None:
            fail("missing", "subject")
        return self


class _QrCa(FileModel):
    index: Annotated[
        int,
        rule(lambda v: None if 0 <= v <= 255 else f"{v} is outside 0-255 (annex 中心CA公钥索引)"),
    ]
    label: str
    validity_years: Years


class _Officer(FileModel):
    id: Annotated[str, _text(100)]
    name: Annotated[str, rule(lambda v: None if v == "" else _text_problem(v))] = ""
    roles: Annotated[
        list[Annotated[str, _text(100)]],
        rule(lambda v: None if v else "a non-empty list of role names"),
    ]
    province: Annotated[str, _text(6)] | None = None


class _File(FileModel):
    ceremony: _Head
    token: _Token
    witnesses: _Witnesses
    qr_ca: list[_QrCa] = Field(default_factory=list)
    root: _SignedKey | None = None
    list_signing: _SignedKey | None = None
    audit_key: _Key | None = None
    officer: list[_Officer] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_witness_table(cls, data: Any) -> Any:
        if isinstance(data, dict) and "witnesses" not in data:
            return {**data, "witnesses": {}}  # then witnesses.names says none is named
        return data

    @model_validator(mode="after")
    def _whole_file(self) -> _File:
        if len({c.index for c in self.qr_ca}) != len(self.qr_ca):
            fail("two CA keys with the same index", "qr_ca")
        if self.ceremony.kind == "root":
            for name in ("root", "list_signing", "audit_key"):
                if getattr(self, name) is None:
                    fail("a root ceremony must define it", name)
            if not self.qr_ca:
                fail("a root ceremony makes at least one central QR CA key", "qr_ca")
        elif not self.qr_ca or self.root or self.list_signing or self.audit_key:
            fail("a ca-rollover ceremony defines [[qr_ca]] and nothing else")
        if len(self.officer) > MAX_PEOPLE:
            fail(f"{len(self.officer)} named, at most {MAX_PEOPLE}", "officer")
        if self.ceremony.kind == "root" and not any(
            "ministry-root-officer" in o.roles for o in self.officer
        ):
            fail("a root ceremony names at least one ministry-root-officer", "officer")
        if self.ceremony.kind == "ca-rollover" and self.officer:
            fail("a ca-rollover adds no officers (jtca officer add does)", "officer")
        keys = [k for k in (self.root, self.list_signing, self.audit_key) if k]
        labels = [k.label for k in keys] + [c.label for c in self.qr_ca]
        if len(set(labels)) != len(labels):
            fail("two keys share a label", "labels")
        return self


def _spec(key: _Key | None, where: str) -> KeySpec | None:
    if key is None:
        return None
    return KeySpec(object_label(key.label, f"{where}.label"), key.validity_years, key.subject or {})


def load_ceremony(text: str | bytes, *, source: str = "(file)") -> Ceremony:
    """The ceremony in ``text`` (the file's text, or its bytes), every key checked by the
    file's model: a ``CeremonyError`` names the file (``source``, when given) and the field's
    path; labels that become token or object labels pass ``hsm.names`` (``BadName`` naming the
    key)."""
    try:
        doc = load_toml(text, source=source)
    except BadFile as exc:  # too big, not UTF-8, nested too deep, a number too long, not TOML
        raise CeremonyError(exc.message) from None
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # load_toml has checked it is UTF-8
    named = "" if source == "(file)" else f"{source}: "
    try:
        model = _File.model_validate(doc)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        raise CeremonyError(f"{named}{where}: {problem}") from None
    try:
        root = _spec(model.root, "root")
        list_signing = _spec(model.list_signing, "list_signing")
        audit_key = _spec(model.audit_key, "audit_key")
        qr_cas = tuple(
            QrCaSpec(ca.index, object_label(ca.label, f"qr_ca[{i}].label"), ca.validity_years)
            for i, ca in enumerate(model.qr_ca)
        )
        token = token_label(model.token.label, "token.label")
    except BadName as exc:
        raise BadName(f"{named}{exc.message}") from None
    return Ceremony(
        name=model.ceremony.name,
        kind=model.ceremony.kind,
        token=token,
        custodians=tuple(model.token.custodians),
        threshold=model.token.threshold,
        witnesses=tuple(model.witnesses.names),
        root=root,
        qr_cas=qr_cas,
        list_signing=list_signing,
        audit_key=audit_key,
        file_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        officers=tuple(
            OfficerSpec(o.id, o.name, tuple(o.roles), o.province) for o in model.officer
        ),
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
