"""The city area's operations (ca.ops.city) through the real HTTP API, in-process, on SQLite and
PostgreSQL: apply → approve by a second officer → generate; province scope decided by the
service (reads and actions); refusals as problem details naming the field; a page of keys and
its total; a key view round trip; a key action under dual control, each decision signed by the
deciding officer's own token (issue #12: an unsigned, altered or borrowed signature is refused
and audited); usage reports; the report's rows; no officer, no action.

Every officer here signs in for real (``tests/officer_desk.DeskClient``): their own SoftHSM2
token, challenge and response, signed requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from officer_desk import DeskClient
from service_fixtures import in_process
from sqlmodel import Session, col, select

from ca.citykeys import workflow
from ca.client.http import ServiceError
from ca.core.clock import FixedClock, iso_utc
from ca.ops import city as ops
from ca.ops.base import Empty, Model, Operation
from ca.service.runtime import Runtime
from ca.store.db import transaction
from ca.store.models import Approval, AuditEvent
from policies.rules import Actor

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
DAY = 86400
MINISTRY_TOKEN = "MOT-KEYS"  # noqa: S105 - a token label, not a secret
GUANGDONG = ["440100", "440300", "440600"]  # 广州, 深圳, 佛山

OFFICERS = (
    ("mot-root-1", "ministry-root-officer", None),
    ("mot-root-2", "ministry-root-officer", None),
    ("mot-root-3", "ministry-root-officer", None),
    ("ca-op-1", "ministry-ca-operator", None),
    ("gd-1", "provincial-officer", "440000"),
    ("gd-2", "provincial-officer", "440000"),
    ("fj-1", "provincial-officer", "350000"),
)


@dataclass
class Service:
    client: DeskClient
    runtime: Runtime
    clock: FixedClock

    def as_(self, officer: str | None) -> DeskClient:
        """A client signed in as ``officer`` (None: anonymous)."""
        return self.client.as_officer(officer)

    def decide(
        self, officer: str, kind: str, id: int, *, approve: bool = True, reason: str = ""
    ) -> ops.Decision:
        """``officer``'s decision on ``"{kind} {id}"``, signed with their own token."""
        signed = self.as_(officer)
        at, signature = signed.decision(f"{kind} {id}", approve=approve)
        return signed.call(
            ops.DECIDE,
            ops.DecideRequest(
                kind=kind,  # type: ignore[arg-type]
                id=id,
                approve=approve,
                reason=reason,
                at=at,
                signature=signature,
            ),
        )

    def post(self, op: Any, body: dict[str, Any], officer: str | None = None) -> Any:
        """A raw request (signed as ``officer``'s session when given), to see the problem
        details as any HTTP client does."""
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        signer = self.as_(officer).signer if officer else None
        if signer is not None:
            headers.update(signer.headers("POST", op.path, content))
        return self.client.http.post(op.path, content=content, headers=headers)

    def advance(self, seconds: int) -> None:
        """Time passes: the officers' sessions end (idle limit); they sign in again."""
        self.clock.advance(seconds)
        for officer_id, _, _ in OFFICERS:
            self.client.forget(officer_id)


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
    clock = FixedClock(T0)
    with in_process(tmp_path / "state", url=url, clock=clock) as (client, runtime):
        root = Actor("mot-root-1", frozenset({"ministry-root-officer"}))
        with runtime.tokens(create=True) as vault:  # the ministry's transport key, in its token
            workflow.register_transport_key(
                runtime.engine, vault, root, holder="ministry", token=MINISTRY_TOKEN, now=T0
            )
        yield Service(client, runtime, clock)


def generated(service: Service, cities: list[str]) -> list[ops.KeyView]:
    """apply (gd-1) → approve (ca-op-1, a second officer) → generate (mot-root-1)."""
    application = service.as_("gd-1").call(ops.APPLY, ops.ApplyRequest(cities=cities))
    assert (application.state, application.province, application.cities) == (
        "pending",
        "440000",
        cities,
    )
    decided = service.decide("ca-op-1", "application", application.id)
    assert decided.state == "approved"
    assert decided.application is not None
    assert decided.application.decided_at == T0
    request = ops.GenerateRequest(application=application.id)
    return service.as_("mot-root-1").call(ops.GENERATE, request).keys


