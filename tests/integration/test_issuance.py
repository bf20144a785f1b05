"""Interop certificate issuance on SQLite and PostgreSQL: proof of possession, unique serials
(also after a crash and under concurrent issuers), revocation, audit, and the QR verifier
accepting what the authority issues."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session, select

from ca.core.clock import FixedClock
from ca.log import audit
from ca.log.merkle import MemoryTree
from ca.log.verify import Report
from ca.qr.cert_request import InteropCertRequest, RequestRefused, make_request, read_request
from ca.qr.codec import decode_interop_certificate
from ca.qr.issuance import IssuanceError, IssueContext, issue, revoke
from ca.qr.issue import issue_user_certificate, sign_ride
from ca.qr.verify import PayloadVerifier
from ca.store.models import AuditEvent, InteropCertificateRecord
from hsm.signer import SoftwareSigner

NOW = 1_790_000_000


def allow(_action: str, _request: InteropCertRequest) -> None:
    return None


def context(ca: SoftwareSigner, actor: str = "ca-operator-1") -> IssueContext:
    return IssueContext(actor=actor, ca_signer=ca, ca_index=1, now=NOW, authorize=allow)


def log_intact(session: Session) -> Report:
    """The audit log as the issuer left it: the database's tree is the one its entries hash to,
    and the log verifies against a checkpoint signed now with an audit key outside it."""
    tree = MemoryTree()
    for seq in range(1, audit.tree_size(session) + 1):
        tree.append(audit.entry(session, seq).encode())
    assert audit.root(session) == tree.root()
    audit_key = SoftwareSigner.generate()
    record = audit.checkpoint(session, audit_key, at=NOW, origin="test")
    assert (record.size, record.root) == (tree.size, tree.root().hex())
    report = audit.verify(
        session, checkpoints=[("test", record.note.encode())], audit_keys=[audit_key.public_key]
    )
    assert report.newest is not None
    assert report.newest.checkpoint.size == tree.size
    return report


def register(engine, *ids: str) -> None:  # type: ignore[no-untyped-def]
    from ca.registry.issuers import register_issuer

    for issuer_id in ids:
        register_issuer(
            engine, issuer_id=issuer_id, name=f"发行机构 {issuer_id}", actor="op", now=NOW
        )


def request_for(issuer: SoftwareSigner, issuer_id: str = "02113450") -> InteropCertRequest:
    der = make_request(
        issuer, issuer_id=issuer_id, issuer_name="某某交通卡公司", requested_expiry="1230"
    )
    return read_request(der)


def test_issued_certificate_is_accepted_by_the_qr_verifier(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    register(engine, "02113450")
    ca, issuer, user = (SoftwareSigner.generate() for _ in range(3))
    record = issue(engine, request_for(issuer), context(ca))
    assert record.serial == 1
    assert record.status == "valid"
    interop = decode_interop_certificate(bytes.fromhex(record.encoded))
    assert interop.issuer_id == "02113450"
    assert interop.issuer_public_key == issuer.public_key
    user_cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data="ISSUED-BY-JTCA-1",
        account_number="31040000000000000001",
        account_type=1,
        single_ride_limit=1000,
        user_public_key=user.public_key,
        expires_at=NOW + 600,
        qr_validity=60,
    )
    payload = sign_ride(user, interop, user_cert, generated_at=NOW).encode()
    verifier = PayloadVerifier(
        ca_keys={1: ca.public_key}, accepted_issuers={"02113450"}, clock=FixedClock(NOW)
    )
    assert verifier.verify(payload).signatures_verified == 3
    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.seq))]
        assert actions == ["issuer.register", "qr-ca.allocate-serial", "qr-ca.issue-interop-cert"]
        assert log_intact(session).findings == []


def test_serials_increase_per_ca_key(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    register(engine, "02113450")
    ca, other_ca = SoftwareSigner.generate(), SoftwareSigner.generate()
    serials = [
        issue(engine, request_for(SoftwareSigner.generate()), context(ca)).serial for _ in range(3)
    ]
    assert serials == [1, 2, 3]
    assert issue(engine, request_for(SoftwareSigner.generate()), context(other_ca)).serial == 1


class CrashingSigner:
    """A CA signer whose token dies mid-signature (the process 'crashes' after allocation)."""

    def __init__(self, inner: SoftwareSigner) -> None:
        self.inner = inner

    public_key = property(lambda self: self.inner.public_key)
    key_uri = property(lambda self: self.inner.key_uri)
    path = property(lambda self: self.inner.path)

    def sign(self, message: bytes) -> bytes:
        raise RuntimeError("token removed")


def test_no_serial_is_reused_after_a_crash(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    register(engine, "02113450")
    ca = SoftwareSigner.generate()
    assert issue(engine, request_for(SoftwareSigner.generate()), context(ca)).serial == 1
    crashing = IssueContext(
        actor="op",
        ca_signer=CrashingSigner(ca),
        ca_index=1,
        now=NOW,  # type: ignore[arg-type]
        authorize=allow,
    )
    with pytest.raises(RuntimeError, match="token removed"):
        issue(engine, request_for(SoftwareSigner.generate()), crashing)
    assert issue(engine, request_for(SoftwareSigner.generate()), context(ca)).serial == 3
    with Session(engine) as session:
        stored = [r.serial for r in session.exec(select(InteropCertificateRecord))]
        allocations = [
            e.details
            for e in session.exec(
                select(AuditEvent).where(AuditEvent.action == "qr-ca.allocate-serial")
            )
        ]
    assert stored == [1, 3]
    assert len(allocations) == 3  # serial 2 was allocated, audited, and never used


def test_concurrent_issuers_get_unique_serials(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    ca = SoftwareSigner.generate()
    register(engine, *(f"{1000 + i}" for i in range(24)))
    requests = [request_for(SoftwareSigner.generate(), f"{1000 + i}") for i in range(24)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        records = list(pool.map(lambda r: issue(engine, r, context(ca)), requests))
    assert sorted(r.serial for r in records) == list(range(1, 25))
    with Session(engine) as session:
        result = log_intact(session)
    assert result.ok, result.findings
    assert result.entries == 24 + 48


def test_revocation(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    register(engine, "02113450")
    ca = SoftwareSigner.generate()
    record = issue(engine, request_for(SoftwareSigner.generate()), context(ca))
    key = ca.public_key.compressed.hex()
    revoked = revoke(
        engine,
        ca_key_hex=key,
        serial=record.serial,
        reason="key compromise",
        actor="ca-operator-2",
        now=NOW + 5,
    )
    assert (revoked.status, revoked.revocation_reason, revoked.revoked_at) == (
        "revoked",
        "key compromise",
        NOW + 5,
    )
    with pytest.raises(IssuanceError, match="already revoked"):
        revoke(engine, ca_key_hex=key, serial=record.serial, reason="again", actor="x", now=NOW)
    with pytest.raises(IssuanceError, match="no interop certificate"):
        revoke(engine, ca_key_hex=key, serial=99, reason="r", actor="x", now=NOW)
    with pytest.raises(IssuanceError, match="needs a reason"):
        revoke(engine, ca_key_hex=key, serial=record.serial, reason=" ", actor="x", now=NOW)
    with Session(engine) as session:
        assert log_intact(session).findings == []
        assert session.exec(
            select(AuditEvent).where(AuditEvent.action == "qr-ca.revoke-interop-cert")
        ).one()


def test_denied_by_policy_allocates_nothing(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database

    def deny(action: str, request: InteropCertRequest) -> None:
        raise IssuanceError(f"deny/lifetime-too-long: {action} for {request.issuer_id}")

    ctx = IssueContext(
        actor="op", ca_signer=SoftwareSigner.generate(), ca_index=1, now=NOW, authorize=deny
    )
    with pytest.raises(IssuanceError, match="deny/lifetime-too-long"):
        issue(engine, request_for(SoftwareSigner.generate()), ctx)
    with Session(engine) as session:
        assert session.exec(select(AuditEvent)).all() == []


def test_requests_need_proof_of_possession() -> None:
    issuer = SoftwareSigner.generate()
    der = make_request(issuer, issuer_id="02113450", issuer_name="X", requested_expiry="1230")
    assert read_request(der).public_key == issuer.public_key
    tampered = bytearray(der)
    tampered[der.index(b"02113450")] ^= 0x01  # '0' -> '1' inside the signed part
    with pytest.raises(RequestRefused, match="proof of possession"):
        read_request(bytes(tampered))
    with pytest.raises(RequestRefused, match="malformed"):
        read_request(der[:-3])
    with pytest.raises(RequestRefused, match="issuer_id"):
        make_request(issuer, issuer_id="12a", issuer_name="X", requested_expiry="1230")
    with pytest.raises(RequestRefused, match="expiry"):
        make_request(issuer, issuer_id="1", issuer_name="X", requested_expiry="1330")


def test_unregistered_issuer_is_refused(database) -> None:  # type: ignore[no-untyped-def]
    from ca.registry.issuers import IssuerError, register_issuer

    _, engine = database
    with pytest.raises(IssuerError, match="not registered"):
        issue(
            engine,
            request_for(SoftwareSigner.generate(), "555"),
            context(SoftwareSigner.generate()),
        )
    register(engine, "555")
    with pytest.raises(IssuerError, match="already registered"):
        register_issuer(engine, issuer_id="555", name="again", actor="op", now=NOW)
    with pytest.raises(Exception, match="cn8"):
        register_issuer(engine, issuer_id="12a", name="x", actor="op", now=NOW)
    assert (
        issue(
            engine,
            request_for(SoftwareSigner.generate(), "555"),
            context(SoftwareSigner.generate()),
        ).serial
        == 1
    )
