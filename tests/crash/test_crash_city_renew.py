"""Crash trials of ``jtca city renew`` (issue #14, point 2).

On a copy of the demo, one of Guangdong's active keys is brought into its renewal window (a
derived template: the demo's keys are 400 days old of 1825, and the service takes its time from
the system clock, so the key's recorded end is moved 30 days ahead with the service stopped —
the one thing set up behind the service's back). Each trial runs ``jtca city renew KEY`` as gd-1
and its embedded service dies by SIGKILL at one of the operation's crash points
(``city.renew:before-token``, ``:after-token``, ``:before-record``, ``:after-record``) or at a
random moment; the harness restarts the service, runs ``jtca recover`` and checks every
invariant (no key object in MOT-KEYS without its record, …).

What this operation adds: after recovery the renewed key is still ``active`` and either has no
successor and no record of generation + 1 exists (rolled back: the predecessor untouched) or its
successor is recorded, with the predecessor's link (the crash came after the commit) — never a
successor's object or record without the other; and the rerun completes it: ``renew`` succeeds
(no 'Duplicate key label'), or, when the first run had committed, is refused as already renewed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from harness import ROOT_OFFICER, Template, Trial, TrialFailed, run_trials, traced

OFFICER = "gd-1"  # a provincial officer of Guangdong renews its cities' keys
DAY = 86400
KEY_FILE = "renew-key"  # under the trial's home: the key the template brought into its window


def _key(trial: Trial) -> int:
    return int((trial.home / KEY_FILE).read_text())


def _into_window(trial: Trial) -> None:
    trial.stop_service()
    rows = trial.query(
        "select id, label from city_key where province = '440000' and state = 'active' "
        "and successor_id is null and key_class = 'city-qr' order by id"
    )
    assert rows, "the demo has no active key of Guangdong"
    key_id = int(rows[0][0])
    # closed here, not by the garbage collector: Python 3.11's connection is in a reference cycle
    # (its statement cache), and a late close would delete the WAL under a later copy
    with closing(sqlite3.connect(trial.state / "jtca.db")) as db, db:
        db.execute(
            "update city_key set not_after = ? where id = ?",
            (int(time.time()) + 30 * DAY, key_id),
        )
    (trial.home / KEY_FILE).write_text(str(key_id))


def _renew(trial: Trial, crash: str | None) -> Any:
    trial.login(OFFICER, ROOT_OFFICER)  # sessions end when idle; mot-root-1 runs jtca recover
    return trial.jtca(
        "city", "renew", str(_key(trial)),
        officer=OFFICER, crash=crash, trace=traced(trial), ok=None if crash else True,
    )  # fmt: skip


def _successor(trial: Trial) -> int | None:
    rows = trial.query("select successor_id from city_key where id = ?", _key(trial))
    return None if rows[0][0] is None else int(rows[0][0])


def _complete(trial: Trial) -> None:
    trial.login(OFFICER)
    if _successor(trial) is not None:  # the crash came after the commit
        refused = trial.jtca("city", "renew", str(_key(trial)), officer=OFFICER, ok=None)
        if refused.returncode == 0 or "already renewed" not in refused.stderr:
            raise TrialFailed(f"the rerun of a committed renewal: {refused.stderr.strip()}")
        return
    done = json.loads(
        trial.jtca("city", "renew", str(_key(trial)), "--json", officer=OFFICER).stdout
    )
    if done["successor"] != _successor(trial):
        raise TrialFailed(f"renewed, yet the key's successor is {_successor(trial)}: {done}")


def _check(trial: Trial) -> list[str]:
    key_id = _key(trial)
    label, city, key_class, generation, state = trial.query(
        "select label, city, key_class, generation, state from city_key where id = ?", key_id
    )[0]
    problems = []
    if state != "active":
        problems.append(f"{label} is {state}, not active")
    successors = trial.query(
        "select id, predecessor_id from city_key where city = ? and key_class = ? "
        "and generation = ?",
        city,
        key_class,
        generation + 1,
    )
    linked = _successor(trial)
    if linked is None and successors:
        problems.append(f"{label}: no successor, yet generation {generation + 1} is recorded")
    if linked is not None and [(linked, key_id)] != [(s[0], s[1]) for s in successors]:
        problems.append(f"{label}: successor {linked}, records {successors}")
    dangling = trial.query(
        "select id from intent where operation = 'city.renew' and state = 'open'"
    )
    if dangling:
        problems.append(f"city.renew intents still open: {dangling}")
    begun = trial.query(
        "select state from intent where operation = 'city.renew' and subject = ?", f"key {key_id}"
    )
    recovered = [
        json.loads(d)
        for (d,) in trial.query("select details from audit_event where action = 'intent.recover'")
    ]
    if linked is None and begun and not any(r.get("subject") == f"key {key_id}" for r in recovered):
        problems.append(f"{label}: a renewal intent, but no intent.recover entry")
    return problems


def test_city_renew_crashes(crash_template: Template, tmp_path: Path) -> None:
    template = crash_template.derive("renewal-window", _into_window)
    tally = run_trials(
        "city.renew", template, tmp_path, run=_renew, complete=_complete, check=_check
    )
    assert tally.trials >= 1
    assert not tally.failures, "\n".join(tally.failures)
