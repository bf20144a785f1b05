"""The central CA, issuers, officers, the audit log and the root ceremony as operations of the
service, driven through the real HTTP API in-process (``tests/service_fixtures.in_process``),
on SQLite and on PostgreSQL: the ceremony's token and run at the service, the first officers
enrolled under the root share quorum and later ones requested by a root officer and approved
by a second one's token signature (issue #12), an issuer's registration decided on its issuer
id, an interop certificate issued with the root token's share quorum and revoked by CA index
and serial, ceremonies and checkpoints asked for by signed-in officers only once officers are
enrolled, and the audit log (a Merkle log, issue #13) verified against the checkpoints outside
the database with the ceremony's audit certificate, checkpointed by the service's own audit key,
exported and found tampered with."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from officer_desk import DeskClient
from service_fixtures import in_process
from sqlmodel import Session

import ca.service.issuance as issuance_service
from ca.ceremony.run import transcript_message
from ca.client.http import ServiceError
from ca.core.clock import FixedClock
from ca.log import audit
from ca.log.checkpoint_folder import CheckpointFolder
from ca.log.merkle import MemoryTree
from ca.log.note import Verifier, verify_checkpoint
from ca.log.verify import Report, verify_bundle
from ca.ops import audit as audit_ops
from ca.ops import ceremony as ceremony_ops
from ca.ops import issuance as issuance_ops
from ca.ops import officers as officer_ops
from ca.ops.base import Empty
from ca.pki.x509 import pem_to_der
from ca.policy.authorization import require as real_require
from ca.qr.cert_request import make_request
from ca.qr.codec import decode_interop_certificate
from ca.service.runtime import Runtime
from ca.site.officer_token import sign_in
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.pkcs11.token import find_module, rescan
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3
from policies.rules import Actor, Subject

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
WITNESS = "赵六 (公证员)"
ORIGIN = "jtca.mot.gov.cn/audit"  # the policy's [log] origin: the checkpoints' key name
ISSUER_ID = "02113450"
ROLLOVER = """
[ceremony]
name = "MOT QR CA rollover 2026-12"
kind = "ca-rollover"

[token]
label = "MOT-ROOT"
custodians = ["张三 (部密码管理处)", "李四 (部科技司)", "王五 (部审计室)"]
threshold = 2

[witnesses]
names = ["赵六 (公证员)"]

[[qr_ca]]
index = 2
label = "mot-qr-ca-2"
validity_years = 10
"""


@pytest.fixture
def service(database, tmp_path: Path) -> Iterator[tuple[DeskClient, Runtime]]:  # type: ignore[no-untyped-def]
    """The service on a fresh state folder and database of each kind. The service points
    SoftHSM2 at its own state folder; the process's previous choice is restored afterwards."""
    url, _ = database
    previous = os.environ.get(CONF_ENV)
    with in_process(tmp_path / "state", url=url, clock=FixedClock(NOW)) as pair:
        yield pair
    if os.environ.get(CONF_ENV) != previous:
        if previous is None:
            os.environ.pop(CONF_ENV, None)
        else:
            os.environ[CONF_ENV] = previous
        rescan(find_module())


def refused(call: Any, *, status: int, exit_code: int, needle: str) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    error = caught.value
    assert (error.status, error.exit_code) == (status, exit_code), error.problem
    assert needle in error.message, error.message
    assert error.problem["exit_code"] == exit_code
    assert "Traceback" not in json.dumps(error.problem)
    return error


def root_ceremony(client: DeskClient) -> tuple[list[str], ceremony_ops.CeremonyOutcome]:
    """Make the root token and run the example root ceremony with two of three shares."""
    plan = EXAMPLE.read_text(encoding="utf-8")
    made = client.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=plan))
    assert made.token == "MOT-ROOT"  # noqa: S105 - a token's label
    assert made.pin_shares[0].custodian.startswith("张三")
    assert len(made.so_pin_shares) == 3
    shares = [s.share for s in made.pin_shares]
    refused(
        lambda: client.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=plan)),
        status=422,
        exit_code=3,
        needle="already exists",
    )
    refused(
        lambda: client.call(
            ceremony_ops.RUN,
            ceremony_ops.RunRequest(plan=plan, shares=shares[:1], witnesses=[WITNESS]),
        ),
        status=422,
        exit_code=3,
        needle="needs 2 of 3",
    )
    outcome = client.call(
        ceremony_ops.RUN,
        ceremony_ops.RunRequest(plan=plan, shares=[shares[0], shares[2]], witnesses=[WITNESS]),
    )
    return [shares[0], shares[2]], outcome


