"""Review of issue #5 (city keys) as a demanding user: wrong actors, replayed and broken
packages, hostile usage files, long reasons, and the CLI's answers. Each test says in one line
what should happen. Tests that fail today are bugs found in the review; the others pin edge
cases the main suites (test_city_keys.py, test_cli_city.py) do not cover. Every test that
touches the database runs on SQLite and PostgreSQL (``database``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from citykey_fixtures import (
    DAY,
    FJ1,
    GD1,
    GD2,
    OP1,
    OP2,
    ROOT1,
    ROOT2,
    ROOT3,
    T0,
    DictVault,
    generated,
    installed,
    make_world,
)
from cli_desks import PIN_SOURCE, Desks
from sqlmodel import Session, select

from ca.citykeys import misuse, queries, renewal, usage_import, workflow
from ca.citykeys.applications import ApplicationError, apply
from ca.citykeys.common import get_key
from ca.citykeys.lifecycle import TransitionRefused
from ca.citykeys.usage_report import parse_usage_report
from ca.core.errors import JtcaError
from ca.officers.roster import add_officer_in
from ca.policy.authorization import PolicyDenied
from ca.store.db import transaction
from ca.store.models import CityKey, PendingAction
from hsm.envelope import PackageRefused
from hsm.pkcs11.softhsm2 import CONF_ENV

HEADER = "key,city,first_use,last_use,used_in"
JTCA = str(Path(sys.executable).with_name("jtca"))


def _key(engine: Any, key_id: int | None) -> CityKey:
    assert key_id is not None
    with Session(engine) as session:
        return get_key(session, key_id, lock=False)


def _row(label: str, city: str = "440100", used_in: str = "440106", day: int = 2) -> str:
    return f"{label},{city},2026-09-2{day}T08:00:00Z,2026-09-2{day}T09:00:00Z,{used_in}"


def _by_class(keys: list[CityKey], key_class: str) -> CityKey:
    return next(k for k in keys if k.key_class == key_class)


# -- delivery and packages ------------------------------------------------------------------
def test_ministry_officer_cannot_hand_on_for_the_province(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """The province → city hop is the province's: a ministry officer is refused, nothing moves."""
    _, engine = database
    world = make_world(engine, new_token)
    keys = generated(world, ["440100"])
    ids = [k.id for k in keys if k.id is not None]
    for d in workflow.deliver(engine, world.vault, ROOT1, ids, out_dir=tmp_path / "p1", now=T0):
        workflow.import_package(engine, world.vault, GD1, d.path.read_bytes(), now=T0)
    with pytest.raises(JtcaError):
        workflow.deliver(engine, world.vault, ROOT1, ids, out_dir=tmp_path / "p2", now=T0 + 1)
    assert {_key(engine, i).stage for i in ids} == {"held-by-province"}
    assert not list((tmp_path / "p2").glob("*.jkp"))


def test_deliver_names_a_key_given_twice(database: Any, new_token: Any, tmp_path: Path) -> None:
    """Delivering the same key twice in one call says the key is named twice (not 'moved on')."""
    _, engine = database
    world = make_world(engine, new_token)
    key = generated(world, ["440100"])[0]
    assert key.id is not None
    with pytest.raises(JtcaError, match="twice") as refused:
        workflow.deliver(
            engine, world.vault, ROOT1, [key.id, key.id], out_dir=tmp_path / "p", now=T0
        )
    assert key.label in refused.value.message or str(key.id) in refused.value.message
    assert _key(engine, key.id).stage == "generated"


