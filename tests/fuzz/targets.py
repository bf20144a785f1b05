"""One fuzz target per parser of what a stranger or a user hands us (issue #14, point 3).

A target is ``bytes -> None``: it feeds the bytes to the parser exactly as the entry point does
(the command line reading a file, the service reading a request body, a terminal loading a list)
and lets through only the parser's typed refusals. ``typed`` says which exceptions are typed for
that target: a ``JtcaError`` subclass (the user sees its title and message), and for request
bodies pydantic's ``ValidationError`` / the JSON decoder's ``JSONDecodeError`` (FastAPI answers
both with a 422 naming the field or offset, ``ca.api.app``). Anything else the target raises is an
*untyped* exception — what a user would see as 'internal error' or a 500.

Every target has a seed corpus made here, in this process, by the project's own code: a real QR
payload (``ca.qr.issue``, with and without the 32-byte extension), real signed lists of the three
types (``ca.lists.build``), a real key package (``hsm.envelope.export_key`` from a software key),
real usage and acknowledgment reports in CSV and JSON (the columns docs/ say), the shipped policy
file, the shipped ceremony plan (policies/ceremonies), a real enrolment request (a software key's
proof of possession), and for every operation's request model a body synthesised from its JSON
schema. Keys are made from fixed scalars, so the seeds' keys are the same at every run.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

import ca.ops.all  # noqa: F401  (registers every operation)
from ca.api.app import body_refusal, query_int
from ca.ceremony.file import load_ceremony, plan
from ca.citykeys.usage_report import parse_usage_report
from ca.core.clock import FixedClock
from ca.core.errors import JtcaError
from ca.lists.asn1 import (
    CaKeyEntry,
    CityEntry,
    InteropStatus,
    IssuerEntry,
    IssuerStatus,
    ListType,
    decode_signed_list,
)
from ca.lists.build import build_list
from ca.lists.verify import load_list
from ca.officers.statements import (
    check_officer_id,
    enrolment_message,
    parse_signature_header,
    verify,
)
from ca.ops import log as log_ops
from ca.ops.base import OPERATIONS, Model
from ca.pki.x509 import LIST_SIGNING_EKU, issue_certificate, self_signed_root
from ca.qr.codec import decode_payload
from ca.qr.issue import issue_interop_certificate, issue_user_certificate, sign_ride
from ca.qr.verify import PayloadVerifier
from hsm.envelope import export_key, read_package, verify_package
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey
from policies.rules import DEFAULT_POLICY_PATH, PolicyFileError, parse_policy

REPO = Path(__file__).resolve().parents[2]
CEREMONY_PLAN = REPO / "policies" / "ceremonies" / "root-example.toml"
NOW = calendar.timegm((2026, 3, 15, 8, 0, 0, 0, 0, 0))  # 2026-03-15T08:00:00Z
DAY = 86400


@dataclass
class Target:
    """A parser under fuzz: ``run(data)`` raises only ``typed`` exceptions."""

    name: str
    run: Callable[[bytes], None]
    seeds: list[bytes]
    typed: tuple[type[BaseException], ...] = (JtcaError,)
    tokens: list[bytes] = field(default_factory=list)  # dictionary for the mutator
    kind: str = "bytes"  # bytes | json | text | der: which structural mutations fit
    aliases: list[str] = field(default_factory=list)  # other operations with the same body


def _signer(scalar: int) -> SoftwareSigner:
    """A software signer from a fixed scalar: the same key at every run."""
    return SoftwareSigner(SM2PrivateKey.from_scalar(scalar.to_bytes(32, "big")))


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -- QR payloads (ca/qr/codec.py, ca/qr/verify.py) -----------------------------------------------
def _qr_targets() -> list[Target]:
    ca, issuer, user = _signer(0x1001), _signer(0x1002), _signer(0x1003)
    interop = issue_interop_certificate(
        ca,
        ca_index=1,
        issuer_id="02113450",
        expiry="1230",
        serial=1,
        issuer_public_key=issuer.public_key,
    )
    seeds = []
    for version, extension in ((0, b""), (1, bytes(range(0xA0, 0xC0)))):
        user_cert = issue_user_certificate(
            issuer,
            interop,
            issuer_data="JTCA-TEST-000001",
            account_number="31040000000000000001",
            account_type=1,
            single_ride_limit=20000,
            user_public_key=user.public_key,
            expires_at=NOW + 30 * DAY,
            qr_validity=60,
            extension=extension,
            card_issuer_code=bytes(4),
            platform_id=bytes(4),
        )
        ride = sign_ride(user, interop, user_cert, generated_at=NOW, structure_version=version)
        seeds.append(ride.encode())
    verifier = PayloadVerifier(
        ca_keys={1: ca.public_key}, accepted_issuers={"02113450"}, clock=FixedClock(NOW)
    )
    for seed in seeds:  # warm: the certificates are cached, as at a busy gate
        verifier.verify(seed)

    def qr_decode(data: bytes) -> None:
        decode_payload(data)

    def qr_verify(data: bytes) -> None:
        verifier.verify(data)

    return [
        Target("qr.decode", qr_decode, seeds),
        Target("qr.verify", qr_verify, seeds),
    ]


# -- signed lists (ca/lists/der.py, verify.py) ----------------------------------------------------
def _list_targets() -> list[Target]:
    root, list_key = _signer(0x2001), _signer(0x2002)
    ca0, ca1 = _signer(0x2003), _signer(0x2004)
    root_name = {"CN": "交通运输部 交通一卡通根CA 测试", "O": "中华人民共和国交通运输部", "C": "CN"}
    root_der = self_signed_root(
        root, root_name, 1, _moment(NOW - 365 * DAY), _moment(NOW + 3650 * DAY), path_length=1
    )
    cert_der = issue_certificate(
        root,
        subject={"CN": "交通一卡通名单签名 测试", "C": "CN"},
        subject_public_key=list_key.public_key,
        issuer_name=root_name,
        serial=2,
        not_before=_moment(NOW - 30 * DAY),
        not_after=_moment(NOW + 730 * DAY),
        ca=False,
        path_length=None,
        key_usage={"digital_signature"},
        extended_key_usage=[LIST_SIGNING_EKU],
    )
    samples: dict[ListType, tuple[Any, ...]] = {
        ListType.ISSUERS: (
            IssuerEntry("02113450", 1, 1, IssuerStatus.ACTIVE, "1230"),
            IssuerEntry("0211", 0xFFFFFF, 255, IssuerStatus.REVOKED, "0127"),
        ),
        ListType.CITIES: (
            CityEntry(
                "440300", "深圳市", "440000", InteropStatus.CONNECTED, InteropStatus.CONNECTED, 1
            ),
            CityEntry(
                "110000",
                "北京市",
                "110000",
                InteropStatus.CONNECTED,
                InteropStatus.NOT_CONNECTED,
                NOW,
            ),
        ),
        ListType.CA_KEYS: (
            CaKeyEntry(1, ca1.public_key, NOW + 1800 * DAY),
            CaKeyEntry(0, ca0.public_key, NOW + 365 * DAY),
        ),
    }
    seeds = [
        build_list(
            list_type,
            entries,
            sequence=7,
            this_update=NOW - 600,
            next_update=NOW + DAY,
            signer=list_key,
            signer_certificate_der=cert_der,
        )
        for list_type, entries in samples.items()
    ]
    seeds.append(
        build_list(
            ListType.ISSUERS,
            (),
            sequence=1,
            this_update=NOW - 600,
            next_update=NOW + DAY,
            signer=list_key,
            signer_certificate_der=cert_der,
        )
    )

    def lists_decode(data: bytes) -> None:
        decode_signed_list(data)

    def lists_verify(data: bytes) -> None:
        load_list(data, trusted_root_der=root_der, now=NOW, grace_seconds=3600)

    return [
        Target("lists.decode", lists_decode, seeds, kind="der"),
        Target("lists.verify", lists_verify, seeds, kind="der"),
    ]


# -- key packages (hsm/envelope.py) ---------------------------------------------------------------
@dataclass(frozen=True)
class _SoftKey:
    """Just what ``export_key`` reads of a ``TokenKey``."""

    uri: str
    label: str
    kind: Any
    public_key: SM2PublicKey | None
    check_value: bytes | None


class _SoftStore:
    """A stand-in for the token's ``KeyStore`` holding one key's bytes, for making seeds only:
    ``export_key`` asks it for the material once (the package format is what is fuzzed)."""

    def __init__(self, material: bytes) -> None:
        self.material = material

    def with_key_material(self, uri: str, use: Callable[[bytearray], Any]) -> Any:
        return use(bytearray(self.material))


def _legacy_seed(sender: SoftwareSigner) -> bytes:
    """A package in the format before issue #15, as the old export_key wrote it (fixed bytes
    but for the signature): the seed of the migration-only reader's target."""
    from hsm import envelope_legacy as legacy
    from hsm.envelope import key_id_of
    from hsm.sm.sm2 import raw_to_der

    recipient = _signer(0x3002).public_key
    tbs = legacy.KeyPackage(
        {
            "version": 1,
            "package_id": bytes(range(16)),
            "created_at": _moment(NOW),
            "sender_key_id": key_id_of(sender.public_key),
            "recipient_key_id": key_id_of(recipient),
            "recipient_name": "广东省",
            "key_kind": 2,
            "key_label": "city-440300-k1",
            "check_value": bytes(3),
            "envelope": {
                "sym_alg_id": {"algorithm": legacy.OID_SM4_ECB},
                "sym_encrypted_key": recipient.encrypt(bytes(16)),
                "encrypted_key": bytes(16),
            },
        }
    )
    signature = raw_to_der(sender.sign(tbs.dump()))
    seed: bytes = legacy.SignedKeyPackage(
        {
            "tbs_package": tbs,
            "signature_algorithm": {"algorithm": legacy.OID_SM2_WITH_SM3},
            "signature": signature,
        }
    ).dump()
    return seed


