"""The demo world shows what officers meet (issue #17): keys ending within 30 and within 90 days,
renewal due, dormant, suspended, revoked, a violation, an operator overdue with its lists, and an
expiry timeline with bars — read back through the service as the console and ``jtca city
report`` read them, on the demo state with the clock frozen at the demo's "now"."""

from __future__ import annotations

import struct
from pathlib import Path

from demo_world import Demo

from ca.citykeys import report_format
from ca.cli.city import report_keys
from ca.demo.seed import ELDER_BATCHES, OPERATOR, PUBLISHED_DAYS, REVOKED
from ca.ops import city as city_ops
from ca.ops import lists as lists_ops

DAY = 86400


def test_the_dashboard_counts_what_officers_meet(demo: Demo) -> None:
    root = demo.console("mot-root-1")
    keys = root.find_keys()
    now = demo.clock.now()
    live = [k for k in keys if k.state in ("pre-active", "active", "suspended")]
    within = {
        days: [k for k in live if now <= k.not_after <= now + days * DAY] for days in (30, 90)
    }
    # Dongguan's pair ends within 30 days; Zhongshan's within 90 (and Dongguan's)
    assert {k.city for k in within[30]} == {"441900"}
    assert {k.city for k in within[90]} == {"441900", "442000"}
    renewal = {k.city for k in keys if "renewal-due" in k.flags}
    assert renewal == {"441900", "442000", "440700"}  # Jiangmen: within the 180-day window
    dormant = {k.label for k in keys if "dormant" in k.flags}
    assert dormant == {"city-card-440300-g1", "city-qr-440300-g1"}  # Shenzhen: never used
    states = {k.label: k.state for k in keys}
    assert states[REVOKED] == "revoked"
    assert states["city-qr-440600-g1"] == "suspended"  # used in Fujian
    violated = [k.label for k in keys if "violation" in k.flags]
    assert violated == ["city-card-442000-g1"]  # seen in Huizhou; Foshan's was acted on

    board = root.dashboard()
    assert board.keys.total == len(keys) == 2 * (3 + sum(len(c) for _, c in ELDER_BATCHES))
    assert board.keys.expiring_30 == len(within[30]) == 2
    assert board.keys.expiring_90 == len(within[90]) == 4
    assert board.keys.renewal_due == len([k for k in keys if "renewal-due" in k.flags]) == 6
    assert board.keys.dormant == 2
    assert board.keys.suspended == 1
    assert board.keys.violations == 1
    assert board.keys.states["revoked"] == 1
    assert board.overdue_acks == len(board.lists) == 3  # one operator, three lists
    assert not any(entry.stale for entry in board.lists)


def test_the_operator_is_overdue_with_the_lists_of_six_weeks_ago(demo: Demo) -> None:
    root = demo.console("mot-root-1")
    overdue = root.client.call(lists_ops.OVERDUE, lists_ops.OverdueRequest()).operators
    assert {(o.operator_id, o.days_since) for o in overdue} == {(OPERATOR[0], PUBLISHED_DAYS)}
    assert {o.oldest_missing for o in overdue} == {1}  # version 2 was published today


def test_the_expiry_timeline_has_bars(demo: Demo) -> None:
    root = demo.console("mot-root-1")
    found = root.client.call(city_ops.REPORT, city_ops.ReportRequest())
    rows = report_keys(found.keys)
    slots = report_format.timeline_slots(rows, now=found.generated_at)
    bars = {s.label: s.total for s in slots if s.total}
    # the months Dongguan's, Zhongshan's, Jiangmen's and Huizhou's card and QR keys end in
    # (Huizhou's QR key is revoked: no longer in the chart)
    assert sorted(bars.values()) == [1, 2, 2, 2]
    assert list(bars) == sorted(bars)
    summary = report_format.summarise(rows, now=found.generated_at)
    assert (summary.renewal_due, summary.dormant) == (6, 2)
    png = report_format.timeline_png(rows, now=found.generated_at)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (report_format.WIDTH, report_format.HEIGHT)


def test_the_docs_show_the_demo_timeline() -> None:
    """docs/citykeys.md shows the demo's timeline (drawn by ``report_format.timeline_png`` from the
    demo world, as above) from a file that exists."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "citykeys.md").read_text(encoding="utf-8")
    assert "![the demo world's key expiry timeline](citykeys-timeline.png)" in text
    png = (docs / "citykeys-timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (report_format.WIDTH, report_format.HEIGHT)
