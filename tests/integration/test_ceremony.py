"""The root ceremony from the shipped example file, on SQLite and PostgreSQL: keys in the
token, certificates OpenSSL accepts, records and a signed transcript in the audit log, then an
interop certificate issued with the new CA key and a QR made with it verified."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from ca import audit
from ca.ceremony import (
    CeremonyError,
    init_token_shares,
    load_ceremony,
    plan,
    read_ceremony,
    run,
    transcript_message,
)
from ca.clock import FixedClock
from ca.issuance import IssueContext, issue
from ca.qr.codec import decode_interop_certificate
from ca.qr.issue import issue_user_certificate, sign_ride
from ca.qr.verify import PayloadVerifier
from ca.requests import make_request, read_request
from ca.signing import token_signer
from ca.store.models import CaKey, CeremonyRun, CertificateRecord, KeyRecord
from ca.x509 import verify_certificate
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import QuorumPin, Token
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2PublicKey
from hsm.softhsm import init_token

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def prepare(label_suffix: str) -> tuple[object, list[str]]:
    text = EXAMPLE.read_text(encoding="utf-8").replace('"MOT-ROOT"', f'"MOT-ROOT-{label_suffix}"')
    ceremony = load_ceremony(text)
    pin = secrets.token_urlsafe(12)
    init_token(ceremony.token, pin, secrets.token_urlsafe(12))
    shares = [share for _, share in init_token_shares(ceremony, pin)]
    return ceremony, shares


def test_example_file_plans() -> None:
    steps = plan(read_ceremony(EXAMPLE))
    assert any("CA public key index 1" in s for s in steps)
    assert any("self-sign its X.509 certificate" in s for s in steps)


def test_root_ceremony_end_to_end(database, softhsm) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    transcript = run(
        ceremony,
        engine,
        module=None,
        shares=[shares[0], shares[2]],  # type: ignore[arg-type]
        witnesses_present=["赵六 (公证员)"],
        now=NOW,
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

    with Session(engine) as session:
        records = session.exec(select(KeyRecord)).all()
        assert {r.key_class for r in records} == {
            "ministry-root",
            "central-qr-ca",
            "list-signing",
            "audit",
        }
        ca_key = session.exec(select(CaKey)).one()
        assert (ca_key.ca_index, ca_key.status) == (1, "active")
        certs = {c.role: c for c in session.exec(select(CertificateRecord))}
        assert set(certs) == {"root", "list-signing"}
        root_info = verify_certificate(bytes.fromhex(certs["root"].der), root_public)
        assert root_info.is_ca
        verify_certificate(bytes.fromhex(certs["list-signing"].der), root_public)
        assert session.get(CeremonyRun, ceremony.name) is not None  # type: ignore[attr-defined]
        audit_key = next(r for r in records if r.key_class == "audit")
        report = audit.verify(
            session, [SM2PublicKey.from_bytes(bytes.fromhex(audit_key.public_key or ""))]
        )
        assert report.ok, report.findings
        assert report.checkpoints == 1
        actions = [e["action"] for e in json.loads(audit.export_bundle(session))["events"]]
        assert actions.count("key.generate") == 4
        assert "ceremony.run" in actions

    # The ceremony runs once.
    with pytest.raises(CeremonyError, match="already run"):
        run(
            ceremony,
            engine,
            module=None,
            shares=shares[:2],
            witnesses_present=["赵六 (公证员)"],  # type: ignore[arg-type]
            now=NOW,
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


def test_refusals_leave_no_keys(database, softhsm) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    with pytest.raises(CeremonyError, match="not named"):
        run(ceremony, engine, module=None, shares=shares[:2], witnesses_present=["路人甲"], now=NOW)  # type: ignore[arg-type]
    from hsm.custody import ShareError

    with pytest.raises(ShareError, match="needs 2 of 3"):
        run(
            ceremony,
            engine,
            module=None,
            shares=shares[:1],
            witnesses_present=["赵六 (公证员)"],  # type: ignore[arg-type]
            now=NOW,
        )
    with Token(ceremony.token, QuorumPin(shares[:2])) as token:  # type: ignore[attr-defined]
        assert KeyStore(token).list_keys() == []


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


def test_ca_rollover_keeps_the_old_key_for_verification(database, softhsm) -> None:  # type: ignore[no-untyped-def]
    from ca.qr.codec import expiry_end

    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    run(
        ceremony,
        engine,
        module=None,
        shares=shares[:2],
        witnesses_present=["赵六 (公证员)"],
        now=NOW,
    )  # type: ignore[arg-type]
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
    )
    assert [k["class"] for k in transcript.data["keys"]] == ["central-qr-ca"]
    with Session(engine) as session:
        keys = {k.ca_index: k for k in session.exec(select(CaKey))}
        assert keys[1].status == "verify-only"
        assert keys[1].verify_until == expiry_end("0629")  # its last certificate's expiry
        assert keys[2].status == "active"
        audit_key = session.exec(select(KeyRecord).where(KeyRecord.key_class == "audit")).one()
        report = audit.verify(
            session, [SM2PublicKey.from_bytes(bytes.fromhex(audit_key.public_key or ""))]
        )
        assert report.ok, report.findings
        assert report.checkpoints == 2
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
        )


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


def test_officers_are_checked_before_any_key_is_made(database, softhsm) -> None:  # type: ignore[no-untyped-def]
    from ca.officers import OfficerError

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
    with pytest.raises(OfficerError, match="wizard"):
        run(
            bad,
            engine,
            module=None,
            shares=shares[:2],
            witnesses_present=["赵六 (公证员)"],
            now=NOW,
        )
    with Token(bad.token, QuorumPin(shares[:2])) as token:
        assert KeyStore(token).list_keys() == []
