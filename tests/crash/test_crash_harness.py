"""The harness's own checks on an untouched copy of the demo: every invariant holds, the demo
leaves no key without its record nor a record without its key, and a recovery with nothing to
recover says so. Then the invariants are shown to catch what they claim to: an orphan key object
made behind the records' back, a stray temporary file, and an intent whose process died."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import ROOT_OFFICER, Template, Trial, check_invariants


def test_a_fresh_copy_holds_every_invariant(crash_template: Template, tmp_path: Path) -> None:
    base = crash_template.baseline()
    assert base.unrecorded == frozenset(), base.unrecorded
    assert base.missing == frozenset(), base.missing
    trial = crash_template.trial(tmp_path / "t")
    trial.login(ROOT_OFFICER)
    done = json.loads(trial.jtca("recover", "--json", officer=ROOT_OFFICER).stdout)
    assert done == {"recovered": [], "open": []}
    assert check_invariants(trial, base) == []


def test_the_invariants_catch_an_orphan_a_stray_file_and_a_dead_intent(
    crash_template: Template, tmp_path: Path
) -> None:
    base = crash_template.baseline()
    trial = crash_template.trial(tmp_path / "t")
    trial.stop_service()
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from ca.vault.embedded import EmbeddedVault;"
            "v = EmbeddedVault(Path(sys.argv[1])); v.store('MOT-KEYS').generate_sm2('orphan-1');"
            "v.close()",
            str(trial.state),
        ],
        env=trial.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    stray = trial.state / "published" / ".city-list.der.abc123.tmp"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"half")
    _leave_a_dead_intent(trial)
    problems = check_invariants(trial, base)
    assert any("MOT-KEYS" in p and "orphan-1" in p and "no record" in p for p in problems), problems
    assert any(".city-list.der.abc123.tmp" in p for p in problems), problems
    assert any("no.such-op" in p and "still open" in p for p in problems), problems


def test_recover_needs_an_officer_the_policy_allows(
    crash_template: Template, tmp_path: Path
) -> None:
    trial = crash_template.trial(tmp_path / "t")
    trial.login("auditor-1")
    refused = trial.jtca("recover", officer="auditor-1", ok=None)
    assert refused.returncode != 0
    assert "system.recover" in refused.stderr
    nobody = trial.jtca("recover", ok=None)
    assert nobody.returncode != 0
    assert "jtca login" in nobody.stderr


def test_an_intent_no_recoverer_knows_is_reported_not_dropped(
    crash_template: Template, tmp_path: Path
) -> None:
    trial = crash_template.trial(tmp_path / "t")
    trial.stop_service()
    _leave_a_dead_intent(trial)
    trial.login(ROOT_OFFICER)
    result = trial.jtca("recover", "--json", officer=ROOT_OFFICER, ok=None)
    assert result.returncode == 5
    report = json.loads(result.stdout)
    assert [(r["operation"], r["result"]) for r in report["recovered"]] == [
        ("no.such-op", "failed")
    ]
    assert "no recoverer" in report["recovered"][0]["outcome"]
    assert [i["operation"] for i in report["open"]] == ["no.such-op"]


def _leave_a_dead_intent(trial: Trial) -> None:
    """An intent of an operation no recoverer knows, begun by a process then SIGKILLed."""
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys; from ca.store.db import make_engine;"
            "from ca.store import intents;"
            "intents.begin(make_engine(sys.argv[1]), 'no.such-op', 'x', {}, actor='t', now=1);"
            "os.kill(os.getpid(), signal.SIGKILL)",
            f"sqlite:///{trial.state / 'jtca.db'}",
        ],
        env=trial.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert dead.returncode == -9, dead.stderr