def test_apply_approve_generate(service: Service) -> None:
    keys = generated(service, ["440100"])
    assert sorted(k.key_class for k in keys) == ["city-card", "city-qr"]
    assert {(k.city, k.city_name, k.province, k.state, k.stage) for k in keys} == {
        ("440100", "广州市", "440000", "pre-active", "generated")
    }
    assert all(k.not_before == T0 and k.days_left > 0 for k in keys)
    listed = service.as_("mot-root-1").call(ops.APPLICATIONS, ops.ApplicationsRequest())
    assert [(a.state, a.applicant) for a in listed.applications] == [("generated", "gd-1")]
    with pytest.raises(ServiceError) as twice:
        service.as_("mot-root-1").call(
            ops.GENERATE, ops.GenerateRequest(application=listed.applications[0].id)
        )
    assert (twice.value.exit_code, twice.value.title) == (6, "Key application")
    assert "only an approved application" in twice.value.message


def test_the_applicant_cannot_approve_their_own_application(service: Service) -> None:
    application = service.as_("gd-1").call(ops.APPLY, ops.ApplyRequest(cities=["440100"]))
    with pytest.raises(ServiceError) as refused:  # gd-1's own token signs it: still their own
        service.decide("gd-1", "application", application.id)
    assert (refused.value.status, refused.value.exit_code) == (403, 6)
    assert "dual control" in refused.value.message
    pending = ops.ApplicationsRequest(decidable=True)
    assert service.as_("gd-2").call(ops.APPLICATIONS, pending).applications == []
    assert [a.id for a in service.as_("ca-op-1").call(ops.APPLICATIONS, pending).applications] == [
        application.id
    ]


def test_a_decision_counts_only_signed_by_the_deciders_own_token(service: Service) -> None:
    """Unsigned, borrowed, altered, stale and forged decisions are refused (401) and audited
    as auth.refused naming the subject; the one signed decision keeps statement, signature and
    certificate serial in the Approval row and in its audit event, checkable with the
    officer's key alone."""
    application = service.as_("gd-1").call(ops.APPLY, ops.ApplyRequest(cities=["440100"]))
    subject = f"application {application.id}"
    operator, root = service.as_("ca-op-1"), service.as_("mot-root-1")

    unsigned = service.post(
        ops.DECIDE, {"kind": "application", "id": application.id, "approve": True}, "ca-op-1"
    )
    assert unsigned.status_code == 422
    assert unsigned.json()["field"] in {"at", "signature"}

    at, signature = operator.decision(subject)
    wrong: list[tuple[str, DeskClient, ops.DecideRequest, str]] = [
        (  # ca-op-1's signature, sent in mot-root-1's session
            "borrowed",
            root,
            ops.DecideRequest(
                kind="application", id=application.id, approve=True, at=at, signature=signature
            ),
            "bad-signature",
        ),
        (  # signed as an approval, sent as a rejection
            "altered",
            operator,
            ops.DecideRequest(
                kind="application",
                id=application.id,
                approve=False,
                reason="no",
                at=at,
                signature=signature,
            ),
            "bad-signature",
        ),
        (  # the signed time moved
            "retimed",
            operator,
            ops.DecideRequest(
                kind="application", id=application.id, approve=True, at=at + 1, signature=signature
            ),
            "bad-signature",
        ),
        (  # 64 bytes that are no signature of anyone's
            "forged",
            operator,
            ops.DecideRequest(
                kind="application", id=application.id, approve=True, at=at, signature=bytes(64)
            ),
            "bad-signature",
        ),
        (  # signed an hour ago: outside the policy's clock skew
            "stale",
            operator,
            ops.DecideRequest(
                kind="application",
                id=application.id,
                approve=True,
                at=T0 - 3600,
                signature=signature,
            ),
            "clock-skew",
        ),
    ]
    for what, client, request, reason in wrong:
        with pytest.raises(ServiceError) as refused:
            client.call(ops.DECIDE, request)
        assert (refused.value.status, refused.value.exit_code, refused.value.reason) == (
            401,
            6,
            reason,
        ), what
    with Session(service.runtime.engine) as session:
        audited = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "auth.refused")
            .where(AuditEvent.subject == subject)
            .order_by(col(AuditEvent.seq))
        ).all()
        assert [(e.actor, json.loads(e.details)["reason"]) for e in audited] == [
            ("mot-root-1", "bad-signature"),
            ("ca-op-1", "bad-signature"),
            ("ca-op-1", "bad-signature"),
            ("ca-op-1", "bad-signature"),
            ("ca-op-1", "clock-skew"),
        ]
        assert session.exec(select(Approval).where(Approval.subject == subject)).all() == []
    listed = service.as_("gd-2").call(ops.APPLICATIONS, ops.ApplicationsRequest())
    assert [a.state for a in listed.applications] == ["pending"]  # nothing counted

    decided = operator.call(
        ops.DECIDE,
        ops.DecideRequest(
            kind="application", id=application.id, approve=True, at=at, signature=signature
        ),
    )
    assert decided.state == "approved"
    serial = operator.signer.data.certificate_serial if operator.signer else 0
    with Session(service.runtime.engine) as session:
        approval = session.exec(select(Approval).where(Approval.subject == subject)).one()
        event = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "city-key.approve")
            .where(AuditEvent.subject == subject)
        ).one()
    assert (approval.approver, approval.certificate_serial) == ("ca-op-1", serial)
    assert approval.statement is not None
    assert approval.signature is not None
    assert f"subject: {subject}\n" in approval.statement
    assert f"certificate: {serial}\n" in approval.statement
    operator.token("ca-op-1").public_key.verify_der(approval.signature, approval.statement.encode())
    details = json.loads(event.details)
    assert (details["statement"], details["certificate_serial"]) == (approval.statement, serial)


