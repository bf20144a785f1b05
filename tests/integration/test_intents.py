"""Intents (issue #14, point 1): written before a token or file is touched, settled after; an
open one whose process is gone is found and recovered, once, and audited.

The dead owner is a real process that began an intent and was killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from ca.core.owners import owner_alive, this_owner
from ca.store import intents
from ca.store.db import transaction
from ca.store.models import AuditEvent

NOW = 1_790_000_000


def _dead_intent(url: str, operation: str, subject: str) -> int:
    """Begin an intent in a child process, then SIGKILL it: a power cut mid-operation."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        from ca.store.db import make_engine
        from ca.store import intents
        ref = intents.begin(make_engine({url!r}), {operation!r}, {subject!r},
                            {{"token": "MOT-ROOT", "labels": ["a"]}}, actor="officer-1", now={NOW})
        print(ref.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return int(done.stdout.strip())


def test_an_intent_of_a_live_process_is_not_orphaned_and_blocks_a_second(database) -> None:
    _url, engine = database
    ref = intents.begin(engine, "city.generate", "application 1", {"x": 1}, actor="a", now=NOW)
    assert ref.owner == this_owner()
    with Session(engine) as session:
        assert intents.orphaned(session, now=NOW) == []
    with pytest.raises(intents.IntentBusy, match="under way"):
        intents.begin(engine, "city.generate", "application 1", {}, actor="b", now=NOW)
    intents.note(engine, ref.id, made=["k1"])
    with transaction(engine) as session:
        intents.complete(session, ref.id, now=NOW + 1)
    with Session(engine) as session:
        done = intents.get(session, ref.id)
    assert done is not None
    assert (done.state, done.progress, done.ended_at) == ("completed", {"made": ["k1"]}, NOW + 1)
    with transaction(engine) as session, pytest.raises(intents.IntentError, match="already"):
        intents.complete(session, ref.id, now=NOW + 2)


def test_an_intent_whose_process_died_is_orphaned_and_settled_once(database) -> None:
    url, engine = database
    dead = _dead_intent(url, "city.generate", "application 2")
    with Session(engine) as session:
        found = intents.orphaned(session, now=NOW)
    assert [i.id for i in found] == [dead]
    with pytest.raises(intents.IntentBusy, match="jtca recover"):
        intents.begin(engine, "city.generate", "application 2", {}, actor="b", now=NOW)
    with transaction(engine) as session:
        intents.settle(
            session,
            found[0],
            state=intents.ROLLED_BACK,
            outcome="destroyed 1 orphan object",
            now=NOW + 5,
            actor="jtca-recovery",
        )
    with Session(engine) as session:
        assert intents.orphaned(session, now=NOW) == []
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "intent.recover")).one()
    assert event.subject == f"intent {dead}"
    assert '"result":"rolled-back"' in event.details
    with transaction(engine) as session, pytest.raises(intents.IntentError):
        intents.settle(
            session, found[0], state=intents.ROLLED_BACK, outcome="x", now=NOW, actor="y"
        )


def test_owner_liveness(tmp_path: Path) -> None:
    assert owner_alive(this_owner(), began_at=NOW, now=NOW)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        host = this_owner().split(":")[0]
        with open(f"/proc/{child.pid}/stat") as stat:
            start = stat.read().rsplit(")", 1)[1].split()[19]
        owner = f"{host}:{child.pid}:{start}"
        assert owner_alive(owner, began_at=NOW, now=NOW)
        assert not owner_alive(f"{host}:{child.pid}:{int(start) + 1}", began_at=NOW, now=NOW)
    finally:
        child.kill()
        child.wait()
    assert not owner_alive(owner, began_at=NOW, now=NOW)
    # another host's owner is gone once its intent outlived the lease
    assert owner_alive("elsewhere:1:1", began_at=NOW, now=NOW + 10)
    assert not owner_alive("elsewhere:1:1", began_at=NOW, now=NOW + 10_000)
    assert not owner_alive("garbage", began_at=NOW, now=NOW)


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    """A process killed by SIGKILL stays a zombie until its parent reaps it (in a container
    whose first process does not reap, for good): its /proc entry and start time remain, yet
    it works on nothing."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    host = this_owner().split(":")[0]
    with open(f"/proc/{child.pid}/stat") as stat:
        start = stat.read().rsplit(")", 1)[1].split()[19]
    owner = f"{host}:{child.pid}:{start}"
    assert owner_alive(owner, began_at=NOW, now=NOW)
    os.kill(child.pid, signal.SIGKILL)
    stat = Path(f"/proc/{child.pid}/stat")
    for _ in range(200):  # SIGKILL is delivered asynchronously
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    try:
        assert os.path.exists(f"/proc/{child.pid}")  # a zombie, not reaped yet
        assert not owner_alive(owner, began_at=NOW, now=NOW)
    finally:
        child.wait()
