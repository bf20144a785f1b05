"""The console's client (ca/client/console.py) through the service's HTTP API on the demo state:
sign-in by token PIN or share quorum (the secret in the request body, checked by the token at
the service, every attempt audited), the province's scope, the dashboard's counts, pending
approvals for the right officers, the audit page; problem details for refusals."""

from __future__ import annotations

import pytest
from demo_world import Demo

from ca.client.console import sign_in
from ca.client.http import ServiceError
from ca.ops import console as ops
from ca.ops import demo as demo_ops
from ca.ops.base import Empty


def test_sign_in_and_scope(demo: Demo) -> None:
    pins = demo.credentials.pins
    gd = demo.console("gd-1")
    assert gd.province == "440000"
    assert gd.actor.name == "广东省密钥管理员 陈一"
    assert gd.how == "PIN of the 440000 key token"
    assert {k.city for k in gd.find_keys()} == {"440100", "440300", "440600"}
    assert gd.can("city-key.apply")
    assert not gd.can("city-key.revoke")
    with pytest.raises(ServiceError, match="unknown officer or wrong PIN") as refused:
        sign_in(demo.client, "gd-1", pin="0000")
    assert (refused.value.title, refused.value.exit_code) == ("Sign-in refused", 6)
    with pytest.raises(ServiceError, match="unknown officer or wrong PIN"):
        sign_in(demo.client, "nobody", pin=pins["gd-1"])
    root = sign_in(demo.client, "mot-root-1", shares=demo.credentials.shares)
    assert root.how == "share quorum of the root token"
    assert root.can("city-key.revoke")
    board = root.dashboard()
    assert board.keys.dormant == 2  # Shenzhen: delivered 400 days ago, never used
    assert board.keys.suspended == 1  # Foshan's QR key
    assert board.keys.states["suspended"] == 1
    assert [entry.sequence for entry in board.lists] == [1, 1, 1]
    assert not any(entry.stale for entry in board.lists)
    assert board.pending_approvals == 1  # Zhuhai's application
    op = demo.console("ca-op-1")
    assert [(p.kind, p.by) for p in op.pending()] == [("application", "gd-2")]
    assert gd.pending() == []  # a province does not approve applications
    assert demo.console("gd-2").pending() == []  # nor anything of its own
    page = root.audit_page(action="console.sign-in")
    actions = [e.action for e in page.events]
    assert actions.count("console.sign-in.refused") == 2
    assert actions.count("console.sign-in") == 4
    assert page.total > len(page.events)
    assert all(b.seq < a.seq for a, b in zip(page.events, page.events[1:], strict=False))
    # the secret never reaches the audit log
    details = " ".join(e.details for e in root.audit_page(size=1000).events)
    assert pins["gd-1"] not in details
    assert demo.credentials.shares[0] not in details
    older = root.audit_page(before=page.events[-1].seq, size=3)
    assert [e.seq for e in older.events] == sorted((e.seq for e in older.events), reverse=True)
    assert older.events[0].seq < page.events[-1].seq


def test_views_need_an_officer_and_the_demo_is_seeded_once(demo: Demo) -> None:
    with pytest.raises(ServiceError) as anonymous:
        demo.client.call(ops.DASHBOARD, Empty())
    assert (anonymous.value.status, anonymous.value.title) == (401, "Not signed in")
    with pytest.raises(ServiceError) as field:
        demo.client.as_officer("auditor-1").call(
            ops.AUDIT_PAGE, ops.AuditPageRequest.model_construct(size=0, before=None, action="")
        )
    assert (field.value.status, field.value.field) == (422, "size")
    status = demo.client.call(demo_ops.STATUS, Empty())
    assert status.seeded
    assert status.credentials == str(demo.state / demo_ops.CREDENTIALS)
    with pytest.raises(ServiceError, match="not empty") as again:
        demo.client.call(demo_ops.SEED, Empty())
    assert again.value.title == "Demo refused"


def test_cleanup_view_and_ceremony_runs(demo: Demo) -> None:
    gd = demo.console("gd-1")
    view = gd.cleanup()
    assert sorted(k.city for k in view.dormant) == ["440300", "440300"]
    assert view.destroy_due == []
    runs = gd.ceremonies()
    assert [r.kind for r in runs] == ["root"]
