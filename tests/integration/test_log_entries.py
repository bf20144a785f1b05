"""Issue #13, point 5: every certificate issued, list published and key package made is a log
entry of its kind whose object line is SM3 of the exact bytes the caller got — and a published
list's log proof (``jtca-log-proof/1``, docs/lists.md) verifies offline with only the audit
certificate file the root ceremony wrote and the list's bytes; any flipped byte fails, naming the
step. Through the real HTTP API in-process (``tests/service_fixtures.in_process``) on SQLite and
PostgreSQL, with the real root ceremony (its keys in SoftHSM2 tokens, the audit key in the
service's own ``MOT-LOG``), checkpoints signed by the service's checkpointing
(``ca.service.logkeys.checkpoint_now``) and a witness's cosignature.

Packages: the Guangzhou world (``tests/integration/guangzhou_world.py``): the ministry's packages
made by the service and the province's hand-on packages made at the province's site and reported
— the service logs SM3 of the package file the report carries.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from guangzhou_world import guangzhou_generated
from officer_desk import DeskClient
from service_fixtures import in_process
from sqlmodel import Session, col, select

from ca.cli import publish as cli_publish
from ca.client.http import ServiceError
from ca.core.clock import FixedClock
from ca.log import audit
from ca.log import proofbundle as pb
from ca.log.anchors import anchor_files, audit_verifiers
from ca.log.note import SignedNote, cosign
from ca.ops import ceremony as ceremony_ops
from ca.ops import issuance as issuance_ops
from ca.ops import lists as lists_ops
from ca.ops import log as log_ops
from ca.ops import officers as officer_ops
from ca.ops.base import Empty
from ca.pki.x509 import pem_to_der
from ca.qr.cert_request import make_request
from ca.service.logkeys import checkpoint_now
from ca.service.runtime import Runtime
from ca.site import packages as site
from ca.store.db import transaction
from ca.store.models import AuditEvent
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.pkcs11.token import find_module, rescan
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import raw_to_der
from hsm.sm.sm3 import sm3

JTCA = str(Path(sys.executable).with_name("jtca"))
EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
WITNESS = "赵六 (公证员)"
ISSUER_ID = "02113450"
WITNESS_NAME = "witness.gd.gov.cn/jtca"


def entries(runtime: Runtime, **where: str) -> list[AuditEvent]:
    with Session(runtime.engine) as session:
        query = select(AuditEvent).order_by(col(AuditEvent.seq))
        for name, value in where.items():
            query = query.where(getattr(AuditEvent, name) == value)
        rows = list(session.exec(query))
        session.expunge_all()
        return rows


def the_entry(runtime: Runtime, **where: str) -> AuditEvent:
    found = entries(runtime, **where)
    assert len(found) == 1, (where, [(e.seq, e.action, e.subject) for e in found])
    return found[0]


def refused(call: Any) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    assert "Traceback" not in json.dumps(caught.value.problem)
    return caught.value


@pytest.fixture
def softhsm_back() -> Iterator[None]:
    """The service points SoftHSM2 at its own state folder; put the process's choice back."""
    previous = os.environ.get(CONF_ENV)
    yield
    if os.environ.get(CONF_ENV) != previous:
        if previous is None:
            os.environ.pop(CONF_ENV, None)
        else:
            os.environ[CONF_ENV] = previous
        rescan(find_module())


@pytest.fixture
def sealer_back() -> Iterator[None]:
    """The root ceremony installs this process's sealer; put the previous one back."""
    previous = audit.current_sealer()
    yield
    audit.install_sealer(previous)


@dataclass
class Authority:
    client: DeskClient
    runtime: Runtime
    shares: list[str]
    now: int


@pytest.fixture
def authority(
    database: Any, tmp_path: Path, softhsm_back: None, sealer_back: None
) -> Iterator[Authority]:
    """The root ceremony at the in-process service and a publisher registered."""
    from ca.officers.roster import add_officer_in

    url, _ = database
    clock = FixedClock(NOW)
    with in_process(tmp_path / "state", url=url, clock=clock) as (client, runtime):
        plan = EXAMPLE.read_text(encoding="utf-8")
        made = client.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=plan))
        shares = [made.pin_shares[0].share, made.pin_shares[2].share]
        client.call(
            ceremony_ops.RUN,
            ceremony_ops.RunRequest(plan=plan, shares=shares, witnesses=[WITNESS]),
        )
        with transaction(runtime.engine) as session:
            add_officer_in(
                session,
                officer_id="publisher-1",
                name="publisher-1",
                roles=["publisher"],
                province=None,
                actor="test",
                now=clock.now(),
            )
        yield Authority(client, runtime, shares, clock.now())


