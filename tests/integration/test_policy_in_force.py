"""The policy in force (issue #16, point 4): validated at start, adopted once and audited with
its SM3, named in every decision's audit event, changed only under dual control (a signed
proposal, another officer's token-signed approval), and refused at the start of a service whose
file is not the approved policy. In-process on SQLite and PostgreSQL, then ``jtca serve`` and
``jtca policy check`` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from service_fixtures import in_process
from sqlmodel import Session, col, select
from test_service_lists import client_env, own_softhsm, refused, service_world  # noqa: F401

from ca.ops import approvals as approval_ops
from ca.ops import policy as ops
from ca.ops.base import Empty
from ca.policy.in_force import PolicyError, load_policy, policy_in_force
from ca.service.policy import PolicyNotInForce, adopt_or_check, refresh
from ca.store.models import AuditEvent
from hsm.sm.sm3 import sm3
from policies.rules import DEFAULT_POLICY_PATH

JTCA = str(Path(sys.executable).with_name("jtca"))
ROOTS = (("root-1", "ministry-root-officer"), ("root-2", "ministry-root-officer"))
EMERGENCY_ONE = '"list.emergency-publish" = 1'
EMERGENCY_TWO = '"list.emergency-publish" = 2'


def shipped() -> str:
    return DEFAULT_POLICY_PATH.read_text(encoding="utf-8")


def stricter() -> str:
    """The shipped policy asking two approvers of an emergency publication instead of one."""
    text = shipped()
    assert EMERGENCY_ONE in text
    return text.replace(EMERGENCY_ONE, EMERGENCY_TWO, 1)


def events(engine, action: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        rows = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.seq))
        ).all()
        return [{"actor": r.actor, "subject": r.subject, **json.loads(r.details)} for r in rows]


@pytest.mark.usefixtures("own_softhsm")
def test_a_policy_change_under_dual_control(database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = database
    old_sm3 = sm3(DEFAULT_POLICY_PATH.read_bytes()).hex()
    new_text = stricter()
    new_sm3 = sm3(new_text.encode()).hex()
    with in_process(tmp_path / "state", url=url) as (client, runtime):
        try:
            service_world(client, runtime, ROOTS)  # auditor-1: the ceremony's
            # the first start adopts the file, audited with its SM3
            adopted = adopt_or_check(runtime, DEFAULT_POLICY_PATH)
            assert adopted.sm3 == old_sm3 == runtime.policy_sm3
            (adopt,) = events(runtime.engine, "policy.adopt")
            assert adopt["policy_sm3"] == old_sm3
            assert adopt["actor"] == "jtca"
            assert adopt_or_check(runtime, DEFAULT_POLICY_PATH).sm3 == old_sm3  # again: no event
            assert len(events(runtime.engine, "policy.adopt")) == 1

            # another file is not the policy in force: refused, naming the command
            other = tmp_path / "other.toml"
            other.write_text(new_text, encoding="utf-8")
            with pytest.raises(PolicyNotInForce) as caught:
                adopt_or_check(runtime, other)
            assert "jtca policy propose" in caught.value.message
            assert str(other) in caught.value.message
            assert old_sm3 in caught.value.message
            # a bad file: its name, the field and the value
            bad = tmp_path / "bad.toml"
            bad.write_text(
                shipped().replace("session_idle_seconds = 900", "session_idle_seconds = -5")
            )
            with pytest.raises(PolicyError) as caught_bad:
                adopt_or_check(runtime, bad)
            assert str(bad) in caught_bad.value.message
            assert "session_idle_seconds" in caught_bad.value.message

            root1, root2 = client.as_officer("root-1"), client.as_officer("root-2")
            auditor = client.as_officer("auditor-1")
            shown = root1.call(ops.SHOW, ops.ShowRequest())
            assert (shown.version, shown.sm3, shown.state) == (1, old_sm3, "in-force")
            assert shown.text == shipped()

            # only an officer the policy lets change it; a bad file named by its field
            denied = refused(lambda: auditor.call(ops.PROPOSE, ops.ProposeRequest(text=new_text)))
            assert "policy.change" in str(denied)
            broken = refused(
                lambda: root1.call(
                    ops.PROPOSE, ops.ProposeRequest(text=shipped().replace("= 900", "= -5", 1))
                )
            )
            assert "session_idle_seconds" in str(broken)
            assert broken.status == 422
            locked = refused(
                lambda: root1.call(
                    ops.PROPOSE,
                    ops.ProposeRequest(text=shipped().replace('"policy.change",', "", 1)),
                )
            )
            assert "no role is granted policy.change" in str(locked)
            same = refused(lambda: root1.call(ops.PROPOSE, ops.ProposeRequest(text=shipped())))
            assert "already in force" in str(same)

            proposed = root1.call(ops.PROPOSE, ops.ProposeRequest(text=new_text, reason="drill"))
            assert (proposed.state, proposed.sm3, proposed.required) == ("proposed", new_sm3, 1)
            assert load_policy().approvals_required("list.emergency-publish") == 1  # not yet
            subject = f"policy {proposed.version}"

            # the proposer cannot approve; a signature over another subject does not count
            at, signature = root1.decision(subject)
            own = refused(
                lambda: root1.call(
                    ops.APPROVE,
                    ops.DecideRequest(proposal=proposed.version, at=at, signature=signature),
                )
            )
            assert "dual control" in str(own)
            at, wrong = root2.decision(subject, approve=False)  # sent as an approval
            forged = refused(
                lambda: root2.call(
                    ops.APPROVE,
                    ops.DecideRequest(proposal=proposed.version, at=at, signature=wrong),
                )
            )
            assert forged.status == 401 or "signed decision" in str(forged)
            assert root1.call(ops.SHOW, ops.ShowRequest()).sm3 == old_sm3

            at, signature = root2.decision(subject)
            approved = root2.call(
                ops.APPROVE,
                ops.DecideRequest(proposal=proposed.version, at=at, signature=signature),
            )
            assert (approved.state, approved.sm3, approved.running_sm3) == (
                "in-force",
                new_sm3,
                new_sm3,
            )
            evidence = root1.call(
                approval_ops.EVIDENCE, approval_ops.SubjectRequest(subject=subject)
            )
            assert [(d.officer, d.decision) for d in evidence.decisions] == [("root-2", "approve")]
            assert evidence.request.officer == "root-1"
            # in force in this service at once, without a restart
            assert load_policy().approvals_required("list.emergency-publish") == 2
            running = policy_in_force()
            assert running is not None
            assert running.sm3 == new_sm3
            history = root1.call(ops.HISTORY, Empty()).versions
            assert [(v.version, v.state) for v in history] == [(1, "superseded"), (2, "in-force")]

            # the audit: proposal and decision under the old SM3, the change naming both
            (propose,) = events(runtime.engine, "policy.propose")
            assert (propose["policy_sm3"], propose["proposed_sm3"]) == (old_sm3, new_sm3)
            (approve,) = events(runtime.engine, "policy.approve")
            assert approve["policy_sm3"] == old_sm3
            assert approve["state"] == "approved"
            assert approve["statement"]
            assert approve["signature"]
            assert approve["certificate_serial"]
            (change,) = events(runtime.engine, "policy.change")
            assert (change["from_sm3"], change["to_sm3"], change["policy_sm3"]) == (
                old_sm3,
                new_sm3,
                new_sm3,
            )
            refusals = events(runtime.engine, "auth.refused")
            assert refusals
            assert all(r["policy_sm3"] in (old_sm3, new_sm3) for r in refusals)

            # a decision after the change names the new policy
            back = root2.call(ops.PROPOSE, ops.ProposeRequest(text=shipped(), reason="back"))
            at, signature = root1.decision(f"policy {back.version}", approve=False)
            rejected = root1.call(
                ops.REJECT,
                ops.DecideRequest(
                    proposal=back.version, at=at, signature=signature, reason="keep two"
                ),
            )
            assert rejected.state == "rejected"
            (reject,) = events(runtime.engine, "policy.reject")
            assert reject["policy_sm3"] == new_sm3
            assert reject["reason"] == "keep two"
            assert load_policy().approvals_required("list.emergency-publish") == 2

            # a service (re)started with the old file named is refused; with the new one it runs
            with pytest.raises(PolicyNotInForce):
                adopt_or_check(runtime, DEFAULT_POLICY_PATH)
            assert adopt_or_check(runtime, other).sm3 == new_sm3
            # with no file named (the shipped default, e.g. after an upgrade changed it), it runs
            # under the policy in force, not the shipped file, and writes no event
            before = len(events(runtime.engine, "policy.adopt"))
            kept = adopt_or_check(runtime, None)
            assert kept.sm3 == new_sm3
            assert kept.path is None
            assert load_policy().approvals_required("list.emergency-publish") == 2
            assert len(events(runtime.engine, "policy.adopt")) == before
            # $JTCA_POLICY names a file as --policy does: refused when not in force
            os.environ["JTCA_POLICY"] = str(DEFAULT_POLICY_PATH)
            try:
                with pytest.raises(PolicyNotInForce):
                    adopt_or_check(runtime, None)
            finally:
                del os.environ["JTCA_POLICY"]

            # another process's approved change reaches this one at its next look-up
            runtime.policy_sm3, runtime.policy_checked = old_sm3, 0.0
            refresh(runtime)
            assert runtime.policy_sm3 == new_sm3
        finally:
            runtime.close()
    assert policy_in_force() is None  # closed: this process reads its file again


def _serve(env: dict[str, str], uds: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [JTCA, "serve", "--uds", str(uds), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until_listening(process: subprocess.Popen[str], uds: Path) -> None:
    from ca.client.embedded import answers

    for _ in range(1200):
        if answers(uds) or process.poll() is not None:
            break
        time.sleep(0.1)
    assert answers(uds), process.communicate(timeout=30)


def test_serve_validates_adopts_and_refuses(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = client_env(state, f"sqlite:///{tmp_path / 'jtca.db'}")
    env.pop("JTCA_POLICY", None)
    subprocess.run([JTCA, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=300)
    uds = tmp_path / "jtca.sock"

    bad = tmp_path / "bad.toml"
    bad.write_text(shipped().replace("session_idle_seconds = 900", 'session_idle_seconds = "x"'))
    process = _serve(env, uds, "--policy", str(bad))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 3
    assert "Traceback" not in err
    assert str(bad) in err
    assert "session_idle_seconds" in err
    assert not uds.exists()

    checked = subprocess.run(
        [JTCA, "policy", "check", str(bad)], env=env, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 3
    assert "session_idle_seconds" in checked.stderr
    assert "Traceback" not in checked.stderr
    good = subprocess.run(
        [JTCA, "policy", "check", str(DEFAULT_POLICY_PATH), "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(good.stdout)["sm3"] == sm3(DEFAULT_POLICY_PATH.read_bytes()).hex()

    # the first start adopts the shipped file ($JTCA_POLICY unset)
    process = _serve(env, uds)
    try:
        _until_listening(process, uds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    assert not uds.exists()  # a clean stop removes its socket

    other = tmp_path / "other.toml"
    other.write_text(stricter(), encoding="utf-8")
    process = _serve({**env, "JTCA_POLICY": str(other)}, uds)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 6
    assert "Traceback" not in err
    assert "jtca policy propose" in err
    assert str(other) in err
    assert not uds.exists()


def test_the_command_line_changes_the_policy(tmp_path: Path) -> None:
    """``jtca policy propose``, ``approve`` (the officer's token), ``show --out``, ``history``
    at officers' desks over the embedded service, which runs the file $JTCA_POLICY names."""
    from cli_desks import PIN_VARIABLE, Desks
    from test_service_lists import make_world

    state = tmp_path / "state"
    installed = tmp_path / "etc" / "authority.toml"
    installed.parent.mkdir()
    installed.write_text(shipped(), encoding="utf-8")
    env = client_env(state, f"sqlite:///{tmp_path / 'jtca.db'}", JTCA_POLICY=str(installed))
    world = make_world(state, env, officers=ROOTS)
    desks = Desks(world.env, state.parent / f"{state.name}-desks")
    for officer, _ in ROOTS:
        desks.login(officer)
    signing = ("--officer-pin-source", f"env:{PIN_VARIABLE}")
    new = tmp_path / "new.toml"
    new.write_text(stricter(), encoding="utf-8")
    new_sm3 = sm3(new.read_bytes()).hex()

    proposed = desks.data("policy", "propose", str(new), "--reason", "drill", officer="root-1")
    assert (proposed["state"], proposed["sm3"], proposed["required"]) == ("proposed", new_sm3, 1)
    number = str(proposed["version"])
    own = desks.jtca("policy", "approve", number, *signing, officer="root-1", ok=False)
    assert own.returncode == 6
    assert "dual control" in own.stderr
    approved = desks.data("policy", "approve", number, *signing, officer="root-2")
    assert (approved["state"], approved["sm3"]) == ("in-force", new_sm3)

    desks.jtca("policy", "show", "--out", str(installed), officer="root-1")
    assert installed.read_bytes() == new.read_bytes()
    shown = desks.data("policy", "show", officer="root-2")
    assert (shown["sm3"], shown["state"], shown["text"]) == (new_sm3, "in-force", stricter())
    history = desks.data("policy", "history", officer="root-2")
    assert [(v["version"], v["state"]) for v in history] == [(1, "superseded"), (2, "in-force")]
