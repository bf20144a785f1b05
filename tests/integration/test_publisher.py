"""The publisher (issue #6) on SQLite and PostgreSQL with the list-signing key in a SoftHSM2
token, the clock moved by hand: the city list follows the city keys (suspension shows in the next
list, 第十一、十二条), nextUpdate drives republication, a crash between record and rename is
repaired, nothing half-made survives a failure, two publishers at once make one version, a list a
terminal would refuse is never published, operators overdue past 15 days, emergency publication
under dual control."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from citykey_fixtures import DAY, GD1, OP1, T0, installed, make_world
from sqlmodel import Session, col, select

from ca.citykeys import misuse, usage_import
from ca.lists.asn1 import InteropStatus, ListContentError, ListType
from ca.lists.verify import load_list
from ca.log import audit
from ca.pki.x509 import LIST_SIGNING_EKU, issue_certificate, self_signed_root
from ca.publish import acks, emergency, publisher
from ca.store.models import AuditEvent, ListVersion
from hsm.pkcs11.signer import TokenSigner
from hsm.signer import SoftwareSigner
from policies.rules import Actor

HOUR = 3600
PUBLISHER = Actor("publisher-1", frozenset({"publisher"}))
EM1 = Actor("em-1", frozenset({"emergency-publisher"}))
EM2 = Actor("em-2", frozenset({"emergency-publisher"}))
ROOT_NAME = {"CN": "测试根CA", "O": "交通运输部", "C": "CN"}


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Pki:
    signing: publisher.Signing
    root_der: bytes


def make_pki(new_token: Any, *, not_after: int = T0 + 730 * DAY) -> Pki:
    """A software root (the ceremony's is tested elsewhere) certifying a list-signing key
    generated in a SoftHSM2 token, signing through the token."""
    _, store, _ = new_token("LIST")
    key = store.generate_sm2("list-signing")
    signer = TokenSigner(store, key.uri, allow_host_assisted=True)
    root = SoftwareSigner.generate()
    root_der = self_signed_root(
        root, ROOT_NAME, 1, at(T0 - DAY), at(T0 + 3650 * DAY), path_length=1
    )
    assert key.public_key is not None
    cert = issue_certificate(
        root,
        subject={"CN": "名单签名", "O": "交通运输部", "C": "CN"},
        subject_public_key=key.public_key,
        issuer_name=ROOT_NAME,
        serial=7,
        not_before=at(T0 - DAY),
        not_after=at(not_after),
        ca=False,
        path_length=None,
        key_usage={"digital_signature"},
        extended_key_usage=[LIST_SIGNING_EKU],
    )
    return Pki(publisher.Signing(signer, cert, root_der), root_der)


def city_list(settings: publisher.Settings, pki: Pki, now: int) -> Any:
    data = publisher.current_path(settings.out_dir, ListType.CITIES).read_bytes()
    return load_list(
        data, trusted_root_der=pki.root_der, expected_type=ListType.CITIES, now=now, grace_seconds=0
    )


def test_city_list_follows_the_city_keys(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    world = make_world(engine, new_token)
    keys = installed(world, tmp_path / "packages")
    pki = make_pki(new_token)
    settings = publisher.Settings(tmp_path / "lists", (ListType.CITIES,))
    first = publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 60)
    assert (first[0].action, first[0].sequence, first[0].diff.added) == ("published", 1, ["440100"])
    entry = city_list(settings, pki, T0 + 60).cities()[0]
    assert (entry.name, entry.province_code) == ("广州市", "440000")
    assert (entry.card_interop, entry.qr_interop) == (InteropStatus.CONNECTED,) * 2
    assert entry.effective_from == T0

    # the QR key is used, then suspended for misuse: the next list says so
    qr = next(k for k in keys if k.key_class == "city-qr")
    report = (
        "key,city,first_use,last_use,used_in\n"
        f"{qr.label},440100,2026-09-21T14:20:00Z,2026-09-21T14:30:00Z,440106\n"
    )
    usage_import.import_usage(engine, GD1, report, "csv", source="u.csv", now=T0 + HOUR)
    asked = misuse.request(
        engine, world.vault, GD1, misuse.SUSPEND, [qr.id or 0], reason="misuse", now=T0 + 2 * HOUR
    )
    misuse.decide(engine, world.vault, OP1, asked.action_id or 0, approve=True, now=T0 + 3 * HOUR)
    second = publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 4 * HOUR)
    assert (second[0].action, second[0].why, second[0].sequence) == (
        "published",
        "content changed",
        2,
    )
    assert second[0].diff.changed["440100"]["qr_interop"] == ["connected", "suspended"]
    entry = city_list(settings, pki, T0 + 4 * HOUR).cities()[0]
    assert (entry.card_interop, entry.qr_interop) == (
        InteropStatus.CONNECTED,
        InteropStatus.SUSPENDED,
    )
    assert entry.effective_from == T0 + 3 * HOUR
    # every version is kept
    archive = sorted(p.name for p in (settings.out_dir / "archive" / "city-list").iterdir())
    assert archive == ["city-list-0000000001.der", "city-list-0000000002.der"]
    with Session(engine) as session:
        published = [
            e.subject
            for e in session.exec(select(AuditEvent).where(AuditEvent.action == "list.publish"))
        ]
    assert published == ["city-list 1", "city-list 2"]


def test_next_update_drives_republication(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    pki = make_pki(new_token)
    settings = publisher.Settings(
        tmp_path, (ListType.ISSUERS,), validity=24 * HOUR, refresh=6 * HOUR
    )
    assert (
        publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0)[0].sequence == 1
    )
    quiet = publisher.publish(
        engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 18 * HOUR - 1
    )
    assert (quiet[0].action, quiet[0].sequence) == ("unchanged", 1)
    due = publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 18 * HOUR)
    assert (due[0].action, due[0].why, due[0].sequence) == ("published", "next update due", 2)
    with pytest.raises(publisher.PublishError, match="refresh margin"):
        publisher.Settings(tmp_path, validity=HOUR, refresh=HOUR)


def test_crash_between_record_and_rename_is_repaired(  # type: ignore[no-untyped-def]
    database, new_token, tmp_path: Path, monkeypatch
) -> None:
    _, engine = database
    pki = make_pki(new_token)
    settings = publisher.Settings(tmp_path, (ListType.ISSUERS,))
    publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0)
    current = publisher.current_path(tmp_path, ListType.ISSUERS)
    v1 = current.read_bytes()
    real = publisher._write_current

    def crash(*args: Any) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(publisher, "_write_current", crash)
    with pytest.raises(OSError, match="power cut"):
        publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 20 * HOUR)
    assert current.read_bytes() == v1  # readers still see version 1, whole
    monkeypatch.setattr(publisher, "_write_current", real)
    repaired = publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 20 * HOUR)
    assert (repaired[0].action, repaired[0].sequence) == ("unchanged", 2)
    assert (
        current.read_bytes() == publisher.archive_path(tmp_path, ListType.ISSUERS, 2).read_bytes()
    )
    assert (
        load_list(
            current.read_bytes(), trusted_root_der=pki.root_der, now=T0 + 20 * HOUR, grace_seconds=0
        ).sequence
        == 2
    )


def test_a_failed_record_leaves_nothing(database, new_token, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    pki = make_pki(new_token)
    settings = publisher.Settings(tmp_path, (ListType.CA_KEYS,))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database refused")

    monkeypatch.setattr(audit, "append", refuse)
    with pytest.raises(RuntimeError):
        publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0)
    assert not publisher.current_path(tmp_path, ListType.CA_KEYS).exists()
    assert not publisher.archive_path(tmp_path, ListType.CA_KEYS, 1).exists()
    with Session(engine) as session:
        assert session.exec(select(ListVersion)).all() == []


def test_a_list_terminals_would_refuse_is_never_published(  # type: ignore[no-untyped-def]
    database, new_token, tmp_path: Path
) -> None:
    _, engine = database
    expired = make_pki(new_token, not_after=T0 + DAY)
    settings = publisher.Settings(tmp_path, (ListType.ISSUERS,))
    with pytest.raises(ListContentError, match=r"signer_certificate_der: valid .* not at"):
        publisher.publish(engine, expired.signing, settings, actor=PUBLISHER, now=T0 + 2 * DAY)
    assert not any(tmp_path.glob("*.der"))
    with Session(engine) as session:
        assert session.exec(select(ListVersion)).all() == []


def test_two_publishers_at_once_make_one_version(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    pki = make_pki(new_token)
    settings = publisher.Settings(tmp_path, (ListType.ISSUERS, ListType.CA_KEYS))
    results: list[Any] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        results.append(publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    actions = sorted(o.action for outcome in results for o in outcome)
    assert actions == ["published", "published", "unchanged", "unchanged"]
    with Session(engine) as session:
        rows = session.exec(select(ListVersion).order_by(col(ListVersion.id))).all()
    assert sorted((r.list_type, r.sequence) for r in rows) == [
        ("ca-key-list", 1),
        ("issuer-whitelist", 1),
    ]


def test_dry_run_changes_nothing(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    settings = publisher.Settings(tmp_path / "out")
    planned = publisher.publish(engine, None, settings, actor=PUBLISHER, now=T0, dry_run=True)
    assert {(o.action, o.why) for o in planned} == {("would-publish", "first version")}
    assert not (tmp_path / "out").exists()  # no lock, no file: a dry run only reads
    with Session(engine) as session:
        assert session.exec(select(ListVersion)).all() == []
        assert session.exec(select(AuditEvent)).all() == []


def test_operators_overdue_after_15_days(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    pki = make_pki(new_token)
    settings = publisher.Settings(tmp_path, (ListType.CITIES,))
    acks.register_operator(
        engine, OP1, operator_id="gz-metro", name="广州地铁", province="440000", now=T0
    )
    publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0)
    with Session(engine) as session:
        assert acks.overdue(session, now=T0 + 15 * DAY - 1) == []
        late = acks.overdue(session, now=T0 + 15 * DAY)
    assert [(o.operator_id, o.list_type, o.oldest_missing, o.days_since) for o in late] == [
        ("gz-metro", "city-list", 1, 15)
    ]
    report = "operator,list,sequence,loaded_at\ngz-metro,city-list,1,2026-09-25T00:00:00Z\n"
    done = acks.import_acks(engine, PUBLISHER, report, "csv", source="a.csv", now=T0 + 15 * DAY)
    assert done.accepted == [("gz-metro", "city-list", 1)]
    with pytest.raises(acks.AckError, match="was imported on"):
        acks.import_acks(engine, PUBLISHER, report, "csv", source="again.csv", now=T0 + 16 * DAY)
    with Session(engine) as session:
        assert acks.overdue(session, now=T0 + 16 * DAY) == []
    # version 2 (nextUpdate due) is owed from its own publication
    publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 20 * DAY)
    with Session(engine) as session:
        assert acks.overdue(session, now=T0 + 35 * DAY - 1) == []
        assert [o.oldest_missing for o in acks.overdue(session, now=T0 + 35 * DAY)] == [2]
    # an operator registered later owes only the version current when it joined
    acks.register_operator(
        engine, OP1, operator_id="sz-bus", name="深圳巴士", province=None, now=T0 + 30 * DAY
    )
    with Session(engine) as session:
        owed = {o.operator_id: o for o in acks.overdue(session, now=T0 + 45 * DAY)}
    assert (owed["sz-bus"].oldest_missing, owed["sz-bus"].days_since) == (2, 15)


def test_emergency_publication_under_dual_control(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    pki = make_pki(new_token)
    settings = publisher.Settings(tmp_path)
    publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0)
    with pytest.raises(Exception, match="deny/no-role"):
        emergency.request(engine, PUBLISHER, reason="x", now=T0)
    asked = emergency.request(engine, EM1, reason="issuer key leaked", now=T0 + 60)
    assert (asked.state, asked.required) == ("pending", 1)
    assert asked.id is not None
    with pytest.raises(emergency.EmergencyError, match="requester cannot approve"):
        emergency.decide(engine, EM1, asked.id, approve=True, now=T0 + 61)
    with pytest.raises(emergency.EmergencyError, match="not approved"):
        emergency.approved(engine, asked.id)
    assert emergency.decide(engine, EM2, asked.id, approve=True, now=T0 + 62).state == "approved"
    urgent = publisher.publish(
        engine,
        pki.signing,
        settings,
        actor=EM2,
        now=T0 + 63,
        emergency=True,
        reason="issuer key leaked",
    )
    assert {(o.action, o.why, o.sequence) for o in urgent} == {("published", "emergency", 2)}
    emergency.mark_done(
        engine, asked.id, EM2, {o.list_type.value: o.sequence or 0 for o in urgent}, T0 + 64
    )
    with pytest.raises(emergency.EmergencyError, match="already done"):
        emergency.decide(engine, EM1, asked.id, approve=True, now=T0 + 65)
    with Session(engine) as session:
        rows = session.exec(select(ListVersion).where(ListVersion.sequence == 2)).all()
        assert len(rows) == 3
        assert all(r.emergency for r in rows)


def test_publishers_with_their_own_folders_take_turns_on_the_database(  # type: ignore[no-untyped-def]
    database, new_token, tmp_path: Path
) -> None:
    """Issue #11's measurement: two publishers on one database with different folders, 20 runs
    each at once, every run republishing (nextUpdate always due). Every run succeeds, and each
    folder ends with the newest version of each list as its current file, whole and valid."""
    _, engine = database
    pki = make_pki(new_token)
    folders = [tmp_path / "a", tmp_path / "b"]
    ticks = iter(range(1, 1000))
    tick_lock = threading.Lock()
    failures: list[BaseException] = []
    published: list[int] = []
    start = threading.Barrier(2)

    def run(folder: Path) -> None:
        settings = publisher.Settings(folder, validity=2 * HOUR, refresh=2 * HOUR - 1)
        start.wait()
        for _ in range(20):
            with tick_lock:
                now = T0 + 10 * next(ticks)
            try:
                outcomes = publisher.publish(
                    engine, pki.signing, settings, actor=PUBLISHER, now=now
                )
            except BaseException as exc:  # collected: the assertion below names them
                failures.append(exc)
                continue
            published.extend(1 for o in outcomes if o.action == "published")

    threads = [threading.Thread(target=run, args=(folder,)) for folder in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert failures == []
    assert len(published) >= 60  # most runs found nextUpdate due and signed
    with Session(engine) as session:
        newest = {t: publisher.latest(session, t) for t in ListType}
        for list_type in ListType:
            sequences = [v.sequence for v in publisher.history(session, list_type)]
            assert sequences == list(range(1, len(sequences) + 1))
    # a last run in each folder repairs what the other folder's runs published after it
    for folder in folders:
        settings = publisher.Settings(folder, validity=2 * HOUR, refresh=0)
        publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 1_000)
        for list_type, recorded in newest.items():
            assert recorded is not None
            data = publisher.current_path(folder, list_type).read_bytes()
            verified = load_list(
                data,
                trusted_root_der=pki.root_der,
                expected_type=list_type,
                now=T0 + 1_000,
                grace_seconds=0,
            )
            assert verified.sequence == recorded.sequence
            assert publisher.archive_path(folder, list_type, recorded.sequence).read_bytes() == data


def test_a_folder_is_repaired_from_the_database(database, new_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A version published into another folder (another service process) is written into this
    one from the database's copy; a folder that lost its archive is repaired the same way."""
    _, engine = database
    pki = make_pki(new_token)
    first = publisher.Settings(tmp_path / "first", (ListType.CA_KEYS,))
    second = publisher.Settings(tmp_path / "second", (ListType.CA_KEYS,))
    publisher.publish(engine, pki.signing, first, actor=PUBLISHER, now=T0)
    made = publisher.current_path(first.out_dir, ListType.CA_KEYS).read_bytes()
    again = publisher.publish(engine, pki.signing, second, actor=PUBLISHER, now=T0 + 60)
    assert (again[0].action, again[0].sequence) == ("unchanged", 1)
    assert publisher.current_path(second.out_dir, ListType.CA_KEYS).read_bytes() == made
    assert publisher.archive_path(second.out_dir, ListType.CA_KEYS, 1).read_bytes() == made
    assert json_of(second.out_dir, ListType.CA_KEYS)["sequence"] == 1

    publisher.archive_path(first.out_dir, ListType.CA_KEYS, 1).unlink()
    publisher.current_path(first.out_dir, ListType.CA_KEYS).write_bytes(b"garbage")
    publisher.publish(engine, pki.signing, first, actor=PUBLISHER, now=T0 + 120)
    assert publisher.current_path(first.out_dir, ListType.CA_KEYS).read_bytes() == made
    assert publisher.archive_path(first.out_dir, ListType.CA_KEYS, 1).read_bytes() == made
    with Session(engine) as session:
        recorded = publisher.version(session, ListType.CA_KEYS, 1)
        assert recorded is not None
        assert publisher.version_bytes(session, tmp_path / "nowhere", recorded) == made
        assert publisher.version(session, ListType.CA_KEYS, 2) is None


def json_of(folder: Path, list_type: ListType) -> Any:
    import json

    return json.loads((folder / f"{list_type.value}.json").read_text(encoding="utf-8"))


def test_a_held_database_lock_makes_the_publisher_wait_or_give_up(  # type: ignore[no-untyped-def]
    database, new_token, tmp_path: Path
) -> None:
    """PostgreSQL: while another session holds the advisory lock, a publisher gives up after its
    timeout (exit 75) and succeeds once it is free. SQLite: a writer holding the database waits
    out the holder, then publishes."""
    import sqlite3
    import time

    from sqlalchemy import text

    url, engine = database
    pki = make_pki(new_token)
    settings = publisher.Settings(tmp_path, (ListType.CA_KEYS,), lock_timeout=0.5)
    if url.startswith("postgresql"):
        holder = engine.connect()
        key = {"k": publisher.PUBLISH_LOCK_KEY}
        try:
            holder.execute(text("SELECT pg_advisory_lock(:k)"), key)
            holder.commit()
            with pytest.raises(publisher.PublisherBusy, match="publication lock") as busy:
                publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0)
            assert busy.value.exit_code == 75
            holder.execute(text("SELECT pg_advisory_unlock(:k)"), key)
            holder.commit()
        finally:
            holder.close()
    else:
        writer = sqlite3.connect(
            url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        writer.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.0, writer.rollback)
        release.start()
        started = time.monotonic()
        publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0)
        assert time.monotonic() - started >= 0.9  # it waited for the holder
        release.join()
        writer.close()
    done = publisher.publish(engine, pki.signing, settings, actor=PUBLISHER, now=T0 + 7 * HOUR)
    assert done[0].sequence in (1, 2)
