"""Officer enrolment (issue #12, points 1 and 6) through the real HTTP API in-process, after a
real root ceremony: the first officers under the root share quorum (certified at once), later
ones requested by a ministry root officer and certified only when a *second* one approves with
a signature made by their own token; every way to get it wrong refused and audited; the
officer certificate itself (X.509, SM2-with-SM3, the officer id as CN, the officer EKUs,
digitalSignature and nonRepudiation, unique serials, the policy's validity), renewal, and
OpenSSL's ``verify`` accepting the chain to the officer CA."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from officer_desk import DeskClient
from service_fixtures import in_process
from sqlmodel import Session, col, select

from ca.client.http import ServiceError
from ca.core.clock import FixedClock
from ca.officers.certificates import OFFICER_CA_SUBJECT
from ca.officers.statements import enrolment_message
from ca.ops import auth as auth_ops
from ca.ops import ceremony as ceremony_ops
from ca.ops import officers as officer_ops
from ca.ops.base import Empty
from ca.pki.x509 import (
    CLIENT_AUTH_EKU,
    OFFICER_AUTH_EKU,
    certificate_info,
    pem_to_der,
    verify_certificate,
)
from ca.policy.in_force import load_policy
from ca.service.runtime import Runtime
from ca.site.officer_token import sign_in
from ca.store.models import Approval, AuditEvent, OfficerCertificate

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
T0 = 1_796_090_400  # 2026-12-01T02:00:00Z
WITNESS = "赵六 (公证员)"
QUORUM = "root share quorum"
SM2_WITH_SM3 = "1.2.156.10197.1.501"
DISTID = "distid:1234567812345678"


@dataclass
class Authority:
    client: DeskClient
    runtime: Runtime
    clock: FixedClock
    shares: list[str]  # two of the three custodians' shares of the root token's PIN
    so_shares: list[str]  # two shares of its SO PIN: well-formed, the wrong secret

    def as_(self, officer: str) -> DeskClient:
        return self.client.as_officer(officer)

    def last_seq(self) -> int:
        with Session(self.runtime.engine) as session:
            row = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc())).first()
            return row.seq if row else 0

    def events(self, since: int, action: str) -> list[AuditEvent]:
        with Session(self.runtime.engine) as session:
            return list(
                session.exec(
                    select(AuditEvent)
                    .where(AuditEvent.seq > since)
                    .where(AuditEvent.action == action)
                    .order_by(col(AuditEvent.seq))
                )
            )

    def refusals(self, since: int) -> list[tuple[str, str, str]]:
        return [
            (e.actor, e.subject, json.loads(e.details)["reason"])
            for e in self.events(since, "auth.refused")
        ]

    def request(
        self,
        officer_id: str,
        roles: list[str] | None = None,
        province: str | None = None,
        *,
        shares: list[str] | None = None,
        proof_by: str | None = None,
    ) -> officer_ops.EnrolRequest:
        """An enrolment of the key ``officer_id``'s own token makes (made on first use) with
        its proof of possession — made by ``proof_by``'s token instead, when given."""
        token = self.client.token(officer_id)
        prover = self.client.token(proof_by) if proof_by else token
        proof = prover.sign(
            enrolment_message(officer=officer_id, public_key=token.public_key.uncompressed)
        )
        return officer_ops.EnrolRequest(
            officer_id=officer_id,
            roles=roles or [],
            province=province,
            public_key=token.public_key.uncompressed,
            proof=proof,
            token_label=token.label,
            shares=shares or [],
        )

    def enrol_under_quorum(self, officer_id: str, roles: list[str] | None = None) -> Any:
        return self.client.call(
            officer_ops.ENROL, self.request(officer_id, roles, shares=self.shares)
        )

    def decision(self, officer: str, enrolment: int, approve: bool = True) -> Any:
        signed = self.as_(officer)
        at, signature = signed.decision(f"enrolment {enrolment}", approve=approve)
        return signed.call(
            officer_ops.DECIDE,
            officer_ops.Decision(
                id=enrolment, approve=approve, at=at, signature=signature, reason="" if approve
                else "not known to us",
            ),
        )  # fmt: skip


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    """The service after the example root ceremony (two of three custodians); its officers
    (mot-root-1, ca-op-1, auditor-1) registered by the ceremony, none enrolled yet."""
    clock = FixedClock(T0)
    with in_process(tmp_path / "state", clock=clock) as (client, runtime):
        plan = EXAMPLE.read_text(encoding="utf-8")
        made = client.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=plan))
        shares = [made.pin_shares[0].share, made.pin_shares[2].share]
        client.call(
            ceremony_ops.RUN, ceremony_ops.RunRequest(plan=plan, shares=shares, witnesses=[WITNESS])
        )
        so_shares = [made.so_pin_shares[0].share, made.so_pin_shares[1].share]
        yield Authority(client, runtime, clock, shares, so_shares)


