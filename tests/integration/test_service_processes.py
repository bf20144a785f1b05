"""Issue #11, point 7: one lock per database. Two ``jtca serve`` processes on one PostgreSQL
database (and one token folder) take requests at the same time: every serial is allocated
once, the audit log stays one log — one gapless Merkle tree, each process sealing what it appends
with its own seal key (issue #13) — and every request succeeds — the locks are rows taken
``FOR UPDATE`` in the database, not anything a process holds on its own.

The officers are enrolled under the root share quorum with their own SoftHSM2 tokens and sign
in by challenge and response (issue #12); a session is the database's, so one session's signed
requests are served by either process, and its nonces are spent once across both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from db_fixtures import fresh_database
from officer_desk import officer_token
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ca.client.config import Target
from ca.client.embedded import answers
from ca.client.http import Client, http_for
from ca.client.session import RequestSigner
from ca.log import audit
from ca.log.merkle import MemoryTree
from ca.ops import audit as audit_ops
from ca.ops import ceremony as ceremony_ops
from ca.ops import issuance as issuance_ops
from ca.ops import lists as lists_ops
from ca.ops import officers as officer_ops
from ca.qr.cert_request import make_request
from ca.site.officer_token import sign_in
from ca.store.models import AuditEvent
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.pkcs11.token import find_module, rescan
from hsm.signer import SoftwareSigner

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
JTCA = str(Path(sys.executable).with_name("jtca"))
ROUNDS = 8


@pytest.fixture
def two_services(tmp_path: Path) -> Iterator[tuple[Client, Client, Path, Engine]]:
    """Two services on one database and state folder. The officers' tokens are made in that
    folder's SoftHSM2 from this process; the process's previous choice is restored after."""
    previous = os.environ.get(CONF_ENV)
    with fresh_database("postgresql", tmp_path) as (url, engine):
        env = {k: v for k, v in os.environ.items() if k not in ("JTCA_URL", "SOFTHSM2_CONF")}
        env["JTCA_DATABASE_URL"] = url
        state = tmp_path / "state"
        processes, clients = [], []
        for name in ("a", "b"):
            sock = tmp_path / f"{name}.sock"
            log = (tmp_path / f"{name}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [JTCA, "serve", "--uds", str(sock), "--state", str(state)],
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            )
            deadline = time.monotonic() + 60
            while not answers(sock):
                assert processes[-1].poll() is None, (tmp_path / f"{name}.log").read_text()
                assert time.monotonic() < deadline, "jtca serve did not start"
                time.sleep(0.1)
            clients.append(Client(http_for(Target("environment", f"unix://{sock}"))))
        try:
            yield clients[0], clients[1], state, engine
        finally:
            for client in clients:
                client.close()
            for process in processes:
                process.terminate()
            codes = [process.wait(timeout=90) for process in processes]
            if os.environ.get(CONF_ENV) != previous:
                if previous is None:
                    os.environ.pop(CONF_ENV, None)
                else:
                    os.environ[CONF_ENV] = previous
                rescan(find_module())
            assert codes == [0, 0]  # a graceful shutdown


def signed_in(client: Client, state: Path, officer_id: str, shares: list[str]) -> RequestSigner:
    """``officer_id`` (named by the root ceremony) enrolled under the root share quorum with
    their own token's key, then signed in by challenge and response."""
    token = officer_token(state, officer_id)
    enrolled = client.call(
        officer_ops.ENROL,
        officer_ops.EnrolRequest(
            officer_id=officer_id,
            roles=[],
            public_key=token.public_key.uncompressed,
            proof=token.proof(officer_id),
            token_label=token.label,
            shares=shares,
        ),
    )
    assert enrolled.state == "approved"
    return RequestSigner(sign_in(client, token, officer_id))


def seal_keys(engine: Engine) -> list[int]:
    """The entries registering a seal key (one per process sealing the log)."""
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditEvent.seq)
                .where(AuditEvent.action == "log.seal-key")
                .order_by(col(AuditEvent.seq))
            )
        )


class UnsealedEntries(AssertionError):
    """Entries appended after the root ceremony without a seal (by a process that never started
    sealing)."""


