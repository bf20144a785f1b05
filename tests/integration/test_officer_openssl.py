"""The offline check of an approval with the OpenSSL command line alone (issue #12, point 3).

gd-1 applies for Guangzhou's keys; ca-op-1, a ministry officer, approves with a signature made
by their own token. From the approval's audit event (statement, DER signature, certificate
serial), the approver's certificate (``officer.certificate``) and the request approved
(``approvals.request``), the commands below — quoted verbatim in docs/officers.md — show that
this officer approved exactly this request:

- ``OFFLINE_CHECK``: the certificate's public key, then the signature over the statement
  (SM2 with SM3, the default distinguishing ID ``1234567812345678``): ``Verified OK``;
- ``REQUEST_DIGEST``: the SM3 of the request approved, which is the statement's
  ``request-sm3:`` line;
- ``CHAIN_CHECK``: the approver's certificate chains to the officer CA (``officer.ca``).

One byte changed in the statement and OpenSSL says ``Verification failure``."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from officer_desk import DeskClient
from service_fixtures import in_process
from sqlmodel import Session, select

from ca.core.clock import FixedClock
from ca.officers.roster import add_officer_in
from ca.ops import approvals as approval_ops
from ca.ops import city as city_ops
from ca.ops import officers as officer_ops
from ca.ops.base import Empty
from ca.service.runtime import Runtime
from ca.store.db import transaction
from ca.store.models import AuditEvent

# The commands docs/officers.md quotes, run here exactly as written (cwd: the folder holding
# officer.pem, approval.txt, approval.sig, request.json and officer-ca.pem).
OFFLINE_CHECK: Final = (
    "openssl x509 -in officer.pem -pubkey -noout -out officer.pub",
    "openssl dgst -sm3 -verify officer.pub -sigopt distid:1234567812345678 "
    "-signature approval.sig approval.txt",
)
REQUEST_DIGEST: Final = "openssl dgst -sm3 request.json"
CHAIN_CHECK: Final = (
    "openssl verify -vfyopt distid:1234567812345678 -CAfile officer-ca.pem officer.pem"
)
VERIFIED: Final = "Verified OK"

OFFICERS = (
    ("ca-op-1", "ministry-ca-operator", None),
    ("gd-1", "provincial-officer", "440000"),
)


@dataclass
class Approved:
    client: DeskClient
    runtime: Runtime
    subject: str  # "application N"
    event: AuditEvent  # the approval's audit event


@pytest.fixture
def approved(tmp_path: Path) -> Iterator[Approved]:
    # the machine's time: the certificate is valid now, so OpenSSL needs no -attime
    clock = FixedClock(int(time.time()))
    with in_process(tmp_path / "state", clock=clock) as (client, runtime):
        with transaction(runtime.engine) as session:
            for officer_id, role, province in OFFICERS:
                add_officer_in(
                    session,
                    officer_id=officer_id,
                    name=officer_id,
                    roles=[role],
                    province=province,
                    actor="test",
                    now=clock.now(),
                )
        application = client.as_officer("gd-1").call(
            city_ops.APPLY, city_ops.ApplyRequest(cities=["440100"])
        )
        subject = f"application {application.id}"
        operator = client.as_officer("ca-op-1")
        at, signature = operator.decision(subject)
        decided = operator.call(
            city_ops.DECIDE,
            city_ops.DecideRequest(
                kind="application", id=application.id, approve=True, at=at, signature=signature
            ),
        )
        assert decided.state == "approved"
        with Session(runtime.engine) as session:
            event = session.exec(
                select(AuditEvent)
                .where(AuditEvent.action == "city-key.approve")
                .where(AuditEvent.subject == subject)
            ).one()
        yield Approved(client, runtime, subject, event)


def run(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """One documented command, as a shell user types it (openssl from PATH)."""
    assert shutil.which("openssl"), "the OpenSSL 3 command line is required (Debian's openssl)"
    return subprocess.run(
        shlex.split(command), cwd=folder, capture_output=True, text=True, check=False
    )


def write_evidence(approved: Approved, folder: Path) -> dict[str, object]:
    """The files an auditor needs, from the audit event and the service's public operations."""
    details = json.loads(approved.event.details)
    anyone = approved.client.signed_in(None)
    officer = anyone.call(officer_ops.CERTIFICATE, officer_ops.OfficerId(officer_id="ca-op-1"))
    assert officer.certificate is not None
    assert officer.certificate.serial == details["certificate_serial"]
    (folder / "officer.pem").write_text(officer.certificate.pem)
    (folder / "officer-ca.pem").write_text(anyone.call(officer_ops.OFFICER_CA, Empty()).pem)
    (folder / "approval.txt").write_bytes(details["statement"].encode())
    (folder / "approval.sig").write_bytes(base64.b64decode(details["signature"]))
    request = approved.client.as_officer("ca-op-1").call(
        approval_ops.REQUEST, approval_ops.SubjectRequest(subject=approved.subject)
    )
    (folder / "request.json").write_bytes(request.body)
    return details


