"""Crash trials of ``jtca publish`` (issue #14, point 2).

On a copy of the demo, the demo issuer gets a second interop certificate once (a derived
template), so the issuer whitelist's content has changed since the demo published it; each
trial runs ``jtca publish`` as publisher-1 under the root token's share quorum (the service
signs and writes ``state/published``, the command mirrors it into ``state/lists``), and a
process dies by SIGKILL at one of the crash points (``lists.publish:after-intent``,
``:after-sign``, ``:before-commit``, ``:after-record``, ``:after-archive``, ``:after-json``,
``:after-current``, ``:after-complete``, ``files.write:before-rename`` inside a write, the
mirror's ``lists.mirror:*``) or the service at a random moment; then the harness restarts the
service, runs ``jtca recover`` and checks every invariant (no temporary file anywhere, every
served DER file a recorded version, …).

What this operation adds: no ``lists.publish`` intent is open; in the service's folder each
list's current file is its newest recorded version and every recorded version of this run is
archived (a version recorded before the crash was rolled forward from the database's copy);
every DER file in the mirror is a recorded version, whole. The rerun exits 0 and leaves the
issuer whitelist's new version current in both folders.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from harness import ROOT_OFFICER, Template, Trial, run_trials, traced
from test_crash_issue import issue, make_request, share_files

PUBLISHER = "publisher-1"
LISTS = ("issuer-whitelist", "city-list", "ca-key-list")


def _changed_whitelist(trial: Trial) -> None:
    """The demo issuer's second certificate: the whitelist's content differs from the demo's."""
    make_request(trial)
    issue(trial)


def publish(trial: Trial, crash: str | None = None, *, ok: bool | None = True) -> Any:
    trial.login(PUBLISHER, ROOT_OFFICER)  # sessions end when idle: sign in for each run
    return trial.jtca(
        "publish", *share_files(trial), "--json",
        officer=PUBLISHER, crash=crash, trace=traced(trial), ok=ok,
    )  # fmt: skip


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def folders_as_recorded(trial: Trial) -> list[str]:
    problems = [
        f"lists.publish intent {i} still open"
        for (i,) in trial.query(
            "select id from intent where operation = 'lists.publish' and state = 'open'"
        )
    ]
    published = trial.state / "published"
    recorded = {
        (name, seq): sha
        for name, seq, sha in trial.query("select list_type, sequence, sha256 from list_version")
    }
    for name in LISTS:
        mine = {seq: sha for (kind, seq), sha in recorded.items() if kind == name}
        if not mine:
            continue
        newest = max(mine)
        if _sha256(published / f"{name}.der") != mine[newest]:
            problems.append(f"published/{name}.der is not version {newest}, the newest recorded")
        archived = published / "archive" / name / f"{name}-{newest:010d}.der"
        if _sha256(archived) != mine[newest]:
            problems.append(f"{archived.relative_to(trial.state)}: missing or not as recorded")
    shas = set(recorded.values())
    mirror = trial.state / "lists"
    if mirror.exists():
        for path in mirror.rglob("*.der"):
            if _sha256(path) not in shas:
                problems.append(f"{path.relative_to(trial.state)}: in the mirror, recorded nowhere")
    return problems


def _complete(trial: Trial) -> None:
    publish(trial)
    newest = trial.query(
        "select sequence, sha256 from list_version where list_type = 'issuer-whitelist' "
        "order by sequence desc limit 1"
    )
    sequence, sha = newest[0]
    assert sequence >= 2, newest  # the changed content was published, once
    for folder in ("published", "lists"):
        assert _sha256(trial.state / folder / "issuer-whitelist.der") == sha, folder


def test_publish_crashes(crash_template: Template, tmp_path: Path) -> None:
    template = crash_template.derive("whitelist-changed", _changed_whitelist)
    tally = run_trials(
        "lists.publish",
        template,
        tmp_path,
        run=lambda trial, crash: publish(trial, crash, ok=None if crash else True),
        complete=_complete,
        check=folders_as_recorded,
    )
    assert tally.trials >= 1
    assert not tally.failures, "\n".join(tally.failures)
