"""Crash trials of ``jtca city transport-key`` at a province's site (issue #15, point 2, with
issue #14's harness): Guangdong's officer registers new transport keys for the province — a
signing key pair and an encryption key pair made in GD-KEYS (the embedded SoftHSM2), reported
to the service with the signing key's proof.

Beyond the harness's invariants (every key object in GD-KEYS named by a record — the
``uri`` and ``sign_uri`` columns of ``transport_key`` — and every record's key present, no
intent left open, the audit log verifies): the province's active row always names two distinct
keys of GD-KEYS, the signing half ``transport-440000-sign-…`` and the encryption half
``transport-440000-enc-…``, both present; the rerun registers again.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import ROOT_OFFICER, Template, Trial, TrialFailed, run_trials, traced

PROVINCE = "gd-1"
GD_KEYS = "GD-KEYS"  # the province's token (the embedded SoftHSM2)


def _active_pair(trial: Trial) -> list[str]:
    trial.stop_service()
    rows = trial.query(
        "select uri, sign_uri, legacy from transport_key where holder = '440000' and "
        "status = 'active'"
    )
    if len(rows) != 1:
        return [f"440000 has {len(rows)} active transport key rows"]
    uri, sign_uri, legacy = rows[0]
    problems: list[str] = []
    if legacy or not sign_uri:
        problems.append(f"the active row is legacy or has no signing half ({uri})")
        return problems
    objects = {label for label, _ in trial.token_objects().get(GD_KEYS, set())}
    for half, value in (("enc", uri), ("sign", sign_uri)):
        label = value.split("object=", 1)[1].split(";", 1)[0]
        if not label.startswith(f"transport-440000-{half}-"):
            problems.append(f"the {half} half is {label}")
        if label not in objects:
            problems.append(f"the {half} half {label} is not in {GD_KEYS}")
    return problems


def test_transport_key(crash_template: Template, tmp_path: Path) -> None:
    def run(trial: Trial, crash: str | None) -> object:
        trial.login(ROOT_OFFICER, PROVINCE)
        return trial.jtca("city", "transport-key", "--holder", "440000", "--token", GD_KEYS,
                          officer=PROVINCE, crash=crash, trace=traced(trial), ok=None)  # fmt: skip

    def complete(trial: Trial) -> None:
        again = trial.jtca("city", "transport-key", "--holder", "440000", "--token", GD_KEYS,
                           "--json", officer=PROVINCE, ok=None)  # fmt: skip
        if again.returncode != 0:
            raise TrialFailed(f"the rerun failed ({again.returncode}): {again.stderr.strip()}")
        done = json.loads(again.stdout)
        if done["legacy"] or not done["sign"]["uri"] or done["sign"]["uri"] == done["enc"]["uri"]:
            raise TrialFailed(f"the rerun registered {done}")

    tally = run_trials(
        "transport-key", crash_template, tmp_path, run=run, complete=complete, check=_active_pair
    )
    assert tally.failures == [], "\n".join(tally.failures)