def test_openssl_alone_shows_who_approved_which_request(approved: Approved, tmp_path: Path) -> None:
    details = write_evidence(approved, tmp_path)
    statement = details["statement"]
    assert isinstance(statement, str)
    assert approved.event.actor == "ca-op-1"
    assert statement.startswith(f"jtca-approval/1\nsubject: {approved.subject}\n")
    assert "\ndecision: approve\nofficer: ca-op-1\n" in statement
    assert f"\ncertificate: {details['certificate_serial']}\n" in statement

    extract = run(OFFLINE_CHECK[0], tmp_path)
    assert extract.returncode == 0, extract.stderr
    assert (tmp_path / "officer.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    verify = run(OFFLINE_CHECK[1], tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.strip() == VERIFIED

    digest = run(REQUEST_DIGEST, tmp_path)
    assert digest.returncode == 0, digest.stderr
    printed = re.fullmatch(r"SM3\(request\.json\)= ([0-9a-f]{64})\n", digest.stdout)
    assert printed, digest.stdout
    named = re.search(r"^request-sm3: ([0-9a-f]{64})$", statement, re.MULTILINE)
    assert named
    assert printed.group(1) == named.group(1) == details["request_sm3"]
    # the request approved is gd-1's application for Guangzhou, byte for byte as gd-1 signed it
    signed_body = city_ops.ApplyRequest(cities=["440100"]).model_dump_json().encode()
    assert (tmp_path / "request.json").read_bytes() == signed_body

    chain = run(CHAIN_CHECK, tmp_path)
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert chain.stdout.strip() == "officer.pem: OK"


def test_openssl_refuses_a_statement_changed_by_one_byte(
    approved: Approved, tmp_path: Path
) -> None:
    write_evidence(approved, tmp_path)
    statement = (tmp_path / "approval.txt").read_bytes()
    for position in (0, statement.index(b"request-sm3: ") + 13, len(statement) - 2):
        changed = bytearray(statement)
        changed[position] ^= 0x01
        (tmp_path / "approval.txt").write_bytes(bytes(changed))
        for command in OFFLINE_CHECK:
            done = run(command, tmp_path)
        assert done.returncode != 0, f"byte {position}: {done.stdout}"
        assert VERIFIED not in done.stdout
        assert "Verification failure" in done.stdout
    # and the untouched statement under another officer's certificate does not verify either
    (tmp_path / "approval.txt").write_bytes(statement)
    gd1 = approved.client.signed_in(None).call(
        officer_ops.CERTIFICATE, officer_ops.OfficerId(officer_id="gd-1")
    )
    assert gd1.certificate is not None
    (tmp_path / "officer.pem").write_text(gd1.certificate.pem)
    for command in OFFLINE_CHECK:
        done = run(command, tmp_path)
    assert done.returncode != 0
    assert VERIFIED not in done.stdout


def test_the_operators_guide_quotes_exactly_these_commands() -> None:
    """docs/officers.md tells auditors to run these very commands: the test above runs them,
    so a change to either is caught here."""
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "officers.md").read_text()
    for command in (*OFFLINE_CHECK, REQUEST_DIGEST, CHAIN_CHECK):
        assert command in guide, f"docs/officers.md does not quote: {command}"


def test_jtca_audit_approval_writes_what_openssl_checks(
    approved: Approved,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``jtca audit approval --subject S --out DIR`` writes, per signed decision, the five files
    the documented commands read; run verbatim in that folder, OpenSSL says who approved what."""
    import argparse

    import ca.cli.desk
    from ca.cli.audit import OFFLINE_CHECK as PRINTED
    from ca.cli.audit import cmd_approval

    auditor = approved.client.as_officer("gd-1")  # any signed-in officer may read the evidence
    monkeypatch.setattr(ca.cli.desk, "connect", lambda anonymous=False: auditor)
    monkeypatch.setattr(type(auditor), "close", lambda self: None)
    out = tmp_path / "evidence"
    code = cmd_approval(argparse.Namespace(subject=approved.subject, out=out, json=True))
    assert code == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["subject"] == approved.subject
    [decision] = listed["decisions"]
    assert (decision["officer"], decision["decision"], decision["signed"]) == (
        "ca-op-1", "approve", True,
    )  # fmt: skip
    folder = Path(decision["folder"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "CHECK.txt", "approval.sig", "approval.txt", "officer-ca.pem", "officer.pem",
        "request.json",
    ]  # fmt: skip
    # what the command prints is what this module runs and the guide quotes
    assert (*OFFLINE_CHECK, REQUEST_DIGEST, CHAIN_CHECK) == PRINTED
    details = json.loads(approved.event.details)
    assert (folder / "approval.txt").read_text() == details["statement"]
    assert run(OFFLINE_CHECK[0], folder).returncode == 0
    verified = run(OFFLINE_CHECK[1], folder)
    assert verified.stdout.strip() == VERIFIED, verified.stderr
    digest = run(REQUEST_DIGEST, folder)
    assert digest.stdout.strip().endswith(details["request_sm3"])
    chain = run(CHAIN_CHECK, folder)
    assert chain.stdout.strip() == "officer.pem: OK", chain.stderr
