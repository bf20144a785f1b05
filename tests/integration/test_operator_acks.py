"""Operators with an SM2 key in their own (real SoftHSM2) token and their signed load
acknowledgments (issue #16, point 2), against a real service over a demo-seeded state:
registration with a proof of possession, ``POST /acks`` verified, stored and audited, the
15-day overdue report reading it, and every refusal a problem answer that keeps nothing; then
the command line (``jtca operator keygen`` and ``jtca operator ack``) against the embedded
service."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from officer_desk import FixedPinSource
from service_fixtures import in_process
from sqlmodel import Session, col, select
from test_lists_http import demo_env, newest, seed_demo

from ca.core.clock import FixedClock
from ca.lists.asn1 import ListType
from ca.ops import lists as lists_ops
from ca.ops import operators as ops
from ca.ops.base import Empty
from ca.publish.acks import DAY, LOAD_DEADLINE_DAYS, SIGNED_ACK
from ca.site.operator_token import OperatorToken, create_embedded_token
from ca.store.models import AuditEvent, ListAcknowledgment, ListOperator

JTCA = str(Path(sys.executable).with_name("jtca"))
PIN = "operator-pin-1"
KEYGEN_PIN = ("--pin-source", "env:OP_PIN", "--json")
ACK = (JTCA, "operator", "ack", "--operator", "dg-bus", "--type", "city-list")
ACK += ("--terminals", "80", "--city", "441900")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("operator-acks") / "state"
    seed_demo(state)
    return state


def operator_token(state: Path, label: str) -> OperatorToken:
    """A fresh SoftHSM2 token in the state's embedded SoftHSM2 with the operator key made in it."""
    softhsm = state / "softhsm2"
    create_embedded_token(softhsm, label, PIN)
    token = OperatorToken(label, FixedPinSource(PIN), module=None, softhsm=softhsm)
    token.generate_key()
    return token


@pytest.fixture
def world(seeded: Path) -> Iterator[dict[str, Any]]:
    clock = FixedClock(0)
    with in_process(seeded, clock=clock, seal=False) as (client, runtime):
        row = newest(runtime, ListType.CITIES)
        clock.set(max(row.this_update, row.published_at) + 60)
        yield {
            "state": seeded,
            "client": client,
            "runtime": runtime,
            "clock": clock,
            "officer": demo_officer(client, seeded, "ca-op-2", clock),
        }


def demo_officer(client: Any, state: Path, officer_id: str, clock: FixedClock) -> Any:
    """``client`` signed in as the demo's ``officer_id`` with the token the demo made for them
    (its PIN from demo-credentials.json), by challenge and response as ``jtca login`` does."""
    from ca.client.session import RequestSigner
    from ca.site.officer_token import OfficerToken, sign_in

    credentials = json.loads((state / "demo-credentials.json").read_text(encoding="utf-8"))
    held = next(o for o in credentials["officers"] if o["id"] == officer_id)
    token = OfficerToken(held["token_label"], FixedPinSource(held["pin"]), state=state)
    try:
        data = sign_in(client.signed_in(None), token, officer_id, clock=clock.now)
    finally:
        token.close()
    return client.signed_in(RequestSigner(data, clock.now))


def register(world: dict[str, Any], operator_id: str, token: OperatorToken, **kw: Any) -> Any:
    public = token.public_key.uncompressed.hex()
    proof = token.sign_der(ops.possession_message(operator_id, public)).hex()
    request = ops.OperatorKeyRequest(
        operator_id=operator_id,
        name=kw.pop("name", "广州公交"),
        province=kw.pop("province", "440000"),
        cities=kw.pop("cities", ["440100", "440300"]),
        public_key=kw.pop("public_key", public),
        proof=kw.pop("proof", proof),
    )
    return kw.pop("by", world["officer"]).call(ops.REGISTER, request)


def statement(world: dict[str, Any], operator_id: str, **kw: Any) -> ops.AckStatement:
    row = newest(world["runtime"], ListType(kw.get("list_type", "city-list")))
    now = world["clock"].now()
    fields: dict[str, Any] = {
        "operator": operator_id,
        "list_type": row.list_type,
        "sequence": row.sequence,
        "sm3": row.sm3,
        "terminals": 1200,
        "loaded_at": now - 30,
        "signed_at": now,
        "nonce": secrets.token_hex(16),
        "cities": ["440100"],
    }
    fields.update(kw)
    return ops.AckStatement(**fields)


def post(world: dict[str, Any], text: str, signature: bytes) -> Any:
    return world["client"].http.post(
        "/acks", json={"statement": text, "signature": signature.hex()}
    )


