"""Crash trials of ``jtca token backup`` (issue #14, point 2).

On a copy of the demo, each trial backs Guangzhou's token ``GZ-KEYS`` up into the desk's
``backups/`` folder with the process SIGKILLed at one of the operation's crash points
(``token.backup:before-write``, ``:before-rename`` — the archive's temporary written whole, not
yet renamed —, ``:after-write``) or at a random moment; the harness then runs ``jtca recover``
(this site's journal) and checks every invariant: above all, no stray temporary file anywhere.

What this operation adds: the archive, where there is one, is whole (it parses and names every
key of the token), and the rerun writes a whole archive (the operation's completion).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import ROOT_OFFICER, Template, Trial, run_trials, traced

TOKEN = "GZ-KEYS"  # noqa: S105 - a token label


def _out(trial: Trial) -> Path:
    folder = trial.home / "backups"
    folder.mkdir(exist_ok=True)
    return folder / "gz-keys.backup.json"


def _backup(trial: Trial, crash: str | None) -> Any:
    trial.login(ROOT_OFFICER)  # for the harness's jtca recover (sessions end when idle)
    return trial.jtca(
        "token", "backup", "--token", TOKEN, "--threshold", "2", "--custodians", "3",
        "--out", str(_out(trial)), "--json",
        crash=crash, trace=traced(trial), ok=None if crash else True,
    )  # fmt: skip


def _labels(trial: Trial) -> list[str]:
    keys = trial.data("token", "list", "--token", TOKEN)["keys"]
    return sorted(k["label"] for k in keys)


def _check(trial: Trial) -> list[str]:
    archive = _out(trial)
    if not archive.exists():
        return []
    try:
        doc = json.loads(archive.read_text())
    except ValueError as exc:
        return [f"{archive}: not whole ({exc})"]
    labels = sorted(k["label"] for k in doc["keys"])
    if labels != _labels(trial):
        return [f"{archive}: keys {labels}, the token holds {_labels(trial)}"]
    return []


def _complete(trial: Trial) -> None:
    done = json.loads(_backup(trial, None).stdout)
    assert len(done["shares"]) == 3


def test_backup(crash_template: Template, tmp_path: Path) -> None:
    tally = run_trials(
        "token-backup",
        crash_template,
        tmp_path,
        run=_backup,
        complete=_complete,
        check=_check,
        extra_folders=lambda t: [t.home / "backups"],
    )
    assert not tally.failures, tally.failures