def enrol_by_quorum(a: Authority, officer_id: str) -> officer_ops.Enrolment:
    token = a.client.token(officer_id)
    return a.client.call(
        officer_ops.ENROL,
        officer_ops.EnrolRequest(
            officer_id=officer_id,
            roles=[],
            public_key=token.public_key.uncompressed,
            proof=token.proof(officer_id),
            token_label=token.label,
            shares=a.shares,
        ),
    )


class _Borrowed:
    """The test's client lent to a command (its close() must not close the shared HTTP)."""

    def __init__(self, client: DeskClient) -> None:
        self._client = client

    def call(self, op: Any, request: Any) -> Any:
        return self._client.call(op, request)

    def close(self) -> None:
        pass


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script with no service, no state and no token (what an operator runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JTCA_", "SOFTHSM2"))}
    result = subprocess.run(
        [JTCA, *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert "Traceback" not in result.stderr
    return result


# -- certificates and lists, and a list's proof ---------------------------------------------------
def test_certificates_and_lists_are_entries_and_a_lists_proof_verifies_offline(
    authority: Authority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = authority
    runtime = a.runtime

    # an officer certificate (the quorum's enrolment) and the officer CA made for it
    enrolled = enrol_by_quorum(a, "mot-root-1")
    assert enrolled.certificate is not None
    officer_der = pem_to_der(enrolled.certificate.pem.encode())
    row = the_entry(runtime, action="officer.certificate.issue", subject="officer mot-root-1")
    assert (row.kind, row.object_sm3) == ("certificate", sm3(officer_der).hex())
    officer_ca = a.client.call(officer_ops.OFFICER_CA, Empty())
    row = the_entry(runtime, action="officer-ca.create")
    assert (row.kind, row.object_sm3) == (
        "certificate",
        sm3(pem_to_der(officer_ca.pem.encode())).hex(),
    )
    assert officer_ca.sm3 == row.object_sm3

    # an interop certificate for a QR issuer
    operator = a.client.as_officer("ca-op-1")
    operator.call(
        issuance_ops.REGISTER_ISSUER,
        issuance_ops.RegisterIssuerRequest(issuer_id=ISSUER_ID, name="示例发行机构"),
    )
    request = make_request(
        SoftwareSigner.generate(),
        issuer_id=ISSUER_ID,
        issuer_name="示例发行机构",
        requested_expiry="1230",
    )
    issued = operator.call(
        issuance_ops.ISSUE,
        issuance_ops.IssueRequest(request=request, ca_index=1, shares=a.shares),
    )
    row = the_entry(runtime, action="qr-ca.issue-interop-cert")
    assert row.subject == f"issuer {ISSUER_ID} serial {issued.serial}"
    assert (row.kind, row.object_sm3) == (
        "certificate",
        sm3(bytes.fromhex(issued.certificate)).hex(),
    )
    # the allocation before it, and everything that is not an object, stays an event
    assert the_entry(runtime, action="qr-ca.allocate-serial").kind == "event"
    assert {e.kind for e in entries(runtime, action="issuer.register")} == {"event"}

    # every list type published: one list entry per version, SM3 of the DER the caller got
    publisher = a.client.as_officer("publisher-1")
    result = publisher.call(lists_ops.PUBLISH, lists_ops.PublishRequest(shares=a.shares))
    assert sorted(f.list_type for f in result.published) == sorted(lists_ops.LIST_NAMES)
    for published in result.published:
        row = the_entry(
            runtime, action="list.publish", subject=f"{published.list_type} {published.sequence}"
        )
        assert (row.kind, row.object_sm3) == ("list", sm3(published.der).hex())
        assert row.object_sm3 == published.sm3
    for row in entries(runtime):
        assert (row.kind == "event") == (row.object_sm3 is None), row

    # no checkpoint covers the new entries yet: a clear 409, saying when the next one is due
    city = next(f for f in result.published if f.list_type == "city-list")
    ask = lists_ops.ProofRequest(list_type="city-list", sequence=city.sequence)
    early = refused(lambda: a.client.call(lists_ops.PROOF, ask))
    assert (early.status, early.exit_code, early.title) == (409, 75, "Not yet in a checkpoint")
    assert "not yet in a checkpoint; the next one is due within 10 seconds" in early.message
    missing = refused(
        lambda: a.client.call(
            lists_ops.PROOF, lists_ops.ProofRequest(list_type="city-list", sequence=9)
        )
    )
    assert (missing.status, missing.exit_code) == (404, 3)

    # jtca publish's mirror: no proof before a checkpoint covers the version
    mirror = tmp_path / "mirror"
    cli_publish.mirror(_Borrowed(a.client), mirror, result)  # type: ignore[arg-type]
    assert (mirror / "city-list.der").read_bytes() == city.der
    assert not list(mirror.rglob("*.proof"))

    # the service's checkpointing signs with the audit key in MOT-LOG; a witness cosigns it
    made = checkpoint_now(runtime, a.now + 5)
    assert made is not None
    # written to the checkpoint folder outside the database too
    assert (runtime.log_folder / "checkpoint").read_text(encoding="utf-8") == made.note
    witness = SoftwareSigner.generate()
    a.client.as_officer("mot-root-1").call(
        log_ops.WITNESS_ADD,
        log_ops.WitnessAddRequest(
            name=WITNESS_NAME, public_key=witness.public_key.compressed.hex()
        ),
    )
    note = SignedNote.parse(made.note)
    line = cosign(
        note, WITNESS_NAME, witness.public_key, a.now + 6,
        lambda m: raw_to_der(witness.sign(m)),
    ).line()  # fmt: skip
    a.client.call(log_ops.COSIGN, log_ops.CosignRequest(size=made.size, line=line))

    # jtca lists proof TYPE SEQUENCE --out FILE (no sign-in needed: the proof is public)
    out = tmp_path / "operator"
    out.mkdir()
    list_file = out / "city-list.der"
    list_file.write_bytes(city.der)
    proof_file = out / "city-list.der.proof"
    monkeypatch.setattr(cli_publish, "_connect", lambda what=None: _Borrowed(a.client))
    from ca.cli.main import main

    assert main(["lists", "proof", "city-list", str(city.sequence), "--out", str(proof_file)]) == 0
    got = a.client.call(lists_ops.PROOF, ask)
    assert proof_file.read_bytes() == got.proof
    row = the_entry(runtime, kind="list", subject=f"city-list {city.sequence}")
    assert (got.seq, got.size, got.sm3) == (row.seq, made.size, sm3(city.der).hex())
    assert (got.cosigners, got.witnessed) == ([WITNESS_NAME], True)

    # offline: only the audit certificate file the ceremony wrote, the root's, and the bytes
    audit_pems, root_pems = anchor_files(runtime.state)
    assert audit_pems
    assert root_pems
    checked = run_cli(
        "lists", "check-proof", "--list", str(list_file), "--audit-cert", str(audit_pems[0]),
        "--root-cert", str(root_pems[0]), "--witness",
        f"{WITNESS_NAME}={witness.public_key.compressed.hex()}", "--quorum", "1", "--json",
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    shown = json.loads(checked.stdout)
    assert (shown["ok"], shown["sm3"], shown["size"]) == (True, sm3(city.der).hex(), made.size)
    assert shown["entry"]["subject"] == f"city-list {city.sequence}"
    assert [w["name"] for w in shown["witnessed_by"]] == [WITNESS_NAME]
    plain = run_cli(
        "lists", "check-proof", "--list", str(list_file), "--audit-cert", str(audit_pems[0])
    )
    assert plain.returncode == 0, plain.stderr
    assert f"is log entry {row.seq}" in plain.stdout

    # the same with the pure check, then every kind of tampering, each named by its step
    verifiers = audit_verifiers(audit_pems, root_pems, pb.origin_of(got.proof))
    result_ok = pb.verify_proof(got.proof, city.der, verifiers)
    assert result_ok.checkpoint.root.hex() == made.root

    def step(bundle: bytes, data: bytes = city.der) -> str:
        with pytest.raises(pb.LogProofError) as caught:
            pb.verify_proof(bundle, data, verifiers)
        return caught.value.step

    for i in (0, len(city.der) // 2, len(city.der) - 1):
        flipped = bytearray(city.der)
        flipped[i] ^= 0x01
        assert step(got.proof, bytes(flipped)) == "object"
        tampered = out / "tampered.der"
        tampered.write_bytes(bytes(flipped))
        bad = run_cli("lists", "check-proof", "--list", str(tampered), "--proof", str(proof_file),
                      "--audit-cert", str(audit_pems[0]))  # fmt: skip
        assert bad.returncode == 8
        assert bad.stderr.startswith("jtca: Log proof: object: entry ")
    fields = json.loads(got.proof)
    entry = base64.b64decode(fields["entry"])

    def rebuilt(**changes: Any) -> bytes:
        return (json.dumps(fields | changes, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False) + "\n").encode()  # fmt: skip

    for i in range(len(entry)):
        flipped = bytearray(entry)
        flipped[i] ^= 0x04
        assert step(rebuilt(entry=base64.b64encode(flipped).decode())) in {
            "entry",
            "object",
            "inclusion",
        }
    for which in range(len(fields["inclusion"])):
        hashes = [base64.b64decode(h) for h in fields["inclusion"]]
        hashes[which] = bytes([hashes[which][0] ^ 0x80]) + hashes[which][1:]
        assert step(rebuilt(inclusion=[base64.b64encode(h).decode() for h in hashes])) == (
            "inclusion"
        )
    checkpoint = fields["checkpoint"].encode()
    for i in range(len(checkpoint)):
        flipped = bytearray(checkpoint)
        flipped[i] ^= 0x01
        try:
            text = flipped.decode()
        except UnicodeDecodeError:
            continue
        with pytest.raises(pb.LogProofError) as caught:
            pb.verify_proof(
                rebuilt(checkpoint=text),
                city.der,
                verifiers,
                [pb.witness_verifier(f"{WITNESS_NAME}={witness.public_key.compressed.hex()}")],
                1,
            )
        assert caught.value.step in {"checkpoint", "witnesses"}, (i, caught.value.message)
    # the next mirror run writes each version's proof beside it, and beside the current file
    cli_publish.mirror(_Borrowed(a.client), mirror, result)  # type: ignore[arg-type]
    for published in result.published:
        name = published.list_type
        archived = cli_publish.archive_path(mirror, name, published.sequence)
        beside = mirror / f"{name}.der.proof"
        assert beside.read_bytes() == archived.with_name(archived.name + ".proof").read_bytes()
        pb.verify_proof(beside.read_bytes(), (mirror / f"{name}.der").read_bytes(), verifiers)

    # a proof of another list does not prove this one
    other = next(f for f in result.published if f.list_type == "issuer-whitelist")
    other_proof = a.client.call(
        lists_ops.PROOF,
        lists_ops.ProofRequest(list_type="issuer-whitelist", sequence=other.sequence),
    ).proof
    assert step(other_proof) == "object"
    pb.verify_proof(other_proof, other.der, verifiers)


# -- key packages ---------------------------------------------------------------------------------
def test_key_packages_made_at_the_service_and_reported_by_a_site_are_package_entries(
    database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, engine = database
    monkeypatch.setenv(CONF_ENV, "")  # the state folder's SoftHSM2; restored afterwards
    officers = (
        ("mot-root-1", "ministry-root-officer", None),
        ("ca-op-1", "ministry-ca-operator", None),
        ("gd-1", "provincial-officer", "440000"),
    )
    t0 = 1_790_000_000
    with guangzhou_generated(engine, url, tmp_path / "state", FixedClock(t0), officers) as made:
        runtime = made.runtime
        # ministry → province: the service seals each package; the client writes the file
        sent = site.deliver(
            made.client.as_officer("mot-root-1"), made.province_site,
            application=made.application, out_dir=tmp_path / "to-gd", now=t0,
        )  # fmt: skip
        assert len(sent) == len(made.keys)
        imported = [
            site.import_package(made.client.as_officer("gd-1"), made.province_site,
                                d.path.read_bytes())
            for d in sent
        ]  # fmt: skip
        assert len(imported) == len(sent)
        # province → city: sealed at the province's site from its own token, reported
        onward = site.deliver(
            made.client.as_officer("gd-1"), made.province_site,
            application=made.application, out_dir=tmp_path / "to-gz", now=t0,
        )  # fmt: skip
        assert len(onward) == len(made.keys)
        rows = entries(runtime, action="city-key.deliver")
        assert len(rows) == 2 * len(made.keys)
        by_package = {json.loads(r.details)["package"]: r for r in rows}
        for delivered in [*sent, *onward]:
            row = by_package[delivered.package]
            data = delivered.path.read_bytes()
            assert (row.kind, row.object_sm3) == ("package", sm3(data).hex()), delivered
        # an import, a registration, a fetch again: events, not objects
        assert {r.kind for r in entries(runtime, action="city-key.import")} == {"event"}
        assert {r.kind for r in entries(runtime, action="transport-key.register")} == {"event"}