def test_deliver_into_a_path_that_is_a_file_is_a_clean_error(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """--out naming a file (or an uncreatable folder) is a JtcaError naming it, not an OSError."""
    _, engine = database
    world = make_world(engine, new_token)
    ids = [k.id for k in generated(world, ["440100"]) if k.id is not None]
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(JtcaError, match="not-a-folder"):
        workflow.deliver(engine, world.vault, ROOT1, ids, out_dir=blocker, now=T0)
    assert {_key(engine, i).stage for i in ids} == {"generated"}


def test_broken_packages_are_refused_with_a_reason(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """Empty, truncated and padded packages are PackageRefused (malformed); the real one imports."""
    _, engine = database
    world = make_world(engine, new_token)
    ids = [k.id for k in generated(world, ["440100"]) if k.id is not None]
    sent = workflow.deliver(engine, world.vault, ROOT1, ids[:1], out_dir=tmp_path, now=T0)
    good = sent[0].path.read_bytes()
    for broken in (b"", good[:100], good + b"\x00"):
        with pytest.raises(PackageRefused) as refused:
            workflow.import_package(engine, world.vault, GD1, broken, now=T0)
        assert refused.value.reason == "malformed"
    assert workflow.import_package(engine, world.vault, GD1, good, now=T0).stage == (
        "held-by-province"
    )
    with pytest.raises(PackageRefused) as again:  # another officer of the province: replay
        workflow.import_package(engine, world.vault, GD2, good, now=T0 + 1)
    assert again.value.reason == "replayed"


def test_package_sealed_to_a_retired_transport_key_still_opens(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A city that re-registers its transport key can still open packages sealed to the old one."""
    _, engine = database
    world = make_world(engine, new_token)
    keys = generated(world, ["440100"])
    ids = [k.id for k in keys if k.id is not None]
    for d in workflow.deliver(engine, world.vault, ROOT1, ids, out_dir=tmp_path / "a", now=T0):
        workflow.import_package(engine, world.vault, GD1, d.path.read_bytes(), now=T0)
    onward = workflow.deliver(engine, world.vault, GD1, ids, out_dir=tmp_path / "b", now=T0)
    token, store, _ = new_token("GZ2")
    world.vault.stores[token.label] = store
    workflow.register_transport_key(
        engine, world.vault, GD1, holder="440100", token=token.label, now=T0 + 1
    )
    done = workflow.import_package(engine, world.vault, GD2, onward[0].path.read_bytes(), now=T0)
    assert (done.stage, done.token) == ("installed", world.city)


# -- usage reports: parsing --------------------------------------------------------------------
def test_usage_deeply_nested_json_is_refused_not_a_crash() -> None:
    """A JSON report nested 100,000 deep is refused as a file error, not a RecursionError."""
    rows, errors = parse_usage_report("[" * 100_000 + "]" * 100_000, "json")
    assert rows == []
    assert [e.field for e in errors] == ["(file)"]


def test_usage_csv_field_over_the_csv_limit_is_refused_by_line() -> None:
    """A 200,000-character field is refused with its line number; the good rows are kept."""
    text = "\n".join([HEADER, _row("A" * 200_000), _row("city-qr-440100-g1")]) + "\n"
    rows, errors = parse_usage_report(text, "csv")
    assert [e.line for e in errors] == [2]
    assert [r.key for r in rows] == ["city-qr-440100-g1"]


def test_usage_csv_row_with_more_values_than_columns_is_refused() -> None:
    """A row with more values than the header has columns is malformed and refused by line."""
    text = "\n".join([HEADER, _row("city-qr-440100-g1") + ",surplus"]) + "\n"
    rows, errors = parse_usage_report(text, "csv")
    assert rows == []
    assert [e.line for e in errors] == [2]


def test_usage_json_values_that_are_not_strings_are_refused() -> None:
    """A JSON key that is a list (or an object) is refused naming 'key', not stringified."""
    item = {
        "key": ["city-qr-440100-g1"],
        "city": "440100",
        "first_use": "2026-09-22T08:00:00Z",
        "last_use": "2026-09-22T09:00:00Z",
        "used_in": "440106",
    }
    rows, errors = parse_usage_report(json.dumps([item]), "json")
    assert rows == []
    assert [(e.line, e.field) for e in errors] == [(1, "key")]


def test_usage_empty_and_header_only_reports() -> None:
    """An empty CSV names the missing header; header-only CSV and [] are empty, not errors."""
    assert parse_usage_report(HEADER + "\n", "csv") == ([], [])
    assert parse_usage_report("[]", "json") == ([], [])
    rows, errors = parse_usage_report("", "csv")
    assert rows == []
    assert [(e.line, e.field) for e in errors] == [(1, "key")]
    rows, errors = parse_usage_report("Key,City,First_Use,Last_Use,Used_In\n", "csv")
    assert [e.problem for e in errors] == ["column missing from the header"]


# -- usage reports: importing ----------------------------------------------------------------
def test_usage_bad_key_references_never_cost_the_good_rows(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A key with a NUL byte or longer than the column (500) is refused by line; good rows kept."""
    _, engine = database
    world = make_world(engine, new_token)
    qr = _by_class(installed(world, tmp_path), "city-qr")
    report = "\n".join([HEADER, _row(qr.label), _row("bad\x00key"), _row("k" * 600)])
    result = usage_import.import_usage(engine, GD1, report, "csv", source="r.csv", now=T0 + 3 * DAY)
    assert result.activated == [qr.label]
    assert sorted((e.line, e.field) for e in result.refused) == [(3, "key"), (4, "key")]
    assert _key(engine, qr.id).state == "active"


def test_usage_times_in_the_future_are_refused(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A use reported after the import (year 9999) is refused naming last_use, never recorded."""
    _, engine = database
    world = make_world(engine, new_token)
    qr = _by_class(installed(world, tmp_path), "city-qr")
    report = f"{HEADER}\n{qr.label},440100,2026-09-22T08:00:00Z,9999-12-31T23:59:59Z,440106\n"
    result = usage_import.import_usage(engine, GD1, report, "csv", source="r.csv", now=T0 + 3 * DAY)
    assert [(e.line, e.field) for e in result.refused] == [(2, "last_use")]
    assert _key(engine, qr.id).last_use is None


def test_usage_before_the_key_existed_does_not_activate_it(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A first use dated before the key was generated is refused or flagged; it never activates."""
    _, engine = database
    world = make_world(engine, new_token)
    qr = _by_class(installed(world, tmp_path), "city-qr")
    report = f"{HEADER}\n{qr.label},440100,2001-01-01T00:00:00Z,2001-01-02T00:00:00Z,440106\n"
    result = usage_import.import_usage(engine, GD1, report, "csv", source="r.csv", now=T0 + 3 * DAY)
    assert result.activated == []
    assert result.refused or result.violations
    assert _key(engine, qr.id).activated_at is None


def test_usage_of_an_undelivered_key_is_flagged_not_activated(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A key still only in the ministry token reported in use is flagged and stays pre-active."""
    _, engine = database
    world = make_world(engine, new_token)
    qr = _by_class(generated(world, ["440100"]), "city-qr")
    report = f"{HEADER}\n{_row(qr.label)}\n"
    result = usage_import.import_usage(engine, GD1, report, "csv", source="r.csv", now=T0 + 3 * DAY)
    assert result.activated == []
    assert [v.row.line for v in result.violations] == [2]
    assert _key(engine, qr.id).state == "pre-active"


def test_use_after_revocation_is_a_violation(database: Any, new_token: Any, tmp_path: Path) -> None:
    """A revoked key reported in use after its revocation is flagged used-after-revoked."""
    _, engine = database
    world = make_world(engine, new_token)
    keys = installed(world, tmp_path)
    qr = _by_class(keys, "city-qr")
    assert qr.id is not None
    usage_import.import_usage(
        engine, GD1, f"{HEADER}\n{_row(qr.label)}\n", "csv", source="a", now=T0 + DAY
    )
    revoke = misuse.request(
        engine, world.vault, ROOT1, misuse.REVOKE, [qr.id], reason="leaked", now=T0 + DAY
    )
    assert revoke.action_id is not None
    misuse.decide(engine, world.vault, ROOT2, revoke.action_id, approve=True, now=T0 + DAY)
    misuse.decide(engine, world.vault, ROOT3, revoke.action_id, approve=True, now=T0 + DAY)
    later = f"{HEADER}\n{qr.label},440100,2026-09-24T08:00:00Z,2026-09-25T08:00:00Z,440106\n"
    result = usage_import.import_usage(engine, GD1, later, "csv", source="b", now=T0 + 5 * DAY)
    assert [v.reason for v in result.violations] == ["used-after-revoked"]
    assert _key(engine, qr.id).open_violations == 1


def test_key_flagged_by_a_violation_can_be_suspended(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A key whose only reported use is a scope violation (flagged) can be suspended."""
    _, engine = database
    world = make_world(engine, new_token)
    card = _by_class(installed(world, tmp_path), "city-card")
    assert card.id is not None
    report = f"{HEADER}\n{_row(card.label, used_in='350102')}\n"
    result = usage_import.import_usage(engine, GD1, report, "csv", source="r.csv", now=T0 + DAY)
    assert [v.reason for v in result.violations] == ["scope-violation"]
    outcome = misuse.request(
        engine, world.vault, GD1, misuse.SUSPEND, [card.id], reason="used in Fujian", now=T0 + DAY
    )
    assert outcome.state == "pending"


# -- misuse: dual control ----------------------------------------------------------------------
def test_dual_control_refusals_on_a_pending_revoke(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """One officer approves once; another province's officer and a role without it are refused."""
    _, engine = database
    world = make_world(engine, new_token)
    keys = installed(world, tmp_path)
    ids = [k.id for k in keys if k.id is not None]
    report = HEADER + "\n" + "\n".join(_row(k.label) for k in keys)
    usage_import.import_usage(engine, GD1, report, "csv", source="r", now=T0 + DAY)
    revoke = misuse.request(engine, world.vault, ROOT1, misuse.REVOKE, ids, reason="x", now=T0)
    assert revoke.action_id is not None
    misuse.decide(engine, world.vault, ROOT2, revoke.action_id, approve=True, now=T0 + 1)
    with pytest.raises(misuse.ActionError, match="already decided"):
        misuse.decide(engine, world.vault, ROOT2, revoke.action_id, approve=True, now=T0 + 2)
    with pytest.raises(PolicyDenied, match="deny/no-role"):
        misuse.decide(engine, world.vault, GD2, revoke.action_id, approve=True, now=T0 + 2)
    with pytest.raises(PolicyDenied, match="deny/no-role"):
        misuse.decide(engine, world.vault, OP2, revoke.action_id, approve=True, now=T0 + 2)
    assert {_key(engine, i).state for i in ids} == {"active"}
    suspend = misuse.request(engine, world.vault, GD1, misuse.SUSPEND, ids, reason="y", now=T0)
    assert suspend.action_id is not None
    with pytest.raises(PolicyDenied, match="deny/other-province"):
        misuse.decide(engine, world.vault, FJ1, suspend.action_id, approve=True, now=T0 + 3)
    with pytest.raises(misuse.ActionError, match="rejection needs a reason"):
        misuse.decide(engine, world.vault, GD2, suspend.action_id, approve=False, now=T0 + 3)
    rejected = misuse.decide(
        engine, world.vault, GD2, suspend.action_id, approve=False, now=T0 + 3, reason="no"
    )
    assert rejected.state == "rejected"
    with pytest.raises(misuse.ActionError, match="already rejected"):
        misuse.decide(engine, world.vault, OP1, suspend.action_id, approve=True, now=T0 + 4)
    assert {_key(engine, i).state for i in ids} == {"active"}
    done = misuse.decide(engine, world.vault, ROOT3, revoke.action_id, approve=True, now=T0 + 5)
    assert done.state == "done"
    with pytest.raises(TransitionRefused, match="already revoked"):
        misuse.request(engine, world.vault, ROOT1, misuse.REVOKE, ids, reason="x", now=T0 + 6)


def test_a_city_with_no_keys_is_named(database: Any) -> None:
    """Acting on a whole city that has no keys names the city and the action."""
    _, engine = database
    with Session(engine) as session, pytest.raises(misuse.ActionError, match="city 440300"):
        misuse.keys_of_city(session, "440300", misuse.SUSPEND)


def test_a_city_named_twice_is_named(database: Any) -> None:
    """'a city is named twice' says which city."""
    _, engine = database
    with pytest.raises(ApplicationError, match="440100"):
        apply(engine, GD1, ["440100", "440300", "440100"], T0)


def test_a_key_named_twice_is_named(database: Any) -> None:
    """'a key is named twice' says which key."""
    _, engine = database
    with pytest.raises(misuse.ActionError, match="7"):
        misuse.request(engine, DictVault(), GD1, misuse.SUSPEND, [7, 7], reason="x", now=T0)


def test_a_long_reason_is_stored_whole_or_refused_clearly(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A 600-character reason is kept whole or refused as an ActionError naming the reason."""
    _, engine = database
    world = make_world(engine, new_token)
    keys = installed(world, tmp_path)
    ids = [k.id for k in keys if k.id is not None]
    usage_import.import_usage(
        engine,
        GD1,
        HEADER + "\n" + "\n".join(_row(k.label) for k in keys),
        "csv",
        source="r",
        now=T0 + DAY,
    )
    reason = "说明" * 300
    try:
        outcome = misuse.request(
            engine, world.vault, GD1, misuse.SUSPEND, ids, reason=reason, now=T0
        )
    except misuse.ActionError as exc:
        refused = exc.message
    else:
        refused = ""
    if refused:
        assert "reason" in refused
        return
    with Session(engine) as session:
        pending = session.get(PendingAction, outcome.action_id)
        assert pending is not None
        assert pending.reason == reason


def test_a_cleanup_accepted_at_request_also_runs_on_approval(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A dormant cleanup whose request was accepted (the longest reason allowed) runs on
    approval; a longer reason is refused at the request, naming the reason."""
    _, engine = database
    world = make_world(engine, new_token)
    ids = [k.id for k in installed(world, tmp_path) if k.id is not None]
    now = T0 + 181 * DAY
    with pytest.raises(misuse.ActionError, match="reason: at most"):
        misuse.request(
            engine,
            world.vault,
            GD1,
            misuse.CLEANUP,
            ids,
            reason="r" * (misuse.MAX_REASON + 1),
            now=now,
        )
    cleanup = misuse.request(
        engine, world.vault, GD1, misuse.CLEANUP, ids, reason="r" * misuse.MAX_REASON, now=now
    )
    assert cleanup.action_id is not None
    done = misuse.decide(engine, world.vault, ROOT1, cleanup.action_id, approve=True, now=now)
    assert done.state == "done"
    assert {_key(engine, i).state for i in ids} == {"revoked"}


# -- renewal -------------------------------------------------------------------------------------
def test_sweep_keeps_the_old_key_until_its_successor_is_installed(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """A renewed key is not superseded while its successor still sits in the ministry token."""
    _, engine = database
    world = make_world(engine, new_token)
    qr = _by_class(installed(world, tmp_path), "city-qr")
    assert qr.id is not None
    usage_import.import_usage(
        engine, GD1, f"{HEADER}\n{_row(qr.label)}\n", "csv", source="r", now=T0 + DAY
    )
    window = qr.not_after - 180 * DAY
    successor = renewal.renew(engine, world.vault, GD1, qr.id, now=window)
    assert successor.stage == "generated"
    renewal.sweep(engine, now=window + 90 * DAY)  # overlap over; successor never delivered
    assert _key(engine, qr.id).state == "active"


# -- retention -----------------------------------------------------------------------------------
def test_usage_reports_are_kept_five_years_then_purged(
    database: Any, new_token: Any, tmp_path: Path
) -> None:
    """Usage reports (transaction data) survive purges until 5 years after import (第二十九条)."""
    _, engine = database
    world = make_world(engine, new_token)
    qr = _by_class(installed(world, tmp_path), "city-qr")
    usage_import.import_usage(
        engine, GD1, f"{HEADER}\n{_row(qr.label)}\n", "csv", source="r", now=T0
    )
    five = queries.add_years(T0, 5)
    assert queries.purge_records(engine, ROOT1, now=five).usage_reports == 0
    purged = queries.purge_records(engine, ROOT1, now=five + 1)
    assert (purged.usage_reports, purged.keys) == (1, ())  # the live key's record stays
    with Session(engine) as session:
        assert len(session.exec(select(CityKey)).all()) == 2


# -- the command line ------------------------------------------------------------------------------
Jtca = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Jtca]:
    """``jtca`` as a client of the embedded service `jtca init` starts on a fresh state folder
    with this database (stopped afterwards); never a traceback. ``jtca(..., officer=ID)`` runs
    in ID's own session (``tests/cli_desks.py``: their own token, certified the first time they
    act, ``jtca login``)."""
    url, _ = database
    monkeypatch.setenv(CONF_ENV, "")  # the state folder's SoftHSM2 here; restored afterwards
    env = {k: v for k, v in os.environ.items() if k not in ("JTCA_URL", "JTCA_SERVER_CERT")}
    env.update(
        JTCA_STATE=str(tmp_path / "state"),
        JTCA_DATABASE_URL=url,
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        XDG_STATE_HOME=str(tmp_path / "xdg-state"),
    )
    env.pop("SOFTHSM2_CONF", None)
    desks = Desks(env, tmp_path / "desks")
    signed_in: set[str] = set()

    def jtca(*args: str, officer: str | None = None) -> subprocess.CompletedProcess[str]:
        if officer is not None and officer not in signed_in:
            desks.certify_directly(tmp_path / "state", url, [officer])
            signed_in.add(officer)
        result = subprocess.run(
            [JTCA, *args],
            capture_output=True,
            text=True,
            env=desks.env(officer),
            check=False,
            timeout=120,
        )
        assert "Traceback" not in result.stderr
        return result

    made = jtca("init")
    assert made.returncode == 0, made.stderr
    yield jtca
    jtca("service", "stop")


def _officers(engine: Any) -> None:
    with transaction(engine) as session:
        for officer in (ROOT1, OP1, GD1, GD2):
            add_officer_in(
                session,
                officer_id=officer.id,
                name=officer.id,
                roles=sorted(officer.roles),
                province=officer.province,
                actor="test",
                now=T0,
            )


def test_cli_import_reports_what_it_imported_before_a_refusal(
    database: Any, cli: Jtca, tmp_path: Path
) -> None:
    """`city import GOOD BAD`: the error names BAD, and GOOD's import is reported, not silent."""
    _, engine = database
    _officers(engine)
    jtca = cli
    for holder, token, officer in (
        ("ministry", "MOT-KEYS", "mot-root-1"),
        ("440000", "GD", "gd-1"),
    ):
        made = jtca("city", "transport-key", "--holder", holder, "--token", token, officer=officer)
        assert made.returncode == 0, made.stderr
    app = json.loads(jtca("city", "apply", "--city", "440100", "--json", officer="gd-1").stdout)
    approved = jtca(
        "city", "approve", "--application", str(app["application"]), *PIN_SOURCE, officer="ca-op-1"
    )
    assert approved.returncode == 0, approved.stderr
    made = jtca("city", "generate", str(app["application"]), officer="mot-root-1")
    assert made.returncode == 0, made.stderr
    sent = json.loads(
        jtca(
            "city", "deliver", "--application", str(app["application"]),
            "--out", str(tmp_path / "p"), "--json", officer="mot-root-1",
        ).stdout
    )  # fmt: skip
    empty = tmp_path / "empty.jkp"
    empty.write_bytes(b"")
    result = jtca("city", "import", sent[0]["file"], str(empty), officer="gd-1")
    assert result.returncode == 4
    assert "empty.jkp" in result.stderr
    assert sent[0]["label"] in result.stdout  # it was imported: say so


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "--state", "suspend"),
        ("keys", "--class", "city-crad"),
        ("keys", "--limit", "-1"),
        ("keys", "--city", "abc"),
        ("suspend", "--city", "abc", "--reason", "x"),
    ],
    ids=["state-typo", "class-typo", "negative-limit", "keys-city-abc", "suspend-city-abc"],
)
def test_cli_filters_and_city_codes_are_checked(
    database: Any, cli: Jtca, args: tuple[str, ...]
) -> None:
    """A typo in --state or --class, a negative --limit, or --city that is no city code: exit 3
    (asked by a signed-in officer of the province: no read or action is sent without one)."""
    _, engine = database
    _officers(engine)
    result = cli("city", *args, officer="gd-1")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"{args[1]} {args[2]}" in result.stderr


def test_cli_usage_files_that_cannot_be_read(database: Any, cli: Jtca, tmp_path: Path) -> None:
    """Non-UTF-8 and unknown-extension reports are bad input (3) naming the file; BOM is fine."""
    _, engine = database
    _officers(engine)
    jtca = cli
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes((HEADER + "\n广州,440100,x,y,440106\n").encode("gbk"))
    result = jtca("city", "usage", str(gbk), officer="gd-1")
    assert (result.returncode, "gbk.csv" in result.stderr) == (3, True)
    txt = tmp_path / "report.txt"
    txt.write_text(HEADER + "\n")
    result = jtca("city", "usage", str(txt), officer="gd-1")
    assert result.returncode == 3
    assert "--format" in result.stderr
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (HEADER + "\n" + _row("unknown-g1") + "\n").encode())
    result = jtca("city", "usage", str(bom), "--json", officer="gd-1")
    assert result.returncode == 0, result.stderr
    assert [v["reason"] for v in json.loads(result.stdout)["violations"]] == ["unknown-key"]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = jtca("city", "usage", str(empty), officer="gd-1")
    assert result.returncode == 3
    assert "empty" in result.stdout + result.stderr