def refused(call: Any, status: int, *needles: str) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    error = caught.value
    assert error.status == status, error.problem
    for needle in needles:
        assert needle in error.message, error.message
    assert "Traceback" not in json.dumps(error.problem)
    return error


# -- the bootstrap: the root share quorum ------------------------------------------------------


def test_the_first_officers_are_certified_at_once_under_the_root_share_quorum(
    authority: Authority,
) -> None:
    since = authority.last_seq()
    first = authority.enrol_under_quorum("mot-root-1")  # named by the ceremony
    assert (first.state, first.requested_by, first.roles) == (
        "approved",
        QUORUM,
        ["ministry-root-officer"],
    )
    assert first.certificate is not None
    assert (first.certificate.status, first.certificate.issued_by) == ("active", QUORUM)
    assert first.certificate.token_label == "officer-mot-root-1"  # noqa: S105 - a label
    second = authority.enrol_under_quorum("mot-root-2", ["ministry-root-officer"])  # new
    assert (second.state, second.certificate is not None) == ("approved", True)
    issued = authority.events(since, "officer.certificate.issue")
    assert [(e.actor, e.subject) for e in issued] == [
        (QUORUM, "officer mot-root-1"),
        (QUORUM, "officer mot-root-2"),
    ]
    assert [json.loads(e.details)["serial"] for e in issued] == [
        first.certificate.serial,
        second.certificate.serial,
    ]
    assert len(authority.events(since, "officer-ca.create")) == 1  # made once, on first use
    # the shares are never kept: not in the audit log, not in a kept request
    with Session(authority.runtime.engine) as session:
        logged = " ".join(e.details for e in session.exec(select(AuditEvent)))
    assert not any(share in logged for share in authority.shares)
    # the officer signs in with that certificate at once
    whoami = authority.as_("mot-root-1").call(auth_ops.WHOAMI, Empty())
    assert whoami.certificate_serial == first.certificate.serial


def test_an_enrolment_without_the_quorum_or_a_session_is_refused(authority: Authority) -> None:
    since = authority.last_seq()
    refused(
        lambda: authority.client.call(officer_ops.ENROL, authority.request("mot-root-1")),
        401,
        "needs a signed-in ministry root officer",
        "or the root share quorum",
    )
    refused(
        lambda: authority.client.call(
            officer_ops.ENROL, authority.request("mot-root-1", shares=authority.so_shares)
        ),
        401,
        "the root share quorum was refused",
    )
    assert authority.refusals(since) == [
        ("anonymous", "officer.enrol", "unauthenticated"),
        ("anonymous", "officer.enrol", "bad-quorum"),
    ]
    one_share = authority.request("mot-root-1", shares=authority.shares[:1])
    refused(lambda: authority.client.call(officer_ops.ENROL, one_share), 422, "needs 2 of 3")
    assert authority.events(since, "officer.certificate.issue") == []
    with Session(authority.runtime.engine) as session:
        assert session.exec(select(OfficerCertificate)).first() is None
    # a signed-in officer does not bring the quorum along: the two do not mix
    authority.enrol_under_quorum("mot-root-1")
    as_root = authority.as_("mot-root-1")
    refused(
        lambda: as_root.call(
            officer_ops.ENROL,
            authority.request("gd-1", ["provincial-officer"], "440000", shares=authority.shares),
        ),
        422,
        "approved by a second officer, not by the root quorum",
    )