def _package_targets() -> list[Target]:
    from hsm.pkcs11.keys import KeyKind
    from hsm.sm.sm4 import sm4_key_check_value

    sender, recipient, city = _signer(0x3001), _signer(0x3002), _signer(0x3003)
    sm4 = bytes(range(16))
    seeds = []
    for kind, material, public, check in (
        (KeyKind.SM4, sm4, None, sm4_key_check_value(sm4)),
        (KeyKind.SM2, (0x3003).to_bytes(32, "big"), city.public_key, None),
    ):
        key = _SoftKey("pkcs11:token=F;object=k", "city-440300-k1", kind, public, check)
        seeds.append(
            export_key(
                _SoftStore(material),  # type: ignore[arg-type]
                key,  # type: ignore[arg-type]
                sender=sender,
                recipient_transport_key=recipient.public_key,
                recipient_name="广东省",
                now=_moment(NOW),
            )
        )
    transport = SM2PrivateKey.from_scalar((0x3002).to_bytes(32, "big"))
    sealed = [read_package(s)[1].sealed_key for s in seeds]  # the SM2Ciphers of the content keys

    def packages_read(data: bytes) -> None:
        read_package(data)

    def packages_verify(data: bytes) -> None:
        verify_package(data, [sender.public_key])

    def packages_envelope(data: bytes) -> None:
        transport.decrypt(data)  # the sealed content key, as import_key opens it

    def packages_legacy(data: bytes) -> None:
        # the migration-only reader of the old format (hsm.envelope_legacy), as import_key
        # reaches it with accept_legacy=True
        verify_package(data, [sender.public_key], accept_legacy=True)

    return [
        Target("packages.read", packages_read, seeds, kind="der"),
        Target("packages.verify", packages_verify, seeds, kind="der"),
        Target("packages.envelope", packages_envelope, sealed),
        Target("packages.legacy", packages_legacy, [_legacy_seed(sender)], kind="der"),
    ]


