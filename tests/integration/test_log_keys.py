"""The service's log keys (issue #13), with real SoftHSM2 tokens and the real OpenSSL:

- the root ceremony at the service puts the audit key in the service's own token MOT-LOG (its
  PIN held by the service, the key's attributes those of every SM2 key jtca makes) and the root
  key certifies it: ``openssl verify`` accepts the audit certificate under the root's;
- the root and audit certificates are written as trust anchors outside the database, and the
  anchors refuse a certificate the root did not sign, one without log signing, and garbage,
  naming the file;
- the ceremony ends with a checkpoint in the checkpoint folder that verifies under the anchor's
  verifier; the checkpointer signs after a change and not more often than N seconds; an entry
  without a valid seal halts it, loudly, for good;
- sealing registers one seal key per process start, however often it is asked to start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from officer_desk import DeskClient
from pkcs11 import Attribute, KeyType, ObjectClass
from service_fixtures import in_process
from sqlmodel import Session, col, select

from ca.core.clock import FixedClock
from ca.log import audit
from ca.log.anchors import LOG_TOKEN, AnchorError, anchor_files, audit_verifiers
from ca.log.checkpoint_folder import CheckpointFolder
from ca.log.note import verify_checkpoint
from ca.log.verify import seal_key_statement
from ca.ops import ceremony as ceremony_ops
from ca.pki.x509 import LOG_SIGNING_EKU, issue_certificate, key_identifier, pem, pem_to_der
from ca.service.logkeys import (
    Checkpointer,
    LogHalted,
    checkpoint_now,
    halted,
    start_sealing,
    stop_sealing,
)
from ca.service.runtime import Runtime
from ca.store.db import transaction
from ca.store.models import AuditEvent, CertificateRecord, KeyRecord
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.softhsm2 import CONF_ENV
from hsm.pkcs11.token import find_module, rescan
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import SM2_CURVE_OID_DER, SM2PublicKey

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
WITNESS = "赵六 (公证员)"
ORIGIN = "jtca.mot.gov.cn/audit"
DISTID = "distid:1234567812345678"
SEAL_KEY = "log.seal-key"


@dataclass
class World:
    client: DeskClient
    runtime: Runtime
    clock: FixedClock
    outcome: ceremony_ops.CeremonyOutcome
    state: Path


def _restore_softhsm(previous: str | None) -> None:
    if os.environ.get(CONF_ENV) != previous:
        if previous is None:
            os.environ.pop(CONF_ENV, None)
        else:
            os.environ[CONF_ENV] = previous
        rescan(find_module())


def root_ceremony(client: DeskClient) -> ceremony_ops.CeremonyOutcome:
    plan = EXAMPLE.read_text(encoding="utf-8")
    made = client.call(ceremony_ops.INIT_TOKEN, ceremony_ops.CeremonyFile(plan=plan))
    shares = [s.share for s in made.pin_shares]
    return client.call(
        ceremony_ops.RUN,
        ceremony_ops.RunRequest(plan=plan, shares=[shares[0], shares[2]], witnesses=[WITNESS]),
    )


@pytest.fixture
def world(database, tmp_path: Path) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """The service in-process on a fresh state folder (SQLite and PostgreSQL) after the root
    ceremony; the clock is the machine's, so OpenSSL judges the certificates valid now."""
    url, _ = database
    previous = os.environ.get(CONF_ENV)
    clock = FixedClock(int(time.time()))
    state = tmp_path / "state"
    try:
        with in_process(state, url=url, clock=clock) as (client, runtime):
            outcome = root_ceremony(client)
            yield World(client, runtime, clock, outcome, state)
    finally:
        audit.install_sealer(None)
        _restore_softhsm(previous)


def seal_keys(runtime: Runtime) -> list[AuditEvent]:
    with Session(runtime.engine) as session:
        return list(
            session.exec(
                select(AuditEvent)
                .where(AuditEvent.action == SEAL_KEY)
                .order_by(col(AuditEvent.seq))
            )
        )


