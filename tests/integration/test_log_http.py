"""The audit log's public reads and its witnesses at the service (issue #13), through the real
HTTP API in-process (``tests/service_fixtures.in_process``) on SQLite and PostgreSQL.

- ``GET /log/proof/inclusion`` and ``GET /log/proof/consistency`` for random sizes, up to the
  tree's size (past the newest checkpoint too), verified with ``ca.log.merkle`` against a tree
  rebuilt here from the entries' bytes; every bad parameter a 400 naming it and its value.
- ``GET /log/checkpoint``: 404 before the first checkpoint, then the C2SP note as UTF-8 text with
  every cosignature line, each verifying with its witness's key.
- ``log.cosign``: two witnesses with SoftHSM2 tokens of their own, registered by a ministry
  root officer (``log.witness``), cosign; K of N is counted (K from the policy); an unregistered
  or removed witness, a cosignature of another checkpoint, a size never signed are refused by
  name; an older checkpoint can be cosigned; a retry is answered with the first one kept.
  Registering and removing are audited; a cosignature is stored, not a log entry (it would grow
  the log and replace the checkpoint just cosigned, for ever).

What is set up directly: the log's entries (``ca.log.audit.append``) and its checkpoints, signed by
a software audit key the test holds (the service's checkpointer and its token are the lead's
tests' business); the officers' registrations (their sign-in is real, ``DeskClient``).
"""

from __future__ import annotations

import base64
import dataclasses
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from officer_desk import DeskClient, FixedPinSource
from service_fixtures import in_process
from sqlmodel import Session, col, select

import ca.service.log as log_service
from ca.client.http import ServiceError
from ca.log import audit
from ca.log.merkle import MemoryTree, verify_consistency, verify_inclusion
from ca.log.note import (
    COSIGNATURE_TYPE,
    SignedNote,
    Verifier,
    cosign,
    verify_checkpoint,
    verify_cosignature,
)
from ca.officers.roster import add_officer_in
from ca.ops import log as log_ops
from ca.ops.base import Empty
from ca.policy.in_force import load_policy
from ca.service.runtime import Runtime
from ca.store.db import transaction
from ca.store.models import AuditEvent, LogCheckpoint
from ca.witness.token import WitnessToken, create_embedded_token
from hsm.signer import SoftwareSigner

ORIGIN = load_policy().log.origin
T0 = 1_800_000_000


@dataclass
class Log:
    client: DeskClient
    runtime: Runtime
    key: SoftwareSigner  # the audit key (held by the test: see the module doc)

    def fill(self, n: int, tag: str = "entry") -> int:
        for i in range(n):
            with transaction(self.runtime.engine) as session:
                audit.append(
                    session,
                    actor="test",
                    action="test.entry",
                    subject=f"{tag} {i}",
                    details={"i": i, "tag": tag},
                    at=T0 + i,
                )
        return self.size()

    def size(self) -> int:
        with Session(self.runtime.engine) as session:
            return audit.tree_size(session)

    def checkpoint(self, at: int = T0 + 10_000) -> LogCheckpoint:
        with transaction(self.runtime.engine) as session:
            made = audit.checkpoint(session, self.key, at=at, origin=ORIGIN)
            session.expunge(made)
            return made

    def tree(self) -> MemoryTree:
        """The tree rebuilt here from every entry's bytes (``LogEntry.encode``)."""
        tree = MemoryTree()
        with Session(self.runtime.engine) as session:
            for seq in range(1, audit.tree_size(session) + 1):
                tree.append(audit.entry(session, seq).encode())
        return tree


@pytest.fixture
def log(database: Any, tmp_path: Path) -> Iterator[Log]:
    url, _ = database
    previous = audit.current_sealer()
    audit.install_sealer(None)  # entries here are the test's, unsealed (see the module doc)
    try:
        with in_process(tmp_path / "state", url=url) as (client, runtime):
            yield Log(client, runtime, SoftwareSigner.generate())
    finally:
        audit.install_sealer(previous)


def hashes(texts: list[str]) -> list[bytes]:
    return [base64.b64decode(t, validate=True) for t in texts]


