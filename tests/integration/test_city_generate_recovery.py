"""Crash-safe city key generation and renewal (issue #14, points 1 and 2), on SQLite and
PostgreSQL with the real SoftHSM2 ministry token of an in-process service.

A real child process runs ``ca.citykeys.workflow.generate`` (or ``renewal.renew``) on the same
state folder and database and is killed by SIGKILL at one of its crash points
(``JTCA_CRASH_AT``): before or after a key is made in the token, before the records'
transaction, after its commit. What it left is checked first (an open intent; after a key was
made, an object in the token with no record), then recovered — by the next run of the same
operation through the service (``recover_before``) or by ``recover`` as ``jtca recover`` and the
service's start run it — and then: no open intent, no key object without its record and no
record without its object, ``intent.recover`` in the audit log, the application (or the renewed
key) as it was, and the operation completed by a rerun with no 'Duplicate key label'.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from officer_desk import DeskClient
from service_fixtures import in_process
from sqlmodel import Session, col, select

from ca.citykeys import workflow
from ca.citykeys.applications import apply, decide_application
from ca.client.http import ServiceError
from ca.core.clock import FixedClock
from ca.ops import city as ops
from ca.service.recovery import recover
from ca.service.runtime import Runtime
from ca.store import intents
from ca.store.db import transaction
from ca.store.models import AuditEvent, CityKey, KeyApplication
from hsm.crashpoints import CRASH_ENV
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import Actor

T0 = 1_790_000_000
DAY = 86400
MINISTRY_TOKEN = "MOT-KEYS"  # noqa: S105 - a token label, not a secret
GUANGZHOU = "440100"
ROOT1 = Actor("mot-root-1", frozenset({"ministry-root-officer"}))
OP1 = Actor("ca-op-1", frozenset({"ministry-ca-operator"}))
GD1 = Actor("gd-1", frozenset({"provincial-officer"}), "440000")
OFFICERS = (
    ("mot-root-1", "ministry-root-officer", None),
    ("ca-op-1", "ministry-ca-operator", None),
    ("gd-1", "provincial-officer", "440000"),
)

# The child: one run of the operation on the service's state folder and database, as the
# service process would run it, killed where JTCA_CRASH_AT says.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ca.citykeys import renewal, workflow
    from ca.store.db import make_engine
    from ca.vault.embedded import EmbeddedVault
    from policies.rules import Actor

    state, url, what, ident, now = sys.argv[1:]
    # JTCA_CRASH_AT=name[:N] with names that hold a colon themselves ('city.generate:after-token'):
    # hsm.crashpoints._parse splits at the first colon (reported); read it at the last one here.
    import os
    from hsm import crashpoints

    spec = os.environ.get(crashpoints.CRASH_ENV, "")
    if spec:
        name, _, nth = spec.rpartition(":")
        crashpoints._targets = {name: int(nth)} if nth.isdigit() else {spec: 1}
    engine = make_engine(url)
    if what == "recover":
        from ca.service.recovery import recover
        from ca.service.runtime import open_runtime

        runtime = open_runtime(Path(state), url=url)
        print([r.result for r in recover(runtime, now=int(now))])
        runtime.close()
        sys.exit(0)
    vault = EmbeddedVault(Path(state))
    if what == "generate":
        actor = Actor("mot-root-1", frozenset({"ministry-root-officer"}))
        keys = workflow.generate(engine, vault, actor, int(ident), now=int(now))
    else:
        actor = Actor("gd-1", frozenset({"provincial-officer"}), "440000")
        keys = [renewal.renew(engine, vault, actor, int(ident), now=int(now))]
    vault.close()
    print("finished", [k.label for k in keys])
    """
)