def test_another_provinces_city_or_key_is_refused(service: Service) -> None:
    response = service.post(ops.APPLY, {"cities": ["440100"]}, officer="fj-1")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["exit_code"] == 6
    assert problem["title"] == "Not allowed by policy"
    assert problem["detail"].startswith("deny/other-province")
    assert "Traceback" not in response.text

    keys = generated(service, ["440100"])
    cases: list[tuple[Operation[Any, Any], Model]] = [
        (ops.SUSPEND, ops.KeyActionRequest(keys=[keys[0].id], reason="not mine")),
        (ops.SUSPEND, ops.KeyActionRequest(city="440100", reason="not mine")),
        (ops.CLEANUP, ops.CleanupRequest(keys=[keys[0].id], reason="not mine")),
        (ops.SHOW, ops.KeyRequest(key=keys[0].id)),
        (ops.KEYS, ops.KeysRequest(province="440000")),
        (ops.SUMMARY, ops.SummaryRequest(province="440000")),
    ]
    for op, request in cases:
        with pytest.raises(ServiceError) as refused:
            service.as_("fj-1").call(op, request)
        assert (refused.value.status, refused.value.exit_code) == (403, 6), op.name
        assert "deny/other-province" in refused.value.message, op.name
    assert refused.value.field == "province"
    # what fj-1 may read: their own province, which has no key yet
    assert service.as_("fj-1").call(ops.KEYS, ops.KeysRequest()).keys == []
    assert service.as_("fj-1").call(ops.SUMMARY, ops.SummaryRequest()).total == 0
    assert service.as_("fj-1").call(ops.APPLICATIONS, ops.ApplicationsRequest()).applications == []
    assert len(service.as_("gd-2").call(ops.KEYS, ops.KeysRequest()).keys) == 2
    assert len(service.as_("mot-root-1").call(ops.KEYS, ops.KeysRequest()).keys) == 2


def test_a_bad_city_code_names_the_field(service: Service) -> None:
    response = service.post(ops.APPLY, {"cities": ["440100", "440199"]}, officer="gd-1")
    assert response.status_code == 422
    problem = response.json()
    assert (problem["field"], problem["exit_code"], problem["title"]) == (
        "cities[1]",
        3,
        "Bad input",
    )
    assert problem["detail"].startswith("cities[1] 440199: not a city code")
    for body, field in (
        ({"city": "abc"}, "city"),
        ({"province": "440100"}, "province"),
        ({"state": "suspend"}, "state"),
        ({"key_class": "city-crad"}, "key_class"),
        ({"expiring": -1}, "expiring"),
        ({"limit": 0}, "limit"),
    ):
        response = service.post(ops.KEYS, body, officer="gd-1")
        assert response.status_code == 422, body
        assert response.json()["field"] == field
        assert response.json()["detail"].startswith(f"{field} {next(iter(body.values()))}:")
    response = service.post(ops.KEYS, {"limit": "many"}, officer="gd-1")  # the model says
    assert (response.status_code, response.json()["field"]) == (422, "limit")
    response = service.post(ops.PAGE, {"sort": "colour"}, officer="gd-1")
    assert (response.status_code, response.json()["field"]) == (422, "sort")
    response = service.post(ops.SUSPEND, {"city": "abc", "reason": "x"}, officer="gd-1")
    assert (response.status_code, response.json()["field"]) == (422, "city")