def signed(token: OperatorToken, text: str) -> bytes:
    return token.sign_der(ops.signed_message(text))


def ack_count(world: dict[str, Any]) -> tuple[int, int]:
    with Session(world["runtime"].engine) as session:
        acks = len(session.exec(select(ListAcknowledgment)).all())
        events = len(
            session.exec(select(AuditEvent).where(col(AuditEvent.action) == SIGNED_ACK)).all()
        )
    return acks, events


def test_register_ack_audit_and_overdue(world: dict[str, Any]) -> None:
    token = operator_token(world["state"], "op-gz-bus")
    try:
        view = register(world, "gz-bus", token)
        assert view.public_key == token.public_key.uncompressed.hex()
        assert view.cities == ["440100", "440300"]
        assert view.province == "440000"

        # the operator is owed the lists 15 days after registering
        world["clock"].advance(LOAD_DEADLINE_DAYS * DAY + 60)
        officer = demo_officer(world["client"], world["state"], "ca-op-2", world["clock"])
        overdue = officer.call(lists_ops.OVERDUE, lists_ops.OverdueRequest())
        owed = {(o.operator_id, o.list_type) for o in overdue.operators}
        assert ("gz-bus", "city-list") in owed

        text = ops.statement_text(statement(world, "gz-bus"))
        answer = post(world, text, signed(token, text))
        assert answer.status_code == 201, answer.text
        receipt = ops.AckReceipt.model_validate_json(answer.content)
        row = newest(world["runtime"], ListType.CITIES)
        assert (receipt.list_type, receipt.sequence, receipt.terminals) == (
            "city-list",
            row.sequence,
            1200,
        )
        with Session(world["runtime"].engine) as session:
            kept = session.exec(
                select(ListAcknowledgment).where(ListAcknowledgment.operator_id == "gz-bus")
            ).one()
            assert kept.list_sm3 == row.sm3
            assert kept.signature is not None
            event = session.exec(
                select(AuditEvent).where(col(AuditEvent.action) == SIGNED_ACK)
            ).one()
            assert event.actor == "operator:gz-bus"
            details = json.loads(event.details)
            assert details["statement"] == text
            assert details["statement_sm3"] == receipt.statement_sm3

        overdue = officer.call(lists_ops.OVERDUE, lists_ops.OverdueRequest())
        owed = {(o.operator_id, o.list_type) for o in overdue.operators}
        assert ("gz-bus", "city-list") not in owed
        assert ("gz-bus", "issuer-whitelist") in owed  # still not acknowledged

        listed = officer.call(ops.LIST, Empty())
        mine = next(o for o in listed.operators if o.operator_id == "gz-bus")
        assert mine.newest_ack == {"city-list": row.sequence}
    finally:
        token.close()


def test_refusals_name_the_check_and_keep_nothing(world: dict[str, Any]) -> None:
    token = operator_token(world["state"], "op-sz-metro")
    stranger = operator_token(world["state"], "op-stranger")
    try:
        register(world, "sz-metro", token, cities=["440300"])
        row = newest(world["runtime"], ListType.CITIES)
        now = world["clock"].now()
        before = ack_count(world)

        def refused(text: str, signature: bytes, status: int, title: str, says: str) -> None:
            answer = post(world, text, signature)
            assert answer.status_code == status, answer.text
            problem = answer.json()
            assert problem["title"] == title, problem
            assert says in problem["detail"], problem
            assert ack_count(world) == before

        def case(status: int, title: str, says: str, **kw: Any) -> None:
            text = ops.statement_text(statement(world, kw.pop("operator", "sz-metro"), **kw))
            refused(text, signed(token, text), status, title, says)

        case(403, "Unknown operator", "nobody", operator="nobody")
        good = ops.statement_text(statement(world, "sz-metro", cities=["440300"]))
        refused(good, signed(stranger, good), 403, "Invalid signature", "sz-metro")
        refused(good, b"\x30\x00", 403, "Invalid signature", "sz-metro")
        case(422, "Statement from the future", "future", signed_at=now + 3600, cities=[])
        case(422, "Stale statement", "more than a day", signed_at=now - 2 * DAY, cities=[])
        case(422, "Load in the future", "loaded_at", loaded_at=now + 3600, cities=[])
        case(422, "Not the published list", row.sm3, sm3="ab" * 32, cities=[])
        case(422, "Unknown version", "never published", sequence=row.sequence + 100, cities=[])
        case(
            422,
            "Load before publication",
            "before",
            loaded_at=row.published_at - 10,
            cities=[],
        )
        case(403, "Outside the operator's scope", "440100", cities=["440100"])
        spaced = good.replace(",", ", ", 1)
        refused(spaced, signed(token, spaced), 422, "Bad statement", "canonical")
        broken = good.replace('"terminals":1200', '"terminals":-1')
        refused(broken, signed(token, broken), 422, "Bad statement", "terminals")

        # the good one is taken once: the same body again is a replay, a new nonce a duplicate
        answer = post(world, good, signed(token, good))
        assert answer.status_code == 201, answer.text
        before = ack_count(world)
        refused(good, signed(token, good), 409, "Replayed statement", "nonce")
        case(409, "Already acknowledged", "already acknowledged", cities=["440300"])
    finally:
        token.close()
        stranger.close()


