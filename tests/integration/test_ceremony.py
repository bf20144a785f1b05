"""The root ceremony from the shipped example file, on SQLite and PostgreSQL: keys in the
token (the audit key in the log token), certificates the root signed, records and a signed
transcript in the audit log, each certificate a log entry of its own, a closing checkpoint the
audit certificate verifies, then an interop certificate issued with the new CA key and a QR
made with it verified. (The service's side — MOT-LOG, the anchor files, sealing, OpenSSL on the
audit certificate — is tests/integration/test_log_keys.py.)"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from ca.ceremony.run import (
    CeremonyError,
    init_token_shares,
    load_ceremony,
    plan,
    read_ceremony,
    run,
    transcript_message,
)
from ca.core.clock import FixedClock
from ca.log import audit
from ca.log.anchors import audit_verifiers
from ca.log.note import Verifier, verify_checkpoint
from ca.pki.x509 import LOG_SIGNING_EKU, certificate_info, pem, verify_certificate
from ca.qr.cert_request import make_request, read_request
from ca.qr.codec import decode_interop_certificate
from ca.qr.issuance import IssueContext, issue
from ca.qr.issue import issue_user_certificate, sign_ride
from ca.qr.verify import PayloadVerifier
from ca.service.logkeys import seal_in
from ca.store.models import CaKey, CeremonyRun, CertificateRecord, KeyRecord
from ca.vault.signers import token_signer
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.softhsm2 import init_token
from hsm.pkcs11.token import QuorumPin, Token
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

ORIGIN = "jtca.mot.gov.cn/audit"  # the shipped policy's [log] origin

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def prepare(label_suffix: str, name: str | None = None) -> tuple[object, list[str]]:
    text = EXAMPLE.read_text(encoding="utf-8").replace('"MOT-ROOT"', f'"MOT-ROOT-{label_suffix}"')
    if name is not None:
        text = text.replace('name = "MOT root key ceremony 2026-12"', f'name = "{name}"')
    ceremony = load_ceremony(text)
    pin = secrets.token_urlsafe(12)
    init_token(ceremony.token, pin, secrets.token_urlsafe(12))
    shares = [share for _, share in init_token_shares(ceremony, pin)]
    return ceremony, shares


@pytest.fixture(autouse=True)
def _no_sealer_left() -> object:
    """A ceremony run with sealing installs a process-wide sealer: none outlives its test."""
    yield
    audit.install_sealer(None)


def test_example_file_plans() -> None:
    steps = plan(read_ceremony(EXAMPLE))
    assert any("CA public key index 1" in s for s in steps)
    assert any("self-sign its X.509 certificate" in s for s in steps)


def test_root_ceremony_end_to_end(database, softhsm, new_token, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    _, log_store, _ = new_token("LOG")
    transcript = run(
        ceremony,
        engine,
        module=None,
        shares=[shares[0], shares[2]],  # type: ignore[arg-type]
        witnesses_present=["赵六 (公证员)"],
        now=NOW,
        log_store=log_store,
    )
    data = transcript.data
    assert data["custodians_present"] == ["张三 (部密码管理处)", "王五 (部审计室)"]
    assert data["witnesses_present"] == ["赵六 (公证员)"]
    assert [k["class"] for k in data["keys"]] == [
        "ministry-root",
        "central-qr-ca",
        "list-signing",
        "audit",
    ]
    root_public = SM2PublicKey.from_bytes(bytes.fromhex(transcript.signer_public_key))
    root_public.verify(bytes.fromhex(transcript.signature), transcript_message(data))
    json.loads(transcript.json())
    assert "checkpoint" not in transcript.json()
    assert "BEGIN" not in transcript.json()

    # The audit key is in the log token, not the root token.
    audit_entry = data["keys"][3]
    assert Pkcs11Uri.parse(audit_entry["uri"]).token == log_store.token.label
    assert [k.label for k in log_store.list_keys()] == ["mot-audit-2026"]
    with Token(ceremony.token, QuorumPin(shares[:2])) as token:  # type: ignore[attr-defined]
        assert sorted(k.label for k in KeyStore(token).list_keys()) == [
            "mot-list-signing-2026",
            "mot-qr-ca-1",
            "mot-root-2026",
        ]

    with Session(engine) as session:
        records = session.exec(select(KeyRecord)).all()
        assert {r.key_class for r in records} == {
            "ministry-root",
            "central-qr-ca",
            "list-signing",
            "audit",
        }
        audit_key = next(r for r in records if r.key_class == "audit")
        assert audit_key.token == log_store.token.label
        ca_key = session.exec(select(CaKey)).one()
        assert (ca_key.ca_index, ca_key.status) == (1, "active")
        certs = {c.role: c for c in session.exec(select(CertificateRecord))}
        assert set(certs) == {"root", "qr-ca-1", "list-signing", "audit"}
        root_info = verify_certificate(bytes.fromhex(certs["root"].der), root_public)
        assert root_info.is_ca
        verify_certificate(bytes.fromhex(certs["list-signing"].der), root_public)
        # The root key certifies the audit key: log signing, digitalSignature, not a CA.
        audit_der = bytes.fromhex(certs["audit"].der)
        audit_info = verify_certificate(audit_der, root_public)
        audit_public = SM2PublicKey.from_bytes(bytes.fromhex(audit_key.public_key or ""))
        assert audit_info.public_key.compressed == audit_public.compressed
        assert audit_info.extended_key_usage == (LOG_SIGNING_EKU,)
        assert audit_info.key_usage == frozenset({"digital_signature"})
        assert not audit_info.is_ca
        assert (
            audit_info.subject == "C=CN, O=中华人民共和国交通运输部, CN=交通一卡通审计日志签名 2026"
        )
        assert audit_info.issuer == root_info.subject
        assert certs["audit"].key_uri == audit_entry["uri"]
        assert session.get(CeremonyRun, ceremony.name) is not None  # type: ignore[attr-defined]

        # Every certificate is a log entry of kind "certificate" naming the SM3 of its DER.
        logged = {
            e["subject"]: e
            for e in json.loads(audit.export_bundle(session))["entries"]
            if e["kind"] == "certificate"
        }
        assert set(logged) == {"root", "qr-ca-1", "list-signing", "audit"}
        for role, record in certs.items():
            assert logged[role]["object_sm3"] == sm3(bytes.fromhex(record.der)).hex()
            assert logged[role]["action"] == "certificate.issue"
        actions = [e["action"] for e in json.loads(audit.export_bundle(session))["entries"]]
        assert actions.count("key.generate") == 4
        assert "ceremony.run" in actions

        # The ceremony ends with a checkpoint over the whole log, signed by the audit key under
        # the policy's origin; the audit certificate is its verifier.
        assert transcript.checkpoint is not None
        size, note = transcript.checkpoint
        assert size == audit.tree_size(session) == len(actions)
        checkpoint, _ = verify_checkpoint(note, [Verifier(ORIGIN, audit_public)])
        assert (checkpoint.origin, checkpoint.size) == (ORIGIN, size)
        assert checkpoint.root == audit.root(session, size)
        report = audit.verify(
            session, checkpoints=[("ceremony", note.encode())], audit_keys=[audit_public]
        )
        assert report.ok, report.findings
        assert report.checkpoints >= 1

    # The trust anchors the caller writes outside the database: the root and audit certificates.
    assert [(role, serial) for role, serial, _ in transcript.anchors] == [
        ("root", root_info.serial),
        ("audit", audit_info.serial),
    ]
    for role, serial, der in transcript.anchors:
        (tmp_path / f"{role}-{serial}.pem").write_bytes(pem(der))
        assert certificate_info(der).serial == serial
    verifiers = audit_verifiers(
        [tmp_path / f"audit-{audit_info.serial}.pem"],
        [tmp_path / f"root-{root_info.serial}.pem"],
        ORIGIN,
    )
    verify_checkpoint(note, verifiers)

    # The ceremony runs once.
    with pytest.raises(CeremonyError, match="already run"):
        run(
            ceremony,
            engine,
            module=None,
            shares=shares[:2],
            witnesses_present=["赵六 (公证员)"],  # type: ignore[arg-type]
            now=NOW,
            log_store=log_store,
        )
    # Nor does another root ceremony make a second audit key for the same authority.
    other, other_shares = prepare(secrets.token_hex(3), name="a second root ceremony")
    with pytest.raises(CeremonyError, match="already has an audit key"):
        run(
            other,  # type: ignore[arg-type]
            engine,
            module=None,
            shares=other_shares[:2],
            witnesses_present=["赵六 (公证员)"],
            now=NOW,
            log_store=log_store,
        )

    # Issue an interop certificate with the CA key in the token; a QR made with it verifies.
    issuer, user = SoftwareSigner.generate(), SoftwareSigner.generate()
    request = read_request(
        make_request(
            issuer, issuer_id="02113450", issuer_name="示例发行机构", requested_expiry="1230"
        )
    )
    from ca.registry.issuers import register_issuer

    register_issuer(
        engine, issuer_id="02113450", name="示例发行机构", actor="op", now=int(NOW.timestamp())
    )
    uri = Pkcs11Uri.parse(ca_key.key_uri)
    with Token(uri.token, QuorumPin(shares[1:])) as token:
        signer = token_signer(KeyStore(token), uri, "central-qr-ca")
        record = issue(
            engine,
            request,
            IssueContext(
                actor="ca-operator-1",
                ca_signer=signer,
                ca_index=1,
                now=int(NOW.timestamp()),
                authorize=lambda action, req: None,
            ),
        )
    interop = decode_interop_certificate(bytes.fromhex(record.encoded))
    user_cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data="CEREMONY-TEST-01",
        account_number="31040000000000000007",
        account_type=1,
        single_ride_limit=2000,
        user_public_key=user.public_key,
        expires_at=int(NOW.timestamp()) + 600,
        qr_validity=60,
    )
    payload = sign_ride(user, interop, user_cert, generated_at=int(NOW.timestamp())).encode()
    verifier = PayloadVerifier(
        ca_keys={1: SM2PublicKey.from_bytes(bytes.fromhex(ca_key.public_key))},
        accepted_issuers={"02113450"},
        clock=FixedClock(NOW),
    )
    assert verifier.verify(payload).signatures_verified == 3


def test_refusals_leave_no_keys(database, softhsm, new_token) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    _, log_store, _ = new_token("LOG")
    with pytest.raises(CeremonyError, match="not named"):
        run(
            ceremony,
            engine,
            module=None,
            shares=shares[:2],
            witnesses_present=["路人甲"],
            now=NOW,
            log_store=log_store,
        )  # type: ignore[arg-type]
    from hsm.custody import ShareError

    with pytest.raises(ShareError, match="needs 2 of 3"):
        run(
            ceremony,
            engine,
            module=None,
            shares=shares[:1],
            witnesses_present=["赵六 (公证员)"],  # type: ignore[arg-type]
            now=NOW,
            log_store=log_store,
        )
    with pytest.raises(CeremonyError, match="log token: none was given"):
        run(
            ceremony,
            engine,
            module=None,
            shares=shares[:2],
            witnesses_present=["赵六 (公证员)"],  # type: ignore[arg-type]
            now=NOW,
        )

    # A failure in the recording transaction (here: sealing cannot start) destroys the keys
    # just made, in both tokens, and leaves the process's sealer as it was.
    def broken_sealing(session: object, signer: object, at: int) -> object:
        raise RuntimeError("sealing broke")

    before = audit.current_sealer()
    with pytest.raises(RuntimeError, match="sealing broke"):
        run(
            ceremony,
            engine,
            module=None,
            shares=shares[:2],
            witnesses_present=["赵六 (公证员)"],  # type: ignore[arg-type]
            now=NOW,
            log_store=log_store,
            on_audit_key=broken_sealing,
        )
    assert audit.current_sealer() is before
    with Token(ceremony.token, QuorumPin(shares[:2])) as token:  # type: ignore[attr-defined]
        assert KeyStore(token).list_keys() == []
    assert log_store.list_keys() == []
    with Session(engine) as session:
        assert session.exec(select(KeyRecord)).all() == []
        assert audit.tree_size(session) == 0


def test_an_unrecorded_audit_key_left_by_a_crash_is_replaced(database, softhsm, new_token) -> None:  # type: ignore[no-untyped-def]
    """A key under the audit key's label in the log token that no record names (a crash after
    generating, before recording) is destroyed, said in the transcript, and a new one made."""
    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    _, log_store, _ = new_token("LOG")
    leftover = log_store.generate_sm2("mot-audit-2026")
    transcript = run(
        ceremony,
        engine,
        module=None,
        shares=shares[:2],  # type: ignore[arg-type]
        witnesses_present=["赵六 (公证员)"],
        now=NOW,
        log_store=log_store,
    )
    assert transcript.data["unrecorded_keys_destroyed"] == [str(leftover.uri)]
    (kept,) = log_store.list_keys()
    assert kept.label == "mot-audit-2026"
    assert kept.public_key is not None
    assert leftover.public_key is not None
    assert kept.public_key.compressed != leftover.public_key.compressed
    audit_entry = next(k for k in transcript.data["keys"] if k["class"] == "audit")
    assert audit_entry["public_key"] == kept.public_key.compressed.hex()


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (('kind = "root"', 'kind = "party"'), "ceremony.kind"),
        (("threshold = 2", "threshold = 1"), "token.threshold"),
        (("index = 1", "index = 256"), "qr_ca[0].index"),
        (('label = "mot-audit-2026"', 'label = "mot-root-2026"'), "share a label"),
        (("validity_years = 20", "validity_years = 99"), "root.validity_years"),
        (('[witnesses]\nnames = ["赵六 (公证员)", "钱七 (内审)"]', ""), "witnesses.names"),
        (("[root]", "[root]\ncolour = 1"), "root.colour"),
    ],
    ids=[
        "fail/kind",
        "fail/threshold",
        "fail/index",
        "fail/duplicate-label",
        "fail/validity",
        "fail/no-witness",
        "fail/unknown-key",
    ],
)
def test_ceremony_file_errors_name_the_key(edit: tuple[str, str], needle: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert edit[0] in text
    with pytest.raises(CeremonyError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_ceremony(text.replace(edit[0], edit[1]))


ROLLOVER = """
[ceremony]
name = "MOT QR CA rollover to index 2"
kind = "ca-rollover"