def test_a_page_of_keys_and_the_total(service: Service) -> None:
    keys = generated(service, GUANGDONG)
    assert len(keys) == 6
    ministry = service.as_("mot-root-1")
    page = ministry.call(ops.PAGE, ops.PageRequest(sort="label", limit=4))
    assert page.total == 6
    assert [k.label for k in page.keys] == sorted(k.label for k in keys)[:4]
    last = ministry.call(ops.PAGE, ops.PageRequest(sort="label", descending=True, limit=1))
    assert [k.label for k in last.keys] == [max(k.label for k in keys)]
    named = service.as_("gd-1").call(ops.PAGE, ops.PageRequest(text="深圳"))
    assert (named.total, {k.city for k in named.keys}) == (2, {"440300"})
    qr = service.as_("gd-1").call(ops.PAGE, ops.PageRequest(key_class="city-qr", limit=2))
    assert (qr.total, len(qr.keys)) == (3, 2)
    elsewhere = service.as_("fj-1").call(ops.PAGE, ops.PageRequest())
    assert (elsewhere.total, elsewhere.keys) == (0, [])
    with pytest.raises(ServiceError) as refused:
        ministry.call(ops.PAGE, ops.PageRequest(limit=100_000))
    assert (refused.value.status, refused.value.field) == (422, "limit")


def test_a_key_view_round_trip(service: Service) -> None:
    keys = generated(service, ["440100"])
    qr = next(k for k in keys if k.key_class == "city-qr")
    shown = service.as_("gd-1").call(ops.SHOW, ops.KeyRequest(key=qr.id))
    assert shown == qr
    assert ops.KeyView.model_validate_json(shown.model_dump_json()) == shown
    assert shown.public_key is not None
    assert len(shown.public_key) == 66
    assert shown.label == "city-qr-440100-g1"
    assert (shown.kind, shown.generation, shown.application) == ("sm2", 1, qr.application)
    listed = service.as_("gd-2").call(ops.KEYS, ops.KeysRequest(city="440100", key_class="city-qr"))
    assert listed.keys == [shown]
    missing = service.post(ops.SHOW, {"key": 999_999}, officer="gd-1")
    assert (missing.status_code, missing.json()["exit_code"]) == (404, 6)
    assert missing.json()["detail"] == "no city key 999999"
    service.advance(10 * DAY)
    later = service.as_("gd-1").call(ops.SHOW, ops.KeyRequest(key=qr.id))
    assert later.days_left == shown.days_left - 10


def test_a_key_action_under_dual_control(service: Service) -> None:
    keys = generated(service, ["440100"])
    card = next(k for k in keys if k.key_class == "city-card")
    requested = service.as_("mot-root-1").call(
        ops.REVOKE, ops.KeyActionRequest(keys=[card.id], reason="lost token")
    )
    assert (requested.state, requested.required, requested.keys) == ("pending", 2, [card.label])
    assert requested.action_id is not None
    listed = service.as_("ca-op-1").call(ops.ACTIONS, ops.ActionsRequest()).actions
    assert [(a.id, a.labels, a.approvals) for a in listed] == [
        (requested.action_id, [card.label], 0)
    ]
    assert service.as_("fj-1").call(ops.ACTIONS, ops.ActionsRequest()).actions == []
    decidable = ops.ActionsRequest(decidable=True)
    assert service.as_("mot-root-1").call(ops.ACTIONS, decidable).actions == []  # their own
    assert service.as_("ca-op-1").call(ops.ACTIONS, decidable).actions == []  # not their role
    assert len(service.as_("mot-root-2").call(ops.ACTIONS, decidable).actions) == 1

    action = requested.action_id
    with pytest.raises(ServiceError) as refused:  # signed by gd-2 for real: not their role
        service.decide("gd-2", "action", action)
    assert (refused.value.status, refused.value.exit_code) == (403, 6)
    first = service.decide("mot-root-2", "action", action)
    assert first.outcome is not None
    assert (first.state, first.outcome.approvals) == ("pending", 1)
    with pytest.raises(ServiceError) as twice:
        service.decide("mot-root-2", "action", action)
    assert "already decided" in twice.value.message
    done = service.decide("mot-root-3", "action", action)
    assert done.state == "done"
    revoked = service.as_("mot-root-1").call(ops.SHOW, ops.KeyRequest(key=card.id))
    assert (revoked.state, revoked.reason) == ("revoked", "lost token")
    assert revoked.destroy_after == T0 + 30 * DAY
    assert service.as_("mot-root-1").call(ops.ACTIONS, ops.ActionsRequest()).actions == []

    # after the grace period the material goes, from the ministry token, under dual control
    service.advance(31 * DAY)
    destroy = service.as_("mot-root-1").call(ops.DESTROY_MATERIAL, ops.DestroyRequest())
    assert (destroy.state, destroy.keys) == ("pending", [card.label])
    assert destroy.action_id is not None
    destroyed = service.decide("mot-root-2", "action", destroy.action_id)
    assert destroyed.state == "done"
    gone = service.as_("mot-root-1").call(ops.SHOW, ops.KeyRequest(key=card.id))
    assert (gone.state, gone.destroyed_at) == ("destroyed", T0 + 31 * DAY)