# -- proofs ----------------------------------------------------------------------------------------
def test_proofs_verify_for_random_sizes_past_the_checkpoint(log: Log) -> None:
    log.fill(41)
    log.checkpoint()
    total = log.fill(26, "after")  # entries past the newest checkpoint are provable too
    tree = log.tree()
    assert tree.size == total
    http = log.client.http
    rng = random.Random(13)  # noqa: S311 - reproducible sizes, not keys
    pairs = [(0, 1), (total - 1, total), (0, total), (40, 41)]
    pairs += [(i, s) for s in rng.sample(range(1, total + 1), 25) for i in [rng.randrange(s)]]
    for index, size in pairs:
        answer = http.get("/log/proof/inclusion", params={"index": index, "size": size})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        data = answer.json()
        assert (data["index"], data["size"]) == (index, size)
        leaf = base64.b64decode(data["leaf_hash"], validate=True)
        assert leaf == tree.perfect(0, index)
        verify_inclusion(index, size, leaf, hashes(data["proof"]), tree.root(size))
    steps = [(1, 1), (1, total), (total, total), (41, total), (32, 64)]
    steps += [tuple(sorted(rng.sample(range(1, total + 1), 2))) for _ in range(25)]
    for first, second in steps:
        answer = http.get("/log/proof/consistency", params={"from": first, "to": second})
        assert answer.status_code == 200, answer.text
        data = answer.json()
        assert (data["from"], data["to"]) == (first, second)
        verify_consistency(
            first, second, tree.root(first), tree.root(second), hashes(data["proof"])
        )
    # the same use cases as typed operations
    typed = log.client.call(log_ops.INCLUSION, log_ops.InclusionRequest(index=3, size=total))
    verify_inclusion(3, total, tree.perfect(0, 3), hashes(typed.proof), tree.root())
    same = log.client.call(
        log_ops.CONSISTENCY, log_ops.ConsistencyRequest.model_validate({"from": 5, "to": total})
    )
    verify_consistency(5, total, tree.root(5), tree.root(), hashes(same.proof))


BAD = [
    ("inclusion", "index=abc&size=3", "index", "'abc' is not a decimal integer"),
    ("inclusion", "index=1.5&size=3", "index", "'1.5'"),
    ("inclusion", "index=&size=3", "index", "'' is not a decimal integer"),
    ("inclusion", "index=%2B1&size=3", "index", "'+1'"),
    ("inclusion", "index=1_0&size=30", "index", "'1_0'"),
    ("inclusion", "index=99999999999999999999&size=3", "index", "is not a decimal integer"),
    ("inclusion", "size=3", "index", "index is missing"),
    ("inclusion", "index=1", "size", "size is missing"),
    ("inclusion", "index=1&index=2&size=3", "index", "given 2 times"),
    ("inclusion", "index=-1&size=3", "index", "index=-1"),
    ("inclusion", "index=0&size=-4", "size", "size=-4"),
    ("inclusion", "index=3&size=3", "index", "index=3: not in a tree of size 3"),
    ("inclusion", "index=0&size=0", "index", "index=0: not in a tree of size 0"),
    ("inclusion", "index=0&size=13", "size", "size=13: the log holds 12 entries"),
    ("consistency", "from=0&to=3", "from", "from=0"),
    ("consistency", "from=-2&to=3", "from", "from=-2"),
    ("consistency", "from=4&to=3", "from", "from=4: larger than to=3"),
    ("consistency", "from=1&to=13", "to", "to=13: the log holds 12 entries"),
    ("consistency", "from=13&to=13", "from", "from=13: the log holds 12 entries"),
    ("consistency", "from=x&to=3", "from", "'x' is not a decimal integer"),
    ("consistency", "from=1", "to", "to is missing"),
]


@pytest.mark.parametrize(("proof", "query", "field", "said"), BAD)
def test_bad_proof_parameters_are_named(
    log: Log, proof: str, query: str, field: str, said: str
) -> None:
    log.fill(12)
    answer = log.client.http.get(f"/log/proof/{proof}?{query}")
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["title"] == "Bad proof request"
    assert problem["field"] == field
    assert said in problem["detail"]
    assert "Traceback" not in answer.text


# -- the checkpoint and its cosignatures -----------------------------------------------------------
def witness_token(runtime: Runtime, name: str) -> WitnessToken:
    """A witness's own SoftHSM2 token (in the state folder's SoftHSM2, as jtca witness init
    makes it), its key generated inside."""
    label = f"witness-{name}"[:32]
    pin = f"pin-{secrets.token_hex(4)}"
    softhsm = runtime.state / "softhsm2"
    create_embedded_token(softhsm, label, pin)
    token = WitnessToken(label, FixedPinSource(pin), module=None, softhsm=softhsm)
    token.generate_key()
    return token


def register_officer(runtime: Runtime, officer_id: str, role: str, province: str | None) -> None:
    with transaction(runtime.engine) as session:
        add_officer_in(
            session,
            officer_id=officer_id,
            name=officer_id,
            roles=[role],
            province=province,
            actor="test set-up",
            now=T0,
        )


def cosignature_line(token: WitnessToken, name: str, note_text: str, at: int) -> str:
    note = SignedNote.parse(note_text)
    return cosign(note, name, token.public_key, at, token.sign_der).line().rstrip("\n")


def refused(call: Any) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value


