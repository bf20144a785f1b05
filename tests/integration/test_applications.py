"""City key applications on SQLite and PostgreSQL: own province only, registry cities only,
approval under dual control by distinct officers, rejection with a reason, all audited."""

from __future__ import annotations

import pytest
from log_intact import log_intact
from sqlmodel import Session, select

from ca.citykeys.applications import ApplicationError, apply, decide_application, pending
from ca.policy.authorization import PolicyDenied
from ca.store.models import AuditEvent
from policies.rules import Actor

NOW = 1_790_000_000
GD = Actor("gd-1", frozenset({"provincial-officer"}), "440000")
OP1 = Actor("ca-op-1", frozenset({"ministry-ca-operator"}))
OP2 = Actor("ca-op-2", frozenset({"ministry-ca-operator"}))


def test_apply_and_approve(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    application = apply(engine, GD, ["440100", "440300"], NOW)
    assert (application.state, application.province, application.cities) == (
        "pending",
        "440000",
        "440100,440300",
    )
    with Session(engine) as session:
        assert [a.id for a in pending(session, "440000")] == [application.id]
    assert application.id is not None
    with pytest.raises(ApplicationError, match="applicant cannot approve"):
        decide_application(
            engine,
            Actor("gd-1", frozenset({"ministry-ca-operator"})),
            application.id,
            approve=True,
            now=NOW,
        )
    approved = decide_application(engine, OP1, application.id, approve=True, now=NOW + 1)
    assert (
        approved.state == "approved"
    )  # the default policy asks one approver besides the applicant
    with pytest.raises(ApplicationError, match="already approved"):
        decide_application(engine, OP2, application.id, approve=True, now=NOW + 2)
    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.seq))]
        assert actions == ["city-key.apply", "city-key.approve"]
        assert log_intact(session)


@pytest.mark.parametrize(
    ("cities", "error", "needle"),
    [
        (["110000"], PolicyDenied, "deny/other-province"),
        (["440100", "350100"], PolicyDenied, "deny/other-province"),
        (["513200"], ApplicationError, "not a city"),  # an autonomous prefecture
        (["440199"], ApplicationError, "not a city"),
        ([], ApplicationError, "at least one city"),
        (["440100", "440100"], ApplicationError, "named twice"),
    ],
    ids=[
        "deny/other-province",
        "deny/mixed-provinces",
        "fail/not-a-city",
        "fail/unknown-code",
        "fail/empty",
        "fail/duplicate",
    ],
)
def test_apply_refusals(database, cities: list[str], error: type[Exception], needle: str) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    with pytest.raises(error, match=needle):
        apply(engine, GD, cities, NOW)
    with Session(engine) as session:
        assert session.exec(select(AuditEvent)).all() == []


def test_rejection_and_role_checks(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    application = apply(engine, GD, ["440100"], NOW)
    assert application.id is not None
    with pytest.raises(PolicyDenied, match="deny/no-role"):
        decide_application(
            engine, Actor("aud", frozenset({"auditor"})), application.id, approve=True, now=NOW
        )
    with pytest.raises(ApplicationError, match="needs a reason"):
        decide_application(engine, OP1, application.id, approve=False, now=NOW)
    rejected = decide_application(
        engine, OP1, application.id, approve=False, now=NOW, reason="city not yet interconnected"
    )
    assert rejected.state == "rejected"
    with pytest.raises(ApplicationError, match="no application"):
        decide_application(engine, OP1, 999, approve=True, now=NOW)
