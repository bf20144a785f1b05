"""Key package delivery and import survive kill -9 (issue #14, points 1 and 2), through the real
``jtca`` on a seeded demo state: SoftHSM2 tokens, SQLite, officers signed in with their own
tokens, the embedded service a process of its own.

Each test kills one process — the client or the embedded service — with SIGKILL at a named
crash point (``JTCA_CRASH_AT``, ``hsm/crashpoints.py``), then recovers (``jtca recover`` as a
ministry root officer, or the next run of the same command) and checks what is left: the
package files against the records' bytes, the token's objects against the records, the
intents settled, and that the interrupted command, run again, completes.

- ministry → province (``jtca city deliver --application``): the service records the packages
  and the client writes them; a client killed after the record leaves no file and the recovery
  fetches them again; a write killed before its rename leaves a ``.tmp`` that recovery
  removes; the service killed while sealing recorded nothing and leaves nothing;
- province → city (``jtca city deliver --key`` by the province's officer, its own token): a
  client killed after writing its files and before reporting them leaves files with no record,
  which recovery removes;
- import (``jtca city import``): a client killed after the package was opened into the token
  and before the report leaves a key with no record: the rerun by the province's officer
  reports it (the object is adopted, same CKA_ID); a recovery by an officer the service does not
  let report it destroys it with its replay marker; killed after the report, it is kept, and
  the rerun answers with the recorded import instead of refusing a replay.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from harness import Baseline, Template, Trial, check_invariants, key_gaps

ROOT = "mot-root-1"
APPROVER = "ca-op-1"
PROVINCE = "gd-1"
ZHUHAI = "440400"  # the demo's application awaiting the ministry is for Zhuhai alone
SHENZHEN = "440300"  # the demo's keys held by Guangdong for Shenzhen (ids read from the seed)
KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return Template.seed(tmp_path_factory.mktemp("package-recovery") / "seed")


def _generated(trial: Trial) -> None:
    trial.login(ROOT, APPROVER)
    zhuhai = trial.application_of(ZHUHAI)
    trial.data("city", "approve", "application", zhuhai, "--pin-source", "env:OFFICER_PIN",
               officer=APPROVER)  # fmt: skip
    trial.data("city", "generate", zhuhai, officer=ROOT)


def _delivered(trial: Trial) -> None:  # on a copy of the generated template
    trial.login(ROOT)
    trial.data("city", "deliver", "--application", trial.application_of(ZHUHAI),
               "--out", str(trial.home / "to-gd"), officer=ROOT)  # fmt: skip


@pytest.fixture(scope="module")
def generated(seeded: Template) -> Template:
    return seeded.derive("zhuhai-generated", _generated)


@pytest.fixture(scope="module")
def delivered(generated: Template) -> Template:
    return generated.derive("zhuhai-delivered", _delivered)


@pytest.fixture(scope="module")
def base(seeded: Template) -> Baseline:
    return seeded.baseline()


def _trial(template: Template, where: Path, *officers: str) -> Trial:
    trial = template.trial(where)
    trial.login(*officers)  # a session names its state folder's socket: signed in per copy
    return trial


def _recover(trial: Trial, officer: str = ROOT) -> list[dict[str, Any]]:
    done = json.loads(trial.jtca("recover", "--json", officer=officer).stdout)
    items: list[dict[str, Any]] = done["recovered"]
    return items


def _site_intents(trial: Trial, which: str, operation: str | None = None) -> list[dict[str, Any]]:
    folder = trial.state / "site-intents" / which
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [i for i in found if operation is None or i["operation"] == operation]


def _packages(trial: Trial, key_ids: list[int], recipient: str) -> dict[str, bytes]:
    """{package id: bytes} recorded for ``key_ids`` to ``recipient``."""
    marks = ",".join("?" * len(key_ids))
    rows = trial.query(
        f"select package_id, data from key_package where city_key_id in ({marks}) "
        "and recipient = ?",
        *key_ids,
        recipient,
    )
    return {r[0]: bytes(r[1]) for r in rows}


def _keys_of(trial: Trial, application: str) -> list[int]:
    rows = trial.query(
        "select id from city_key where application_id = ? order by id", int(application)
    )
    return [r[0] for r in rows]


def _stages(trial: Trial, key_ids: list[int]) -> set[str]:
    marks = ",".join("?" * len(key_ids))
    rows = trial.query(f"select stage from city_key where id in ({marks})", *key_ids)
    return {r[0] for r in rows}


def _folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def _assert_clean(trial: Trial, base: Baseline, *folders: Path) -> None:
    problems = check_invariants(trial, base, extra_folders=folders)
    assert problems == [], problems


# -- ministry → province ------------------------------------------------------------------------
def test_a_client_killed_after_the_record_gets_its_files_from_recovery(
    generated: Template, base: Baseline, tmp_path: Path
) -> None:
    trial = _trial(generated, tmp_path / "t", ROOT)
    out = trial.home / "to-gd"
    zhuhai = trial.application_of(ZHUHAI)
    args = ("city", "deliver", "--application", zhuhai, "--out", str(out))
    killed = trial.jtca(*args, officer=ROOT, crash="packages.deliver:after-record", ok=None)
    assert killed.returncode == KILLED
    keys = _keys_of(trial, zhuhai)
    recorded = _packages(trial, keys, "440000")
    assert len(recorded) == len(keys)
    assert _stages(trial, keys) == {"delivered-to-province"}
    assert [p for p in _folder(out) if p.endswith(".jkp")] == []  # recorded, never written
    [left] = _site_intents(trial, "open")
    assert (left["operation"], left["subject"]) == ("packages.deliver", f"application {zhuhai}")

    [item] = _recover(trial)
    assert (item["operation"], item["result"]) == ("packages.deliver", "rolled-forward")
    assert "2 fetched again" in item["outcome"]
    files = _folder(out)
    assert sorted(hashlib.sha256(d).hexdigest() for d in files.values()) == sorted(
        hashlib.sha256(d).hexdigest() for d in recorded.values()
    )  # byte for byte the recorded packages
    assert _site_intents(trial, "open") == []
    _assert_clean(trial, base, out)

    again = json.loads(trial.jtca(*args, "--json", officer=ROOT).stdout)  # fetched again
    assert {Path(d["file"]).name for d in again} == set(files)
    assert set(_packages(trial, keys, "440000")) == set(recorded)  # nothing delivered twice
    _assert_clean(trial, base, out)


def test_a_write_killed_before_its_rename_leaves_a_temporary_file_recovery_removes(
    generated: Template, base: Baseline, tmp_path: Path
) -> None:
    trial = _trial(generated, tmp_path / "t", ROOT)
    out = trial.home / "to-gd"
    # the client's third atomic write: the journal's intent, its note, then the first package
    zhuhai = trial.application_of(ZHUHAI)
    killed = trial.jtca("city", "deliver", "--application", zhuhai, "--out", str(out),
                        officer=ROOT, crash="files.write:before-rename:3", ok=None)  # fmt: skip
    assert killed.returncode == KILLED
    left = _folder(out)
    assert len(left) == 1
    assert next(iter(left)).endswith(".tmp"), left

    [item] = _recover(trial)
    assert item["result"] == "rolled-forward"
    assert "1 temporary file(s) removed" in item["outcome"]
    assert sorted(_folder(out)) == sorted(
        f"city-{c}-440400-g1.to-440000.jkp" for c in ("card", "qr")
    )
    _assert_clean(trial, base, out)


def test_the_service_killed_while_sealing_records_and_leaves_nothing(
    generated: Template, base: Baseline, tmp_path: Path
) -> None:
    trial = _trial(generated, tmp_path / "t", ROOT)
    out = trial.home / "to-gd"
    zhuhai = trial.application_of(ZHUHAI)
    args = ("city", "deliver", "--application", zhuhai, "--out", str(out))
    failed = trial.jtca(*args, officer=ROOT, crash="packages.deliver:service-after-seal", ok=None)
    assert failed.returncode == 69, failed.stderr  # the service gone: no answer
    assert "Service unavailable" in failed.stderr
    keys = _keys_of(trial, zhuhai)
    assert _packages(trial, keys, "440000") == {}
    assert _stages(trial, keys) == {"generated"}
    [service_intent] = trial.query(
        "select id, state from intent where operation = 'packages.deliver'"
    )
    assert service_intent[1] == "open"

    items = _recover(trial)  # the service's intent is settled at its start; the site's here
    assert [(i["operation"], i["result"]) for i in items] == [("packages.deliver", "rolled-back")]
    assert trial.query("select state from intent where id = ?", service_intent[0]) == [
        ("rolled-back",)
    ]
    recovered = trial.query(
        "select details from audit_event where action = 'intent.recover' and subject = ?",
        f"intent {service_intent[0]}",
    )
    assert len(recovered) == 1
    assert "packages.deliver" in recovered[0][0]
    assert [p for p in _folder(out) if not p.startswith(".")] == []
    _assert_clean(trial, base, out)

    done = json.loads(trial.jtca(*args, "--json", officer=ROOT).stdout)
    assert len(done) == len(keys)
    assert _stages(trial, keys) == {"delivered-to-province"}
    _assert_clean(trial, base, out)


# -- province → city ------------------------------------------------------------------------------
def test_a_hand_on_killed_before_its_report_leaves_no_file_without_its_record(
    seeded: Template, base: Baseline, tmp_path: Path
) -> None:
    trial = _trial(seeded, tmp_path / "t", ROOT, PROVINCE)
    out = trial.home / "to-sz"
    shenzhen = trial.keys_of(SHENZHEN)  # both held by Guangdong in the seed
    args = ("city", "deliver", *shenzhen, "--out", str(out))
    killed = trial.jtca(*args, officer=PROVINCE, crash="packages.deliver:before-report", ok=None)
    assert killed.returncode == KILLED
    keys = [int(k) for k in shenzhen]
    assert len(_folder(out)) == 2  # written, never reported
    assert _packages(trial, keys, "440300") == {}
    assert _stages(trial, keys) == {"held-by-province"}

    [item] = _recover(trial)
    assert item["result"] == "rolled-back"
    assert "2 unrecorded file(s) removed" in item["outcome"]
    assert _folder(out) == {}
    _assert_clean(trial, base, out)

    done = json.loads(trial.jtca(*args, "--json", officer=PROVINCE).stdout)
    assert len(done) == 2
    assert _stages(trial, keys) == {"delivered-to-city"}
    recorded = _packages(trial, keys, "440300")
    assert {hashlib.sha256(b).hexdigest() for b in _folder(out).values()} == {
        hashlib.sha256(b).hexdigest() for b in recorded.values()
    }
    _assert_clean(trial, base, out)


# -- import ---------------------------------------------------------------------------------------
def _package_file(trial: Trial) -> Path:
    return sorted((trial.home / "to-gd").glob("*.jkp"))[0]


def _orphans(trial: Trial) -> set[tuple[str, str, str]]:
    unrecorded, _missing = key_gaps(trial)
    return unrecorded


def test_an_import_killed_after_the_unwrap_is_adopted_by_the_rerun(
    delivered: Template, base: Baseline, tmp_path: Path
) -> None:
    trial = _trial(delivered, tmp_path / "t", PROVINCE)
    package = _package_file(trial)
    killed = trial.jtca("city", "import", str(package), officer=PROVINCE,
                        crash="packages.import:after-unwrap", ok=None)  # fmt: skip
    assert killed.returncode == KILLED
    trial.stop_service()
    [orphan] = _orphans(trial)  # the measured defect: a key in the site token with no record
    assert orphan[:2] == ("GD-KEYS", "city-card-440400-g1")
    [left] = _site_intents(trial, "open")
    assert left["plan"]["token"] == "GD-KEYS"  # noqa: S105 - a token label
    assert left["plan"]["label"] == orphan[1]

    [done] = json.loads(trial.jtca("city", "import", str(package), "--json",
                                   officer=PROVINCE).stdout)  # fmt: skip
    assert (done["token"], done["stage"]) == ("GD-KEYS", "held-by-province")
    assert f"id={''.join('%' + orphan[2][i : i + 2] for i in range(0, 32, 2))}" in done["uri"]
    [settled] = _site_intents(trial, "done", "packages.import")
    assert (settled["state"], settled["outcome"].startswith("reported")) == (
        "rolled-forward",
        True,
    )
    _assert_clean(trial, base)


def test_an_import_killed_after_the_unwrap_is_undone_when_the_report_is_refused(
    delivered: Template, base: Baseline, tmp_path: Path
) -> None:
    trial = _trial(delivered, tmp_path / "t", ROOT, PROVINCE)
    package = _package_file(trial)
    killed = trial.jtca("city", "import", str(package), officer=PROVINCE,
                        crash="packages.import:after-unwrap", ok=None)  # fmt: skip
    assert killed.returncode == KILLED
    # a ministry officer recovers: the service will not let it report a province's import
    [item] = _recover(trial, ROOT)
    assert item["result"] == "rolled-back"
    assert "refused the report" in item["outcome"]
    assert "destroyed 1 object" in item["outcome"]
    assert trial.query("select count(*) from key_copy where holder = '440000' and token = "
                       "'GD-KEYS' and uri like '%440400%'") == [(0,)]  # fmt: skip
    _assert_clean(trial, base)  # the object is gone with its record never written

    [done] = json.loads(
        trial.jtca("city", "import", str(package), "--json", officer=PROVINCE).stdout
    )  # fmt: skip  (marker gone too)
    assert done["stage"] == "held-by-province"
    _assert_clean(trial, base)


def test_an_import_killed_after_its_report_is_kept_and_the_rerun_is_not_a_replay(
    delivered: Template, base: Baseline, tmp_path: Path
) -> None:
    trial = _trial(delivered, tmp_path / "t", ROOT, PROVINCE)
    package = _package_file(trial)
    killed = trial.jtca("city", "import", str(package), officer=PROVINCE,
                        crash="packages.import:after-report", ok=None)  # fmt: skip
    assert killed.returncode == KILLED
    [item] = _recover(trial, ROOT)
    assert (item["result"], item["outcome"].startswith("the import was recorded")) == (
        "rolled-forward",
        True,
    )
    [copy] = trial.query("select uri from key_copy where holder = '440000' and uri like ?",
                         "%city-card-440400-g1%")  # fmt: skip
    _assert_clean(trial, base)

    [done] = json.loads(trial.jtca("city", "import", str(package), "--json",
                                   officer=PROVINCE).stdout)  # fmt: skip
    assert done["uri"] == copy[0]
    # a package whose import completed in an uninterrupted run is still refused as a replay
    other = sorted((trial.home / "to-gd").glob("*.jkp"))[1]
    trial.jtca("city", "import", str(other), officer=PROVINCE)
    replay = trial.jtca("city", "import", str(other), officer=PROVINCE, ok=None)
    assert replay.returncode == 4
    assert "replayed" in replay.stderr
    _assert_clean(trial, base)
