"""Crash trials of ``jtca city deliver`` (issue #14, point 2), both ways a key package is made:

- **ministry → province**: the demo's pending Zhuhai application approved and generated (a
  derived template), then ``jtca city deliver --application 2`` by a ministry root officer: the
  embedded service seals the packages and records them in one transaction, the client writes
  the files;
- **province → city (hand-on)**: ``jtca city deliver --key 3 --key 4`` by Guangdong's officer:
  the client seals Shenzhen's keys in the province's token (the embedded SoftHSM2), writes the
  files and reports them.

Beyond the harness's invariants (no stray ``.tmp`` anywhere, keys and records, the audit log, no
intent left open), after recovery and after the rerun: every package file in the delivery's
folder is byte for byte a recorded package (no file without its record), and every package
recorded for these keys that awaits import has its file there (no record without its file: a
delivery the client did not live to write is written by recovery). The rerun must succeed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from harness import ROOT_OFFICER, Template, Trial, run_trials, traced

APPROVER = "ca-op-1"
PROVINCE = "gd-1"
ZHUHAI = "440400"  # the demo's application awaiting the ministry is for Zhuhai alone
SHENZHEN = "440300"  # its keys are held by Guangdong, not yet handed on to Shenzhen


def _zhuhai_generated(trial: Trial) -> None:
    trial.login(ROOT_OFFICER, APPROVER)
    application = trial.application_of(ZHUHAI)
    trial.jtca("city", "approve", "application", application, "--pin-source", "env:OFFICER_PIN",
               officer=APPROVER)  # fmt: skip
    trial.jtca("city", "generate", application, officer=ROOT_OFFICER)


def _folder_matches_records(trial: Trial, folder: Path, keys: list[int]) -> list[str]:
    """This delivery's folder vs the records of these keys' packages, both ways."""
    marks = ",".join("?" * len(keys))
    rows = trial.query(
        "select p.sha256, p.imported_at, k.label, k.stage, p.recipient from key_package p "
        f"join city_key k on k.id = p.city_key_id where k.id in ({marks})",
        *keys,
    )
    recorded = {r[0] for r in rows}
    files = sorted(folder.glob("*.jkp")) if folder.is_dir() else []
    problems = [
        f"{path.name}: a package file no record names"
        for path in files
        if hashlib.sha256(path.read_bytes()).hexdigest() not in recorded
    ]
    present = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    for sha, imported, label, stage, recipient in rows:
        if imported is None and stage.startswith("delivered-to-") and sha not in present:
            problems.append(f"{label}: its recorded package to {recipient} has no file")
    return problems


def _application_keys(trial: Trial, application: str) -> list[int]:
    return [r[0] for r in trial.query(
        "select id from city_key where application_id = ?", int(application))]  # fmt: skip


def _operation(
    args: Callable[[Trial], tuple[str, ...]], officer: str
) -> tuple[Callable[[Trial, str | None], object], Callable[[Trial], object]]:
    def run(trial: Trial, crash: str | None) -> object:
        trial.login(ROOT_OFFICER, officer)  # a session names its copy's socket
        return trial.jtca(*args(trial), officer=officer, crash=crash, trace=traced(trial), ok=None)

    def complete(trial: Trial) -> object:
        return trial.jtca(*args(trial), officer=officer)

    return run, complete


def test_deliver_ministry_to_province(crash_template: Template, tmp_path: Path) -> None:
    template = crash_template.derive("zhuhai-generated", _zhuhai_generated)

    def args(trial: Trial) -> tuple[str, ...]:
        application = trial.application_of(ZHUHAI)
        return ("city", "deliver", "--application", application, "--out", str(trial.home / "to-gd"))

    run, complete = _operation(args, ROOT_OFFICER)
    tally = run_trials(
        "deliver",
        template,
        tmp_path,
        run=run,
        complete=complete,
        check=lambda t: _folder_matches_records(
            t, t.home / "to-gd", _application_keys(t, t.application_of(ZHUHAI))
        ),
        extra_folders=lambda t: [t.home / "to-gd"],
    )
    assert tally.failures == [], "\n".join(tally.failures)


def test_deliver_province_to_city(crash_template: Template, tmp_path: Path) -> None:
    def args(trial: Trial) -> tuple[str, ...]:
        keys = trial.keys_of(SHENZHEN)  # both held by Guangdong in the seed
        return ("city", "deliver", *keys, "--out", str(trial.home / "to-sz"))

    run, complete = _operation(args, PROVINCE)
    tally = run_trials(
        "deliver-hand-on",
        crash_template,
        tmp_path,
        run=run,
        complete=complete,
        check=lambda t: _folder_matches_records(
            t, t.home / "to-sz", [int(k) for k in t.keys_of(SHENZHEN)]
        ),
        extra_folders=lambda t: [t.home / "to-sz"],
    )
    assert tally.failures == [], "\n".join(tally.failures)
