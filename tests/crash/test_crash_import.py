"""Crash trials of ``jtca city import`` (issue #14, point 2): a ministry package for Zhuhai
(the demo's pending application, approved, generated and delivered in a derived template)
opened by Guangdong's officer into the province's token (GD-KEYS, the embedded SoftHSM2) and
reported to the service.

Beyond the harness's invariants (every key object in GD-KEYS named by a record and every
record's key present, no intent left open, the audit log verifies): the package is imported
(recorded) exactly when its key is in the token and its replay marker is there — a marker left
without its key would make the package impossible to import. The rerun completes the import:
it succeeds, or, when the import had completed before the crash point was reached (a kill after
its intent was settled), it is refused as a replay of a package the service records as imported
into GD-KEYS — the one outcome of a rerun that means the import is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import ROOT_OFFICER, Template, Trial, TrialFailed, run_trials, traced

APPROVER = "ca-op-1"
PROVINCE = "gd-1"
ZHUHAI = "440400"  # the demo's pending application is for Zhuhai alone (its id: from the seed)
GD_KEYS = "GD-KEYS"  # the province's token (the embedded SoftHSM2)


def _zhuhai_delivered(trial: Trial) -> None:
    trial.login(ROOT_OFFICER, APPROVER)
    application = trial.application_of(ZHUHAI)
    trial.jtca("city", "approve", "application", application, "--pin-source", "env:OFFICER_PIN",
               officer=APPROVER)  # fmt: skip
    trial.jtca("city", "generate", application, officer=ROOT_OFFICER)
    trial.jtca("city", "deliver", "--application", application, "--out", str(trial.home / "to-gd"),
               officer=ROOT_OFFICER)  # fmt: skip


def _package(trial: Trial) -> Path:
    return sorted((trial.home / "to-gd").glob("*.jkp"))[0]


def _package_id(trial: Trial) -> str:
    from hsm.envelope import read_package

    return read_package(_package(trial).read_bytes())[0].package_id.hex()


def _markers(trial: Trial) -> set[str]:
    """The replay markers (``jtca-pkg:<id>`` data objects) in GD-KEYS (a child process)."""
    code = (
        "import json, sys; from pathlib import Path; from pkcs11 import Attribute, ObjectClass;"
        "from ca.vault.embedded import EmbeddedVault; v = EmbeddedVault(Path(sys.argv[1]));"
        "s = v.store(sys.argv[2]);"
        "print(json.dumps(s.token.run(lambda x: [str(o[Attribute.LABEL]) for o in "
        "x.get_objects({Attribute.CLASS: ObjectClass.DATA})]))); v.close()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(trial.state), GD_KEYS],
        env=trial.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise TrialFailed(f"reading the markers of {GD_KEYS} failed: {done.stderr[-1000:]}")
    return {label for label in json.loads(done.stdout) if label.startswith("jtca-pkg:")}


def _imported(trial: Trial, package: str) -> bool:
    rows = trial.query("select imported_at from key_package where package_id = ?", package)
    return bool(rows) and rows[0][0] is not None


def _marker_iff_recorded(trial: Trial) -> list[str]:
    trial.stop_service()
    package = _package_id(trial)
    marked = f"jtca-pkg:{package}" in _markers(trial)
    recorded = _imported(trial, package)
    if marked != recorded:
        return [
            f"package {package}: replay marker {'present' if marked else 'absent'} in {GD_KEYS}, "
            f"import {'recorded' if recorded else 'not recorded'}"
        ]
    return []


def test_import(crash_template: Template, tmp_path: Path) -> None:
    template = crash_template.derive("zhuhai-delivered", _zhuhai_delivered)

    def run(trial: Trial, crash: str | None) -> object:
        trial.login(ROOT_OFFICER, PROVINCE)  # a session names its copy's socket
        return trial.jtca("city", "import", str(_package(trial)), officer=PROVINCE,
                          crash=crash, trace=traced(trial), ok=None)  # fmt: skip

    def complete(trial: Trial) -> None:
        again = trial.jtca("city", "import", str(_package(trial)), "--json", officer=PROVINCE,
                           ok=None)  # fmt: skip
        if again.returncode == 0:
            [done] = json.loads(again.stdout)
            if (done["token"], done["stage"]) != (GD_KEYS, "held-by-province"):
                raise TrialFailed(f"the rerun imported into {done['token']} ({done['stage']})")
            return
        package = _package_id(trial)
        token = trial.query("select c.token from key_copy c where c.package_id = ?", package)
        if again.returncode == 4 and "replayed" in again.stderr and token == [(GD_KEYS,)]:
            return  # imported before the crash point: done
        raise TrialFailed(f"the rerun failed ({again.returncode}): {again.stderr.strip()}")

    tally = run_trials(
        "import", template, tmp_path, run=run, complete=complete, check=_marker_iff_recorded
    )
    assert tally.failures == [], "\n".join(tally.failures)
