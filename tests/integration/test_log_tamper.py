"""Tampering with the database of a real world is detected, and named (issue #13, point 6).

The world: the service in-process on an embedded state folder (SQLite), the example root
ceremony run through its HTTP API (the audit key made in the service's token MOT-LOG, its
certificate written to ``<state>/ceremonies/audit-<serial>.pem``, sealing started, a closing
checkpoint in the checkpoint folder ``<state>/log``), then an operator's work in three batches:
a checkpoint after the first (size A) and after the second (size B), the third left to the seals
(the log holds N entries). It is built once per module and copied for each test.

Each test then takes direct SQL write access to the copy's database — as an attacker with the
database but neither the tokens nor the checkpoint folder would — and ``jtca audit verify``
must say what was done and where: through the ``audit.verify`` operation with no officer signed
in (the embedded state), over an exported bundle with the pure ``ca.log.verify`` (what an
auditor runs with no service), and for some cases through the real ``jtca`` command. The
"rebuilt" cases are honest forgeries: ``rebuild`` recomputes every leaf hash, every subtree in
``log_node`` and the head, exactly as ``ca.log.audit`` would have written them. Only the seals
cannot be forged (they need the service's session key, which never leaves its memory).

Last, the service started on a tampered database must not certify the tampering: its
checkpointer refuses to sign (halts), and only a ministry root officer's recorded ``audit.resume``
lets unsealed entries through — never a cut, rolled-back or rewritten tree.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from officer_desk import DeskClient
from service_fixtures import in_process
from sqlmodel import Session

from ca.client.embedded import mark_state
from ca.core.clock import FixedClock
from ca.core.errors import JtcaError
from ca.log import audit
from ca.log.anchors import anchor_files, audit_verifiers
from ca.log.checkpoint_folder import CheckpointFolder
from ca.log.entry import LogEntry
from ca.log.merkle import MemoryTree
from ca.log.note import Checkpoint, sign_checkpoint
from ca.log.verify import Report, read_checkpoint_files, verify_bundle
from ca.ops import audit as audit_ops
from ca.ops import ceremony as ceremony_ops
from ca.ops import issuance as issuance_ops
from ca.policy.in_force import load_policy
from ca.service import logkeys
from ca.service.policy import adopt_or_check
from ca.service.runtime import Runtime
from ca.store.db import make_engine
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.pkcs11.token import find_module, rescan
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import raw_to_der

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
NOW = 1_795_000_000  # 2026-11-18: the worlds' clock (before any real clock the tests run at)
WITNESS = "赵六 (公证员)"
JTCA = str(Path(sys.executable).with_name("jtca"))


# -- the world -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    state: Path
    ceremony: int  # the size of the root ceremony's closing checkpoint
    a: int  # the second checkpoint's size
    b: int  # the newest checkpoint's size
    n: int  # entries in the log (those after b are sealed only)

    @property
    def db(self) -> Path:
        return self.state / "jtca.db"

    @property
    def folder(self) -> Path:
        return self.state / "log"

    def history(self, size: int) -> str:
        return str(self.folder / "checkpoints" / f"{size:012d}")


def root_ceremony(client: DeskClient) -> ceremony_ops.CeremonyOutcome:
    plan = EXAMPLE.read_text(encoding="utf-8")
    made = client.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=plan))
    shares = [s.share for s in made.pin_shares]
    return client.call(
        ceremony_ops.RUN,
        ceremony_ops.RunRequest(plan=plan, shares=[shares[0], shares[2]], witnesses=[WITNESS]),
    )


def register_issuers(operator: DeskClient, first: int, count: int) -> None:
    for n in range(first, first + count):
        operator.call(
            issuance_ops.REGISTER_ISSUER,
            issuance_ops.RegisterIssuerRequest(issuer_id=f"0211{n:04d}", name=f"发行机构 {n}"),
        )


def size_of(runtime: Runtime) -> int:
    with Session(runtime.engine) as session:
        return audit.tree_size(session)


def checkpoint(runtime: Runtime) -> int:
    made = logkeys.checkpoint_now(runtime, NOW, force=True)
    assert made is not None
    return made.size


@pytest.fixture(scope="module")
def softhsm_restored() -> Iterator[None]:
    previous = os.environ.get(CONF_ENV)
    yield
    if os.environ.get(CONF_ENV) != previous:
        if previous is None:
            os.environ.pop(CONF_ENV, None)
        else:
            os.environ[CONF_ENV] = previous
        rescan(find_module())


def build_world(state: Path, *, work: bool = True) -> World:
    """A fresh world in ``state`` (see the module's docstring); without ``work``, the root
    ceremony alone (another authority, for the replaced-database case)."""
    mark_state(state)
    with in_process(state, clock=FixedClock(NOW)) as (client, runtime):
        # the first start of `jtca serve` adopts the policy file (entry 1, before any seal):
        # the world is a database of today's schema, not one waiting for its first start
        adopt_or_check(runtime, None, now=NOW)
        outcome = root_ceremony(client)
        assert outcome.checkpoint is not None, outcome.warnings
        assert any(Path(a).name.startswith("audit-") for a in outcome.anchors), outcome.anchors
        ceremony = size_of(runtime)
        assert CheckpointFolder(runtime.log_folder).newest_size() == ceremony
        sizes = [ceremony]
        if work:
            operator = client.as_officer("ca-op-1")
            register_issuers(operator, 1, 3)
            sizes.append(checkpoint(runtime))
            register_issuers(operator, 4, 3)
            sizes.append(checkpoint(runtime))
            register_issuers(operator, 7, 3)
        else:
            sizes += [ceremony, ceremony]
        n = size_of(runtime)
    world = World(state, sizes[0], sizes[1], sizes[2], n)
    if work:
        assert world.ceremony < world.a < world.b < world.n, world
    return world


def copy_state(source: Path, target: Path) -> None:
    """A private copy of a state folder, its SoftHSM2 pointed at the copy's tokens."""
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("*.sock"))
    conf = target / "softhsm2" / "softhsm2.conf"
    conf.write_text(conf.read_text().replace(str(source), str(target)))
    os.environ[CONF_ENV] = str(conf)
    rescan(find_module())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, softhsm_restored: None) -> World:
    return build_world(tmp_path_factory.mktemp("tamper-world") / "state")