def test_a_proof_of_possession_by_another_key_is_refused(authority: Authority) -> None:
    since = authority.last_seq()
    forged = authority.request("mot-root-1", shares=authority.shares, proof_by="mallory")
    refused(
        lambda: authority.client.call(officer_ops.ENROL, forged),
        401,
        "proof: the new key's proof of possession: the signature does not verify",
    )
    authority.enrol_under_quorum("mot-root-1")
    as_root = authority.as_("mot-root-1")
    borrowed = authority.request("gd-1", ["provincial-officer"], "440000", proof_by="gd-2")
    refused(lambda: as_root.call(officer_ops.ENROL, borrowed), 401, "proof of possession")
    assert authority.refusals(since) == [
        ("anonymous", "officer.enrol", "bad-signature"),
        ("mot-root-1", "officer.enrol", "bad-signature"),
    ]
    assert authority.events(since, "officer.enrol.request") == []
    assert [e.subject for e in authority.events(since, "officer.certificate.issue")] == [
        "officer mot-root-1"
    ]


# -- dual control: a request, a second root officer's signed approval ------------------------------


def test_a_root_officers_enrolment_waits_for_a_second_root_officer(authority: Authority) -> None:
    authority.enrol_under_quorum("mot-root-1")
    authority.enrol_under_quorum("mot-root-2", ["ministry-root-officer"])
    as_root = authority.as_("mot-root-1")
    asked = as_root.call(
        officer_ops.ENROL, authority.request("gd-1", ["provincial-officer"], "440000")
    )
    assert (asked.state, asked.requested_by, asked.certificate, asked.subject) == (
        "pending",
        "mot-root-1",
        None,
        f"enrolment {asked.id}",
    )
    assert [e.id for e in as_root.call(officer_ops.ENROLMENTS, Empty()).enrolments] == [asked.id]
    refused(
        lambda: as_root.call(
            officer_ops.ENROL, authority.request("gd-1", ["provincial-officer"], "440000")
        ),
        403,
        "already has an enrolment pending",
    )
    # pending: gd-1 is not even registered, and cannot sign in with their token
    with pytest.raises(ServiceError) as early:
        sign_in(authority.client.signed_in(None), authority.client.token("gd-1"), "gd-1",
                clock=authority.clock.now)  # fmt: skip
    assert (early.value.status, early.value.message) == (401, "officer 'gd-1' is not registered")

    since = authority.last_seq()
    # the requester approving their own request, with their own token: refused
    refused(lambda: authority.decision("mot-root-1", asked.id), 403, "dual control")
    # an operator's role does not approve enrolments
    authority.enrol_under_quorum("ca-op-1")
    refused(lambda: authority.decision("ca-op-1", asked.id), 403, "deny/")
    assert [(r[0], r[1]) for r in authority.refusals(since)] == [
        ("mot-root-1", "officer.decide"),
        ("ca-op-1", "officer.decide"),
    ]
    assert authority.events(since, "officer.enrol.approve") == []

    enrolled = authority.decision("mot-root-2", asked.id)
    assert (enrolled.state, enrolled.officer_id, enrolled.province) == (
        "approved",
        "gd-1",
        "440000",
    )
    assert enrolled.certificate is not None
    assert enrolled.certificate.issued_by == "mot-root-1+mot-root-2"
    approval = authority.events(since, "officer.enrol.approve")
    assert [(e.actor, e.subject) for e in approval] == [("mot-root-2", f"enrolment {asked.id}")]
    evidence = json.loads(approval[0].details)
    whoami = authority.as_("mot-root-2").call(auth_ops.WHOAMI, Empty())
    assert evidence["certificate_serial"] == whoami.certificate_serial
    assert evidence["statement"].startswith(f"jtca-approval/1\nsubject: enrolment {asked.id}\n")
    assert "officer: mot-root-2\n" in evidence["statement"]
    with Session(authority.runtime.engine) as session:
        row = session.exec(
            select(Approval).where(Approval.subject == f"enrolment {asked.id}")
        ).one()
        assert (row.approver, row.certificate_serial) == ("mot-root-2", whoami.certificate_serial)
    # decided once: a second approval (by anyone) is refused
    refused(lambda: authority.decision("mot-root-2", asked.id), 403, "already approved")
    # gd-1 now signs in with the token that made the key
    data = sign_in(authority.client.signed_in(None), authority.client.token("gd-1"), "gd-1",
                   clock=authority.clock.now)  # fmt: skip
    assert (data.officer, data.certificate_serial) == ("gd-1", enrolled.certificate.serial)