def enrol_request(
    client: DeskClient,
    officer_id: str,
    roles: list[str] | None = None,
    province: str | None = None,
    shares: list[str] | None = None,
) -> officer_ops.EnrolRequest:
    """An enrolment of the key ``officer_id``'s own token makes (the token made on first use),
    with its proof of possession; with ``shares``, under the root share quorum."""
    token = client.token(officer_id)
    return officer_ops.EnrolRequest(
        officer_id=officer_id,
        roles=roles or [],
        province=province,
        public_key=token.public_key.uncompressed,
        proof=token.proof(officer_id),
        token_label=token.label,
        shares=shares or [],
    )


def test_ceremony_officers_issuers_interop_audit(
    service: tuple[DeskClient, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, runtime = service
    shares, outcome = root_ceremony(client)

    # The transcript comes back whole, signed by the new root key.
    signed = json.loads(outcome.transcript)
    root = SM2PublicKey.from_bytes(bytes.fromhex(signed["signer_public_key"]))
    root.verify(bytes.fromhex(signed["signature"]), transcript_message(signed["transcript"]))
    assert signed["transcript"]["custodians_present"] == ["张三 (部密码管理处)", "王五 (部审计室)"]
    assert signed["transcript"]["file_sha256"] == outcome.file_sha256
    assert [k.key_class for k in outcome.keys] == [
        "ministry-root",
        "central-qr-ca",
        "list-signing",
        "audit",
    ]
    assert {c.role for c in outcome.certificates} == {"root", "qr-ca-1", "list-signing", "audit"}
    audit_key = next(k.public_key for k in outcome.keys if k.key_class == "audit")
    assert audit_key is not None
    ca_keys = client.call(issuance_ops.KEYS, Empty()).keys
    assert [(k.ca_index, k.status) for k in ca_keys] == [(1, "active")]

    # The first officers: the root ceremony named them; its custodians' quorum enrols their
    # token keys (no officer exists yet to sign). A second root officer is enrolled so.
    for officer_id, roles in (("mot-root-1", None), ("mot-root-2", ["ministry-root-officer"])):
        first = client.call(
            officer_ops.ENROL, enrol_request(client, officer_id, roles, shares=shares)
        )
        assert (first.state, first.requested_by) == ("approved", "root share quorum")
        assert first.certificate is not None
    refused(
        lambda: client.call(
            officer_ops.ENROL, enrol_request(client, "mot-root-3", ["auditor"], shares=shares[:1])
        ),
        status=422,
        exit_code=3,
        needle="needs 2 of 3",
    )

    # Later officers: a ministry root officer asks, a second one approves with a signature
    # made by their own token; an operator may not ask, nor the asker approve.
    as_root, as_operator = client.as_officer("mot-root-1"), client.as_officer("ca-op-1")
    asked = as_root.call(
        officer_ops.ENROL,
        enrol_request(client, "gd-1", ["provincial-officer"], "440000").model_copy(
            update={"name": "广东 省级密钥管理员"}
        ),
    )
    assert (asked.state, asked.requested_by, asked.certificate) == ("pending", "mot-root-1", None)
    denied = refused(
        lambda: as_operator.call(
            officer_ops.ENROL, enrol_request(client, "evil", ["ministry-root-officer"])
        ),
        status=403,
        exit_code=6,
        needle="deny/no-role",
    )
    assert denied.title == "Not allowed by policy"
    # naming an officer is no credential: the header the command line once sent is ignored
    raw = client.http.post(
        officer_ops.ENROL.path,
        content=enrol_request(client, "evil", ["auditor"]).model_dump_json(),
        headers={"Jtca-Officer": "mot-root-1", "Content-Type": "application/json"},
    )
    assert raw.status_code == 401
    assert raw.headers["content-type"].startswith("application/problem+json")
    assert raw.json()["exit_code"] == 6
    refused(
        lambda: as_root.call(
            officer_ops.ENROL, enrol_request(client, "gd-2", ["provincial-officer"])
        ),
        status=403,
        exit_code=6,
        needle="needs a province code",
    )

    def decision(officer: DeskClient, enrolment: int) -> officer_ops.Decision:
        at, signature = officer.decision(f"enrolment {enrolment}")
        return officer_ops.Decision(id=enrolment, at=at, signature=signature)

    refused(
        lambda: as_root.call(officer_ops.DECIDE, decision(as_root, asked.id)),
        status=403,
        exit_code=6,
        needle="dual control",
    )
    second = client.as_officer("mot-root-2")
    enrolled = second.call(officer_ops.DECIDE, decision(second, asked.id))
    assert (enrolled.state, enrolled.officer_id, enrolled.province) == (
        "approved",
        "gd-1",
        "440000",
    )
    assert enrolled.certificate is not None
    officers = {o.id: o for o in client.call(officer_ops.LIST, Empty()).officers}
    assert set(officers) == {"mot-root-1", "mot-root-2", "ca-op-1", "auditor-1", "gd-1"}
    assert officers["gd-1"].certificate is not None
    assert officers["ca-op-1"].certificate is not None  # enrolled when they signed in
    assert officers["auditor-1"].certificate is None  # has not signed in yet

    # Registering an issuer is decided on Subject(issuer_id=…), whoever asks; a provincial
    # officer's role does not reach issuers at all, and an unknown officer cannot sign in.
    decided: list[tuple[str, str, Subject]] = []

    def spy(actor: Actor, action: str, subject: Subject, now: int) -> None:
        decided.append((actor.id, action, subject))
        real_require(actor, action, subject, now)

    monkeypatch.setattr(issuance_service, "require", spy)
    refused(
        lambda: client.as_officer("gd-1").call(
            issuance_ops.REGISTER_ISSUER,
            issuance_ops.RegisterIssuerRequest(issuer_id=ISSUER_ID, name="示例发行机构"),
        ),
        status=403,
        exit_code=6,
        needle="deny/no-role",
    )
    refused(
        lambda: sign_in(client, client.token("nobody"), "nobody", clock=client.clock.now),
        status=401,
        exit_code=6,
        needle="officer 'nobody' is not registered",
    )
    registered = as_operator.call(
        issuance_ops.REGISTER_ISSUER,
        issuance_ops.RegisterIssuerRequest(issuer_id=ISSUER_ID, name="示例发行机构"),
    )
    assert (registered.issuer_id, registered.status, registered.certificates) == (
        ISSUER_ID,
        "active",
        [],
    )
    assert decided == [
        ("gd-1", "issuer.register", Subject(issuer_id=ISSUER_ID)),
        ("ca-op-1", "issuer.register", Subject(issuer_id=ISSUER_ID)),
    ]

    # Issue an interop certificate: the request file's bytes and the root token's quorum
    # travel in the request; policy refuses before the token is opened.
    issuer = SoftwareSigner.generate()
    request = make_request(
        issuer, issuer_id=ISSUER_ID, issuer_name="示例发行机构", requested_expiry="1230"
    )
    too_long = make_request(
        issuer, issuer_id=ISSUER_ID, issuer_name="示例发行机构", requested_expiry="1240"
    )
    for officer, body, needle in (
        ("ca-op-1", too_long, "deny/lifetime-too-long"),
        ("auditor-1", request, "deny/no-role"),
    ):
        refused(
            lambda officer=officer, body=body: client.as_officer(officer).call(
                issuance_ops.ISSUE,
                issuance_ops.IssueRequest(request=body, ca_index=1, shares=shares),
            ),
            status=403,
            exit_code=6,
            needle=needle,
        )
    refused(
        lambda: as_operator.call(
            issuance_ops.ISSUE,
            issuance_ops.IssueRequest(request=b"not a request", ca_index=1, shares=shares),
        ),
        status=422,
        exit_code=3,
        needle="malformed request",
    )
    issued = as_operator.call(
        issuance_ops.ISSUE, issuance_ops.IssueRequest(request=request, ca_index=1, shares=shares)
    )
    assert (issued.serial, issued.issuer_id, issued.status, issued.issued_by) == (
        1,
        ISSUER_ID,
        "valid",
        "ca-op-1",
    )
    certificate = decode_interop_certificate(bytes.fromhex(issued.certificate))
    assert (certificate.serial, certificate.ca_index) == (1, 1)
    assert issued.issuer_public_key == issuer.public_key.compressed.hex()
    assert issued.ca_key == ca_keys[0].public_key

    # Revoke it by CA index and serial (one query whoever asks); refusals name the option.
    revoke = issuance_ops.RevokeRequest
    refused(
        lambda: client.as_officer("auditor-1").call(
            issuance_ops.REVOKE, revoke(ca_index=1, serial=1, reason="r")
        ),
        status=403,
        exit_code=6,
        needle="deny/no-role",
    )
    refused(
        lambda: as_operator.call(issuance_ops.REVOKE, revoke(ca_index=1, serial=9, reason="r")),
        status=422,
        exit_code=3,
        needle="--serial 9: no interop certificate under CA index 1",
    )
    refused(
        lambda: as_operator.call(issuance_ops.REVOKE, revoke(ca_index=2, serial=1, reason="r")),
        status=422,
        exit_code=3,
        needle="--ca-index 2: no central CA key has that index",
    )
    revoked = as_operator.call(
        issuance_ops.REVOKE, revoke(ca_index=1, serial=1, reason="issuer key exposed")
    )
    assert (revoked.status, revoked.revocation_reason, revoked.revoked_at) == (
        "revoked",
        "issuer key exposed",
        int(NOW.timestamp()),
    )
    refused(
        lambda: as_operator.call(issuance_ops.REVOKE, revoke(ca_index=1, serial=1, reason="r")),
        status=403,
        exit_code=6,
        needle="already revoked",
    )
    listed = client.call(issuance_ops.CERTIFICATES, issuance_ops.CertificatesRequest())
    assert [(c.serial, c.status) for c in listed.certificates] == [(1, "revoked")]
    other = issuance_ops.CertificatesRequest(issuer_id="99999999")
    assert client.call(issuance_ops.CERTIFICATES, other).certificates == []
    # what the console's issuer screen shows: each issuer with its certificates, typed
    issuers = client.call(issuance_ops.ISSUERS, Empty()).issuers
    assert [
        (i.issuer_id, [(c.ca_index, c.serial, c.status) for c in i.certificates]) for i in issuers
    ] == [(ISSUER_ID, [(1, 1, "revoked")])]

    # Once officers are enrolled, a ceremony's token is made, and a ceremony run, only by a
    # signed-in officer the policy allows the ceremony's kind: the quorum alone is not enough.
    second_root = EXAMPLE.read_text(encoding="utf-8").replace('"MOT-ROOT"', '"MOT-ROOT-2"')
    refused(
        lambda: client.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=second_root)),
        status=401,
        exit_code=6,
        needle="the authority has enrolled officers",
    )
    refused(
        lambda: client.as_officer("auditor-1").call(
            ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=second_root)
        ),
        status=403,
        exit_code=6,
        needle="deny/no-role",
    )
    made = as_root.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=second_root))
    assert made.token == "MOT-ROOT-2"  # noqa: S105 - a token's label
    rollover = ceremony_ops.RunRequest(plan=ROLLOVER, shares=shares, witnesses=[WITNESS])
    refused(
        lambda: client.call(ceremony_ops.RUN, rollover),
        status=401,
        exit_code=6,
        needle="needs a signed-in officer allowed qr-ca.rollover",
    )
    refused(
        lambda: as_operator.call(ceremony_ops.RUN, rollover),
        status=403,
        exit_code=6,
        needle="deny/no-role",
    )
    rolled = as_root.call(ceremony_ops.RUN, rollover)
    assert [k.key_class for k in rolled.keys] == ["central-qr-ca"]
    assert [(k.ca_index, k.status) for k in client.call(issuance_ops.KEYS, Empty()).keys] == [
        (1, "verify-only"),
        (2, "active"),
    ]

    # The audit log (issue #13): verified against the checkpoints outside the database,
    # trusting only the audit certificate the ceremony wrote; checkpointed by the service's own
    # audit key in MOT-LOG; exported and verified with no service; then tampered with.
    audit_pem = next(c.pem for c in outcome.certificates if c.role == "audit").encode()
    audit_public = SM2PublicKey.from_bytes(bytes.fromhex(audit_key))
    anchor = audit_ops.CertificateFile(source="audit.pem", data=audit_pem)
    verify = audit_ops.VerifyRequest(audit_certificates=[anchor])
    as_auditor = client.as_officer("auditor-1")
    refused(
        lambda: client.as_officer("gd-1").call(audit_ops.VERIFY, verify),
        status=403,
        exit_code=6,
        needle="deny/no-role: gd-1 may not audit.verify",
    )
    clean = as_root.call(audit_ops.VERIFY, verify)  # the ceremony's own check (docs/ceremony.md)
    assert (clean.ok, clean.findings) == (True, [])
    assert clean.anchors == [f"audit.pem: audit key {audit_public.compressed.hex()[:16]}…"]
    # the ceremony's closing checkpoint is the newest, in the folder outside the database;
    # every entry after it is sealed by the service
    assert clean.newest_checkpoint is not None
    assert CheckpointFolder(runtime.log_folder).newest_size() == clean.newest_checkpoint
    assert 0 < clean.newest_checkpoint < clean.events
    assert clean.sealed == clean.events - clean.newest_checkpoint
    assert as_auditor.call(audit_ops.VERIFY, verify) == clean
    # on the embedded state, whoever reaches its socket owns the state folder already: a
    # request with no officer is answered (a served one is refused: test_service.py)
    assert client.call(audit_ops.VERIFY, verify) == clean
    # with no certificate given, the anchor files the ceremony left in the state folder
    own = as_auditor.call(audit_ops.VERIFY, audit_ops.VerifyRequest())
    assert own.model_copy(update={"anchors": clean.anchors}) == clean
    assert [a.split(": ")[0] for a in own.anchors] == [
        str(p) for p in sorted((runtime.state / "ceremonies").glob("audit-*.pem"))
    ]
    # a certificate that does not certify an audit key is refused by name
    list_pem = next(c.pem for c in outcome.certificates if c.role == "list-signing").encode()
    wrong = audit_ops.CertificateFile(source="lists.pem", data=list_pem)
    untrusted = refused(
        lambda: as_auditor.call(
            audit_ops.VERIFY, audit_ops.VerifyRequest(audit_certificates=[wrong])
        ),
        status=422,
        exit_code=3,
        needle="lists.pem: C=CN, O=中华人民共和国交通运输部, CN=交通一卡通名单签名 2026 is not an "
        "audit key certificate",
    )
    assert untrusted.title == "Trust anchor refused"
    # a checkpoint now: the audit key in the service's own token signs it, asked for by an
    # officer allowed audit.checkpoint; no custodian's share is asked for any more
    refused(
        lambda: client.call(audit_ops.CHECKPOINT, Empty()),
        status=401,
        exit_code=6,
        needle="audit.checkpoint needs a signed-in officer",
    )
    refused(
        lambda: as_root.call(audit_ops.CHECKPOINT, Empty()),
        status=403,
        exit_code=6,
        needle="deny/no-role: mot-root-1 may not audit.checkpoint",
    )
    publisher = client.call(
        officer_ops.ENROL, enrol_request(client, "publisher-1", ["publisher"], shares=shares)
    )
    assert publisher.state == "approved"
    as_publisher = client.as_officer("publisher-1")
    checkpoint = as_publisher.call(audit_ops.CHECKPOINT, Empty())
    assert checkpoint.key.startswith("pkcs11:token=MOT-LOG;")
    with Session(runtime.engine) as session:
        assert checkpoint.size == audit.tree_size(session)
        assert checkpoint.root == audit.root(session, checkpoint.size).hex()
    signed, _ = verify_checkpoint(checkpoint.note, [Verifier(ORIGIN, audit_public)])
    assert (signed.origin, signed.size, signed.root.hex()) == (
        ORIGIN,
        checkpoint.size,
        checkpoint.root,
    )
    assert (runtime.log_folder / "checkpoint").read_text(encoding="utf-8") == checkpoint.note
    assert as_publisher.call(audit_ops.CHECKPOINT, Empty()) == checkpoint  # nothing new to sign
    body = json.dumps({"shares": shares}).encode()  # the old request: refused by its field
    headers = {"Content-Type": "application/json"}
    assert as_publisher.signer is not None
    headers.update(as_publisher.signer.headers("POST", audit_ops.CHECKPOINT.path, body))
    shares_sent = client.http.post(audit_ops.CHECKPOINT.path, content=body, headers=headers)
    assert (shares_sent.status_code, shares_sent.json()["field"]) == (422, "shares")
    after = as_auditor.call(audit_ops.VERIFY, verify)
    assert (after.ok, after.newest_checkpoint) == (True, checkpoint.size)

    exported = as_auditor.call(audit_ops.EXPORT, Empty())
    bundle = json.loads(exported.bundle)
    entries = bundle["entries"]
    assert exported.events == len(entries) == bundle["size"] >= checkpoint.size
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert checkpoint.note in bundle["checkpoints"]
    actions = [e["action"] for e in entries]
    assert [e["actor"] for e in entries if e["action"] == "ceremony.init-token"] == [
        "ceremony:MOT root key ceremony 2026-12",  # before any officer: the custodians'
        "mot-root-1",  # after: the signed-in officer who asked
    ]
    for action in (
        "ceremony.init-token",
        "ceremony.run",
        "certificate.issue",
        "log.seal-key",
        "officer.add",
        "officer.enrol.request",
        "officer.enrol.approve",
        "auth.sign-in",
        "auth.refused",
        "issuer.register",
        "qr-ca.allocate-serial",
        "qr-ca.issue-interop-cert",
        "qr-ca.revoke-interop-cert",
    ):
        assert action in actions, action
    # the audit key's certificate is itself an entry: SM3 of its DER on the object line
    certified = [
        e for e in entries if (e["action"], e["subject"]) == ("certificate.issue", "audit")
    ]
    assert [(e["kind"], e["object_sm3"]) for e in certified] == [
        ("certificate", sm3(pem_to_der(audit_pem)).hex())
    ]
    folder = [("checkpoint folder", checkpoint.note.encode())]
    bundle_report = verify_bundle(exported.bundle, checkpoints=folder, audit_keys=[audit_public])
    assert (bundle_report.ok, bundle_report.entries) == (True, exported.events)
    assert bundle_report.newest is not None
    assert bundle_report.newest.checkpoint.size == checkpoint.size
    # an entry of the bundle edited is named; a checkpoint signed by another key is no anchor
    forged = json.loads(exported.bundle)
    forged["entries"][2]["actor"] = "mallory"
    edited = verify_bundle(
        json.dumps(forged).encode(), checkpoints=folder, audit_keys=[audit_public]
    )
    assert named_edit(edited) == 3
    stranger = verify_bundle(
        exported.bundle, checkpoints=folder, audit_keys=[SoftwareSigner.generate().public_key]
    )
    assert (stranger.ok, stranger.checkpoints) == (False, 0)
    assert "unanchored" in {f.problem for f in stranger.findings}
    # the whole log is the auditor's alone: nobody else exports it, each refusal audited
    refused(
        lambda: client.call(audit_ops.EXPORT, Empty()),
        status=401,
        exit_code=6,
        needle="audit.export needs a signed-in officer",
    )
    for officer in ("mot-root-1", "ca-op-1", "publisher-1", "gd-1"):
        refused(
            lambda officer=officer: client.as_officer(officer).call(audit_ops.EXPORT, Empty()),
            status=403,
            exit_code=6,
            needle=f"deny/no-role: {officer} may not audit.export",
        )
    later = json.loads(as_auditor.call(audit_ops.EXPORT, Empty()).bundle)["entries"]
    assert [
        (e["actor"], json.loads(e["details"])["reason"])
        for e in later[exported.events :]
        if e["action"] == "auth.refused" and e["subject"] == "audit.export"
    ] == [
        ("anonymous", "no-session"),
        ("mot-root-1", "deny/no-role"),
        ("ca-op-1", "deny/no-role"),
        ("publisher-1", "deny/no-role"),
        ("gd-1", "deny/no-role"),
    ]

    # an entry the checkpoint covers, edited in the database: named by its seq
    with runtime.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE audit_event SET actor = 'mallory' WHERE seq = :seq"), {"seq": 3}
        )
    tampered = as_auditor.call(audit_ops.VERIFY, verify)
    assert not tampered.ok
    assert named_edit(tampered) == 3