@pytest.fixture(scope="module")
def other_template(tmp_path_factory: pytest.TempPathFactory, softhsm_restored: None) -> World:
    """Another authority: its own root ceremony, audit key and log (valid in itself)."""
    return build_world(tmp_path_factory.mktemp("other-world") / "state", work=False)


@pytest.fixture
def world(template: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A private copy of the template world, as the current state folder; afterwards SoftHSM2
    is pointed back where it was (and re-read: the module would keep the copy's tokens)."""
    previous = os.environ.get(CONF_ENV)
    state = tmp_path / "state"
    copy_state(template.state, state)
    monkeypatch.setenv("JTCA_STATE", str(state))
    monkeypatch.delenv("JTCA_DATABASE_URL", raising=False)
    monkeypatch.delenv("JTCA_LOG_DIR", raising=False)
    try:
        yield replace(template, state=state)
    finally:
        if previous is None:
            os.environ.pop(CONF_ENV, None)
        else:
            os.environ[CONF_ENV] = previous
        rescan(find_module())


# -- the attacker's tools ------------------------------------------------------------------------
def sql(world: World, *statements: str, **params: Any) -> None:
    engine = make_engine(f"sqlite:///{world.db}")
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def rebuild(world: World, *, head: bool = True) -> None:
    """Recompute every leaf hash from the rows' content, every stored subtree from the leaves
    and (with ``head``) the head from the rows: the database then holds exactly what
    ``ca.log.audit`` would have written for these rows. Seals are left as they are."""
    engine = make_engine(f"sqlite:///{world.db}")
    try:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT seq, at, kind, actor, action, subject, object_sm3, details "
                    "FROM audit_event ORDER BY seq"
                )
            ).all()
            tree = MemoryTree()
            for row in rows:
                leaf = LogEntry(*row).leaf_hash()
                tree.append_leaf_hash(leaf)
                conn.execute(
                    sa.text("UPDATE audit_event SET leaf_hash = :leaf WHERE seq = :seq"),
                    {"leaf": leaf.hex(), "seq": row[0]},
                )
            conn.execute(sa.text("DELETE FROM log_node"))
            for level, idx, digest in tree.nodes():
                conn.execute(
                    sa.text("INSERT INTO log_node (level, idx, hash) VALUES (:l, :i, :h)"),
                    {"l": level, "i": idx, "h": digest.hex()},
                )
            if head:
                conn.execute(sa.text("UPDATE audit_head SET seq = :n"), {"n": len(rows)})
    finally:
        engine.dispose()


def renumber(world: World, from_seq: int, by: int) -> None:
    """Shift every entry from ``from_seq`` on by ``by`` (two steps: no key collision)."""
    sql(
        world,
        "UPDATE audit_event SET seq = seq + 1000000 WHERE seq >= :s",
        "UPDATE audit_event SET seq = seq - 1000000 + :by WHERE seq >= 1000000",
        s=from_seq,
        by=by,
    )


def forged_root(world: World, size: int) -> bytes:
    engine = make_engine(f"sqlite:///{world.db}")
    try:
        with Session(engine) as session:
            return audit.root(session, size)
    finally:
        engine.dispose()