def test_a_rejected_enrolment_certifies_nothing(authority: Authority) -> None:
    authority.enrol_under_quorum("mot-root-1")
    authority.enrol_under_quorum("mot-root-2", ["ministry-root-officer"])
    asked = authority.as_("mot-root-1").call(
        officer_ops.ENROL, authority.request("gd-1", ["provincial-officer"], "440000")
    )
    rejected = authority.decision("mot-root-2", asked.id, approve=False)
    assert (rejected.state, rejected.certificate) == ("rejected", None)
    listed = {o.id for o in authority.client.call(officer_ops.LIST, Empty()).officers}
    assert "gd-1" not in listed


# -- the certificate ------------------------------------------------------------------------


def openssl() -> str:
    found = shutil.which("openssl")
    assert found, "the OpenSSL 3 command line (`openssl`) is required (Debian's openssl package)"
    return found


def test_the_officer_certificate_and_openssl_accepts_its_chain(
    authority: Authority, tmp_path: Path
) -> None:
    serials = {
        authority.enrol_under_quorum(officer).certificate.serial
        for officer in ("mot-root-1", "ca-op-1", "auditor-1")
    }
    assert len(serials) == 3  # unique
    view = authority.client.call(
        officer_ops.CERTIFICATE, officer_ops.OfficerId(officer_id="ca-op-1")
    )
    assert view.certificate is not None
    der = pem_to_der(view.certificate.pem.encode())
    ca_view = authority.client.call(officer_ops.OFFICER_CA, Empty())
    ca_der = pem_to_der(ca_view.pem.encode())
    ca_info = certificate_info(ca_der)
    info = verify_certificate(der, ca_info.public_key, at=datetime.fromtimestamp(T0, UTC))
    cert = asn1_x509.Certificate.load(der)
    assert cert["signature_algorithm"]["algorithm"].dotted == SM2_WITH_SM3
    assert cert["tbs_certificate"]["signature"]["algorithm"].dotted == SM2_WITH_SM3
    assert cert.subject.native["common_name"] == "ca-op-1"
    assert info.issuer == ca_info.subject
    assert ca_info.subject_name.native["common_name"] == OFFICER_CA_SUBJECT["CN"]
    assert info.serial == view.certificate.serial
    assert info.serial > 0
    assert info.serial.bit_length() <= 64  # 8 octets, positive (RFC 5280 §4.1.2.2)
    assert info.public_key.uncompressed == authority.client.token("ca-op-1").public_key.uncompressed
    assert set(info.extended_key_usage) == {OFFICER_AUTH_EKU, CLIENT_AUTH_EKU}
    assert info.key_usage == {"digital_signature", "non_repudiation"}
    assert (info.is_ca, ca_info.is_ca, ca_info.path_length) == (False, True, 0)
    days = load_policy().officers.certificate_days
    assert info.not_before == datetime.fromtimestamp(T0, UTC)
    assert info.not_after - info.not_before == timedelta(days=days)
    assert (view.certificate.not_before, view.certificate.not_after) == (T0, T0 + days * 86400)
    assert info.authority_key_id == ca_info.subject_key_id

    (tmp_path / "officer-ca.pem").write_text(ca_view.pem)
    (tmp_path / "officer.pem").write_text(view.certificate.pem)
    at = str(T0 + 3600)  # OpenSSL judges the chain at the service's time, not the machine's
    verify = [openssl(), "verify", "-attime", at, "-vfyopt", DISTID, "-CAfile", "officer-ca.pem"]
    done = subprocess.run(
        [*verify, "officer.pem"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "officer.pem: OK"
    client_auth = subprocess.run(
        [*verify, "-purpose", "sslclient", "officer.pem"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert client_auth.returncode == 0, client_auth.stdout + client_auth.stderr
    text = subprocess.run(
        [openssl(), "x509", "-in", "officer.pem", "-noout", "-text"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Signature Algorithm: SM2-with-SM3" in text
    assert "CN = ca-op-1" in text
    assert "Digital Signature, Non Repudiation" in text
    assert "TLS Web Client Authentication" in text
    # a certificate from another officer CA does not chain
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    other = subprocess.run(
        [openssl(), "req", "-x509", "-newkey", "sm2", "-nodes", "-subj", "/CN=jtca Officer CA",
         "-keyout", str(stranger / "key.pem"), "-out", str(stranger / "ca.pem"), "-days", "1",
         "-sm3", "-sigopt", DISTID],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    foreign = subprocess.run(
        [openssl(), "verify", "-attime", at, "-vfyopt", DISTID, "-CAfile",
         str(stranger / "ca.pem"), "officer.pem"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert foreign.returncode != 0
    assert "officer.pem: OK" not in foreign.stdout


def test_renewal_gives_a_new_serial_and_supersedes_the_old(authority: Authority) -> None:
    authority.enrol_under_quorum("mot-root-1")
    first = authority.enrol_under_quorum("ca-op-1").certificate
    operator = authority.as_("ca-op-1")
    authority.clock.advance(60)
    renewed = authority.as_("mot-root-1").call(
        officer_ops.RENEW, officer_ops.OfficerId(officer_id="ca-op-1")
    )
    assert renewed.certificate is not None
    assert renewed.certificate.serial != first.serial
    assert (renewed.certificate.status, renewed.certificate.not_before) == (
        "active",
        T0 + 60,
    )
    with Session(authority.runtime.engine) as session:
        old = session.get(OfficerCertificate, first.serial)
        assert old is not None
        assert (old.status, old.status_reason) == ("superseded", f"by {renewed.certificate.serial}")
    # the same token key, certified again
    assert pem_to_der(renewed.certificate.pem.encode()) != pem_to_der(first.pem.encode())
    assert certificate_info(
        pem_to_der(renewed.certificate.pem.encode())
    ).public_key.uncompressed == (
        certificate_info(pem_to_der(first.pem.encode())).public_key.uncompressed
    )
    # a renewal certifies the same token key: the open session goes on under the new
    # certificate (a new key, a suspension or a revocation would end it)
    assert operator.call(auth_ops.WHOAMI, Empty()).certificate_serial == renewed.certificate.serial
    authority.client.forget("ca-op-1")
    whoami = authority.as_("ca-op-1").call(auth_ops.WHOAMI, Empty())
    assert whoami.certificate_serial == renewed.certificate.serial
    # only a root officer renews; a suspended certificate is not renewed but re-enrolled
    refused(
        lambda: authority.as_("ca-op-1").call(
            officer_ops.RENEW, officer_ops.OfficerId(officer_id="ca-op-1")
        ),
        403,
        "deny/",
    )
    authority.as_("mot-root-1").call(
        officer_ops.SUSPEND, officer_ops.OfficerAction(officer_id="ca-op-1", reason="audit")
    )
    refused(
        lambda: authority.as_("mot-root-1").call(
            officer_ops.RENEW, officer_ops.OfficerId(officer_id="ca-op-1")
        ),
        403,
        "no certificate in force to renew",
    )
