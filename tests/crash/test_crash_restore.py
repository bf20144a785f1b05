"""Crash trials of ``jtca token restore`` (issue #14, point 2).

On a copy of the demo, a derived template holds a backup of Guangzhou's token ``GZ-KEYS``
(archive and two custodians' shares at the desk) and a fresh token ``GZ-RESTORED``; each trial
restores the archive into it with the process SIGKILLed at one of the operation's crash points
(``token.restore:after-intent``, ``:before-key``/``:after-key`` for each key, ``:before-markers``,
``:after-markers``, ``:before-end``, the site journal's own writes) or at a random moment; then the
harness runs ``jtca recover`` (with no shares: a whole restore rolled forward, any other back)
and checks every invariant.

What this operation adds: after recovery ``GZ-RESTORED`` holds nothing or exactly the archive's
keys — never a half-restored token —, and the rerun completes (no 'Duplicate key label'),
leaving exactly the archive's keys, each once, each with the archived public part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import ROOT_OFFICER, Template, Trial, run_trials, traced

SOURCE = "GZ-KEYS"
TARGET = "GZ-RESTORED"


def _setup(trial: Trial) -> None:
    trial.jtca("token", "init", "--token", TARGET)
    archive = trial.home / "gz-keys.backup.json"
    shares = trial.data(
        "token", "backup", "--token", SOURCE, "--threshold", "2", "--custodians", "3",
        "--out", str(archive),
    )["shares"]  # fmt: skip
    for i, share in enumerate(shares[:2], 1):
        path = trial.home / f"share-{i}.txt"
        path.write_text(share + "\n")
        path.chmod(0o600)


def _restore(trial: Trial, crash: str | None) -> Any:
    trial.login(ROOT_OFFICER)  # for the harness's jtca recover (sessions end when idle)
    return trial.jtca(
        "token", "restore", "--token", TARGET, "--archive", str(trial.home / "gz-keys.backup.json"),
        "--share-file", str(trial.home / "share-1.txt"),
        "--share-file", str(trial.home / "share-2.txt"), "--json",
        crash=crash, trace=traced(trial), ok=None if crash else True,
    )  # fmt: skip


def _archived(trial: Trial) -> list[tuple[str, str, str | None]]:
    doc = json.loads((trial.home / "gz-keys.backup.json").read_text())
    return sorted((k["label"], k["kind"], k.get("public_key")) for k in doc["keys"])


def _held(trial: Trial) -> list[tuple[str, str, str | None]]:
    keys = trial.data("token", "list", "--token", TARGET)["keys"]
    return sorted((k["label"], k["kind"], k["public_key"]) for k in keys)


def _check(trial: Trial) -> list[str]:
    held = _held(trial)
    if held and held != _archived(trial):
        return [f"{TARGET} half restored: {[k[0] for k in held]}"]
    return []


def _complete(trial: Trial) -> None:
    _restore(trial, None)
    assert _held(trial) == _archived(trial)


def test_restore(crash_template: Template, tmp_path: Path) -> None:
    template = crash_template.derive("restore", _setup)
    tally = run_trials(
        "token-restore", template, tmp_path, run=_restore, complete=_complete, check=_check
    )
    assert not tally.failures, tally.failures