def named_edit(report: Report | audit_ops.VerifyResult) -> int:
    """The one entry an edit is named at (and its message's start): the subtree hashes above it
    and the checkpoints over it no longer match either, and nothing else is found."""
    found = [(f.seq, f.problem, f.message) for f in report.findings]
    assert {problem for _, problem, _ in found} == {"edited", "node", "rewritten"}, found
    [(seq, _, message)] = [f for f in found if f[1] == "edited"]
    assert message.startswith(f"entry {seq} was edited: its content gives leaf hash "), message
    return seq


def test_operations_need_an_officer_where_they_act(service: tuple[DeskClient, Runtime]) -> None:
    """Acting operations and the audit log's export refuse a request without a signed-in
    officer (401); the public reads and the ceremony's own operations before any officer is
    enrolled (the custodians' quorum is their authority) do not, nor audit.verify on the
    embedded state (its caller owns the state folder; a served one refuses: test_service.py)."""
    client, runtime = service
    for op, request in (
        (officer_ops.SUSPEND, officer_ops.OfficerAction(officer_id="x", reason="r")),
        (issuance_ops.REVOKE, issuance_ops.RevokeRequest(ca_index=1, serial=1, reason="r")),
        (audit_ops.CHECKPOINT, Empty()),
        (audit_ops.EXPORT, Empty()),
    ):
        refused(
            lambda op=op, request=request: client.call(op, request),
            status=401,
            exit_code=6,
            needle=f"{op.name} needs a signed-in officer",
        )
    # audit.verify is answered, and before the root ceremony there is nothing to trust
    refused(
        lambda: client.call(audit_ops.VERIFY, audit_ops.VerifyRequest()),
        status=422,
        exit_code=3,
        needle="no audit certificate: give the root ceremony's audit-<serial>.pem",
    )
    assert client.call(issuance_ops.KEYS, Empty()).keys == []
    assert client.call(officer_ops.LIST, Empty()).officers == []
    with Session(runtime.engine) as session:  # the log read here: nobody may read it there
        refusals = json.loads(audit.export_bundle(session))["entries"]
        tree = MemoryTree()
        for seq in range(1, audit.tree_size(session) + 1):
            tree.append(audit.entry(session, seq).encode())
        assert audit.root(session) == tree.root()
    assert [(e["actor"], e["action"], e["subject"]) for e in refusals] == [
        ("anonymous", "auth.refused", name)
        for name in ("officer.suspend", "ca.revoke", "audit.checkpoint", "audit.export")
    ]  # each refusal audited, and nothing else happened
    assert tree.size == 4
    broken = ceremony_ops.CeremonyFile(plan='[ceremony]\nname = "x"\nkind = "party"\n')
    refused(
        lambda: client.call(ceremony_ops.INIT_TOKEN, broken),
        status=422,
        exit_code=3,
        needle="ceremony.kind",
    )
    # a request with a field of the wrong shape names the field
    raw = client.http.post(
        ceremony_ops.RUN.path, json={"plan": "x", "shares": "s", "witnesses": []}
    )
    assert raw.status_code == 422
    assert raw.json()["field"] == "shares"