def test_usage_reports_summary_and_report_rows(service: Service) -> None:
    keys = generated(service, ["440100", "440300"])
    qr = next(k for k in keys if k.key_class == "city-qr" and k.city == "440100")
    first, last = iso_utc(T0 + 3600), iso_utc(T0 + 7200)  # after generation, before now
    text = (
        "key,city,first_use,last_use,used_in\n"
        f"{qr.label},440100,{first},{last},440106\n"
        f"nobody-g1,440100,{first},not a time,440106\n"
        f"unknown-g1,440100,{first},{last},440106\n"
    )
    service.advance(DAY)
    result = service.as_("gd-1").call(
        ops.USAGE, ops.UsageRequest(report=text, format="csv", source="usage.csv")
    )
    assert result.accepted == 2
    assert [(r.line, r.field) for r in result.refused] == [(3, "last_use")]
    assert {(v.line, v.reason) for v in result.violations} == {
        (2, "used-before-installation"),
        (4, "unknown-key"),
    }
    assert result.activated == []  # not installed yet: flagged, not activated
    with pytest.raises(ServiceError) as again:
        service.as_("gd-1").call(
            ops.USAGE, ops.UsageRequest(report=text, format="csv", source="usage.csv")
        )
    assert again.value.title == "Report already imported"
    flagged = service.as_("mot-root-1").call(ops.KEYS, ops.KeysRequest(violations=True)).keys
    assert [k.label for k in flagged] == [qr.label]
    assert "violation" in flagged[0].flags

    counts = service.as_("gd-2").call(ops.SUMMARY, ops.SummaryRequest())
    assert (counts.total, counts.violations, counts.states["pre-active"]) == (4, 1, 4)
    assert set(counts.states) >= {"pre-active", "active", "suspended", "revoked", "destroyed"}

    rows = service.as_("ca-op-1").call(ops.REPORT, ops.ReportRequest(province="440000"))
    assert (rows.generated_at, rows.scope) == (T0 + DAY, "province 440000")
    assert sorted(k.label for k in rows.keys) == sorted(k.label for k in keys)
    assert service.as_("fj-1").call(ops.REPORT, ops.ReportRequest()).scope == "province 350000"


def test_no_officer_no_action(service: Service) -> None:
    response = service.post(ops.APPLY, {"cities": ["440100"]})
    assert response.status_code == 401
    assert response.json()["exit_code"] == 6
    swept = service.as_(None).call(ops.SWEEP, Empty())  # time-driven: no officer needed
    assert swept.changed == []


