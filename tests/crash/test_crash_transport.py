"""Crash trials of ``jtca city transport-key`` (issue #15, point 2, with issue #14's harness):
at a province's site, Guangdong's officer registers new transport keys for the province — a
signing key pair and an encryption key pair made in GD-KEYS (the embedded SoftHSM2), reported
to the service with the signing key's proof (the site's journal, ``transport-key.register``);
at the service, a ministry officer registers the ministry's, made in MOT-KEYS (the service's
intent of the same name).

Beyond the harness's invariants (every key object in GD-KEYS named by a record — the
``uri`` and ``sign_uri`` columns of ``transport_key`` — and every record's key present, no
intent left open, the audit log verifies): the province's active row always names two distinct
keys of GD-KEYS, the signing half ``transport-440000-sign-…`` and the encryption half
``transport-440000-enc-…``, both present; the rerun registers again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import ROOT_OFFICER, Template, Trial, TrialFailed, run_trials, traced

PROVINCE = "gd-1"
GD_KEYS = "GD-KEYS"  # the province's token (the embedded SoftHSM2)


def _active_pair(trial: Trial, holder: str = "440000", token: str = GD_KEYS) -> list[str]:
    trial.stop_service()
    rows = trial.query(
        "select uri, sign_uri, legacy from transport_key where holder = ? and status = 'active'",
        holder,
    )
    if len(rows) != 1:
        return [f"{holder} has {len(rows)} active transport key rows"]
    uri, sign_uri, legacy = rows[0]
    problems: list[str] = []
    if legacy or not sign_uri:
        problems.append(f"the active row is legacy or has no signing half ({uri})")
        return problems
    objects = {label for label, _ in trial.token_objects().get(token, set())}
    for half, value in (("enc", uri), ("sign", sign_uri)):
        label = value.split("object=", 1)[1].split(";", 1)[0]
        if not label.startswith(f"transport-{holder}-{half}-"):
            problems.append(f"the {half} half is {label}")
        if label not in objects:
            problems.append(f"the {half} half {label} is not in {token}")
    return problems


@pytest.mark.parametrize(
    ("holder", "token", "officer"),
    [("440000", GD_KEYS, PROVINCE), ("ministry", "MOT-KEYS", ROOT_OFFICER)],
)
def test_transport_key(
    crash_template: Template, tmp_path: Path, holder: str, token: str, officer: str
) -> None:
    def run(trial: Trial, crash: str | None) -> object:
        trial.login(*sorted({ROOT_OFFICER, officer}))
        return trial.jtca("city", "transport-key", "--holder", holder, "--token", token,
                          officer=officer, crash=crash, trace=traced(trial), ok=None)  # fmt: skip

    def complete(trial: Trial) -> None:
        again = trial.jtca("city", "transport-key", "--holder", holder, "--token", token,
                           "--json", officer=officer, ok=None)  # fmt: skip
        if again.returncode != 0:
            raise TrialFailed(f"the rerun failed ({again.returncode}): {again.stderr.strip()}")
        done = json.loads(again.stdout)
        if done["legacy"] or not done["sign"]["uri"] or done["sign"]["uri"] == done["enc"]["uri"]:
            raise TrialFailed(f"the rerun registered {done}")

    tally = run_trials(
        f"transport-key-{holder}",
        crash_template,
        tmp_path,
        run=run,
        complete=complete,
        check=lambda trial: _active_pair(trial, holder, token),
    )
    assert tally.failures == [], "\n".join(tally.failures)
