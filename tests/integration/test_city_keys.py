"""Issue #5 on SQLite and PostgreSQL with real SoftHSM2 tokens: from a province's application to
a city's installed key (第九条), validity and renewal (第十条), usage reports and scope violations,
suspension and revocation under dual control (第十一条), dormant cleanup, material destruction
after the grace period and record retention (第二十九条) — every step in the audit log."""

from __future__ import annotations

import json
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
    generated,
    installed,
    make_world,
)
from log_intact import log_intact
from sqlmodel import Session, col, select

from ca.citykeys import misuse, queries, renewal, usage_import, workflow
from ca.citykeys.common import CityKeyError, get_key
from ca.citykeys.lifecycle import TransitionRefused
from ca.log import audit
from ca.policy.authorization import PolicyDenied
from ca.store.models import AuditEvent, CityKey, KeyApplication, KeyCopy
from hsm.envelope import PackageRefused
from hsm.pkcs11.keys import KeyKind, KeyNotFound
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.sm.sm4 import sm4_key_check_value


def _actions(engine: Any) -> list[str]:
    with Session(engine) as session:
        assert log_intact(session)
        return [e.action for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))]


def _key(engine: Any, key_id: int | None) -> CityKey:
    assert key_id is not None
    with Session(engine) as session:
        return get_key(session, key_id, lock=False)


