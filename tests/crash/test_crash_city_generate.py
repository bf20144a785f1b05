"""Crash trials of ``jtca city generate`` (issue #14, point 2).

On a copy of the demo, Zhuhai's application (gd-2's, awaiting the ministry) is approved by
ca-op-1 once (a derived template); each trial runs ``jtca city generate N`` as mot-root-1 and
its embedded service dies by SIGKILL at one of the operation's crash points
(``city.generate:before-token``, ``:after-token`` for each key, ``:before-record``,
``:after-record``) or at a random moment; then the harness restarts the service, runs
``jtca recover`` and checks every invariant (no key object in MOT-KEYS without its record, …).

What this operation adds to the invariants: after recovery, the application is ``approved`` with
no key of Zhuhai recorded (rolled back) or ``generated`` with its whole key set (the crash came
after the commit) — never in between; every rolled-back run is audited as ``intent.recover``;
and the rerun completes it: ``generate`` succeeds (no 'Duplicate key label', no exit 5), or,
when the first run had committed, is refused only because the application is generated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import ROOT_OFFICER, Template, Trial, TrialFailed, run_trials, traced

ZHUHAI = "440400"
APPROVER = "ca-op-1"
CLASSES = 2  # city-card (SM4) and city-qr (SM2) in the default policy


def _application(trial: Trial) -> int:
    rows = trial.query(
        "select id from key_application where cities = ? and state in ('approved', 'generated')",
        ZHUHAI,
    )
    assert len(rows) == 1, rows
    return int(rows[0][0])


def _approve(trial: Trial) -> None:
    pending = trial.query(
        "select id from key_application where cities = ? and state = 'pending'", ZHUHAI
    )
    assert len(pending) == 1, pending
    trial.login(APPROVER, ROOT_OFFICER)
    trial.jtca(
        "city", "approve", "--application", str(pending[0][0]),
        "--pin-source", "env:OFFICER_PIN", officer=APPROVER,
    )  # fmt: skip


def _generate(trial: Trial, crash: str | None) -> Any:
    trial.login(ROOT_OFFICER)  # sessions end when idle: sign in for each run
    return trial.jtca(
        "city", "generate", str(_application(trial)),
        officer=ROOT_OFFICER, crash=crash, trace=traced(trial), ok=None if crash else True,
    )  # fmt: skip


def _complete(trial: Trial) -> None:
    trial.login(ROOT_OFFICER)
    state = trial.query("select state from key_application where id = ?", _application(trial))
    if state[0][0] == "generated":  # the crash came after the commit: nothing left to do
        refused = trial.jtca(
            "city", "generate", str(_application(trial)), officer=ROOT_OFFICER, ok=None
        )
        if refused.returncode == 0 or "is generated" not in refused.stderr:
            raise TrialFailed(f"the rerun of a committed generation: {refused.stderr.strip()}")
        return
    done = json.loads(
        trial.jtca(
            "city", "generate", str(_application(trial)), "--json", officer=ROOT_OFFICER
        ).stdout
    )
    keys = done["keys"] if isinstance(done, dict) else done
    if len(keys) != CLASSES:
        raise TrialFailed(f"the rerun made {len(keys)} keys, not {CLASSES}: {done}")


def _check(trial: Trial) -> list[str]:
    application = _application(trial)
    state = trial.query("select state from key_application where id = ?", application)[0][0]
    keys = trial.query(
        "select label from city_key where city = ? and application_id = ?", ZHUHAI, application
    )
    problems = []
    if state == "approved" and keys:
        problems.append(f"application {application} approved, yet keys recorded: {keys}")
    if state == "generated" and len(keys) != CLASSES:
        problems.append(f"application {application} generated with {len(keys)} keys")
    dangling = trial.query(
        "select id, state from intent where operation = 'city.generate' and state = 'open'"
    )
    if dangling:
        problems.append(f"city.generate intents still open: {dangling}")
    if state == "approved":  # rolled back: recovery said so in the log
        recovered = [
            json.loads(d)
            for (d,) in trial.query(
                "select details from audit_event where action = 'intent.recover'"
            )
        ]
        ours = [r for r in recovered if r.get("subject") == f"application {application}"]
        generate_intents = trial.query(
            "select state from intent where operation = 'city.generate' and subject = ?",
            f"application {application}",
        )
        if generate_intents and not ours:
            problems.append(f"application {application}: an intent, but no intent.recover entry")
    return problems


def test_city_generate_crashes(crash_template: Template, tmp_path: Path) -> None:
    template = crash_template.derive("zhuhai-approved", _approve)
    tally = run_trials(
        "city.generate",
        template,
        tmp_path,
        run=_generate,
        complete=_complete,
        check=_check,
    )
    assert tally.trials >= 1
    assert not tally.failures, "\n".join(tally.failures)