def test_checkpoint_served_with_cosignatures_and_k_of_n_counted(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = load_policy()
    two = dataclasses.replace(policy, log=dataclasses.replace(policy.log, witness_quorum=2))
    monkeypatch.setattr(log_service, "load_policy", lambda: two)
    http = log.client.http

    none = http.get("/log/checkpoint")
    assert none.status_code == 404
    assert none.headers["content-type"] == "application/problem+json"
    assert none.json()["title"] == "No checkpoint"

    register_officer(log.runtime, "mot-root-1", "ministry-root-officer", None)
    register_officer(log.runtime, "gd-1", "provincial-officer", "440000")
    root = log.client.as_officer("mot-root-1")
    tokens = {name: witness_token(log.runtime, name) for name in ("gd-w", "sc-w", "stranger")}
    names = {"gd-w": "witness.gd.gov.cn/jtca", "sc-w": "witness.sc.gov.cn/jtca", "stranger": "x.y"}

    # registration: a ministry root officer's (log.witness), not a provincial officer's
    denied = refused(
        lambda: log.client.as_officer("gd-1").call(
            log_ops.WITNESS_ADD,
            log_ops.WitnessAddRequest(
                name=names["gd-w"], public_key=tokens["gd-w"].public_key.uncompressed.hex()
            ),
        )
    )
    assert denied.status == 403
    assert "log.witness" in denied.message
    for short in ("gd-w", "sc-w"):
        view = root.call(
            log_ops.WITNESS_ADD,
            log_ops.WitnessAddRequest(
                name=names[short], public_key=tokens[short].public_key.uncompressed.hex()
            ),
        )
        assert (view.state, view.added_by, view.last_size) == ("active", "mot-root-1", None)
        assert view.public_key == tokens[short].public_key.compressed.hex()
    again = refused(
        lambda: root.call(
            log_ops.WITNESS_ADD,
            log_ops.WitnessAddRequest(
                name=names["gd-w"], public_key=tokens["stranger"].public_key.compressed.hex()
            ),
        )
    )
    assert (again.status, again.title) == (409, "Witness registry")
    for bad_name in ("has space", "https://w.example/x", "a+b", ""):
        bad = refused(
            lambda n=bad_name: root.call(  # type: ignore[misc]
                log_ops.WITNESS_ADD,
                log_ops.WitnessAddRequest(
                    name=n, public_key=tokens["stranger"].public_key.compressed.hex()
                ),
            )
        )
        assert bad.status == 422, bad.message
        assert bad.message.startswith("name:"), bad.message
    bad_key = refused(
        lambda: root.call(
            log_ops.WITNESS_ADD, log_ops.WitnessAddRequest(name="w.k", public_key="04" + "00" * 64)
        )
    )
    assert "public_key" in bad_key.message

    log.fill(20)
    old = log.checkpoint(T0 + 500)
    log.fill(7, "more")
    newest = log.checkpoint(T0 + 900)
    served = http.get("/log/checkpoint")
    assert served.status_code == 200
    assert served.headers["content-type"] == "text/plain; charset=utf-8"
    checkpoint, _ = verify_checkpoint(served.text, [Verifier(ORIGIN, log.key.public_key)])
    assert (checkpoint.size, checkpoint.root.hex()) == (newest.size, newest.root)

    anonymous = log.client.signed_in(None)

    def submit(short: str, text: str, size: int, at: int = T0 + 1000) -> log_ops.CosignResult:
        line = cosignature_line(tokens[short], names[short], text, at)
        return anonymous.call(log_ops.COSIGN, log_ops.CosignRequest(size=size, line=line))

    first = submit("gd-w", newest.note, newest.size)
    assert (first.witness, first.cosigners, first.quorum, first.witnessed) == (
        names["gd-w"], 1, 2, False,
    )  # fmt: skip
    second = submit("sc-w", newest.note, newest.size)
    assert (second.cosigners, second.quorum, second.witnessed) == (2, 2, True)
    retry = submit("gd-w", newest.note, newest.size, at=T0 + 2000)
    assert (retry.cosigners, retry.timestamp) == (2, T0 + 1000)  # the first one is kept
    assert log.size() == newest.size  # cosignatures are stored, not appended to the log

    served = http.get("/log/checkpoint").text
    note = SignedNote.parse(served)
    assert sorted(s.name for s in note.signatures) == sorted([ORIGIN, names["gd-w"], names["sc-w"]])
    for short in ("gd-w", "sc-w"):
        verifier = Verifier(names[short], tokens[short].public_key, COSIGNATURE_TYPE)
        assert verify_cosignature(note, verifier) == T0 + 1000
    state = log.client.call(log_ops.CHECKPOINT_GET, Empty())
    assert (state.size, state.cosigners, state.witnessed) == (
        newest.size, sorted([names["gd-w"], names["sc-w"]]), True,
    )  # fmt: skip

    # an older checkpoint can be cosigned too
    older = submit("gd-w", old.note, old.size)
    assert (older.size, older.cosigners, older.witnessed) == (old.size, 1, False)

    # refusals, each named
    stranger = refused(lambda: submit("stranger", newest.note, newest.size))
    assert (stranger.status, stranger.title) == (404, "Unknown witness")
    assert "'x.y' is not registered" in stranger.message
    wrong = refused(lambda: submit("sc-w", old.note, newest.size))  # signed another note
    assert (wrong.status, wrong.title) == (422, "Cosignature refused")
    assert names["sc-w"] in wrong.message
    unknown_size = refused(lambda: submit("sc-w", newest.note, newest.size - 1))
    assert (unknown_size.status, unknown_size.field) == (404, "size")
    assert f"size={newest.size - 1}" in unknown_size.message
    garbage = refused(
        lambda: anonymous.call(
            log_ops.COSIGN, log_ops.CosignRequest(size=newest.size, line="— sc-w !!!")
        )
    )
    assert (garbage.status, garbage.field) == (422, "line")

    # a removed witness no longer counts, and cannot cosign
    removed = root.call(
        log_ops.WITNESS_REMOVE,
        log_ops.WitnessRemoveRequest(name=names["sc-w"], reason="key lost"),
    )
    assert removed.state == "removed"
    after = log.client.call(log_ops.CHECKPOINT_GET, Empty())
    assert (after.cosigners, after.witnessed) == ([names["gd-w"]], False)
    gone = refused(lambda: submit("sc-w", old.note, old.size))
    assert gone.status == 404
    assert "was removed" in gone.message

    listed = root.call(log_ops.WITNESSES, Empty())
    assert listed.quorum == 2
    by_name = {w.name: w for w in listed.witnesses}
    assert (by_name[names["gd-w"]].last_size, by_name[names["sc-w"]].last_size) == (
        newest.size, newest.size,
    )  # fmt: skip
    not_signed_in = refused(lambda: anonymous.call(log_ops.WITNESSES, Empty()))
    assert not_signed_in.status == 401

    with Session(log.runtime.engine) as session:
        actions = [
            (e.action, e.actor, e.subject)
            for e in session.exec(
                select(AuditEvent)
                .where(col(AuditEvent.action).startswith("log."))
                .order_by(col(AuditEvent.seq))
            )
        ]
    assert actions == [
        ("log.witness-add", "mot-root-1", f"witness {names['gd-w']}"),
        ("log.witness-add", "mot-root-1", f"witness {names['sc-w']}"),
        ("log.witness-remove", "mot-root-1", f"witness {names['sc-w']}"),
    ]
    for token in tokens.values():
        token.close()


def test_the_checkpoint_is_served_on_the_unix_socket_too(log: Log, tmp_path: Path) -> None:
    """The embedded service's socket serves the same application: GET /log/checkpoint there."""
    import threading

    import httpx
    import uvicorn

    from ca.api.app import create_app

    log.fill(5)
    made = log.checkpoint()
    socket = tmp_path / "s.sock"
    server = uvicorn.Server(
        uvicorn.Config(create_app(log.runtime), uds=str(socket), log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            threading.Event().wait(0.05)
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://jtca"
        ) as http:
            answer = http.get("/log/checkpoint")
            assert answer.status_code == 200
            assert answer.text == made.note
            proof = http.get("/log/proof/consistency", params={"from": 2, "to": 5})
            assert proof.status_code == 200
            assert proof.json()["to"] == 5
    finally:
        server.should_exit = True
        thread.join(10)


def test_hostile_query_strings_are_named_never_a_500(log: Log) -> None:
    """Whatever the query string, the answer is a proof or a named 400, never a 500."""
    log.fill(3)
    values = ["１２", "0x1", "1e3", " 1", "1 ", "\x00", "%", "9" * 5000, "--1", "١", "∞"]
    rng = random.Random(7)  # noqa: S311 - reproducible bytes, not keys
    values += [bytes(rng.randrange(256) for _ in range(8)).decode("latin-1") for _ in range(20)]
    http = log.client.http
    for value in values:
        for path, good, bad in (
            ("/log/proof/inclusion", {"size": "3"}, "index"),
            ("/log/proof/inclusion", {"index": "0"}, "size"),
            ("/log/proof/consistency", {"to": "3"}, "from"),
            ("/log/proof/consistency", {"from": "1"}, "to"),
        ):
            answer = http.get(path, params={**good, bad: value})
            assert answer.status_code == 400, (path, bad, value, answer.text)
            assert answer.json()["field"] == bad