def test_registration_refusals(world: dict[str, Any]) -> None:
    from ca.client.http import ServiceError

    token = operator_token(world["state"], "op-fs-bus")
    other = operator_token(world["state"], "op-fs-other")
    try:
        wrong = other.sign_der(
            ops.possession_message("fs-bus", token.public_key.uncompressed.hex())
        ).hex()
        with pytest.raises(ServiceError) as exc:
            register(world, "fs-bus", token, proof=wrong)
        assert exc.value.title == "Proof of possession refused"
        with pytest.raises(ServiceError) as exc:
            register(world, "fs-bus", token, cities=["450100"])
        assert "not in province 440000" in exc.value.message
        gd1 = demo_officer(world["client"], world["state"], "gd-1", world["clock"])
        with pytest.raises(ServiceError) as exc:  # a province registers its own operators only
            register(world, "fs-bus", token, province="450000", cities=["450100"], by=gd1)
        assert exc.value.status == 403
        with Session(world["runtime"].engine) as session:
            assert session.get(ListOperator, "fs-bus") is None
        register(world, "fs-bus", token, by=gd1)  # Guangdong's officer, a Guangdong operator
        with Session(world["runtime"].engine) as session:
            row = session.get(ListOperator, "fs-bus")
            assert row is not None
            assert row.province == "440000"
        with pytest.raises(ServiceError) as exc:  # one key, one operator
            register(world, "fs-bus-2", token)
        assert "already operator fs-bus's" in exc.value.message
    finally:
        token.close()
        other.close()


def test_command_line_keygen_and_ack(seeded: Path, tmp_path: Path) -> None:
    env = dict(demo_env(seeded), OP_PIN=PIN)
    keygen = subprocess.run(
        [JTCA, "operator", "keygen", "--operator", "dg-bus", "--create-token", *KEYGEN_PIN],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert keygen.returncode == 0, keygen.stderr
    made = json.loads(keygen.stdout)
    assert made["token"] == "op-dg-bus"  # noqa: S105 - a token's label
    assert PIN not in keygen.stdout + keygen.stderr

    clock = FixedClock(0)
    with in_process(seeded, clock=clock, seal=False) as (client, runtime):
        row = newest(runtime, ListType.CITIES)
        clock.set(max(row.this_update, row.published_at) + 60)
        officer = demo_officer(client, seeded, "ca-op-2", clock)
        officer.call(
            ops.REGISTER,
            ops.OperatorKeyRequest(
                operator_id="dg-bus",
                province="440000",
                cities=["441900"],
                public_key=made["public_key"],
                proof=made["proof"],
            ),
        )
        row = newest(runtime, ListType.CITIES)
        with Session(runtime.engine) as session:
            from ca.store.models import ListVersionFile

            der = session.get(ListVersionFile, row.id).der  # type: ignore[union-attr]
    list_file = tmp_path / "city-list.der"
    list_file.write_bytes(der)

    def ack(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ACK, "--list-file", str(list_file), *KEYGEN_PIN, *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        done = ack()
        assert done.returncode == 0, done.stderr
        receipt = json.loads(done.stdout)
        assert (receipt["operator_id"], receipt["sequence"]) == ("dg-bus", row.sequence)
        again = ack()
        assert again.returncode == 4, again.stderr
        assert "Already acknowledged" in again.stderr
        assert "Traceback" not in again.stderr
        wrong = ack("--loaded-at", "yesterday")
        assert wrong.returncode == 3
        assert "--loaded-at" in wrong.stderr
    finally:
        subprocess.run([JTCA, "service", "stop"], env=env, timeout=60, check=False)
    with (
        in_process(seeded, clock=clock, seal=False) as (_, runtime),
        Session(runtime.engine) as session,
    ):
        kept = session.exec(
            select(ListAcknowledgment).where(ListAcknowledgment.operator_id == "dg-bus")
        ).all()
    assert [(k.sequence, k.terminals) for k in kept] == [(row.sequence, 80)]