[token]
label = "{token}"
custodians = ["张三 (部密码管理处)", "李四 (部科技司)", "王五 (部审计室)"]
threshold = 2

[witnesses]
names = ["赵六 (公证员)"]

[[qr_ca]]
index = 2
label = "mot-qr-ca-2"
validity_years = 10
"""


def test_ca_rollover_keeps_the_old_key_for_verification(database, softhsm, new_token) -> None:  # type: ignore[no-untyped-def]
    from ca.qr.codec import expiry_end

    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    _, log_store, _ = new_token("LOG")
    first = run(
        ceremony,  # type: ignore[arg-type]
        engine,
        module=None,
        shares=shares[:2],
        witnesses_present=["赵六 (公证员)"],
        now=NOW,
        log_store=log_store,
        on_audit_key=seal_in,  # what the service does: every later entry is sealed
    )
    with Session(engine) as session:
        old = session.exec(select(CaKey)).one()
    from ca.registry.issuers import register_issuer

    register_issuer(engine, issuer_id="7", name="x", actor="op", now=int(NOW.timestamp()))
    uri = Pkcs11Uri.parse(old.key_uri)
    with Token(uri.token, QuorumPin(shares[:2])) as token:
        signer = token_signer(KeyStore(token), uri, "central-qr-ca")
        request = read_request(
            make_request(
                SoftwareSigner.generate(), issuer_id="7", issuer_name="x", requested_expiry="0629"
            )
        )
        issue(
            engine,
            request,
            IssueContext(
                actor="op",
                ca_signer=signer,
                ca_index=1,
                now=int(NOW.timestamp()),
                authorize=lambda a, r: None,
            ),
        )

    rollover = load_ceremony(ROLLOVER.format(token=ceremony.token))  # type: ignore[attr-defined]
    assert plan(rollover)[-1].startswith("record keys")
    later = NOW.replace(year=2027)
    transcript = run(
        rollover,
        engine,
        module=None,
        shares=shares[1:],
        witnesses_present=["赵六 (公证员)"],
        now=later,
        log_store=log_store,
    )
    assert [k["class"] for k in transcript.data["keys"]] == ["central-qr-ca"]
    assert transcript.anchors == []  # the audit key stays: no new certificate
    assert [k.label for k in log_store.list_keys()] == ["mot-audit-2026"]
    assert first.checkpoint is not None
    assert transcript.checkpoint is not None
    assert transcript.checkpoint[0] > first.checkpoint[0]
    with Session(engine) as session:
        keys = {k.ca_index: k for k in session.exec(select(CaKey))}
        assert keys[1].status == "verify-only"
        assert keys[1].verify_until == expiry_end("0629")  # its last certificate's expiry
        assert keys[2].status == "active"
        audit_key = session.exec(select(KeyRecord).where(KeyRecord.key_class == "audit")).one()
        audit_public = SM2PublicKey.from_bytes(bytes.fromhex(audit_key.public_key or ""))
        # the rollover closed with a checkpoint by the same audit key
        verify_checkpoint(transcript.checkpoint[1], [Verifier(ORIGIN, audit_public)])
        report = audit.verify(
            session,
            checkpoints=[("rollover", transcript.checkpoint[1].encode())],
            audit_keys=[audit_public],
        )
        assert report.ok, report.findings
        assert report.newest is not None
        assert report.newest.checkpoint.size == transcript.checkpoint[0]
    again = load_ceremony(
        ROLLOVER.format(token=ceremony.token).replace("rollover to", "again to")  # type: ignore[attr-defined]
    )
    with pytest.raises(CeremonyError, match="index 2 is already in use"):
        run(
            again,
            engine,
            module=None,
            shares=shares[1:],
            witnesses_present=["赵六 (公证员)"],
            now=later,
            log_store=log_store,
        )


def test_rollover_refuses_to_checkpoint_over_an_unsealed_entry(
    database, softhsm, new_token
) -> None:  # type: ignore[no-untyped-def]
    """An entry written after the root ceremony's checkpoint without a seal (here: by code that
    does not seal, as a row forged in the database would be) stops the rollover's closing
    checkpoint, naming the entry; the rollover's key is destroyed with the rest."""
    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    _, log_store, _ = new_token("LOG")
    run(
        ceremony,  # type: ignore[arg-type]
        engine,
        module=None,
        shares=shares[:2],
        witnesses_present=["赵六 (公证员)"],
        now=NOW,
        log_store=log_store,
        on_audit_key=seal_in,
    )
    from ca.store.db import transaction

    with transaction(engine) as session:
        event = audit.append(session, actor="t", action="test.sealed", subject="x", at=1)
        assert event.seal is not None
    audit.install_sealer(None)
    with transaction(engine) as session:
        event = audit.append(session, actor="t", action="test.unsealed", subject="y", at=2)
        assert event.seal is None
        unsealed = event.seq
    rollover = load_ceremony(ROLLOVER.format(token=ceremony.token))  # type: ignore[attr-defined]
    with pytest.raises(CeremonyError, match=f"entry {unsealed} of the audit log has no valid seal"):
        run(
            rollover,
            engine,
            module=None,
            shares=shares[1:],
            witnesses_present=["赵六 (公证员)"],
            now=NOW,
            log_store=log_store,
        )
    with Token(ceremony.token, QuorumPin(shares[:2])) as token:  # type: ignore[attr-defined]
        assert "mot-qr-ca-2" not in {k.label for k in KeyStore(token).list_keys()}
    with Session(engine) as session:
        assert session.exec(select(CaKey).where(CaKey.ca_index == 2)).first() is None