def test_no_officer_no_read(service: Service) -> None:
    """A province's keys, applications and pending actions are no anonymous caller's: every
    read is refused with 401 before the use case runs (not even whether a key exists), and each
    refusal is audited as auth.refused, reason no-session."""
    keys = generated(service, ["440100"])
    reads: list[tuple[Operation[Any, Any], dict[str, Any]]] = [
        (ops.KEYS, {}),
        (ops.PAGE, {}),
        (ops.SHOW, {"key": keys[0].id}),
        (ops.SHOW, {"key": 999_999}),
        (ops.SUMMARY, {}),
        (ops.REPORT, {"province": "440000"}),
        (ops.APPLICATIONS, {}),
        (ops.ACTIONS, {}),
    ]
    for op, body in reads:
        response = service.post(op, body)
        assert response.status_code == 401, op.name
        problem = response.json()
        assert (problem["title"], problem["exit_code"]) == ("Not signed in", 6), op.name
        assert problem["detail"] == (
            f"{op.name} needs a signed-in officer: sign in first (jtca login)"
        )
        assert "440100" not in response.text
        assert "Traceback" not in response.text
    with pytest.raises(ServiceError) as refused:  # the client says the same
        service.as_(None).call(ops.KEYS, ops.KeysRequest())
    assert (refused.value.status, refused.value.title) == (401, "Not signed in")
    with Session(service.runtime.engine) as session:
        audited = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "auth.refused")
            .order_by(col(AuditEvent.seq))
        ).all()
    assert [(e.actor, e.subject, json.loads(e.details)["reason"]) for e in audited] == [
        ("anonymous", op.name, "no-session") for op, _ in reads
    ] + [("anonymous", "city.keys", "no-session")]


def test_a_provincial_officer_reads_their_own_province_only(service: Service) -> None:
    """Keys of two provinces: each provincial officer's keys, page, summary, report,
    applications and pending actions are their own province's, asked for or not; a ministry
    officer reads both."""
    guangdong = generated(service, ["440100"])
    fujian_application = service.as_("fj-1").call(ops.APPLY, ops.ApplyRequest(cities=["350100"]))
    service.decide("ca-op-1", "application", fujian_application.id)
    fujian = (
        service.as_("mot-root-1")
        .call(ops.GENERATE, ops.GenerateRequest(application=fujian_application.id))
        .keys
    )
    revoking = service.as_("mot-root-1").call(  # a Guangdong key's revocation, pending
        ops.REVOKE, ops.KeyActionRequest(keys=[guangdong[0].id], reason="lost")
    )
    assert revoking.state == "pending"
    labels = {
        "440000": sorted(k.label for k in guangdong),
        "350000": sorted(k.label for k in fujian),
    }
    for officer, province in (("gd-2", "440000"), ("fj-1", "350000")):
        reader = service.as_(officer)
        assert (
            sorted(k.label for k in reader.call(ops.KEYS, ops.KeysRequest()).keys)
            == labels[province]
        ), officer
        page = reader.call(ops.PAGE, ops.PageRequest())
        assert (page.total, sorted(k.label for k in page.keys)) == (2, labels[province])
        assert reader.call(ops.SUMMARY, ops.SummaryRequest()).total == 2
        report = reader.call(ops.REPORT, ops.ReportRequest())
        assert (report.scope, sorted(k.label for k in report.keys)) == (
            f"province {province}",
            labels[province],
        )
        applications = reader.call(ops.APPLICATIONS, ops.ApplicationsRequest()).applications
        assert {a.province for a in applications} == {province}
        actions = reader.call(ops.ACTIONS, ops.ActionsRequest()).actions
        assert [a.id for a in actions] == ([revoking.action_id] if province == "440000" else [])
        other = fujian[0] if province == "440000" else guangdong[0]
        with pytest.raises(ServiceError) as refused:
            reader.call(ops.SHOW, ops.KeyRequest(key=other.id))
        assert (refused.value.status, refused.value.exit_code) == (403, 6)
        assert refused.value.message.startswith("deny/other-province")
    ministry = service.as_("ca-op-1")
    assert sorted(k.label for k in ministry.call(ops.KEYS, ops.KeysRequest()).keys) == sorted(
        labels["440000"] + labels["350000"]
    )
    assert ministry.call(ops.SUMMARY, ops.SummaryRequest()).total == 4
    assert ministry.call(ops.REPORT, ops.ReportRequest()).scope == "national"
    assert {
        a.province for a in ministry.call(ops.APPLICATIONS, ops.ApplicationsRequest()).applications
    } == {"440000", "350000"}
    with Session(service.runtime.engine) as session:
        refusals = session.exec(select(AuditEvent).where(AuditEvent.action == "auth.refused")).all()
    assert sorted((e.actor, e.subject) for e in refusals) == [
        ("fj-1", "city.show"),
        ("gd-2", "city.show"),
    ]