def test_application_to_installed_city_key(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    world = make_world(engine, new_token)
    keys = generated(world, ["440100", "440300"])
    # one key per city and class, each its own: no two share material
    assert sorted((k.city, k.key_class, k.kind) for k in keys) == [
        ("440100", "city-card", "sm4"),
        ("440100", "city-qr", "sm2"),
        ("440300", "city-card", "sm4"),
        ("440300", "city-qr", "sm2"),
    ]
    assert len({k.check_value for k in keys if k.kind == "sm4"}) == 2
    assert len({k.public_key for k in keys if k.kind == "sm2"}) == 2
    assert {k.state for k in keys} == {"pre-active"}
    assert {k.stage for k in keys} == {"generated"}
    ministry_labels = {k.label for k in world.store("ministry").list_keys()}
    assert {k.label for k in keys} <= ministry_labels
    guangzhou = [k for k in keys if k.city == "440100"]
    ids = [k.id for k in guangzhou if k.id is not None]

    # a second application for a city with live keys is refused: renew instead (一城一密)
    with pytest.raises(CityKeyError, match="already has a live"):
        generated(world, ["440100"])
    # the province does not deliver what the ministry has not sent it
    with pytest.raises(CityKeyError, match="ministry delivers"):
        workflow.deliver(engine, world.vault, GD1, ids, out_dir=tmp_path / "x", now=T0)

    sent = workflow.deliver(engine, world.vault, ROOT1, ids, out_dir=tmp_path / "p1", now=T0 + 10)
    assert [d.recipient for d in sent] == ["440000", "440000"]
    assert _key(engine, ids[0]).stage == "delivered-to-province"
    package = sent[0].path.read_bytes()

    # Fujian may not import Guangdong's keys; a tampered package is refused; nothing half-made
    with pytest.raises(PolicyDenied, match="deny/other-province"):
        workflow.import_package(engine, world.vault, FJ1, package, now=T0 + 20)
    tampered = bytearray(package)
    tampered[-5] ^= 1
    with pytest.raises(PackageRefused):
        workflow.import_package(engine, world.vault, GD1, bytes(tampered), now=T0 + 20)
    assert world.store("440000").list_keys() == [
        k for k in world.store("440000").list_keys() if k.label.startswith("transport-")
    ]

    for delivery in sent:
        done = workflow.import_package(
            engine, world.vault, GD1, delivery.path.read_bytes(), now=T0 + 30
        )
        assert done.stage == "held-by-province"
        assert done.holder == "440000"
    with pytest.raises(PackageRefused, match="imported before") as refused:
        workflow.import_package(engine, world.vault, GD1, package, now=T0 + 31)
    assert refused.value.reason == "replayed"

    onward = workflow.deliver(engine, world.vault, GD1, ids, out_dir=tmp_path / "p2", now=T0 + 40)
    assert [d.recipient for d in onward] == ["440100", "440100"]
    for delivery in onward:
        done = workflow.import_package(
            engine, world.vault, GD2, delivery.path.read_bytes(), now=T0 + 50
        )
        assert done.stage == "installed"

    # the city's copy is the ministry's key: same SM4 check value, same SM2 public key
    city = world.store("440100")
    for key in guangzhou:
        copy = next(k for k in city.list_keys() if k.label == key.label)
        if key.kind == KeyKind.SM4.value:
            kcv = city.with_key_material(copy.uri, lambda v: sm4_key_check_value(bytes(v)))
            assert kcv.hex() == key.check_value
        else:
            assert copy.public_key is not None
            assert copy.public_key.compressed.hex() == key.public_key
    with Session(engine) as session:
        holders = sorted(
            c.holder for c in session.exec(select(KeyCopy).where(KeyCopy.city_key_id == ids[0]))
        )
    assert holders == ["440000", "440100", "ministry"]
    actions = _actions(engine)
    assert actions.count("city-key.generate") == 4
    assert actions.count("city-key.deliver") == 4
    assert actions.count("city-key.import") == 4
    assert actions[:3] == ["transport-key.register"] * 3


def test_renewal_and_sweep(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    world = make_world(engine, new_token)
    keys = installed(world, tmp_path)
    qr = next(k for k in keys if k.key_class == "city-qr")
    assert qr.id is not None
    # activate by a usage report
    report = (
        "key,city,first_use,last_use,used_in\n"
        f"{qr.label},440100,2026-09-22T08:00:00Z,2026-09-22T09:00:00Z,440106\n"
    )
    result = usage_import.import_usage(engine, GD1, report, "csv", source="day1.csv", now=T0 + DAY)
    assert result.activated == [qr.label]
    assert not result.violations
    assert _key(engine, qr.id).state == "active"

    # validity 1825 days, renewal window 180, overlap 90 (policies/authority.toml)
    with pytest.raises(CityKeyError, match="renewal window"):
        renewal.renew(engine, world.vault, GD1, qr.id, now=T0 + 100 * DAY)
    window = qr.not_after - 180 * DAY
    with Session(engine) as session:
        due = queries.find_keys(session, queries.KeyFilter(renewal_due=True), now=window)
        assert qr.id in [k.id for k in due]
    with pytest.raises(PolicyDenied, match="deny/other-province"):
        renewal.renew(engine, world.vault, FJ1, qr.id, now=window)
    successor = renewal.renew(engine, world.vault, GD1, qr.id, now=window)
    assert (successor.generation, successor.predecessor_id, successor.state) == (
        2,
        qr.id,
        "pre-active",
    )
    assert successor.not_after == window + 1825 * DAY
    with pytest.raises(CityKeyError, match="already renewed"):
        renewal.renew(engine, world.vault, GD1, qr.id, now=window)
    old = _key(engine, qr.id)
    assert old.supersede_at == window + 90 * DAY
    assert old.successor_id == successor.id
    # nothing happens before the overlap ends, nor while the successor has not reached the city
    assert renewal.sweep(engine, now=window + 89 * DAY) == []
    assert renewal.sweep(engine, now=window + 90 * DAY) == []
    assert successor.id is not None
    for hop, officer in (("s1", ROOT1), ("s2", GD1)):
        for sent in workflow.deliver(
            engine, world.vault, officer, [successor.id], out_dir=tmp_path / hop, now=window + DAY
        ):
            workflow.import_package(
                engine, world.vault, GD2, sent.path.read_bytes(), now=window + DAY
            )
    assert _key(engine, successor.id).stage == "installed"
    assert renewal.sweep(engine, now=window + 90 * DAY) == [(qr.label, "deactivated")]
    assert renewal.sweep(engine, now=window + 90 * DAY) == []
    # keys never renewed expire at their end (the card key here: pre-active, never used)
    card = next(k for k in keys if k.key_class == "city-card")
    changed = renewal.sweep(engine, now=card.not_after + 1)
    assert (card.label, "deactivated") in changed
    expired = _key(engine, card.id)
    assert expired.destroy_after == card.not_after + 1 + 30 * DAY
    assert "city-key.renew" in _actions(engine)
    assert _actions(engine).count("city-key.supersede") == 1


def test_usage_reports_and_violations(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    world = make_world(engine, new_token)
    keys = installed(world, tmp_path)
    qr = next(k for k in keys if k.key_class == "city-qr")
    card = next(k for k in keys if k.key_class == "city-card")
    report = "\n".join(
        [
            "key,city,first_use,last_use,used_in",
            f"{qr.label},440100,2026-09-22T08:00:00Z,2026-09-23T08:00:00Z,440106",  # line 2: fine
            f"{card.label},440100,2026-09-22T08:00:00Z,not-a-time,440106",  # 3: malformed
            f"{card.label},440100,2026-09-22T08:00:00Z,2026-09-22T09:00:00Z,440303",  # 4: Shenzhen
            "unknown-key-g1,440100,2026-09-22T08:00:00Z,2026-09-22T09:00:00Z,440106",  # 5
            f"{qr.label},350100,2026-09-22T08:00:00Z,2026-09-22T09:00:00Z,350102",  # 6: Fujian
            f"{qr.label},44010,2026-09-22T08:00:00Z,2026-09-22T09:00:00Z,440106",  # 7: bad code
        ]
    )
    result = usage_import.import_usage(engine, GD1, report, "csv", source="r.csv", now=T0 + 3 * DAY)
    refused = {(e.line, e.field) for e in result.refused}
    assert refused == {(3, "last_use"), (6, "city"), (7, "city")}
    assert any("deny/other-province" in e.problem for e in result.refused if e.line == 6)
    assert sorted((v.row.line, v.reason) for v in result.violations) == [
        (4, "scope-violation"),
        (5, "unknown-key"),
    ]
    assert result.accepted == 3
    assert result.activated == [qr.label, card.label]  # a use out of scope is still a use
    flagged = _key(engine, card.id)
    assert (flagged.state, flagged.open_violations) == ("active", 1)  # in use, flagged
    with Session(engine) as session:
        found = queries.find_keys(session, queries.KeyFilter(violations=True), now=T0 + 3 * DAY)
        assert [k.label for k in found] == [card.label]
    with pytest.raises(CityKeyError, match=r"\(again.csv\) was imported on"):
        usage_import.import_usage(engine, GD1, report, "csv", source="again.csv", now=T0 + 4 * DAY)
    row = {
        "key": qr.label,
        "city": "440100",
        "first_use": "2026-09-24T00:00:00Z",
        "last_use": "2026-09-25T00:00:00Z",
        "used_in": "440103",
    }
    json_report = json.dumps([row, 7])  # the second element is not a row object
    result = usage_import.import_usage(
        engine, OP1, json_report, "json", source="r.json", now=T0 + 5 * DAY
    )
    assert [(e.line, e.field) for e in result.refused] == [(2, "(row)")]
    assert result.accepted == 1
    assert _key(engine, qr.id).last_use is not None
    actions = _actions(engine)
    assert actions.count("city-key.violation") == 2
    assert actions.count("city-key.usage-import") == 2


def test_suspend_resume_revoke_under_dual_control(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    world = make_world(engine, new_token)
    keys = installed(world, tmp_path)
    ids = [k.id for k in keys if k.id is not None]
    report = "key,city,first_use,last_use,used_in\n" + "\n".join(
        f"{k.label},440100,2026-09-22T08:00:00Z,2026-09-22T09:00:00Z,440106" for k in keys
    )
    usage_import.import_usage(engine, GD1, report, "csv", source="r.csv", now=T0 + DAY)
    now = T0 + 2 * DAY
    with pytest.raises(misuse.ActionError, match="needs a reason"):
        misuse.request(engine, world.vault, GD1, misuse.SUSPEND, ids, reason=" ", now=now)
    with pytest.raises(PolicyDenied, match="deny/other-province"):
        misuse.request(engine, world.vault, FJ1, misuse.SUSPEND, ids, reason="x", now=now)
    with Session(engine) as session:
        city_ids = misuse.keys_of_city(session, "440100", misuse.SUSPEND)
    assert sorted(city_ids) == sorted(ids)
    pending = misuse.request(
        engine, world.vault, GD1, misuse.SUSPEND, city_ids, reason="cloned card key", now=now
    )
    assert (pending.state, pending.required) == ("pending", 1)
    assert {_key(engine, i).state for i in ids} == {"active"}  # nothing until approved
    assert pending.action_id is not None
    with pytest.raises(misuse.ActionError, match="already awaits"):
        misuse.request(engine, world.vault, GD2, misuse.SUSPEND, ids[:1], reason="x", now=now)
    with pytest.raises(misuse.ActionError, match="requester cannot approve"):
        misuse.decide(engine, world.vault, GD1, pending.action_id, approve=True, now=now)
    done = misuse.decide(engine, world.vault, OP1, pending.action_id, approve=True, now=now + 60)
    assert done.state == "done"
    assert {_key(engine, i).state for i in ids} == {"suspended"}
    assert _key(engine, ids[0]).reason == "cloned card key"
    with pytest.raises(misuse.ActionError, match="already done"):
        misuse.decide(engine, world.vault, OP2, pending.action_id, approve=True, now=now + 61)
    # resume needs no second officer in the default policy: it runs at once
    resumed = misuse.request(
        engine, world.vault, OP1, misuse.RESUME, ids[:1], reason="false alarm", now=now + 120
    )
    assert (resumed.state, resumed.action_id) == ("done", None)
    assert _key(engine, ids[0]).state == "active"

    # revoke is the ministry's, with two approvers besides the requester
    with pytest.raises(PolicyDenied, match="deny/no-role"):
        misuse.request(engine, world.vault, GD1, misuse.REVOKE, ids, reason="x", now=now)
    revoke = misuse.request(
        engine, world.vault, ROOT1, misuse.REVOKE, ids, reason="key leaked", now=now + 200
    )
    assert revoke.required == 2
    assert revoke.action_id is not None
    with pytest.raises(PolicyDenied, match="deny/no-role"):
        misuse.decide(engine, world.vault, OP1, revoke.action_id, approve=True, now=now + 201)
    step = misuse.decide(engine, world.vault, ROOT2, revoke.action_id, approve=True, now=now + 202)
    assert (step.state, step.approvals) == ("pending", 1)
    assert _key(engine, ids[0]).state == "active"
    step = misuse.decide(engine, world.vault, ROOT3, revoke.action_id, approve=True, now=now + 203)
    assert step.state == "done"
    assert {_key(engine, i).state for i in ids} == {"revoked"}
    with pytest.raises(TransitionRefused, match="revocation is final"):
        misuse.request(
            engine, world.vault, OP1, misuse.RESUME, ids[:1], reason="undo", now=now + 300
        )
    # a rejection needs a reason and ends the request
    with pytest.raises(TransitionRefused):
        misuse.request(engine, world.vault, GD1, misuse.SUSPEND, ids[:1], reason="x", now=now + 300)
    actions = _actions(engine)
    assert "city-key.suspend.request" in actions
    assert "city-key.suspend.approve" in actions
    assert actions.count("city-key.revoke") == 2
    assert actions.count("city-key.revoke.approve") == 2


def test_dormant_cleanup_destroy_and_retention(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    world = make_world(engine, new_token)
    keys = installed(world, tmp_path)
    ids = [k.id for k in keys if k.id is not None]
    # dormancy 180 days after delivery to the province (delivered at T0)
    with Session(engine) as session:
        assert misuse.dormant_keys(session, T0 + 179 * DAY) == []
        dormant = misuse.dormant_keys(session, T0 + 180 * DAY, "440000")
        assert sorted(k.id for k in dormant) == sorted(ids)
        assert misuse.dormant_keys(session, T0 + 180 * DAY, "350000") == []
        assert queries.count_keys(session, queries.KeyFilter(dormant=True), now=T0 + 180 * DAY) == 2
    with pytest.raises(misuse.ActionError, match="not dormant"):
        misuse.request(
            engine, world.vault, GD1, misuse.CLEANUP, ids, reason="unused", now=T0 + 10 * DAY
        )
    now = T0 + 181 * DAY
    cleanup = misuse.request(
        engine, world.vault, GD1, misuse.CLEANUP, ids, reason="never used", now=now
    )
    assert cleanup.state == "pending"
    assert cleanup.action_id is not None
    misuse.decide(engine, world.vault, ROOT1, cleanup.action_id, approve=True, now=now + 1)
    revoked = _key(engine, ids[0])
    assert revoked.state == "revoked"
    assert revoked.reason == "dormant: never used"
    assert revoked.destroy_after == now + 1 + 30 * DAY

    # material destruction waits for the grace period, then takes every copy
    with pytest.raises(misuse.ActionError, match="grace period runs until"):
        misuse.request(
            engine, world.vault, ROOT1, misuse.DESTROY, ids, reason="", now=now + 29 * DAY
        )
    later = now + 31 * DAY
    with Session(engine) as session:
        assert sorted(k.id for k in misuse.destroy_due(session, later)) == sorted(ids)
    destroy = misuse.request(engine, world.vault, ROOT1, misuse.DESTROY, ids, reason="", now=later)
    assert destroy.action_id is not None
    for holder in ("ministry", "440000", "440100"):  # still there until approved
        assert {k.label for k in keys} <= {k.label for k in world.store(holder).list_keys()}
    misuse.decide(engine, world.vault, ROOT2, destroy.action_id, approve=True, now=later + 1)
    for holder in ("ministry", "440000", "440100"):
        assert not {k.label for k in keys} & {k.label for k in world.store(holder).list_keys()}
    with Session(engine) as session:
        copies = session.exec(select(KeyCopy).where(col(KeyCopy.city_key_id).in_(ids))).all()
        for copy in copies:  # the material cannot be used through any copy's URI
            with pytest.raises(KeyNotFound):
                world.vault.store(copy.token).with_key_material(
                    Pkcs11Uri.parse(copy.uri), lambda v: bytes(v)
                )
    gone = _key(engine, ids[0])
    assert (gone.state, gone.destroyed_at) == ("destroyed", later + 1)
    with Session(engine) as session:
        copies = session.exec(select(KeyCopy).where(col(KeyCopy.city_key_id).in_(ids))).all()
        assert len(copies) == 6
        assert all(c.destroyed_at == later + 1 for c in copies)

    # records stay until the retention period (10 years after the key's end) has passed
    retained = queries.retained_until(gone)
    assert retained == queries.add_years(gone.not_after, 10)
    for moment in (later + 2, gone.not_after + DAY, retained - 1):
        purged = queries.purge_records(engine, ROOT1, now=moment)
        assert purged.keys == ()
        with Session(engine) as session:
            assert len(session.exec(select(CityKey)).all()) == 2
    with pytest.raises(PolicyDenied):
        queries.purge_records(engine, GD1, now=retained + 1)
    purged = queries.purge_records(engine, ROOT1, now=retained + 1)
    assert sorted(purged.keys) == sorted(k.label for k in keys)
    assert purged.usage_reports == 0
    with Session(engine) as session:
        assert session.exec(select(CityKey)).all() == []
        assert session.exec(select(KeyCopy)).all() == []
    actions = _actions(engine)  # the audit log keeps the whole story, verified
    assert actions.count("city-key.material-destroyed") == 6
    assert actions.count("city-key.purge-records") == 4
    assert "city-key.cleanup-dormant.request" in actions


def test_queries_and_summary(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    world = make_world(engine, new_token)
    keys = generated(world, ["440100", "440300", "440400"])
    end = keys[0].not_after
    with Session(engine) as session:
        assert (
            queries.count_keys(session, queries.KeyFilter(expiring_days=30), now=end - 31 * DAY)
            == 0
        )
        assert (
            queries.count_keys(session, queries.KeyFilter(expiring_days=30), now=end - 30 * DAY)
            == 6
        )
        assert (
            queries.count_keys(
                session, queries.KeyFilter(expiring_days=30, city="440300"), now=end - DAY
            )
            == 2
        )
        assert queries.count_keys(session, queries.KeyFilter(expiring_days=30), now=end + 1) == 0
        counts = queries.summary(session, now=T0, province="440000")
        assert counts["total"] == 6
        assert counts["state_pre-active"] == 6
        assert counts["dormant"] == 0
        view = queries.key_view(keys[0], T0)
        assert view["city_name"] == "广州市"
        assert view["days_left"] == 1825


def test_no_key_without_its_record(database, new_token, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """When the database refuses the record, the key made in the token is destroyed again; a
    rolled-back import can be retried (its replay marker goes with it)."""
    _, engine = database
    world = make_world(engine, new_token)
    before = {k.label for k in world.store("ministry").list_keys()}
    real_append = audit.append

    def refuse(session, *, action, **kwargs):  # type: ignore[no-untyped-def]
        if action in ("city-key.generate", "city-key.import"):
            raise RuntimeError("database refused")
        return real_append(session, action=action, **kwargs)

    monkeypatch.setattr(audit, "append", refuse)
    with pytest.raises(RuntimeError, match="database refused"):
        generated(world, ["440100"])
    assert {k.label for k in world.store("ministry").list_keys()} == before
    with Session(engine) as session:
        assert session.exec(select(CityKey)).all() == []
    monkeypatch.setattr(audit, "append", real_append)
    with Session(engine) as session:  # the application is still approved: generate again
        app = session.exec(select(KeyApplication)).one()
        assert app.state == "approved"
        assert app.id is not None
        app_id = app.id
    keys = workflow.generate(engine, world.vault, ROOT1, app_id, now=T0)
    ids = [k.id for k in keys if k.id is not None]
    sent = workflow.deliver(engine, world.vault, ROOT1, ids, out_dir=tmp_path / "p", now=T0)
    monkeypatch.setattr(audit, "append", refuse)
    with pytest.raises(RuntimeError, match="database refused"):
        workflow.import_package(engine, world.vault, GD1, sent[0].path.read_bytes(), now=T0)
    province_labels = {k.label for k in world.store("440000").list_keys()}
    assert sent[0].label not in province_labels
    monkeypatch.setattr(audit, "append", real_append)
    done = workflow.import_package(engine, world.vault, GD1, sent[0].path.read_bytes(), now=T0 + 1)
    assert done.stage == "held-by-province"
    assert _key(engine, done.key_id).stage == "held-by-province"