# -- usage reports (ca/citykeys/usage_report.py) and acknowledgments (ca/publish/acks.py) ----------
USAGE_ROWS = [
    {"key": "city-440300-k1", "city": "440300", "first_use": "2026-01-01T00:00:00Z",
     "last_use": "2026-03-01T12:00:00Z", "used_in": "440300"},
    {"key": "city-110000-k2", "city": "110000", "first_use": "2025-12-01T00:00:00+08:00",
     "last_use": "2026-03-14T23:59:59Z", "used_in": "110000"},
]  # fmt: skip
ACK_ROWS = [
    {"operator": "OP-GZ-1", "list": "issuers", "sequence": "7",
     "loaded_at": "2026-03-15T07:00:00Z", "terminals": "1200"},
    {"operator": "OP-GZ-1", "list": "cities", "sequence": "3",
     "loaded_at": "2026-03-15T07:30:00Z", "terminals": ""},
]  # fmt: skip


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _json_rows(rows: list[dict[str, str]]) -> bytes:
    typed = [{k: (int(v) if v.isdigit() else v) for k, v in r.items()} for r in rows]
    return json.dumps(typed, ensure_ascii=False, indent=1).encode()


def _report_text(data: bytes) -> str:
    """As ``jtca city usage`` and ``jtca lists ack`` read the file (``utf-8-sig``); a file that
    is not UTF-8 is refused there with BadInput, which is what this raises."""
    from ca.core.errors import BadInput

    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"cannot read the report: {exc}") from None