def test_rollover_needs_a_root(database, softhsm) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    rollover = load_ceremony(ROLLOVER.format(token=ceremony.token))  # type: ignore[attr-defined]
    with pytest.raises(CeremonyError, match="root ceremony to have run first"):
        run(
            rollover,
            engine,
            module=None,
            shares=shares[:2],
            witnesses_present=["赵六 (公证员)"],
            now=NOW,
        )


def test_officers_are_checked_before_any_key_is_made(database, softhsm, new_token) -> None:  # type: ignore[no-untyped-def]
    from ca.officers.roster import OfficerError

    _, engine = database
    text = EXAMPLE.read_text(encoding="utf-8")
    with pytest.raises(CeremonyError, match="at least one ministry-root-officer"):
        load_ceremony(text.replace('roles = ["ministry-root-officer"]', 'roles = ["auditor"]'))
    ceremony, shares = prepare(secrets.token_hex(3))
    bad = load_ceremony(
        text.replace('"MOT-ROOT"', f'"{ceremony.token}"').replace(
            'roles = ["auditor"]', 'roles = ["wizard"]'
        )  # type: ignore[attr-defined]
    )
    _, log_store, _ = new_token("LOG")
    with pytest.raises(OfficerError, match="wizard"):
        run(
            bad,
            engine,
            module=None,
            shares=shares[:2],
            witnesses_present=["赵六 (公证员)"],
            now=NOW,
            log_store=log_store,
        )
    assert log_store.list_keys() == []
    with Token(bad.token, QuorumPin(shares[:2])) as token:
        assert KeyStore(token).list_keys() == []