def test_two_service_processes_share_one_serial_counter_and_one_audit_log(
    two_services: tuple[Client, Client, Path, Engine],
) -> None:
    a, b, state, engine = two_services
    plan = EXAMPLE.read_text(encoding="utf-8")
    made = a.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=plan))
    shares = [made.pin_shares[0].share, made.pin_shares[1].share]
    b.call(
        ceremony_ops.RUN,
        ceremony_ops.RunRequest(plan=plan, shares=shares, witnesses=["赵六 (公证员)"]),
    )
    session = signed_in(a, state, "ca-op-1", shares)  # one session, served by both processes
    operator = [a.signed_in(session), b.signed_in(session)]
    issuer_ids = [f"0211{n:04d}" for n in range(3450, 3450 + 2 * ROUNDS)]
    for issuer_id in issuer_ids:
        operator[0].call(
            issuance_ops.REGISTER_ISSUER,
            issuance_ops.RegisterIssuerRequest(issuer_id=issuer_id, name=f"发行机构 {issuer_id}"),
        )

    def issue(n: int) -> int:
        request = make_request(
            SoftwareSigner.generate(),
            issuer_id=issuer_ids[n],
            issuer_name=f"发行机构 {issuer_ids[n]}",
            requested_expiry="1230",
        )
        issued = operator[n % 2].call(
            issuance_ops.ISSUE,
            issuance_ops.IssueRequest(request=request, ca_index=1, shares=shares),
        )
        return issued.serial

    def add_operator(n: int) -> str:
        added = operator[n % 2].call(
            lists_ops.OPERATOR_ADD,
            lists_ops.OperatorRequest(operator_id=f"op-{n}", name=f"运营单位 {n}"),
        )
        return added.operator_id

    with ThreadPoolExecutor(8) as pool:
        serials = list(pool.map(issue, range(2 * ROUNDS)))
        operators = list(pool.map(add_operator, range(4 * ROUNDS)))

    # every serial once, none skipped: allocation is one counter row locked in the database
    assert sorted(serials) == list(range(1, 2 * ROUNDS + 1))
    assert sorted(operators) == sorted(f"op-{n}" for n in range(4 * ROUNDS))
    # a request served by one process cannot be replayed at the other: its nonce is spent in
    # the database
    body = lists_ops.OperatorRequest(operator_id="op-replayed").model_dump_json().encode()
    headers = {"Content-Type": "application/json"}
    headers.update(session.headers("POST", lists_ops.OPERATOR_ADD.path, body))
    assert a.http.post(lists_ops.OPERATOR_ADD.path, content=body, headers=headers).is_success
    replayed = b.http.post(lists_ops.OPERATOR_ADD.path, content=body, headers=headers)
    assert (replayed.status_code, replayed.json()["reason"]) == (401, "replay")
    # one log, whichever process appended: the head row is locked for every append, so the
    # entries are one gapless tree, the stored subtrees exactly those of the entries
    with Session(engine) as session_db:
        size = audit.tree_size(session_db)
        rows = list(session_db.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))
        tree = MemoryTree()
        for seq in range(1, size + 1):
            tree.append(audit.entry(session_db, seq).encode())
        assert [r.seq for r in rows] == list(range(1, size + 1))
        assert [r.leaf_hash for r in rows] == [tree.perfect(0, i).hex() for i in range(size)]
        assert audit.root(session_db) == tree.root()
        assert list(audit.stored_nodes(session_db)) == [
            (level, index, digest.hex()) for level, index, digest in tree.nodes()
        ]
    # b seals what it appends with the key the ceremony registered there
    registered = seal_keys(engine)
    assert registered
    sealed = [r for r in rows if r.seal is not None]
    assert sealed
    assert {r.seal_key for r in sealed} <= set(registered)

    # and every entry since the ceremony is sealed by the process that wrote it — a, started
    # before the ceremony b ran, registers its own seal key at its first append after it (its
    # registration is bound by the audit key's signature, not sealed) — so the log verifies at
    # either process (each asked by the CA operator, whom the policy allows audit.verify)
    # against the checkpoint folder with the ceremony's audit certificate
    assert len(registered) == 2, registered  # b's at the ceremony, a's at its first append
    unsealed = [
        (r.seq, r.actor, r.action)
        for r in rows
        if r.seq > registered[0] and not r.seal and r.action != "log.seal-key"
    ]
    reports = [client.call(audit_ops.VERIFY, audit_ops.VerifyRequest()) for client in operator]
    problems = [(f.seq, f.problem) for report in reports for f in report.findings]
    if unsealed or problems:
        raise UnsealedEntries(
            f"seal keys registered in entries {registered}; unsealed after the ceremony: "
            f"{unsealed[:5]}; audit.verify at a and b: {problems[:6]}"
        )
    for report in reports:
        assert report.ok
        assert report.events >= size
        assert report.newest_checkpoint is not None