@dataclass
class Service:
    client: DeskClient
    runtime: Runtime
    url: str
    state: Path

    def run_child(
        self, what: str, ident: int, crash: str | None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.pop(CRASH_ENV, None)
        if crash is not None:
            env[CRASH_ENV] = crash
        return subprocess.run(
            [sys.executable, "-c", CHILD, str(self.state), self.url, what, str(ident), str(T0)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    def crash(self, what: str, ident: int, point: str) -> None:
        done = self.run_child(what, ident, point)
        assert done.returncode == -signal.SIGKILL, (point, done.stdout, done.stderr)
        assert "finished" not in done.stdout


@pytest.fixture
def service(database: Any, tmp_path: Path) -> Iterator[Service]:
    url, engine = database
    from ca.officers.roster import add_officer_in

    with transaction(engine) as session:
        for officer_id, role, province in OFFICERS:
            add_officer_in(
                session,
                officer_id=officer_id,
                name=officer_id,
                roles=[role],
                province=province,
                actor="test",
                now=T0,
            )
    state = tmp_path / "state"
    with in_process(state, url=url, clock=FixedClock(T0)) as (client, runtime):
        with runtime.tokens(create=True) as vault:  # the ministry's transport key, in its token
            workflow.register_transport_key(
                runtime.engine, vault, ROOT1, holder="ministry", token=MINISTRY_TOKEN, now=T0
            )
        yield Service(client, runtime, url, state)


def _approved(engine: Any, cities: list[str]) -> int:
    application = apply(engine, GD1, cities, T0)
    assert application.id is not None
    decide_application(engine, OP1, application.id, approve=True, now=T0)
    return application.id


def _token_objects(runtime: Runtime) -> list[tuple[str, str, bytes]]:
    """(class, label, CKA_ID) of every key object of the city keys in the ministry token."""
    names = {
        pkcs11.ObjectClass.PRIVATE_KEY: "private",
        pkcs11.ObjectClass.PUBLIC_KEY: "public",
        pkcs11.ObjectClass.SECRET_KEY: "secret-key",
    }
    with runtime.tokens() as vault:
        store = vault.store(MINISTRY_TOKEN)

        def collect(session: pkcs11.Session) -> list[tuple[str, str, bytes]]:
            rows = []
            for obj in list(session.get_objects()):
                cls = pkcs11.ObjectClass(obj[pkcs11.Attribute.CLASS])
                label = str(obj[pkcs11.Attribute.LABEL])
                if cls in names and label.startswith("city-"):
                    rows.append((names[cls], label, bytes(obj[pkcs11.Attribute.ID])))
            return sorted(rows)

        return store.token.run(collect)


def _records(runtime: Runtime) -> list[CityKey]:
    with Session(runtime.engine) as session:
        rows = list(session.exec(select(CityKey).order_by(col(CityKey.id))))
        session.expunge_all()
        return rows


def _check_keys_match_records(runtime: Runtime) -> list[CityKey]:
    """No key object without its record, no record without its key (the live ones)."""
    rows = _records(runtime)
    objects = _token_objects(runtime)
    expected = []
    for row in rows:
        uri = Pkcs11Uri.parse(row.ministry_uri)
        assert uri.id is not None
        if row.kind == "sm2":
            expected += [("private", row.label, uri.id), ("public", row.label, uri.id)]
        else:
            expected.append(("secret-key", row.label, uri.id))
    assert objects == sorted(expected)
    return rows


def _open_intents(runtime: Runtime) -> list[intents.IntentRef]:
    with Session(runtime.engine) as session:
        return intents.open_intents(session)


def _recoveries(runtime: Runtime) -> list[dict[str, Any]]:
    import json

    with Session(runtime.engine) as session:
        events = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "intent.recover")
            .order_by(col(AuditEvent.seq))
        ).all()
        return [json.loads(e.details) for e in events]


def _application_state(runtime: Runtime, application_id: int) -> str:
    with Session(runtime.engine) as session:
        row = session.get(KeyApplication, application_id)
        assert row is not None
        return row.state


# Guangzhou's key set is two keys (city-card SM4, city-qr SM2): points :1 and :2 are the first
# and the second key.
GENERATE_POINTS = [
    "city.generate:before-token",
    "city.generate:after-token",
    "city.generate:before-token:2",
    "city.generate:after-token:2",
    "city.generate:before-record",
    "city.generate:after-record",
]
KEYS_MADE_BEFORE = {
    "city.generate:before-token": 0,
    "city.generate:after-token": 1,
    "city.generate:before-token:2": 1,
    "city.generate:after-token:2": 2,
    "city.generate:before-record": 2,
}


@pytest.mark.parametrize("point", GENERATE_POINTS)
def test_generate_killed_then_recovered_by_the_rerun(service: Service, point: str) -> None:
    runtime = service.runtime
    application = _approved(runtime.engine, [GUANGZHOU])
    service.crash("generate", application, point)

    committed = point.endswith("after-record")
    left = _open_intents(runtime)
    if committed:  # the records and the intent's completion are one transaction
        assert left == []
        assert _application_state(runtime, application) == "generated"
        assert len(_check_keys_match_records(runtime)) == 2
        return
    assert [(i.operation, i.subject) for i in left] == [
        ("city.generate", f"application {application}")
    ]
    plan = left[0].plan
    assert plan["token"] == MINISTRY_TOKEN
    labels = [o["label"] for o in plan["objects"]]
    assert labels == [f"city-card-{GUANGZHOU}-g1", f"city-qr-{GUANGZHOU}-g1"]
    assert _records(runtime) == []
    orphans = _token_objects(runtime)
    made = KEYS_MADE_BEFORE[point]
    assert len({label for _, label, _ in orphans}) == made  # the crash left them, unrecorded
    noted = left[0].progress.get("made", {})
    for _kind, label, key_id in orphans:  # found by label, and by the id noted when it was
        if label in noted:
            assert noted[label]["id"] == key_id.hex()

    # the next run of the operation recovers first: no 'Duplicate key label', no stuck intent
    keys = service.client.as_officer("mot-root-1").call(
        ops.GENERATE, ops.GenerateRequest(application=application)
    )
    assert sorted(k.label for k in keys.keys) == labels
    assert _application_state(runtime, application) == "generated"
    assert _open_intents(runtime) == []
    rows = _check_keys_match_records(runtime)
    assert {r.label for r in rows} == set(labels)
    recovered = _recoveries(runtime)
    assert [(r["operation"], r["subject"], r["result"]) for r in recovered] == [
        ("city.generate", f"application {application}", "rolled-back")
    ]
    assert len(recovered[0]["destroyed"]) == made  # a private key takes its public half along


def test_recovery_itself_killed_then_run_again(service: Service) -> None:
    """``jtca recover`` (and the service's start) recover with ``recover``; a recovery killed
    after destroying the orphans and before settling leaves the intent open, and the next
    recovery settles it having nothing left to destroy (idempotent)."""
    runtime = service.runtime
    application = _approved(runtime.engine, [GUANGZHOU])
    service.crash("generate", application, "city.generate:before-record")
    assert len(_token_objects(runtime)) == 3  # an SM4 key and an SM2 pair, unrecorded

    done = service.run_child("recover", 0, "city.generate:recover-destroyed")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _token_objects(runtime) == []  # destroyed before the crash …
    assert len(_open_intents(runtime)) == 1  # … and the intent still open

    results = recover(runtime, now=T0 + 60)
    assert [(r.operation, r.result) for r in results] == [("city.generate", "rolled-back")]
    assert recover(runtime, now=T0 + 120) == []  # nothing left
    assert _open_intents(runtime) == []
    assert _application_state(runtime, application) == "approved"
    recovered = _recoveries(runtime)
    assert len(recovered) == 1
    assert recovered[0]["destroyed"] == []
    assert recovered[0]["result"] == "rolled-back"

    keys = workflow.generate(runtime.engine, _vault(runtime), ROOT1, application, now=T0 + 180)
    assert len(keys) == 2
    _check_keys_match_records(runtime)


def _vault(runtime: Runtime) -> Any:
    class Held:
        def store(self, label: str) -> Any:
            with runtime.tokens() as vault:
                return vault.store(label)

    return Held()


def test_objects_left_before_intents_existed_do_not_block_generation(service: Service) -> None:
    """An object under a planned label with no record and no intent — what a crash of the code
    before issue #14 left, 'Duplicate key label' for ever — is destroyed and audited by the
    next generation, which then succeeds."""
    runtime = service.runtime
    application = _approved(runtime.engine, [GUANGZHOU])
    with runtime.tokens() as vault:
        stale = vault.store(MINISTRY_TOKEN).generate_sm2(f"city-qr-{GUANGZHOU}-g1")
    keys = workflow.generate(runtime.engine, _vault(runtime), ROOT1, application, now=T0)
    assert len(keys) == 2
    qr = next(k for k in keys if k.key_class == "city-qr")
    assert Pkcs11Uri.parse(qr.ministry_uri).id != stale.key_id
    _check_keys_match_records(runtime)
    with Session(runtime.engine) as session:
        event = session.exec(
            select(AuditEvent).where(AuditEvent.action == workflow.ORPHANS_DESTROYED)
        ).one()
    assert str(stale.uri) in event.details


def test_a_label_claimed_by_an_open_intent_is_refused(service: Service) -> None:
    """Two applications for the same city: while the first one's generation is open (its
    process dead, not yet recovered), the second is refused rather than destroying or
    colliding with the first one's keys; once recovered, the second runs."""
    runtime = service.runtime
    first = _approved(runtime.engine, [GUANGZHOU])
    second = _approved(runtime.engine, [GUANGZHOU])
    service.crash("generate", first, "city.generate:after-token")
    before = _token_objects(runtime)
    assert len(before) == 1
    with pytest.raises(intents.IntentBusy, match=f"application {first}"):
        workflow.generate(runtime.engine, _vault(runtime), ROOT1, second, now=T0)
    assert _token_objects(runtime) == before  # the first one's key untouched
    # through the service, the rerun of the second recovers the first (same token, same labels)
    keys = service.client.as_officer("mot-root-1").call(
        ops.GENERATE, ops.GenerateRequest(application=second)
    )
    assert len(keys.keys) == 2
    assert _application_state(runtime, first) == "approved"
    _check_keys_match_records(runtime)
    with pytest.raises(ServiceError):  # the city has live keys now: 一城一密
        service.client.as_officer("mot-root-1").call(
            ops.GENERATE, ops.GenerateRequest(application=first)
        )


RENEW_POINTS = [
    "city.renew:before-token",
    "city.renew:after-token",
    "city.renew:before-record",
    "city.renew:after-record",
]


@pytest.mark.parametrize("point", RENEW_POINTS)
def test_renew_killed_then_recovered(service: Service, point: str) -> None:
    runtime = service.runtime
    application = _approved(runtime.engine, [GUANGZHOU])
    keys = workflow.generate(runtime.engine, _vault(runtime), ROOT1, application, now=T0)
    qr = next(k for k in keys if k.key_class == "city-qr")
    assert qr.id is not None
    with transaction(runtime.engine) as session:  # set up: an active key in its renewal window
        row = session.get(CityKey, qr.id)
        assert row is not None
        row.state, row.activated_at, row.not_after = "active", T0, T0 + 30 * DAY
        session.add(row)
    service.crash("renew", qr.id, point)

    committed = point.endswith("after-record")
    left = _open_intents(runtime)
    if committed:
        assert left == []
        assert len(_check_keys_match_records(runtime)) == 3
        return
    assert [(i.operation, i.subject) for i in left] == [("city.renew", f"key {qr.id}")]
    unrecorded = [o for o in _token_objects(runtime) if o[1].endswith("-g2")]
    assert len(unrecorded) == (0 if point.endswith("before-token") else 2)

    recover(runtime, now=T0 + 60)  # the service's start, jtca recover
    assert _open_intents(runtime) == []
    rows = _check_keys_match_records(runtime)
    old = next(r for r in rows if r.id == qr.id)
    assert (old.state, old.successor_id, old.supersede_at) == ("active", None, None)
    assert [(r["operation"], r["result"]) for r in _recoveries(runtime)] == [
        ("city.renew", "rolled-back")
    ]

    successor = service.client.as_officer("gd-1").call(ops.RENEW, ops.KeyRequest(key=qr.id))
    assert successor.label == f"city-qr-{GUANGZHOU}-g2"
    assert successor.predecessor == qr.id
    assert len(_check_keys_match_records(runtime)) == 3


def test_a_clean_failure_undoes_its_own_work_and_closes_its_intent(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a crash: the records' transaction fails (the audit log refuses the entry) after both
    keys were made. The run destroys them itself and closes its intent as rolled back, so the
    same process can run it again at once (an open intent of a live process would refuse it)."""
    from ca.log import audit

    runtime = service.runtime
    application = _approved(runtime.engine, [GUANGZHOU])
    real_append = audit.append

    def refuse(session: Any, *, action: str, **kwargs: Any) -> Any:
        if action == "city-key.generate":
            raise RuntimeError("the database refused the record")
        return real_append(session, action=action, **kwargs)

    monkeypatch.setattr(audit, "append", refuse)
    with pytest.raises(RuntimeError, match="refused the record"):
        workflow.generate(runtime.engine, _vault(runtime), ROOT1, application, now=T0)
    monkeypatch.setattr(audit, "append", real_append)
    assert _token_objects(runtime) == []
    with Session(runtime.engine) as session:
        (intent,) = intents.recent(session, limit=1)
    assert (intent.operation, intent.state) == ("city.generate", "rolled-back")
    assert intent.outcome is not None
    assert "refused the record" in intent.outcome
    assert "destroyed 2 object(s)" in intent.outcome
    assert set(intent.progress["made"]) == {f"city-card-{GUANGZHOU}-g1", f"city-qr-{GUANGZHOU}-g1"}
    assert _recoveries(runtime) == []  # its owner undid it: nothing for recovery
    keys = workflow.generate(runtime.engine, _vault(runtime), ROOT1, application, now=T0 + 1)
    assert len(keys) == 2
    _check_keys_match_records(runtime)