def resign_everything(world: World, signer: SoftwareSigner) -> None:
    """Every checkpoint, in the database and in the folder, replaced by a note over the
    (forged) tree at its size, under the log's own origin, signed by ``signer``."""
    origin = load_policy().log.origin

    def note(size: int) -> str:
        body = Checkpoint(origin, size, forged_root(world, size))
        return sign_checkpoint(
            body, origin, signer.public_key, lambda m: raw_to_der(signer.sign(m))
        ).text()

    engine = make_engine(f"sqlite:///{world.db}")
    try:
        with engine.begin() as conn:
            for cid, size in conn.execute(sa.text("SELECT id, size FROM log_checkpoint")).all():
                conn.execute(
                    sa.text("UPDATE log_checkpoint SET note = :n, root = :r WHERE id = :i"),
                    {"n": note(size), "r": forged_root(world, size).hex(), "i": cid},
                )
    finally:
        engine.dispose()
    for path, data in CheckpointFolder(world.folder).read_all():
        size = int(data.split(b"\n")[1])
        path.write_text(note(size), encoding="utf-8")


# -- the verifiers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """One verification's outcome, whichever way it ran."""

    how: str
    ok: bool
    findings: list[tuple[int, str, str]]  # (entry, problem, message)

    def problems(self) -> set[str]:
        return {p for _, p, _ in self.findings}

    def named(self, problem: str, seq: int | None = None, *needles: str) -> list[str]:
        """The messages of the findings ``problem`` at ``seq`` that name every needle."""
        return [
            m
            for s, p, m in self.findings
            if p == problem and (seq is None or s == seq) and all(x in m for x in needles)
        ]

    def expect(self, problem: str, seq: int | None, *needles: str) -> None:
        assert self.named(problem, seq, *needles), (
            f"{self.how}: no {problem} finding at entry {seq} naming {needles}; found:\n"
            + "\n".join(f"  {s} {p}: {m}" for s, p, m in self.findings)
        )


def by_operation(world: World) -> Verdict:
    """``audit.verify`` at the embedded service, no officer signed in."""
    with in_process(world.state, clock=FixedClock(NOW), seal=False) as (client, _runtime):
        assert client.signer is None
        result = client.call(audit_ops.VERIFY, audit_ops.VerifyRequest())
    return Verdict(
        "audit.verify", result.ok, [(f.seq, f.problem, f.message) for f in result.findings]
    )


def by_bundle(world: World) -> Verdict:
    """The auditor's own check: the database exported, verified by the pure verifier against
    the checkpoint folder and the audit certificate file."""
    engine = make_engine(f"sqlite:///{world.db}")
    try:
        with Session(engine) as session:
            bundle = audit.export_bundle(session)
    finally:
        engine.dispose()
    audit_pems, root_pems = anchor_files(world.state)
    keys = [v.public_key for v in audit_verifiers(audit_pems, root_pems, load_policy().log.origin)]
    report: Report = verify_bundle(
        bundle, checkpoints=read_checkpoint_files([world.folder]), audit_keys=keys
    )
    return Verdict("bundle", report.ok, [(f.seq, f.problem, f.message) for f in report.findings])