def log_something(runtime: Runtime, what: str, at: int) -> int:
    """An entry appended in this process, as any use case appends one; its seq."""
    with transaction(runtime.engine) as session:
        event = audit.append(session, actor="test", action="test.change", subject=what, at=at)
        return event.seq


def tree_size(runtime: Runtime) -> int:
    with Session(runtime.engine) as session:
        return audit.tree_size(session)


# -- the ceremony -----------------------------------------------------------------------------
def test_the_audit_key_is_in_mot_log_and_certified_by_the_root(world: World) -> None:
    outcome, runtime = world.outcome, world.runtime
    audit_key = next(k for k in outcome.keys if k.key_class == "audit")
    uri = Pkcs11Uri.parse(audit_key.uri)
    assert uri.token == LOG_TOKEN
    for key in outcome.keys:
        if key.key_class != "audit":
            assert Pkcs11Uri.parse(key.uri).token == "MOT-ROOT"  # noqa: S105 - a label
    # The service holds MOT-LOG's PIN (like MOT-OFFICERS); MOT-ROOT's only the custodians do.
    softhsm = world.state / "softhsm2"
    assert (softhsm / f"{LOG_TOKEN}.pin").stat().st_mode & 0o777 == 0o600
    assert not (softhsm / "MOT-ROOT.pin").exists()

    with Session(runtime.engine) as session:
        record = session.exec(select(KeyRecord).where(KeyRecord.key_class == "audit")).one()
        assert (record.token, record.uri, record.label) == (
            LOG_TOKEN,
            audit_key.uri,
            "mot-audit-2026",
        )

    # In MOT-LOG, the key's attributes are those of every SM2 key jtca generates.
    def attributes(session: pkcs11.Session, store: KeyStore) -> dict[Any, Any]:
        obj = store.find(session, uri)
        return {
            a: obj[a]
            for a in (
                Attribute.CLASS,
                Attribute.KEY_TYPE,
                Attribute.TOKEN,
                Attribute.PRIVATE,
                Attribute.SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.ALWAYS_SENSITIVE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.EC_PARAMS,
                Attribute.SIGN,
                Attribute.DECRYPT,
                Attribute.LABEL,
            )
        }

    with runtime.tokens() as vault:
        store = vault.store(LOG_TOKEN)
        assert [k.label for k in store.list_keys()] == ["mot-audit-2026"]
        attrs = store.token.run(lambda s: attributes(s, store))

        def value(session: pkcs11.Session) -> None:
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                store.find(session, uri)[Attribute.VALUE]

        store.token.run(value)
    assert attrs[Attribute.CLASS] == ObjectClass.PRIVATE_KEY
    assert attrs[Attribute.KEY_TYPE] == KeyType.EC
    assert bytes(attrs[Attribute.EC_PARAMS]) == SM2_CURVE_OID_DER
    assert attrs[Attribute.TOKEN] is True
    assert attrs[Attribute.PRIVATE] is True
    assert attrs[Attribute.SENSITIVE] is True
    assert attrs[Attribute.ALWAYS_SENSITIVE] is True
    assert attrs[Attribute.EXTRACTABLE] is True  # only by wrapping (host-assisted signing)
    assert attrs[Attribute.NEVER_EXTRACTABLE] is False
    assert (attrs[Attribute.SIGN], attrs[Attribute.DECRYPT]) == (True, False)
    assert attrs[Attribute.LABEL] == "mot-audit-2026"

    # The outcome carries the certificates; the audit one is in the database as role "audit".
    certs = {c.role: c for c in outcome.certificates}
    assert set(certs) == {"root", "qr-ca-1", "list-signing", "audit"}
    with Session(runtime.engine) as session:
        recorded = {c.role: c for c in session.exec(select(CertificateRecord))}
    assert bytes.fromhex(recorded["audit"].der) == pem_to_der(certs["audit"].pem.encode())
    assert str(recorded["audit"].serial) == certs["audit"].serial


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")
def test_openssl_verifies_the_audit_certificate_under_the_root(world: World) -> None:
    audit_files, root_files = anchor_files(world.state)
    (audit_pem,) = audit_files
    (root_pem,) = root_files
    ok = subprocess.run(
        ["openssl", "verify", "-vfyopt", DISTID, "-CAfile", str(root_pem), str(audit_pem)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{audit_pem}: OK"
    text = subprocess.run(
        ["openssl", "x509", "-in", str(audit_pem), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Signature Algorithm: SM2-with-SM3" in text
    assert "Digital Signature" in text
    assert LOG_SIGNING_EKU in text  # OpenSSL prints an OID it has no name for as dotted
    assert "CA:FALSE" in text
    # The list-signing certificate verifies under the root too, but it is no audit certificate.
    lists = world.state / "list-signing.pem"
    lists.write_text(next(c.pem for c in world.outcome.certificates if c.role == "list-signing"))
    assert (
        subprocess.run(
            ["openssl", "verify", "-vfyopt", DISTID, "-CAfile", str(root_pem), str(lists)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    with pytest.raises(AnchorError, match=r"list-signing\.pem: .*not an audit key certificate"):
        audit_verifiers([lists], [root_pem], ORIGIN)


def test_anchor_files_outside_the_database(world: World, tmp_path: Path) -> None:
    """The anchors are files the service wrote beside the transcripts; they alone (no database)
    verify the checkpoint the ceremony ended with, in the checkpoint folder."""
    outcome, runtime = world.outcome, world.runtime
    audit_files, root_files = anchor_files(world.state)
    certs = {c.role: c for c in outcome.certificates}
    assert [p.name for p in audit_files] == [f"audit-{certs['audit'].serial}.pem"]
    assert [p.name for p in root_files] == [f"root-{certs['root'].serial}.pem"]
    assert sorted(outcome.anchors) == sorted(str(p) for p in [*audit_files, *root_files])
    assert audit_files[0].read_text() == certs["audit"].pem
    assert root_files[0].read_text() == certs["root"].pem
    assert outcome.warnings == []

    folder = CheckpointFolder(runtime.log_folder)
    assert runtime.log_folder == world.state / "log"
    assert outcome.checkpoint is not None
    newest = folder.newest.read_text()
    assert newest == outcome.checkpoint
    verifiers = audit_verifiers(audit_files, root_files, ORIGIN)
    checkpoint, _ = verify_checkpoint(newest, verifiers)
    with Session(runtime.engine) as session:
        assert checkpoint.size == audit.tree_size(session)
        assert checkpoint.root == audit.root(session, checkpoint.size)
        # the ceremony's certificates are log entries naming their SM3
        kinds = {
            e.subject: e.object_sm3
            for e in session.exec(select(AuditEvent).where(AuditEvent.kind == "certificate"))
        }
    assert set(kinds) >= {"root", "list-signing", "audit"}

    # Refusals name the file: an audit certificate another root signed, garbage.
    other_root, stranger = SoftwareSigner.generate(), SoftwareSigner.generate()
    now = datetime.now(UTC)
    forged = tmp_path / "audit-forged.pem"
    forged.write_bytes(
        pem(
            issue_certificate(
                other_root,
                subject={
                    "C": "CN",
                    "O": "中华人民共和国交通运输部",
                    "CN": "交通一卡通审计日志签名 2026",
                },
                subject_public_key=stranger.public_key,
                issuer_name={
                    "C": "CN",
                    "O": "中华人民共和国交通运输部",
                    "CN": "交通运输部 交通一卡通根CA 2026",
                },
                serial=99,
                not_before=now,
                not_after=now + timedelta(days=30),
                ca=False,
                path_length=None,
                key_usage={"digital_signature"},
                extended_key_usage=[LOG_SIGNING_EKU],
                issuer_key_id=key_identifier(other_root.public_key),
            )
        )
    )
    with pytest.raises(AnchorError, match=r"audit-forged\.pem: .*not signed by the root"):
        audit_verifiers([forged], root_files, ORIGIN)
    garbage = tmp_path / "audit-garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n")
    with pytest.raises(AnchorError, match=r"audit-garbage\.pem: "):
        audit_verifiers([garbage], root_files, ORIGIN)
    with pytest.raises(AnchorError, match=r"audit-garbage\.pem: "):
        audit_verifiers(audit_files, [garbage], ORIGIN)


def test_the_checkpoint_folder_is_state_log_or_jtca_log_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ca.service.runtime import LOG_DIR_ENV, log_folder_for

    monkeypatch.delenv(LOG_DIR_ENV, raising=False)
    assert log_folder_for(tmp_path) == tmp_path / "log"
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "elsewhere"))
    assert log_folder_for(tmp_path) == tmp_path / "elsewhere"


# -- sealing -----------------------------------------------------------------------------------
def test_sealing_registers_one_seal_key_per_process_start(
    database,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    url, _ = database
    previous = os.environ.get(CONF_ENV)
    state = tmp_path / "state"
    clock = FixedClock(int(time.time()))
    try:
        with in_process(state, url=url, clock=clock) as (client, runtime):
            assert start_sealing(runtime) is None  # no audit key before the root ceremony
            root_ceremony(client)
            # The ceremony started sealing in its own transaction: one seal key, under the
            # audit key, before the ceremony's checkpoint.
            (first,) = seal_keys(runtime)
            assert start_sealing(runtime) == first.seq
            runtime.start_log(checkpointer=False)
            assert start_sealing(runtime) == first.seq
            assert len(seal_keys(runtime)) == 1
            seq = log_something(runtime, "after the ceremony", clock.now())
            with Session(runtime.engine) as session:
                event = session.get(AuditEvent, seq)
                assert event is not None
                assert (event.seal_key, event.seal is not None) == (first.seq, True)
        assert audit.current_sealer() is None  # closing the runtime stopped its sealing

        # The service starts again (a new process): one new seal key, and only one.
        with in_process(state, url=url, clock=clock) as (_, runtime):
            second = start_sealing(runtime)
            assert start_sealing(runtime) == second
            runtime.start_log(checkpointer=False)
            keys = seal_keys(runtime)
            assert [k.seq for k in keys] == [first.seq, second]
            details = json.loads(keys[1].details)
            assert set(details) == {"public_key", "signature"}  # every field bound (docs/audit.md)
            audit_key = next(k.public_key for k in world_keys(runtime) if k.key_class == "audit")
            assert audit_key is not None
            SM2PublicKey.from_bytes(bytes.fromhex(audit_key)).verify_der(
                bytes.fromhex(details["signature"]),
                seal_key_statement(keys[1].seq, keys[1].at, details["public_key"]),
            )
            seq = log_something(runtime, "after the restart", clock.now())
            with Session(runtime.engine) as session:
                event = session.get(AuditEvent, seq)
                assert event is not None
                assert event.seal_key == second
                # every entry after the ceremony's checkpoint carries a valid seal
                ceremony_checkpoint = audit.latest_checkpoint(session)
                assert ceremony_checkpoint is not None
                since = ceremony_checkpoint.size
                assert audit.unsealed_since(session, since, audit_public(runtime)) == []
            stop_sealing(runtime)
            assert audit.current_sealer() is None
    finally:
        audit.install_sealer(None)
        _restore_softhsm(previous)


def world_keys(runtime: Runtime) -> list[KeyRecord]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(KeyRecord)))


def audit_public(runtime: Runtime) -> Any:
    from hsm.sm.sm2 import SM2PublicKey

    record = next(k for k in world_keys(runtime) if k.key_class == "audit")
    return SM2PublicKey.from_bytes(bytes.fromhex(record.public_key or ""))


# -- the checkpointer --------------------------------------------------------------------------
def test_the_checkpointer_signs_after_a_change_and_not_more_often_than_n(world: World) -> None:
    runtime, t0 = world.runtime, world.clock.now()
    verifiers = audit_verifiers(*anchor_files(world.state), ORIGIN)
    folder = CheckpointFolder(runtime.log_folder)
    keeper = Checkpointer(runtime, seconds=10)
    assert keeper.tick(t0 + 100) is None  # nothing changed since the ceremony's checkpoint

    log_something(runtime, "one", t0 + 1)
    assert keeper.tick(t0 + 2) is None  # changed, but the last checkpoint is 2 s old
    assert keeper.tick(t0 + 9) is None
    made = keeper.tick(t0 + 10)
    assert made is not None
    assert made.size == tree_size(runtime)
    verify_checkpoint(folder.newest.read_text(), verifiers)
    assert folder.history(made.size).read_text() == made.note

    log_something(runtime, "two", t0 + 11)
    log_something(runtime, "three", t0 + 12)  # a batch: one checkpoint for both
    assert keeper.tick(t0 + 15) is None
    second = keeper.tick(t0 + 20)
    assert second is not None
    assert second.size == made.size + 2 == tree_size(runtime)
    assert keeper.tick(t0 + 60) is None  # no change, no checkpoint
    assert keeper.signed == 2
    checkpoint, _ = verify_checkpoint(folder.newest.read_text(), verifiers)
    assert checkpoint.size == second.size
    with Session(runtime.engine) as session:
        assert checkpoint.root == audit.root(session, second.size)

    # Asked for by an officer (audit.checkpoint): the latest when nothing changed.
    assert checkpoint_now(runtime, t0 + 61, force=True).size == second.size  # type: ignore[union-attr]


def test_the_checkpointer_thread_signs_by_itself(world: World) -> None:
    runtime = world.runtime
    folder = CheckpointFolder(runtime.log_folder)
    keeper = Checkpointer(runtime, seconds=1)
    keeper.start()
    try:
        log_something(runtime, "while the thread runs", int(time.time()))
        size = tree_size(runtime)
        deadline = time.monotonic() + 15
        while folder.newest_size() != size and time.monotonic() < deadline:
            time.sleep(0.2)
        assert folder.newest_size() == size, keeper.last_error
    finally:
        keeper.stop()
    verify_checkpoint(
        folder.newest.read_text(), audit_verifiers(*anchor_files(world.state), ORIGIN)
    )


def test_stopping_the_checkpointer_signs_what_changed_since(world: World) -> None:
    runtime = world.runtime
    folder = CheckpointFolder(runtime.log_folder)
    keeper = Checkpointer(runtime, seconds=3600)  # never due while this test runs
    keeper.start()
    log_something(runtime, "just before the service stops", int(time.time()))
    time.sleep(1.5)
    assert folder.newest_size() != tree_size(runtime)
    made = keeper.stop()
    assert made is not None
    assert made.size == tree_size(runtime) == folder.newest_size()
    # nothing changed since: stopping again signs nothing
    again = Checkpointer(runtime, seconds=3600)
    again.start()
    assert again.stop() is None


def test_an_unsealed_entry_halts_the_checkpointer_for_good(world: World) -> None:
    runtime, t0 = world.runtime, world.clock.now()
    folder = CheckpointFolder(runtime.log_folder)
    before = folder.newest_size()
    log_something(runtime, "sealed", t0 + 1)
    # An entry no sealing process wrote: what a row forged in the database looks like (no
    # sealer, and no late sealing either: the writer is not this service).
    audit.install_sealer(None)
    audit.install_sealer_factory(audit.database_of(runtime.engine), None)
    forged = log_something(runtime, "forged", t0 + 2)
    start_sealing(runtime)  # sealing again (a new seal key) does not launder it
    log_something(runtime, "sealed again", t0 + 3)
    with pytest.raises(LogHalted, match=f"entry {forged} of the audit log has no valid seal"):
        checkpoint_now(runtime, t0 + 100)
    assert f"entry {forged}" in (halted(runtime) or "")
    keeper = Checkpointer(runtime, seconds=1)
    assert keeper.tick(t0 + 200) is None
    assert f"entry {forged}" in (keeper.last_error or "")
    with pytest.raises(LogHalted):
        checkpoint_now(runtime, t0 + 300, force=True)
    assert folder.newest_size() == before  # nothing signed over the forged entry
    with Session(runtime.engine) as session:
        halts = list(session.exec(select(AuditEvent).where(AuditEvent.action == "log.halted")))
    assert [h.subject for h in halts] == [f"entry {forged}"]  # recorded once, loudly


# -- the real command line and its embedded service ---------------------------------------------
LATER_CEREMONY = """
[ceremony]
name = "MOT QR CA rollover, its token made early"
kind = "ca-rollover"

[token]
label = "MOT-ROOT-2"
custodians = ["张三 (部密码管理处)", "李四 (部科技司)"]
threshold = 2

[witnesses]
names = ["赵六 (公证员)"]

[[qr_ca]]
index = 2
label = "mot-qr-ca-2"
validity_years = 10
"""


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")
def test_jtca_ceremony_run_keeps_the_anchors_and_the_service_checkpoints(tmp_path: Path) -> None:
    """``jtca ceremony run`` writes the root and audit certificates beside the transcript; the
    embedded service wrote its own copies and the closing checkpoint, and its checkpointer
    thread signs the next checkpoint by itself after a change (the shipped policy's N = 10 s)."""
    from cli_desks import JTCA, run, share_args, write_shares

    state = tmp_path / "state"
    env = dict(os.environ, JTCA_STATE=str(state), XDG_CONFIG_HOME=str(tmp_path / "config"))
    for variable in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_SERVER_CERT", "JTCA_DATABASE_URL"):
        env.pop(variable, None)
    assert Path(JTCA).exists()
    try:
        run(env, "init")
        made = json.loads(run(env, "ceremony", "init-token", str(EXAMPLE), "--json").stdout)
        shares = [made["pin_shares"][0]["share"], made["pin_shares"][2]["share"]]
        quorum = share_args(write_shares(tmp_path / "custodians", shares))
        done = json.loads(
            run(
                env, "ceremony", "run", str(EXAMPLE), *quorum, "--witness", WITNESS, "--json"
            ).stdout
        )
        transcript = Path(done["transcript"])
        root_copy = transcript.with_name(f"{transcript.stem}-root.pem")
        audit_copy = transcript.with_name(f"{transcript.stem}-audit.pem")
        assert done["anchors"] == {"root": str(root_copy), "audit": str(audit_copy)}
        audit_files, root_files = anchor_files(state)
        assert sorted(done["service_anchors"]) == sorted(
            str(p) for p in [*audit_files, *root_files]
        )
        assert audit_copy.read_bytes() == audit_files[0].read_bytes()
        assert root_copy.read_bytes() == root_files[0].read_bytes()
        assert done["warnings"] == []
        checked = subprocess.run(
            ["openssl", "verify", "-vfyopt", DISTID, "-CAfile", str(root_copy), str(audit_copy)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.stdout.strip() == f"{audit_copy}: OK", checked.stderr

        verifiers = audit_verifiers([audit_copy], [root_copy], ORIGIN)
        folder = CheckpointFolder(state / "log")
        assert folder.newest.read_text() == done["checkpoint"]
        first, _ = verify_checkpoint(done["checkpoint"], verifiers)

        # A change at the service (a token made for a later ceremony is logged): the embedded
        # service's checkpointer signs a checkpoint over it by itself, within N seconds.
        later = tmp_path / "second-token.toml"
        later.write_text(LATER_CEREMONY, encoding="utf-8")
        run(env, "ceremony", "init-token", str(later), "--json")
        deadline = time.monotonic() + 30
        while (folder.newest_size() or 0) <= first.size and time.monotonic() < deadline:
            time.sleep(0.5)
        newest, _ = verify_checkpoint(folder.newest.read_text(), verifiers)
        assert newest.size > first.size
        assert folder.history(first.size).exists()
    finally:
        subprocess.run(
            [JTCA, "service", "stop"], capture_output=True, env=env, check=False, timeout=60
        )
