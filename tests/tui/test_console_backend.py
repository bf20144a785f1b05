"""The console's backend (ca/console.py) on the demo state: sign-in by token PIN or share
quorum, the province's scope, the dashboard's counts, pending approvals for the right officers."""

from __future__ import annotations

import pytest
from demo_world import Demo

from ca.authority import open_authority
from ca.console import SignInRefused, sign_in


def test_sign_in_and_scope(demo: Demo) -> None:
    engine = open_authority(demo.state).engine
    pins = demo.credentials.pins
    gd = sign_in(engine, "gd-1", clock=demo.clock, pin=pins["gd-1"], state=demo.state)
    assert gd.province == "440000"
    assert {k["city"] for k in gd.find_keys()} == {"440100", "440300", "440600"}
    assert gd.can("city-key.apply")
    assert not gd.can("city-key.revoke")
    with pytest.raises(SignInRefused, match="unknown officer or wrong PIN"):
        sign_in(engine, "gd-1", clock=demo.clock, pin="0000", state=demo.state)
    with pytest.raises(SignInRefused, match="unknown officer or wrong PIN"):
        sign_in(engine, "nobody", clock=demo.clock, pin=pins["gd-1"], state=demo.state)
    root = sign_in(
        engine, "mot-root-1", clock=demo.clock, shares=demo.credentials.shares, state=demo.state
    )
    assert root.can("city-key.revoke")
    board = root.dashboard()
    assert board["keys"]["dormant"] == 2  # Shenzhen: delivered 400 days ago, never used
    assert board["keys"]["suspended"] == 1  # Foshan's QR key
    assert [entry["sequence"] for entry in board["lists"]] == [1, 1, 1]
    op = sign_in(engine, "ca-op-1", clock=demo.clock, pin=pins["ca-op-1"], state=demo.state)
    assert [p["kind"] for p in op.pending()] == ["application"]  # Zhuhai's, by gd-2
    assert gd.pending() == []  # a province does not approve applications
    events = [e.action for e in root.audit_page(action="console.sign-in")]
    assert events.count("console.sign-in.refused") == 2
