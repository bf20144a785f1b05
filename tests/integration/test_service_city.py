"""The city area's operations (ca.ops.city) through the real HTTP API, in-process, on SQLite and
PostgreSQL: apply → approve by a second officer → generate; province scope decided by the
service (reads and actions); refusals as problem details naming the field; a page of keys and
its total; a key view round trip; a key action under dual control; usage reports; the
report's rows; no officer, no action."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import in_process

from ca.citykeys import workflow
from ca.client.http import Client, ServiceError
from ca.clock import FixedClock, iso_utc
from ca.ops import city as ops
from ca.ops.base import Empty, Model, Operation
from ca.service.runtime import Runtime
from ca.store.db import transaction
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
    client: Client
    runtime: Runtime
    clock: FixedClock

    def as_(self, officer: str | None) -> Client:
        return self.client.as_officer(officer)

    def post(self, op: Any, body: dict[str, Any], officer: str | None = None) -> Any:
        """A raw request, to see the problem details as any HTTP client does."""
        headers = {"Jtca-Officer": officer} if officer else {}
        return self.client.http.post(op.path, json=body, headers=headers)


@pytest.fixture
def service(database: Any, tmp_path: Path) -> Iterator[Service]:
    url, engine = database
    from ca.officers import add_officer_in

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
    decided = service.as_("ca-op-1").call(
        ops.DECIDE, ops.DecideRequest(kind="application", id=application.id, approve=True)
    )
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
    listed = service.as_(None).call(ops.APPLICATIONS, ops.ApplicationsRequest()).applications
    assert [(a.state, a.applicant) for a in listed] == [("generated", "gd-1")]
    with pytest.raises(ServiceError) as twice:
        service.as_("mot-root-1").call(ops.GENERATE, ops.GenerateRequest(application=listed[0].id))
    assert (twice.value.exit_code, twice.value.title) == (6, "Key application")
    assert "only an approved application" in twice.value.message


def test_the_applicant_cannot_approve_their_own_application(service: Service) -> None:
    application = service.as_("gd-1").call(ops.APPLY, ops.ApplyRequest(cities=["440100"]))
    with pytest.raises(ServiceError) as refused:
        service.as_("gd-1").call(
            ops.DECIDE, ops.DecideRequest(kind="application", id=application.id, approve=True)
        )
    assert (refused.value.status, refused.value.exit_code) == (403, 6)
    assert "dual control" in refused.value.message
    pending = ops.ApplicationsRequest(decidable=True)
    assert service.as_("gd-2").call(ops.APPLICATIONS, pending).applications == []
    assert [a.id for a in service.as_("ca-op-1").call(ops.APPLICATIONS, pending).applications] == [
        application.id
    ]


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
    assert len(service.as_(None).call(ops.KEYS, ops.KeysRequest()).keys) == 2


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
        response = service.post(ops.KEYS, body)
        assert response.status_code == 422, body
        assert response.json()["field"] == field
        assert response.json()["detail"].startswith(f"{field} {next(iter(body.values()))}:")
    response = service.post(ops.KEYS, {"limit": "many"})  # not even an integer: the model says
    assert (response.status_code, response.json()["field"]) == (422, "limit")
    response = service.post(ops.PAGE, {"sort": "colour"})
    assert (response.status_code, response.json()["field"]) == (422, "sort")
    response = service.post(ops.SUSPEND, {"city": "abc", "reason": "x"}, officer="gd-1")
    assert (response.status_code, response.json()["field"]) == (422, "city")


def test_a_page_of_keys_and_the_total(service: Service) -> None:
    keys = generated(service, GUANGDONG)
    assert len(keys) == 6
    page = service.as_(None).call(ops.PAGE, ops.PageRequest(sort="label", limit=4))
    assert page.total == 6
    assert [k.label for k in page.keys] == sorted(k.label for k in keys)[:4]
    last = service.as_(None).call(ops.PAGE, ops.PageRequest(sort="label", descending=True, limit=1))
    assert [k.label for k in last.keys] == [max(k.label for k in keys)]
    named = service.as_("gd-1").call(ops.PAGE, ops.PageRequest(text="深圳"))
    assert (named.total, {k.city for k in named.keys}) == (2, {"440300"})
    qr = service.as_("gd-1").call(ops.PAGE, ops.PageRequest(key_class="city-qr", limit=2))
    assert (qr.total, len(qr.keys)) == (3, 2)
    elsewhere = service.as_("fj-1").call(ops.PAGE, ops.PageRequest())
    assert (elsewhere.total, elsewhere.keys) == (0, [])
    with pytest.raises(ServiceError) as refused:
        service.as_(None).call(ops.PAGE, ops.PageRequest(limit=100_000))
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
    listed = service.as_(None).call(ops.KEYS, ops.KeysRequest(city="440100", key_class="city-qr"))
    assert listed.keys == [shown]
    missing = service.post(ops.SHOW, {"key": 999_999})
    assert (missing.status_code, missing.json()["exit_code"]) == (404, 6)
    assert missing.json()["detail"] == "no city key 999999"
    service.clock.advance(10 * DAY)
    later = service.as_(None).call(ops.SHOW, ops.KeyRequest(key=qr.id))
    assert later.days_left == shown.days_left - 10


def test_a_key_action_under_dual_control(service: Service) -> None:
    keys = generated(service, ["440100"])
    card = next(k for k in keys if k.key_class == "city-card")
    requested = service.as_("mot-root-1").call(
        ops.REVOKE, ops.KeyActionRequest(keys=[card.id], reason="lost token")
    )
    assert (requested.state, requested.required, requested.keys) == ("pending", 2, [card.label])
    assert requested.action_id is not None
    listed = service.as_(None).call(ops.ACTIONS, ops.ActionsRequest()).actions
    assert [(a.id, a.labels, a.approvals) for a in listed] == [
        (requested.action_id, [card.label], 0)
    ]
    assert service.as_("fj-1").call(ops.ACTIONS, ops.ActionsRequest()).actions == []
    decidable = ops.ActionsRequest(decidable=True)
    assert service.as_("mot-root-1").call(ops.ACTIONS, decidable).actions == []  # their own
    assert service.as_("ca-op-1").call(ops.ACTIONS, decidable).actions == []  # not their role
    assert len(service.as_("mot-root-2").call(ops.ACTIONS, decidable).actions) == 1

    approve = ops.DecideRequest(kind="action", id=requested.action_id, approve=True)
    with pytest.raises(ServiceError) as refused:
        service.as_("gd-2").call(ops.DECIDE, approve)
    assert (refused.value.status, refused.value.exit_code) == (403, 6)
    first = service.as_("mot-root-2").call(ops.DECIDE, approve)
    assert first.outcome is not None
    assert (first.state, first.outcome.approvals) == ("pending", 1)
    with pytest.raises(ServiceError) as twice:
        service.as_("mot-root-2").call(ops.DECIDE, approve)
    assert "already decided" in twice.value.message
    done = service.as_("mot-root-3").call(ops.DECIDE, approve)
    assert done.state == "done"
    revoked = service.as_(None).call(ops.SHOW, ops.KeyRequest(key=card.id))
    assert (revoked.state, revoked.reason) == ("revoked", "lost token")
    assert revoked.destroy_after == T0 + 30 * DAY
    assert service.as_(None).call(ops.ACTIONS, ops.ActionsRequest()).actions == []

    # after the grace period the material goes, from the ministry token, under dual control
    service.clock.advance(31 * DAY)
    destroy = service.as_("mot-root-1").call(ops.DESTROY_MATERIAL, ops.DestroyRequest())
    assert (destroy.state, destroy.keys) == ("pending", [card.label])
    assert destroy.action_id is not None
    destroyed = service.as_("mot-root-2").call(
        ops.DECIDE, ops.DecideRequest(kind="action", id=destroy.action_id, approve=True)
    )
    assert destroyed.state == "done"
    gone = service.as_(None).call(ops.SHOW, ops.KeyRequest(key=card.id))
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
    service.clock.set(T0 + DAY)
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
    flagged = service.as_(None).call(ops.KEYS, ops.KeysRequest(violations=True)).keys
    assert [k.label for k in flagged] == [qr.label]
    assert "violation" in flagged[0].flags

    counts = service.as_("gd-2").call(ops.SUMMARY, ops.SummaryRequest())
    assert (counts.total, counts.violations, counts.states["pre-active"]) == (4, 1, 4)
    assert set(counts.states) >= {"pre-active", "active", "suspended", "revoked", "destroyed"}

    rows = service.as_(None).call(ops.REPORT, ops.ReportRequest(province="440000"))
    assert (rows.generated_at, rows.scope) == (T0 + DAY, "province 440000")
    assert sorted(k.label for k in rows.keys) == sorted(k.label for k in keys)
    assert service.as_("fj-1").call(ops.REPORT, ops.ReportRequest()).scope == "province 350000"


def test_no_officer_no_action(service: Service) -> None:
    response = service.post(ops.APPLY, {"cities": ["440100"]})
    assert response.status_code == 401
    assert response.json()["exit_code"] == 6
    swept = service.as_(None).call(ops.SWEEP, Empty())  # time-driven: no officer needed
    assert swept.changed == []