def _usage_targets() -> list[Target]:
    def usage(kind: str) -> Callable[[bytes], None]:
        def run(data: bytes) -> None:
            parse_usage_report(_report_text(data), kind, now=NOW)

        return run

    columns = [c.encode() for c in USAGE_ROWS[0]]
    return [
        Target("usage.csv", usage("csv"), [_csv(USAGE_ROWS)], tokens=columns, kind="text"),
        Target("usage.json", usage("json"), [_json_rows(USAGE_ROWS)], tokens=columns, kind="json"),
    ]


class _AckDatabase:
    """A migrated SQLite database with one operator and published versions 7 (issuers) and 3
    (cities), copied afresh every ``REFRESH`` imports so it does not grow without end."""

    REFRESH = 2000

    def __init__(self) -> None:
        shm = Path("/dev/shm")
        self.folder = Path(
            tempfile.mkdtemp(prefix="jtca-fuzz-acks-", dir=shm if shm.is_dir() else None)
        )
        self.template = self.folder / "template.db"
        self.engine: Any = None
        self.used = 0
        self.count = 0
        self._make_template()

    def _make_template(self) -> None:
        from ca.publish.acks import register_operator
        from ca.store.db import make_engine, migrate, transaction
        from ca.store.models import ListVersion

        engine = make_engine(f"sqlite:///{self.template}")
        migrate(engine)
        register_operator(
            engine, ACTOR, operator_id="OP-GZ-1", name="广州地铁", province=None, now=NOW - DAY
        )
        with transaction(engine) as session:
            for list_type, sequence in (("issuers", 7), ("cities", 3)):
                session.add(
                    ListVersion(
                        list_type=list_type,
                        sequence=sequence,
                        this_update=NOW - DAY,
                        next_update=NOW + DAY,
                        entries=1,
                        content_digest="0" * 64,
                        sha256="0" * 64,
                        sm3="0" * 64,
                        file=f"{list_type}-{sequence}.der",
                        published_at=NOW - DAY,
                        published_by="publisher-1",
                        diff="{}",
                    )
                )
        engine.dispose()

    def get(self) -> Any:
        from ca.store.db import make_engine

        if self.engine is None or self.used >= self.REFRESH:
            if self.engine is not None:
                self.engine.dispose()
            self.count += 1
            live = self.folder / f"live-{os.getpid()}.db"
            shutil.copyfile(self.template, live)
            self.engine = make_engine(f"sqlite:///{live}")
            self.used = 0
        self.used += 1
        return self.engine


from policies.rules import Actor  # noqa: E402

ACTOR = Actor("publisher-1", frozenset({"publisher", "ministry-ca-operator"}))


def _ack_targets() -> list[Target]:
    from ca.publish.acks import import_acks

    database: list[_AckDatabase] = []

    def acks(kind: str) -> Callable[[bytes], None]:
        def run(data: bytes) -> None:
            if not database:  # made lazily, in the worker process that uses it
                database.append(_AckDatabase())
            text = _report_text(data)
            import_acks(database[0].get(), ACTOR, text, kind, source="fuzz", now=NOW)

        return run

    def signed(data: bytes) -> None:  # POST /acks (issue #16): the statement an operator signs
        from ca.ops.operators import SignedAck
        from ca.publish.acks import accept_signed_ack

        if not database:
            database.append(_AckDatabase())
        from pydantic import ValidationError

        from ca.core.errors import BadInput

        try:  # the body's own limits: FastAPI answers these 422 before the use case runs
            body = SignedAck(statement=_report_text(data), signature="3045" + "00" * 68)
        except ValidationError as exc:
            raise BadInput(f"body: {exc.errors()[0]['msg']}") from None
        accept_signed_ack(database[0].get(), body, now=NOW)

    from ca.ops.operators import AckStatement, statement_text

    statement = statement_text(
        AckStatement(
            operator="OP-GZ-1", list_type="city-list", sequence=3, sm3="0" * 64, terminals=1200,
            loaded_at=NOW - 1800, signed_at=NOW - 60, nonce="ab" * 16, cities=["440100"],
        )
    )  # fmt: skip
    fields = [f.encode() for f in AckStatement.model_fields]
    columns = [c.encode() for c in ACK_ROWS[0]]
    return [
        Target("acks.csv", acks("csv"), [_csv(ACK_ROWS)], tokens=columns, kind="text"),
        Target("acks.json", acks("json"), [_json_rows(ACK_ROWS)], tokens=columns, kind="json"),
        Target("acks.signed", signed, [statement.encode()], tokens=fields, kind="json"),
    ]


