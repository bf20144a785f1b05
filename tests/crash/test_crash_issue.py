"""Crash trials of ``jtca ca issue`` (issue #14, point 2).

On a copy of the demo, the demo issuer's own token makes a certificate request once (a derived
template, ``jtca issuer request`` at the issuer's site); each trial runs ``jtca ca issue`` as
ca-op-1 under the root token's share quorum, and the process dies by SIGKILL at one of the
operation's crash points (``qr.issue:after-reserve``, ``:after-sign``, ``:after-record``, a
file or commit boundary on the way) or its service at a random moment; then the harness restarts
the service, runs ``jtca recover`` and checks every invariant.

What this operation adds to the invariants: every serial a CA key's counter has handed out is
accounted for — a stored certificate or a ``qr.serial-void`` audit entry naming the CA key and
serial, never both — and no ``qr.issue`` intent is open; the rerun issues a certificate under
a serial no earlier one used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import ROOT_OFFICER, Template, Trial, run_trials, traced

OPERATOR = "ca-op-1"
ISSUER_ID, ISSUER_NAME = "02113450", "示例发行机构"  # ca.demo.officer_work.ISSUER
ISSUER_TOKEN = "DEMO-ISSUER"  # noqa: S105 - a token label, not a secret
ISSUER_KEY = f"pkcs11:token={ISSUER_TOKEN};object=demo-issuer;type=private"


def share_files(trial: Trial) -> list[str]:
    """``--share-file`` options for the demo's quorum of the root token's PIN shares, each in
    its custodian's file (in the trial's home, so copied with it)."""
    options: list[str] = []
    for index, share in enumerate(trial.credentials["root_token_shares"]):
        path = trial.home / f"custodian-{index + 1}.share"
        if not path.exists():
            path.write_text(share + "\n", encoding="utf-8")
            path.chmod(0o600)
        options += ["--share-file", str(path)]
    return options


def request_file(trial: Trial) -> Path:
    return trial.home / "demo-issuer-request.der"


def make_request(trial: Trial) -> None:
    """The demo issuer's certificate request, signed by its key in its own token."""
    trial.jtca(
        "issuer", "request", "--token", ISSUER_TOKEN, "--key", ISSUER_KEY,
        "--pin-source", f"file:{trial.state / 'softhsm2' / f'{ISSUER_TOKEN}.pin'}",
        "--issuer-id", ISSUER_ID, "--name", ISSUER_NAME, "--expiry", "1230",
        "--out", str(request_file(trial)),
    )  # fmt: skip
    share_files(trial)


def issue(trial: Trial, crash: str | None = None, *, ok: bool | None = True) -> Any:
    # sessions end when idle: sign in for each run (mot-root-1 then runs jtca recover)
    trial.login(OPERATOR, ROOT_OFFICER)
    return trial.jtca(
        "ca", "issue", "--request", str(request_file(trial)), "--ca-index", "1",
        *share_files(trial), "--json",
        officer=OPERATOR, crash=crash, trace=traced(trial), ok=ok,
    )  # fmt: skip


def serials_accounted(trial: Trial) -> list[str]:
    """Every serial below each CA key's counter is stored or voided, exactly one of them."""
    voided: dict[str, list[int]] = {}
    for (details,) in trial.query(
        "select details from audit_event where action = 'qr.serial-void'"
    ):
        item = json.loads(details)
        voided.setdefault(item["ca_key"], []).append(int(item["serial"]))
    problems = []
    for ca_key, following in trial.query("select ca_key, next_serial from serial_counter"):
        stored = [
            int(s)
            for (s,) in trial.query(
                "select serial from interop_certificate where ca_key = ?", ca_key
            )
        ]
        void = voided.get(ca_key, [])
        both = sorted(set(stored) & set(void))
        if both:
            problems.append(f"CA key {ca_key[:16]}…: serials {both} stored and voided")
        if len(void) != len(set(void)):
            problems.append(f"CA key {ca_key[:16]}…: a serial voided twice: {sorted(void)}")
        missing = sorted(set(range(1, following)) - set(stored) - set(void))
        if missing:
            problems.append(
                f"CA key {ca_key[:16]}…: serials {missing} reserved, neither stored nor voided"
            )
    dangling = trial.query("select id from intent where operation = 'qr.issue' and state = 'open'")
    if dangling:
        problems.append(f"qr.issue intents still open: {dangling}")
    return problems


def _complete(trial: Trial) -> None:
    before = {int(s) for (s,) in trial.query("select serial from interop_certificate")}
    made = json.loads(issue(trial).stdout)
    assert made["issuer_id"] == ISSUER_ID, made
    assert made["serial"] not in before, (made["serial"], before)


def test_ca_issue_crashes(crash_template: Template, tmp_path: Path) -> None:
    template = crash_template.derive("issuer-request", make_request)
    tally = run_trials(
        "qr.issue",
        template,
        tmp_path,
        run=lambda trial, crash: issue(trial, crash, ok=None if crash else True),
        complete=_complete,
        check=serials_accounted,
    )
    assert tally.trials >= 1
    assert not tally.failures, "\n".join(tally.failures)
