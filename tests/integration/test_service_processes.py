"""Issue #11, point 7: one lock per database. Two ``jtca serve`` processes on one PostgreSQL
database (and one token folder) take requests at the same time: every serial is allocated
once, the audit chain stays one chain, and every request succeeds — the locks are rows taken
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

from ca.client.config import Target
from ca.client.embedded import answers
from ca.client.http import Client, http_for
from ca.client.session import RequestSigner
from ca.ops import audit as audit_ops
from ca.ops import ceremony as ceremony_ops
from ca.ops import issuance as issuance_ops
from ca.ops import lists as lists_ops
from ca.ops import officers as officer_ops
from ca.requests import make_request
from ca.site.officer_token import sign_in
from hsm.pkcs11.token import find_module, rescan
from hsm.signer import SoftwareSigner
from hsm.softhsm import CONF_ENV

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
JTCA = str(Path(sys.executable).with_name("jtca"))
ROUNDS = 8


@pytest.fixture
def two_services(tmp_path: Path) -> Iterator[tuple[Client, Client, Path]]:
    """Two services on one database and state folder. The officers' tokens are made in that
    folder's SoftHSM2 from this process; the process's previous choice is restored after."""
    previous = os.environ.get(CONF_ENV)
    with fresh_database("postgresql", tmp_path) as (url, _engine):
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
            yield clients[0], clients[1], state
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


def test_two_service_processes_share_one_serial_counter_and_one_audit_chain(
    two_services: tuple[Client, Client, Path],
) -> None:
    a, b, state = two_services
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
    # one chain, whichever process appended: the head row is locked for every append (each
    # process asked by the CA operator, whom the policy allows audit.verify)
    for client in operator:
        report = client.call(audit_ops.VERIFY, audit_ops.VerifyRequest())
        assert report.ok, report
        assert report.findings == []