# -- policy files (policies/rules.py via ca.policy.in_force) and ceremony plans (ca/ceremony/file.py
class _Scratch:
    """One file per process to hand a parser that reads a path."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.path: Path | None = None

    def write(self, data: bytes) -> Path:
        if self.path is None or not self.path.parent.exists():
            base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
            folder = Path(tempfile.mkdtemp(prefix="jtca-fuzz-", dir=base))
            self.path = folder / f"input-{os.getpid()}{self.suffix}"
        self.path.write_bytes(data)
        return self.path


def _file_targets() -> list[Target]:
    from ca.cli.ceremony import file_text
    from ca.policy import in_force

    policy_file, ceremony_file = _Scratch(".toml"), _Scratch(".toml")

    def policy(data: bytes) -> None:
        path = policy_file.write(data)
        in_force._loaded.pop(path, None)  # load_policy reads a path once
        try:
            in_force.load_policy(path)
        finally:
            in_force._loaded.pop(path, None)

    def policy_parse(data: bytes) -> None:
        # the parser itself, on the file's bytes (policies.rules.parse_policy takes bytes): what
        # load_policy would reach once it hands over the bytes rather than decoding them first
        parse_policy(data)

    def ceremony(data: bytes) -> None:
        # as `jtca ceremony plan|run FILE` reads it; the service gets the same text
        steps = plan(load_ceremony(file_text(ceremony_file.write(data))))
        assert all(isinstance(s, str) for s in steps)

    toml_tokens = [
        *(b"[", b"]", b"[[", b"]]", b"=", b'"', b"'''", b'"""', b"{", b"}", b",", b"."),
        *(b"\n", b"true", b"1979-05-27T07:32:00Z", b"inf", b"nan", b"0x", b"#"),
    ]
    return [
        Target(
            "policy", policy, [DEFAULT_POLICY_PATH.read_bytes()], tokens=toml_tokens, kind="text"
        ),
        Target(
            "policy.parse",
            policy_parse,
            [DEFAULT_POLICY_PATH.read_bytes()],
            typed=(JtcaError, PolicyFileError),
            tokens=toml_tokens,
            kind="text",
        ),
        Target("ceremony", ceremony, [CEREMONY_PLAN.read_bytes()], tokens=toml_tokens, kind="text"),
    ]


# -- request bodies (ca/api/app.py: FastAPI reads JSON, then the operation's pydantic model) ------
def parse_body(model: type[BaseModel], data: bytes) -> Any:
    """A request body as the API parses it (FastAPI 0.165 ``get_request_handler`` and
    ``request_body_to_args``): an empty body is a missing one (422); otherwise Starlette's
    ``json.loads`` of the bytes — a ``JSONDecodeError`` is a 422 naming the offset, any other
    failure becomes FastAPI's 400, which ``ca.api.app.body_refusal`` must turn into a typed
    refusal — and then the route's field, ``TypeAdapter(model).validate_python(value,
    from_attributes=True)`` (a ``ValidationError`` is the 422 naming the field)."""
    if not data:
        return None
    try:
        value = json.loads(data)
    except json.JSONDecodeError:
        raise
    except Exception as exc:
        refusal = body_refusal(exc)
        if refusal is None:
            raise
        raise _BodyRefused(refusal) from None
    return _adapter(model).validate_python(value, from_attributes=True)


class _BodyRefused(JtcaError):
    """What ``body_refusal`` answered for a body FastAPI could not parse (a typed 422)."""

    title = "Bad request"
    exit_code = 3


_ADAPTERS: dict[type[BaseModel], Any] = {}


