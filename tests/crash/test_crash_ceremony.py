"""Crash trials of ``jtca ceremony run``, the root ceremony (issue #14, point 2).

The demo world has had its root ceremony, so this operation's template is a fresh authority:
``jtca init``, then the ceremony's token made from the shipped example file (``jtca ceremony
init-token``, two custodians' shares kept at the desk). Each trial runs the ceremony with its
embedded service SIGKILLed at one of the operation's crash points (``ceremony.run:after-intent``,
``:before-key``/``:after-key`` for each of the four keys, ``:before-record``, ``:after-record``,
``:before-file``/``:after-file`` for the anchors and the transcript, ``:after-files``, and the
log token's and the file layer's own points) or at a random moment.

Before the ceremony no officer exists, so nobody can sign in for ``jtca recover``: recovery here
is the service's start (``recover_quietly``), which the next command triggers; the harness's
``run_trials`` signs a ministry root officer in, so this file runs its own loop over the same
boundaries and the same invariants (those of ``check_invariants``; the audit log verified once
the ceremony is recorded: before it there is no audit certificate), and prints the same line.

What this operation adds: the ceremony is either not recorded at all — no key of it in MOT-LOG,
and the root token empty or removed (its custodians make it again) — or recorded whole, with its
trust anchors and transcript in ``ceremonies/``; the keys in MOT-ROOT (opened with the quorum)
are exactly the recorded ones; and the rerun completes it (or is refused as 'already run' when
the first run had committed).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import (
    TRIALS,
    Baseline,
    Tally,
    Template,
    Trial,
    TrialFailed,
    _kill_during,
    audit_findings,
    boundaries,
    key_gaps,
    open_intents,
    stray_files,
    traced,
)

EXAMPLE = str(Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml")
WITNESS = "赵六 (公证员)"


def _seed(where: Path) -> Template:
    where.mkdir(parents=True, exist_ok=True)
    (where / "home" / "sessions").mkdir(parents=True, mode=0o700)
    trial = Trial(where / "state", where / "home")
    trial.jtca("init")
    _init_token(trial)
    trial.stop_service()
    return Template(where)


def _init_token(trial: Trial) -> None:
    made = trial.data("ceremony", "init-token", EXAMPLE)
    folder = trial.home / "custodians"
    folder.mkdir(exist_ok=True, mode=0o700)
    for i, share in enumerate(made["pin_shares"][:2], 1):
        path = folder / f"share-{i}.txt"
        path.write_text(share["share"] + "\n")
        path.chmod(0o600)


def _run(trial: Trial, crash: str | None) -> Any:
    return trial.jtca(
        "ceremony", "run", EXAMPLE, *_share_words(trial), "--witness", WITNESS, "--json",
        crash=crash, trace=traced(trial), ok=None if crash else True,
    )  # fmt: skip


def _tokens(trial: Trial) -> list[str]:
    labels: list[str] = trial.data("token", "list")["tokens"]
    return labels


def _root_keys(trial: Trial) -> set[tuple[str, str, str]]:
    """(token, label, id hex) of the keys in MOT-ROOT, opened with the custodians' quorum."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from hsm.pkcs11.keys import KeyStore\n"
        "from hsm.pkcs11.token import QuorumPin, Token\n"
        "shares = [Path(p).read_text().strip() for p in sys.argv[1:]]\n"
        "with Token('MOT-ROOT', QuorumPin(shares)) as token:\n"
        "    keys = KeyStore(token).list_keys()\n"
        "print(json.dumps([[k.label, k.key_id.hex()] for k in keys]))\n"
    )
    shares = sorted(str(p) for p in (trial.home / "custodians").glob("share-*.txt"))
    done = subprocess.run(
        [sys.executable, "-c", code, *shares],
        env=trial.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise TrialFailed(f"MOT-ROOT could not be read with the quorum: {done.stderr[-1000:]}")
    return {("MOT-ROOT", label, key_id) for label, key_id in json.loads(done.stdout)}


def _check(trial: Trial) -> list[str]:
    problems: list[str] = []
    runs = trial.query("select count(*) from ceremony_run")[0][0]
    keys = trial.query("select count(*) from key_record")[0][0]
    names = sorted(p.name for p in (trial.state / "ceremonies").glob("*"))
    if runs == 0:
        if keys:
            problems.append(f"no ceremony recorded, {keys} key record(s)")
    else:
        anchors = [n for n in names if n.startswith(("root-", "audit-"))]
        if len(anchors) != 2 or not any(n.endswith(".json") for n in names):
            problems.append(f"the ceremony is recorded, ceremonies/ holds {names}")
    trial.stop_service()
    if "MOT-ROOT" in _tokens(trial):
        held = _root_keys(trial)
        recorded = {k for k in trial.recorded_keys() if k[0] == "MOT-ROOT"}
        if held != recorded:
            problems.append(f"MOT-ROOT holds {sorted(held)}, the records name {sorted(recorded)}")
    elif runs:
        problems.append("the ceremony is recorded and its token is gone")
    return problems


def _invariants(trial: Trial, base: Baseline) -> list[str]:
    """The harness's invariants; the audit log is verified once the ceremony is recorded (before
    it there is no audit certificate to verify it with: ``jtca audit verify`` says so)."""
    problems = open_intents(trial)
    problems += [f"stray temporary file {p}" for p in stray_files(trial)]
    if trial.query("select count(*) from ceremony_run")[0][0]:
        problems += audit_findings(trial)
    trial.stop_service()
    unrecorded, missing = key_gaps(trial)
    problems += [
        f"key {k} in the token with no record" for k in sorted(unrecorded - base.unrecorded)
    ]
    problems += [f"record of key {k}, no key in the token" for k in sorted(missing - base.missing)]
    return problems + _check(trial)


def _recover(trial: Trial) -> None:
    """What recovery is before any officer exists: the service's start."""
    trial.stop_service()
    trial.jtca("service", "status")


def _share_words(trial: Trial) -> list[str]:
    shares = sorted((trial.home / "custodians").glob("share-*.txt"))
    return [w for p in shares for w in ("--share-file", str(p))]


def _complete(trial: Trial) -> None:
    if trial.query("select count(*) from ceremony_run")[0][0]:
        refused = trial.jtca(
            "ceremony", "run", EXAMPLE, *_share_words(trial), "--witness", WITNESS, ok=None
        )  # committed (rolled forward): the rerun is refused, nothing else
        if "has already run" not in refused.stderr:
            raise TrialFailed(f"a rerun of a recorded ceremony: {refused.stderr[-500:]}")
        return
    if "MOT-ROOT" not in _tokens(trial):  # removed by the roll-back: the custodians make it again
        _init_token(trial)
    done = json.loads(_run(trial, None).stdout)
    if not Path(done["transcript"]).is_file():
        raise TrialFailed("the completed ceremony wrote no transcript")


def test_ceremony(tmp_path: Path) -> None:
    template = _seed(tmp_path / "ceremony-seed")
    base = template.baseline()
    started = time.monotonic()
    points = boundaries(template, _run, tmp_path / "ceremony-trace")
    clean = max(0.5, time.monotonic() - started)
    assert any(p.startswith("ceremony.run:") for p in points), points
    rng = random.Random(14)  # noqa: S311 - when to kill, not a secret
    tally = Tally("ceremony")
    for index in range(TRIALS):
        where = tmp_path / f"ceremony-{index}"
        trial = template.trial(where)
        what = ""
        try:
            if index % 3 == 2:
                delay = rng.uniform(0.0, clean)
                what = f"a SIGKILL of the service after {delay:.2f} s"
                killed = _kill_during(trial, _run, delay)
            else:
                point = points[(index - index // 3) % len(points)]
                what = f"JTCA_CRASH_AT={point}"
                result = _run(trial, point)
                killed = result.returncode != 0
            tally.kills += int(killed)
            _recover(trial)
            problems = _invariants(trial, base)
            if problems:
                raise TrialFailed("after the crash: " + "; ".join(problems))
            _complete(trial)
            problems = _invariants(trial, base)
            if problems:
                raise TrialFailed("after completing: " + "; ".join(problems))
        except (TrialFailed, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            tally.failures.append(f"trial {index} ({what}), state kept at {where}: {exc}")
        else:
            trial.stop_service()
            shutil.rmtree(where, ignore_errors=True)
        finally:
            trial.stop_service()
        tally.trials += 1
    print(tally.line())
    for failure in tally.failures:
        print("  " + failure[:3000])
    assert not tally.failures, tally.failures