def by_command(world: World, *extra: str) -> tuple[int, Verdict, str]:
    """``jtca audit verify --json`` on the embedded state, as an operator types it (it starts
    the embedded service; stopped again here)."""
    from ca.client.embedded import stop

    env = dict(os.environ)
    env["JTCA_STATE"] = str(world.state)
    env.pop("JTCA_DATABASE_URL", None)
    env.pop("JTCA_SESSION", None)
    try:
        result = subprocess.run(
            [JTCA, "audit", "verify", "--json", *extra],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
    finally:
        stop(world.state)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout, (result.returncode, result.stderr)
    data = json.loads(result.stdout)
    verdict = Verdict(
        "jtca audit verify",
        data["ok"],
        [(f["seq"], f["problem"], f["message"]) for f in data["findings"]],
    )
    return result.returncode, verdict, result.stderr


def by_bundle_command(world: World) -> tuple[int, Verdict]:
    """``jtca audit verify --bundle`` on an exported bundle: no service at all; the checkpoint
    folder given by hand, the audit certificate from the state folder's ceremonies/."""
    engine = make_engine(f"sqlite:///{world.db}")
    try:
        with Session(engine) as session:
            bundle = world.state.parent / "bundle.json"
            bundle.write_bytes(audit.export_bundle(session))
    finally:
        engine.dispose()
    env = dict(os.environ)
    env["JTCA_STATE"] = str(world.state)
    env["JTCA_URL"] = "https://127.0.0.1:1"  # nothing answers there: no service is asked
    result = subprocess.run(
        [
            JTCA,
            "audit",
            "verify",
            "--json",
            "--bundle",
            str(bundle),
            "--checkpoint",
            str(world.folder),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout, (result.returncode, result.stderr)
    data = json.loads(result.stdout)
    verdict = Verdict(
        "jtca audit verify --bundle",
        data["ok"],
        [(f["seq"], f["problem"], f["message"]) for f in data["findings"]],
    )
    return result.returncode, verdict


def verdicts(world: World) -> list[Verdict]:
    return [by_operation(world), by_bundle(world)]


# -- the intact world ----------------------------------------------------------------------------
def test_an_intact_world_verifies(world: World) -> None:
    for verdict in verdicts(world):
        assert verdict.ok, verdict.findings
    with in_process(world.state, clock=FixedClock(NOW), seal=False) as (client, _runtime):
        result = client.call(audit_ops.VERIFY, audit_ops.VerifyRequest())
    assert (result.events, result.newest_checkpoint) == (world.n, world.b)
    assert result.sealed == world.n - world.b
    assert result.newest_source is not None
    assert result.anchors
    assert all("audit-" in a for a in result.anchors)


def test_the_first_start_after_the_policy_upgrade_seals_its_adoption(world: World) -> None:
    """A database from before policy versions (issue #16) holds the root ceremony and no policy
    in force: the upgraded service's first start adopts the policy file, and that entry, after
    the newest checkpoint, carries a seal like every entry the service appends (an unsealed one
    halts the log: the CI failure of 2026-12-04)."""
    sql(world, "DELETE FROM policy_version")
    status, verdict, stderr = by_command(world)
    assert verdict.ok, (verdict.findings, stderr)
    assert status == 0
    engine = make_engine(f"sqlite:///{world.db}")
    try:
        with engine.connect() as conn:
            adoptions = conn.execute(
                sa.text(
                    "SELECT seq, seal, seal_key FROM audit_event "
                    "WHERE action = 'policy.adopt' ORDER BY seq"
                )
            ).all()
            halts = conn.execute(
                sa.text("SELECT count(*) FROM audit_event WHERE action = 'log.halted'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert len(adoptions) == 2, adoptions  # the world's own (entry 1), the upgrade's
    first, again = adoptions
    assert first.seq == 1  # before the root ceremony: nothing seals
    assert first.seal is None
    assert again.seq > world.n, again
    assert again.seal, again
    assert again.seal_key, again
    assert halts == 0


def test_jtca_audit_verify_on_the_embedded_state_needs_no_officer(world: World) -> None:
    status, verdict, stderr = by_command(world)
    assert verdict.ok, (verdict.findings, stderr)
    assert status == 0
    status, verdict = by_bundle_command(world)
    assert verdict.ok, verdict.findings
    assert status == 0


# -- rows edited, deleted, swapped, inserted -----------------------------------------------------
def between(world: World) -> int:
    """An entry between the two operator checkpoints (covered by B, not by A)."""
    return world.a + 2


def test_an_edited_row_is_named(world: World) -> None:
    k = between(world)
    sql(world, "UPDATE audit_event SET actor = 'mallory' WHERE seq = :k", k=k)
    status, by_hand = by_bundle_command(world)
    assert status == 8
    for verdict in [*verdicts(world), by_hand]:
        verdict.expect("edited", k, f"entry {k} was edited", "leaf hash")
        verdict.expect("rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}")
        assert verdict.named("rewritten", world.a + 1, world.history(world.b))
        assert verdict.problems() == {"edited", "node", "rewritten"}, verdict.findings


def test_an_edit_with_its_leaf_and_nodes_rebuilt_is_rewritten_between_checkpoints(
    world: World,
) -> None:
    k = between(world)
    sql(world, "UPDATE audit_event SET subject = 'nothing happened' WHERE seq = :k", k=k)
    rebuild(world)
    for verdict in verdicts(world):
        assert verdict.problems() == {"rewritten"}, verdict.findings
        verdict.expect("rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}")
        sources = {
            m.split(" do not give the root ")[1].split(" signed;")[0]
            for m in verdict.named("rewritten")
        }
        assert world.history(world.b) in sources
        assert str(world.folder / "checkpoint") in sources
        assert any(
            s.startswith("database checkpoint") or s.startswith("bundle checkpoint")
            for s in sources
        ), sources
        assert not verdict.named("rewritten", None, f"root {world.history(world.a)} ")


def test_an_edit_after_the_newest_checkpoint_rebuilt_is_unsealed(world: World) -> None:
    k = world.b + 2
    sql(world, "UPDATE audit_event SET details = '{}' WHERE seq = :k", k=k)
    rebuild(world)
    for verdict in verdicts(world):
        assert verdict.findings == [
            (
                k,
                "unsealed",
                verdict.named(
                    "unsealed",
                    k,
                    f"entry {k} is newer than the newest checkpoint ({world.b})",
                    "its seal does not verify under seal key",
                )[0],
            )
        ], verdict.findings


def test_a_deleted_row_is_named(world: World) -> None:
    k = between(world)
    sql(world, "DELETE FROM audit_event WHERE seq = :k", k=k)
    for verdict in verdicts(world):
        verdict.expect("deleted", k, f"entries {k} are missing before entry {k + 1}")
        verdict.expect("rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}")
    rebuild(world)  # leaves and subtrees made to fit the rows that are left
    for verdict in verdicts(world):
        verdict.expect("deleted", k, f"entries {k} are missing")
        verdict.expect("rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}")
        assert "node" not in verdict.problems()


def test_deleted_rows_renumbered_and_rebuilt_are_rewritten(world: World) -> None:
    k = between(world)
    sql(world, "DELETE FROM audit_event WHERE seq = :k", k=k)
    renumber(world, k + 1, -1)
    rebuild(world)
    for verdict in verdicts(world):
        verdict.expect("rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}")
        # the entries after B moved: their seals cover other leaves
        for seq in range(world.b + 1, world.n):
            verdict.expect("unsealed", seq)
        assert verdict.problems() == {"rewritten", "unsealed"}, verdict.findings


def swap(world: World, i: int, j: int) -> None:
    sql(
        world,
        "UPDATE audit_event SET seq = -1 WHERE seq = :i",
        "UPDATE audit_event SET seq = :i WHERE seq = :j",
        "UPDATE audit_event SET seq = :j WHERE seq = -1",
        i=i,
        j=j,
    )


def test_two_swapped_rows_are_named(world: World) -> None:
    i, j = world.a + 1, world.a + 3
    swap(world, i, j)
    for verdict in verdicts(world):
        verdict.expect("edited", i, f"entry {i} was edited")
        verdict.expect("edited", j, f"entry {j} was edited")
        verdict.expect("rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}")
    rebuild(world)
    for verdict in verdicts(world):
        assert verdict.problems() == {"rewritten"}, verdict.findings
        verdict.expect("rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}")


def test_an_inserted_row_renumbered_and_rebuilt_is_rewritten(world: World) -> None:
    k = between(world)
    renumber(world, k, +1)
    sql(
        world,
        "INSERT INTO audit_event (seq, at, kind, actor, action, subject, object_sm3, details, "
        "leaf_hash) VALUES (:k, :at, 'event', 'ca-op-1', 'issuer.register', 'issuer 02119999',"
        " NULL, '{}', '')",
        k=k,
        at=NOW,
    )
    rebuild(world)
    for verdict in verdicts(world):
        verdict.expect("rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}")
        for seq in range(world.b + 1, world.n + 2):
            verdict.expect("unsealed", seq)
        assert verdict.problems() == {"rewritten", "unsealed"}, verdict.findings


def test_a_rebuild_after_an_edit_in_the_ceremony_is_rewritten_from_the_first_entry(
    world: World,
) -> None:
    """The root ceremony's own entries: the closing checkpoint covers them."""
    sql(world, "UPDATE audit_event SET actor = 'someone else' WHERE seq = 2")
    rebuild(world)
    for verdict in verdicts(world):
        verdict.expect("rewritten", 1, f"entries 1–{world.ceremony}", world.history(world.ceremony))
        verdict.expect("rewritten", 1, f"entries 1–{world.b}")
        assert verdict.problems() == {"rewritten"}, verdict.findings


# -- the tail --------------------------------------------------------------------------------------
def test_a_tail_cut_leaves_stale_subtrees_that_are_named(world: World) -> None:
    """Rows after the newest checkpoint deleted, nothing else touched: the head still counts
    them, and the subtree their leaves completed is still stored and no longer fits."""
    sql(world, "DELETE FROM audit_event WHERE seq > :m", m=world.b + 1)
    for verdict in verdicts(world):
        assert verdict.problems() == {"node", "deleted"}, verdict.findings
        verdict.expect("deleted", world.b + 2, f"{world.b + 2}–{world.n}")
        verdict.expect("node", None, "is not the one the entries give")


def test_a_tail_cut_with_the_head_left_is_named(world: World) -> None:
    """Rows after the newest checkpoint deleted and the subtrees cleaned up; the head still
    counts them (the size the service served proofs for)."""
    sql(world, "DELETE FROM audit_event WHERE seq > :m", m=world.b + 1)
    rebuild(world, head=False)
    for verdict in verdicts(world):
        verdict.expect("deleted", world.b + 2, f"{world.b + 2}–{world.n}")


def test_a_forged_row_appended_after_the_newest_checkpoint_is_unsealed(world: World) -> None:
    """The code run by hand against the database: a correct leaf hash, correct subtrees, the
    head moved on — but no seal."""
    engine = make_engine(f"sqlite:///{world.db}")
    previous = audit.current_sealer()
    audit.install_sealer(None)
    try:
        with Session(engine) as session, session.begin():
            audit.append(
                session,
                actor="ca-op-1",
                action="issuer.register",
                subject="issuer 02119999",
                details={"name": "not a real issuer"},
                at=NOW,
            )
    finally:
        audit.install_sealer(previous)
        engine.dispose()
    forged = world.n + 1
    for verdict in verdicts(world):
        assert verdict.problems() == {"unsealed"}, verdict.findings
        verdict.expect(
            "unsealed",
            forged,
            f"entry {forged} is newer than the newest checkpoint",
            "has no seal",
            "not written by the service",
        )


# -- checkpoints -----------------------------------------------------------------------------------
def test_checkpoints_resigned_with_another_key_are_refused(world: World) -> None:
    k = between(world)
    sql(world, "UPDATE audit_event SET subject = 'nothing happened' WHERE seq = :k", k=k)
    rebuild(world)
    resign_everything(world, SoftwareSigner.generate())
    for verdict in verdicts(world):
        assert verdict.problems() == {"bad-checkpoint", "unanchored"}, verdict.findings
        for source in (
            str(world.folder / "checkpoint"),
            world.history(world.b),
            world.history(world.ceremony),
        ):
            verdict.expect("bad-checkpoint", 0, source, "not signed by a trusted audit key")
        verdict.expect("unanchored", 0, "no checkpoint signed by a trusted audit key")


def test_the_anchor_is_the_certificate_file_not_the_database(world: World) -> None:
    """The attacker also puts their key in the database as the audit key: refused all the
    same, for the trusted key comes from ceremonies/audit-<serial>.pem."""
    mallory = SoftwareSigner.generate()
    k = between(world)
    sql(world, "UPDATE audit_event SET subject = 'nothing happened' WHERE seq = :k", k=k)
    rebuild(world)
    resign_everything(world, mallory)
    sql(
        world,
        "UPDATE key_record SET public_key = :p WHERE key_class = 'audit'",
        p=mallory.public_key.compressed.hex(),
    )
    for verdict in verdicts(world):
        assert verdict.problems() == {"bad-checkpoint", "unanchored"}, verdict.findings
        verdict.expect("bad-checkpoint", 0, world.history(world.b), "not signed by a trusted")


def test_deleted_database_checkpoints_leave_the_folder_to_catch_an_edit(world: World) -> None:
    k = between(world)
    sql(world, "UPDATE audit_event SET subject = 'nothing happened' WHERE seq = :k", k=k)
    rebuild(world)
    sql(world, "DELETE FROM log_checkpoint")
    for verdict in verdicts(world):
        assert verdict.problems() == {"rewritten"}, verdict.findings
        verdict.expect(
            "rewritten", world.a + 1, f"entries {world.a + 1}–{world.b}", world.history(world.b)
        )
        assert all(
            "database checkpoint" not in m and "bundle checkpoint" not in m
            for _, _, m in verdict.findings
        )


def test_a_cut_back_past_a_checkpoint_with_its_checkpoints_deleted_is_rolled_back(
    world: World,
) -> None:
    m = world.a + 1
    sql(world, "DELETE FROM audit_event WHERE seq > :m", "DELETE FROM log_checkpoint", m=m)
    rebuild(world)
    for verdict in verdicts(world):
        assert verdict.problems() == {"rolled-back"}, verdict.findings
        verdict.expect(
            "rolled-back",
            m + 1,
            world.history(world.b),
            f"covers {world.b} entries; the database holds {m}",
            f"entries {m + 1}–{world.b} were cut off",
        )
        verdict.expect("rolled-back", m + 1, str(world.folder / "checkpoint"))


# -- the whole database --------------------------------------------------------------------------
def test_the_database_replaced_by_another_authoritys_is_caught(
    world: World, other_template: World
) -> None:
    """Another authority's database, valid in itself (its own root ceremony, audit key, log and
    checkpoints), copied over this one's: this world's folder and audit certificate catch it."""
    other = other_template.n
    assert other == world.ceremony  # the same ceremony file: as many entries, another tree
    shutil.copyfile(other_template.db, world.db)
    for suffix in ("-wal", "-shm"):
        Path(f"{world.db}{suffix}").unlink(missing_ok=True)
    for verdict in verdicts(world):
        assert verdict.problems() == {"bad-checkpoint", "rewritten", "rolled-back"}, (
            verdict.findings
        )
        # its own checkpoint is signed by its own audit key: not the one of this certificate
        verdict.expect("bad-checkpoint", 0, "checkpoint 1", "not signed by a trusted audit key")
        # this authority's checkpoints, from its folder: the first does not fit the other
        # history, the later ones cover more than it holds
        verdict.expect(
            "rewritten",
            1,
            world.history(world.ceremony),
            f"entries 1–{world.ceremony}",
            "or the database is another log",
        )
        for size in (world.a, world.b):
            verdict.expect(
                "rolled-back",
                other + 1,
                world.history(size),
                f"covers {size} entries; the database holds {other}",
            )


def test_the_database_rolled_back_to_an_earlier_copy_of_itself_is_caught(world: World) -> None:
    earlier = world.state / "jtca-earlier.db"
    with closing(sqlite3.connect(world.db)) as live, closing(sqlite3.connect(earlier)) as copy:
        live.backup(copy)
    with in_process(world.state, clock=FixedClock(NOW + 60)) as (client, runtime):
        logkeys.start_sealing(runtime, NOW + 60)
        register_issuers(client.as_officer("ca-op-1"), 20, 2)
        newest = checkpoint(runtime)
    assert newest > world.n
    os.replace(earlier, world.db)
    for suffix in ("-wal", "-shm"):
        Path(f"{world.db}{suffix}").unlink(missing_ok=True)
    for verdict in verdicts(world):
        assert verdict.problems() == {"rolled-back"}, verdict.findings
        verdict.expect(
            "rolled-back",
            world.n + 1,
            world.history(newest),
            f"covers {newest} entries; the database holds {world.n}",
            "an earlier copy of itself",
        )


def test_jtca_audit_verify_names_a_rollback_and_fails(world: World) -> None:
    """The operator's command, on the embedded state: exit status 8 and the finding."""
    m = world.a + 1
    sql(world, "DELETE FROM audit_event WHERE seq > :m", "DELETE FROM log_checkpoint", m=m)
    rebuild(world)
    status, verdict, stderr = by_command(world)
    assert status == 8, stderr
    verdict.expect("rolled-back", None, world.history(world.b), f"covers {world.b} entries")


def test_jtca_audit_verify_takes_the_audit_certificate_given(world: World) -> None:
    """``--audit-cert`` names the trust anchor by hand (an auditor's own copy of the file)."""
    audit_pems, root_pems = anchor_files(world.state)
    status, verdict, stderr = by_command(
        world, "--audit-cert", str(audit_pems[0]), "--root-cert", str(root_pems[0])
    )
    assert verdict.ok, (verdict.findings, stderr)
    assert status == 0


# -- the service itself never signs over tampering -----------------------------------------------
def tamper_after_newest(world: World) -> None:
    sql(world, "UPDATE audit_event SET details = '{}' WHERE seq = :k", k=world.b + 2)
    rebuild(world)


def tamper_checkpoints_deleted(world: World) -> None:
    sql(
        world,
        "UPDATE audit_event SET subject = 'nothing happened' WHERE seq = :k",
        k=between(world),
    )
    rebuild(world)
    sql(world, "DELETE FROM log_checkpoint")


def tamper_cut_back(world: World) -> None:
    sql(
        world, "DELETE FROM audit_event WHERE seq > :m", "DELETE FROM log_checkpoint", m=world.a + 1
    )
    rebuild(world)


def tamper_rolled_back(world: World) -> None:
    earlier = world.state / "jtca-earlier.db"
    with closing(sqlite3.connect(world.db)) as live, closing(sqlite3.connect(earlier)) as copy:
        live.backup(copy)
    with in_process(world.state, clock=FixedClock(NOW + 60)) as (client, runtime):
        logkeys.start_sealing(runtime, NOW + 60)
        register_issuers(client.as_officer("ca-op-1"), 20, 2)
        checkpoint(runtime)
    os.replace(earlier, world.db)
    for suffix in ("-wal", "-shm"):
        Path(f"{world.db}{suffix}").unlink(missing_ok=True)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(tamper_after_newest, id="edited-after-newest"),
        pytest.param(tamper_checkpoints_deleted, id="checkpoints-deleted"),
        pytest.param(tamper_cut_back, id="cut-back-past-a-checkpoint"),
        pytest.param(tamper_rolled_back, id="rolled-back-copy"),
    ],
)
def test_the_service_does_not_sign_over_a_tampered_log(world: World, tamper: Any) -> None:
    """The service started on a tampered database seals and checkpoints as usual — but its
    checkpointer must refuse to certify the tampered log (else the forgery gets a valid
    checkpoint from the real audit key)."""
    tamper(world)
    before = {p.name: p.read_bytes() for p in (world.folder / "checkpoints").iterdir()}
    newest = (world.folder / "checkpoint").read_bytes()
    with in_process(world.state, clock=FixedClock(NOW + 120)) as (_client, runtime):
        logkeys.start_sealing(runtime, NOW + 120)
        with pytest.raises(JtcaError):
            logkeys.checkpoint_now(runtime, NOW + 120, force=True)
        logkeys.stop_sealing(runtime)
    after = {p.name: p.read_bytes() for p in (world.folder / "checkpoints").iterdir()}
    assert after == before
    assert (world.folder / "checkpoint").read_bytes() == newest


def register_a_seal_key(world: World) -> int:
    """The service started again: its new seal key registered in an entry of its own."""
    with in_process(world.state, clock=FixedClock(NOW + 60)) as (_client, runtime):
        key_seq = logkeys.start_sealing(runtime, NOW + 60)
    assert key_seq == world.n + 1
    return key_seq


def test_a_restarted_services_registration_verifies(world: World) -> None:
    register_a_seal_key(world)
    for verdict in verdicts(world):
        assert verdict.ok, verdict.findings


def test_an_edited_seal_key_registration_after_the_newest_checkpoint_is_named(
    world: World,
) -> None:
    key_seq = register_a_seal_key(world)
    sql(world, "UPDATE audit_event SET subject = 'anything at all' WHERE seq = :k", k=key_seq)
    rebuild(world)
    for verdict in verdicts(world):
        assert not verdict.ok
        verdict.expect("unsealed", key_seq)


# -- the way out of a halt -----------------------------------------------------------------------
def forge_unsealed(world: World, action: str = "issuer.register", **details: Any) -> int:
    """A row appended by hand against the database: right leaf hash and subtrees, no seal."""
    engine = make_engine(f"sqlite:///{world.db}")
    previous = audit.current_sealer()
    audit.install_sealer(None)
    try:
        with Session(engine) as session, session.begin():
            made = audit.append(
                session,
                actor="ca-op-1",
                action=action,
                subject="issuer 02119999",
                details=details or {"name": "not a real issuer"},
                at=NOW,
            )
            return made.seq
    finally:
        audit.install_sealer(previous)
        engine.dispose()


def test_a_halt_is_resumed_by_a_root_officer_and_recorded(world: World) -> None:
    """The checkpointer halts on a forged row; a ministry root officer who investigated it
    lets it through with a reason; the finding stays in the log (log.halted, log.resume), the
    next checkpoint covers the row, and the log verifies again. Nobody else can, a resume
    forged in the database lets nothing through, and what is not a missing seal cannot be
    resumed."""
    forged = forge_unsealed(world)
    with in_process(world.state, clock=FixedClock(NOW + 120)) as (client, runtime):
        logkeys.start_sealing(runtime, NOW + 120)
        with pytest.raises(logkeys.LogHalted, match=f"entry {forged} of the audit log"):
            logkeys.checkpoint_now(runtime, NOW + 120, force=True)
        verdict = client.call(audit_ops.VERIFY, audit_ops.VerifyRequest())
        assert verdict.halted is not None
        assert f"entry {forged}" in verdict.halted
        resume = audit_ops.ResumeRequest(through=forged, reason="case 2026-17: test row")
        with pytest.raises(JtcaError, match=r"may not audit\.resume"):
            client.as_officer("ca-op-1").call(audit_ops.RESUME, resume)
        with pytest.raises(JtcaError, match="no entry up to it lacks a valid seal"):
            client.as_officer("mot-root-1").call(
                audit_ops.RESUME, audit_ops.ResumeRequest(through=forged - 1, reason="too early")
            )
        done = client.as_officer("mot-root-1").call(audit_ops.RESUME, resume)
        assert done.entries == [forged]
        assert done.checkpoint is not None
        assert done.checkpoint > forged
        assert logkeys.halted(runtime) is None
        after = client.call(audit_ops.VERIFY, audit_ops.VerifyRequest())
        assert after.ok, after.findings
        assert after.halted is None
        assert after.newest_checkpoint == done.checkpoint
        with Session(runtime.engine) as session:
            actions = [audit.entry(session, n).action for n in range(forged, done.checkpoint + 1)]
        assert "log.halted" in actions
        assert "log.resume" in actions
        logkeys.stop_sealing(runtime)


def test_a_resume_forged_in_the_database_lets_nothing_through(world: World) -> None:
    forged = forge_unsealed(world)
    forge_unsealed(world, action="log.resume", through=forged, reason="trust me")
    with in_process(world.state, clock=FixedClock(NOW + 120)) as (_client, runtime):
        logkeys.start_sealing(runtime, NOW + 120)
        with pytest.raises(logkeys.LogHalted, match=f"entry {forged} of the audit log"):
            logkeys.checkpoint_now(runtime, NOW + 120, force=True)
        logkeys.stop_sealing(runtime)


def test_a_rolled_back_log_cannot_be_resumed(world: World) -> None:
    """Only missing seals can be let through: a log that no longer extends the checkpoints
    outside its database would contradict what the witnesses cosigned."""
    tamper_cut_back(world)
    with in_process(world.state, clock=FixedClock(NOW + 120)) as (client, runtime):
        logkeys.start_sealing(runtime, NOW + 120)
        with pytest.raises(JtcaError, match="cannot be resumed: the log"):
            client.as_officer("mot-root-1").call(
                audit_ops.RESUME, audit_ops.ResumeRequest(through=1, reason="restore")
            )
        logkeys.stop_sealing(runtime)