def _adapter(model: type[BaseModel]) -> Any:
    from pydantic import TypeAdapter

    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(model)
    return _ADAPTERS[model]


def example(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """A value that fits ``schema`` (a pydantic JSON schema), for a seed."""
    if "$ref" in schema:
        return example(defs[schema["$ref"].rsplit("/", 1)[1]], defs, depth + 1)
    if "default" in schema and depth > 0 and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example(options[0], defs, depth + 1)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example(sub, defs, depth + 1) for name, sub in props.items()}
    if kind == "array":
        items = schema.get("items", {})
        count = max(1, int(schema.get("minItems", 1)))
        return [example(items, defs, depth + 1) for _ in range(min(count, 3))]
    if kind == "string":
        if schema.get("format") == "base64url" or schema.get("contentEncoding") == "base64":
            size = int(schema.get("minLength", 16))  # of the bytes, not of their base64
            return base64.b64encode((bytes(range(256)) * (size // 256 + 1))[:size]).decode()
        size = int(schema.get("minLength", 1))
        return ("a" * max(size, 1))[: int(schema.get("maxLength", 1 << 20))]
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", 0)) or 1)
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return None


def _body_seeds(model: type[BaseModel]) -> list[bytes]:
    schema = model.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    full = example(schema, defs)
    required = {k: v for k, v in full.items() if k in schema.get("required", [])}
    seeds = [json.dumps(full, ensure_ascii=False).encode(), json.dumps(required).encode()]
    return list(dict.fromkeys(seeds))


def _names_in(schema: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            names.update(props)
        for value in schema.values():
            names |= _names_in(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= _names_in(value)
    return names


JSON_TOKENS = [b"{", b"}", b"[", b"]", b'"', b":", b",", b"null", b"true", b"false", b"-0",
               b"1e400", b"NaN", b"Infinity", b"-Infinity", b'"\\ud800"', b"\\u0000",
               b"9223372036854775808", b"-9223372036854775809", b"0.1e-999999"]  # fmt: skip


def _body_targets() -> list[Target]:
    """One target per distinct request model of ``ca.ops`` (every operation's body), named by
    the first operation that takes it (the others are listed in ``aliases``)."""
    targets: list[Target] = []
    seen: dict[type[Model], Target] = {}
    for name in sorted(OPERATIONS):
        model = OPERATIONS[name].request
        if model in seen:
            seen[model].aliases.append(name)
            continue

        def run(data: bytes, model: type[Model] = model) -> None:
            parse_body(model, data)

        schema = model.model_json_schema(mode="validation")
        tokens = [f'"{n}"'.encode() for n in sorted(_names_in(schema))] + JSON_TOKENS
        target = Target(
            f"http.{name}",
            run,
            _body_seeds(model),
            typed=(JtcaError, ValidationError, json.JSONDecodeError),
            tokens=tokens,
            kind="json",
        )
        seen[model] = target
        targets.append(target)
    return targets


# -- officer enrolment requests (ca/officers/statements.py, the checks ca/service/officers.enrol
# makes
#    before the database) and the Jtca-Signature header ---------------------------------------
def _officer_targets() -> list[Target]:
    from ca.core.errors import BadInput
    from ca.ops.officers import EnrolRequest

    key = _signer(0x4001)
    proof = key.sign(
        enrolment_message(officer="mot-root-3", public_key=key.public_key.uncompressed)
    )
    body = {
        "officer_id": "mot-root-3",
        "name": "王五",
        "roles": ["ministry-root-officer"],
        "province": None,
        "public_key": base64.b64encode(key.public_key.uncompressed).decode(),
        "proof": base64.b64encode(proof).decode(),
        "token_label": "OFFICER-mot-root-3",
        "shares": [],
    }
    seed = json.dumps(body, ensure_ascii=False).encode()

    def enrolment(data: bytes) -> None:
        req = parse_body(EnrolRequest, data)
        if req is None:
            return
        check_officer_id(req.officer_id, "officer_id")
        try:
            public_key = SM2PublicKey.from_bytes(req.public_key)
        except ValueError as exc:
            raise BadInput(f"public_key: not an SM2 point ({exc})") from None
        verify(
            public_key,
            req.proof,
            enrolment_message(officer=req.officer_id, public_key=public_key.uncompressed),
            "proof: the new key's proof of possession",
        )

    header = b"t=1773561600; n=" + b"A" * 22 + b"; s=" + base64.urlsafe_b64encode(bytes(64))

    def signature_header(data: bytes) -> None:
        parse_signature_header(data.decode("latin-1"))  # HTTP headers reach Starlette as latin-1

    tokens = [f'"{n}"'.encode() for n in body] + JSON_TOKENS
    return [
        Target("officer.enrolment", enrolment, [seed],
               typed=(JtcaError, ValidationError, json.JSONDecodeError), tokens=tokens,
               kind="json"),
        Target("http.signature-header", signature_header, [header],
               tokens=[b";", b"=", b"t", b"n", b"s", b" "], kind="text"),
    ]  # fmt: skip


# -- the log's public GET query parameters (ca/api/app.py _log_routes) ---------------------------
class _Query:
    """What ``query_int`` reads of a Starlette request: its query parameters, parsed from the
    raw query string as Starlette does (``Request.query_params``)."""

    def __init__(self, raw: bytes) -> None:
        self.query_params = QueryParams(raw)


def _query_targets() -> list[Target]:
    def inclusion(data: bytes) -> None:
        request: Any = _Query(data)
        log_ops.InclusionRequest(index=query_int(request, "index"), size=query_int(request, "size"))

    def consistency(data: bytes) -> None:
        request: Any = _Query(data)
        first, second = query_int(request, "from"), query_int(request, "to")
        log_ops.ConsistencyRequest.model_validate({"from": first, "to": second})

    tokens = [b"&", b"=", b"%", b"%00", b"+", b"-", b"index", b"size", b"from", b"to",
              b"99999999999999999999", b"%ff", b";"]  # fmt: skip
    typed = (JtcaError, ValidationError)
    return [
        Target("http.log-inclusion-query", inclusion, [b"index=3&size=10", b"size=1&index=0"],
               typed=typed, tokens=tokens, kind="text"),
        Target("http.log-consistency-query", consistency, [b"from=3&to=10", b"to=1&from=1"],
               typed=typed, tokens=tokens, kind="text"),
    ]  # fmt: skip


# -- what a witness reads from the log's GET answers (ca/log/note.py, ca/witness/round.py) ------
def _witness_targets() -> list[Target]:
    from ca.log.note import Checkpoint, SignedNote, Verifier, sign_checkpoint, verify_checkpoint
    from ca.witness.round import decode_proof
    from hsm.sm.sm2 import raw_to_der

    log_key = _signer(0x5001)
    root = bytes(range(32))
    note = sign_checkpoint(
        Checkpoint("jtca.example/audit-log", 10, root),
        "jtca.example/audit-log",
        log_key.public_key,
        lambda message: raw_to_der(log_key.sign(message)),
    )
    verifier = Verifier("jtca.example/audit-log", log_key.public_key)

    def checkpoint(data: bytes) -> None:
        # as `jtca witness cosign` reads GET /log/checkpoint: the note, its checkpoint, the
        # log's signature over it
        SignedNote.parse(data).checkpoint()
        verify_checkpoint(data, [verifier])

    proof = {"from": 3, "to": 10, "proof": [base64.b64encode(bytes([i]) * 32).decode()
                                             for i in range(4)]}  # fmt: skip

    def consistency(data: bytes) -> None:
        decode_proof(data, 3, 10)

    return [
        Target("witness.checkpoint", checkpoint, [note.text().encode()], kind="text",
               tokens=[b"\n", b"\n\n", "— ".encode(), b"+", b" "]),
        Target("witness.consistency-proof", consistency, [json.dumps(proof).encode()],
               kind="json", tokens=[b'"from"', b'"to"', b'"proof"', *JSON_TOKENS]),
    ]  # fmt: skip


def all_targets() -> dict[str, Target]:
    """Every target, seeds made (call once per run, in the parent process)."""
    found: list[Target] = [
        *_qr_targets(),
        *_list_targets(),
        *_package_targets(),
        *_usage_targets(),
        *_ack_targets(),
        *_file_targets(),
        *_officer_targets(),
        *_query_targets(),
        *_witness_targets(),
        *_body_targets(),
    ]
    for target in found:  # every seed is something the parser takes or refuses by type
        for seed in target.seeds:
            with contextlib.suppress(target.typed):
                target.run(seed)
    return {t.name: t for t in found}
