"""Pilot tests of the Publication, Audit and Ceremony screens, each pushed alone in a small app
with a signed-in ``Console`` — a client of the service in-process over its HTTP API — against a
private copy of the demo state (real SoftHSM tokens, SQLite, policy, audit), at 80×24, driven by
keys as an officer would."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from demo_world import NOW, Demo
from sqlalchemy import text
from sqlmodel import Session, select
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Footer, Input

from ca.client.console import Console
from ca.demo.seed import OPERATOR
from ca.lists.asn1 import ListType
from ca.lists.render import entry_to_dict
from ca.lists.verify import load_list
from ca.store.models import CaKey, CertificateRecord, PendingAction
from tui.screens.audit import AuditScreen
from tui.screens.base import ConsoleScreen
from tui.screens.ceremony import CeremonyScreen
from tui.screens.forms import FormModal, PickModal
from tui.screens.panels import ReportModal
from tui.screens.publication import PublicationScreen

DAY = 86400
ROOT_EXAMPLE = Path(__file__).resolve().parents[2] / "policies/ceremonies/root-example.toml"
ROLLOVER = """\
[ceremony]
name = "MOT QR CA rollover (test)"
kind = "ca-rollover"

[token]
label = "MOT-ROOT"
custodians = ["张三 (部密码管理处)", "李四 (部科技司)", "王五 (部审计室)"]
threshold = 2

[witnesses]
names = ["赵六 (公证员)", "钱七 (内审)"]

[[qr_ca]]
index = 2
label = "mot-qr-ca-2"
validity_years = 10
"""


class ScreenApp(App[None]):
    """One console screen, as the console shows it (with a footer), recording notifications."""

    def __init__(self, screen: ConsoleScreen) -> None:
        super().__init__()
        self.console_screen = screen
        self.notices: list[tuple[str, str, str]] = []  # (title, message, severity)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        self.notices.append((title, message, str(severity)))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    async def on_mount(self) -> None:
        await self.push_screen(self.console_screen)
        await self.console_screen.mount(Footer())

    def titled(self, title: str) -> list[tuple[str, str, str]]:
        return [n for n in self.notices if n[0] == title]


def drive(
    screen: ConsoleScreen, scenario: Callable[[Pilot[None], ScreenApp], Awaitable[None]]
) -> None:
    async def main() -> None:
        app = ScreenApp(screen)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await scenario(pilot, app)

    asyncio.run(main())


async def settle(pilot: Pilot[None]) -> None:
    """Let workers finish and their results reach the screen."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def fill_form(pilot: Pilot[None], values: dict[str, str]) -> None:
    form = pilot.app.screen
    assert isinstance(form, FormModal)
    for name, value in values.items():
        form.query_one(f"#field-{name}", Input).value = value
    await pilot.press("ctrl+s")
    await settle(pilot)


def console_of(demo: Demo, officer: str) -> Console:
    return demo.console(officer)


def rows(table: DataTable[Any]) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def root_der(demo: Demo) -> bytes:
    with Session(demo.runtime.engine) as session:
        record = session.exec(select(CertificateRecord).where(CertificateRecord.role == "root"))
        return bytes.fromhex(record.one().der)


def revoke_demo_issuer(demo: Demo) -> None:
    operator = console_of(demo, "ca-op-1")
    certificate = operator.issuers()[0].certificates[0]
    operator.revoke_interop(certificate.ca_index, certificate.serial, "key compromised")


# -- publication -------------------------------------------------------------------------------
def test_preview_shows_the_revocation_and_publish_makes_version_2(demo: Demo) -> None:
    demo.clock.advance(60)  # a minute after the demo's publication: #3 is the newest
    revoke_demo_issuer(demo)
    publisher = console_of(demo, "publisher-1")
    screen = PublicationScreen(publisher)
    shares = demo.credentials.shares

    # the demo published each list six weeks ago (#1) and again today (#2)
    city_entries = next(
        h.entries for h in publisher.list_history() if (h.list_type, h.sequence) == ("city-list", 2)
    )

    async def scenario(pilot: Pilot[None], app: ScreenApp) -> None:
        history = rows(screen.query_one("#history-table", DataTable))
        assert sorted(r[:2] for r in history) == [
            [name, sequence]
            for name in ("ca-key-list", "city-list", "issuer-whitelist")
            for sequence in ("1", "2")
        ]
        freshness = str(screen.query_one("#freshness").render())
        assert "issuer-whitelist #2" in freshness
        assert "fresh" in freshness
        await pilot.press("p")
        await settle(pilot)
        assert rows(screen.query_one("#preview-table", DataTable)) == [
            ["issuer-whitelist", "changed", "02113450", "status: active → revoked"]
        ]
        note = str(screen.query_one("#preview-note").render())
        assert "issuer-whitelist  would-publish #3 (content changed)" in note
        assert f"city-list         unchanged at #2 ({city_entries} entries)" in note
        await pilot.press("s")
        await pilot.pause()
        await fill_form(pilot, {"share-1": shares[0], "share-2": shares[1]})
        assert app.titled("Published") == [
            (
                "Published",
                "Published issuer-whitelist #3; unchanged: city-list, ca-key-list.",
                "information",
            )
        ]
        assert screen.outcomes is None
        history = rows(screen.query_one("#history-table", DataTable))
        assert history[0][:2] == ["issuer-whitelist", "3"]  # newest first

    drive(screen, scenario)
    versions = {(v.list_type, v.sequence) for v in publisher.list_history()}
    assert ("issuer-whitelist", 3) in versions
    assert ("city-list", 3) not in versions
    verified = load_list(
        (demo.runtime.published / "issuer-whitelist.der").read_bytes(),
        trusted_root_der=root_der(demo),
        expected_type=ListType.ISSUERS,
        previous_sequence=2,
        now=NOW,
        grace_seconds=0,
    )
    assert verified.sequence == 3
    assert [entry_to_dict(e)["status"] for e in verified.entries] == ["revoked"]


def test_a_wrong_share_is_an_error_and_publishes_nothing(demo: Demo) -> None:
    revoke_demo_issuer(demo)
    publisher = console_of(demo, "publisher-1")
    screen = PublicationScreen(publisher)
    current = demo.runtime.published / "issuer-whitelist.der"  # the service's folder
    before = hashlib.sha256(current.read_bytes()).hexdigest()
    good = demo.credentials.shares
    body = good[1][-12]
    wrong = good[1][:-12] + ("A" if body != "A" else "B") + good[1][-11:]
    published = [(v.list_type, v.sequence) for v in publisher.list_history()]

    async def scenario(pilot: Pilot[None], app: ScreenApp) -> None:
        await pilot.press("s")
        await pilot.pause()
        await fill_form(pilot, {"share-1": good[0], "share-2": wrong})
        errors = [n for n in app.notices if n[2] == "error"]
        assert len(errors) == 1
        title, message, _ = errors[0]
        assert title
        assert message
        assert "Traceback" not in message
        assert not app.titled("Published")
        assert not screen.busy

    drive(screen, scenario)
    assert [(v.list_type, v.sequence) for v in publisher.list_history()] == published
    assert hashlib.sha256(current.read_bytes()).hexdigest() == before


def test_an_emergency_request_by_em_1_is_pending(demo: Demo) -> None:
    requester = console_of(demo, "em-1")
    screen = PublicationScreen(requester)

    async def scenario(pilot: Pilot[None], app: ScreenApp) -> None:
        # em-1 may not run the scheduled publication: no preview, no acknowledgment import
        assert screen.check_action("preview", ()) is None  # dimmed: not for em-1's roles
        assert screen.check_action("import_acks", ()) is None
        assert screen.check_action("emergency", ()) is True
        await pilot.press("e")
        await pilot.pause()
        await fill_form(pilot, {"reason": "issuer key leaked: revoke at once (第三十四条)"})
        (notice,) = app.titled("Emergency publication requested")
        assert "awaits 1 approval" in notice[1]
        requests = rows(screen.query_one("#requests-table", DataTable))
        assert [r[1:3] for r in requests] == [["pending", "em-1"]]

    drive(screen, scenario)
    with Session(demo.runtime.engine) as session:
        (row,) = session.exec(
            select(PendingAction).where(PendingAction.action == "list.emergency-publish")
        ).all()
    assert (row.action, row.state, row.requested_by) == (
        "list.emergency-publish",
        "pending",
        "em-1",
    )
    approver = console_of(demo, "em-2")
    assert ("emergency", "em-1") in [(p.kind, p.by) for p in approver.pending()]


def test_acknowledgments_import_and_overdue(demo: Demo, tmp_path: Path) -> None:
    demo.clock.advance(3600)  # an hour after the demo published the lists (at NOW)
    operator = console_of(demo, "ca-op-1")
    report = tmp_path / "acks.csv"
    report.write_text(
        "operator,list,sequence,loaded_at\n"
        "gz-metro,issuer-whitelist,2,2026-11-18T11:30:00Z\n"
        "nobody,city-list,2,2026-11-18T11:40:00Z\n",
        encoding="utf-8",
    )
    screen = PublicationScreen(operator)

    async def scenario(pilot: Pilot[None], app: ScreenApp) -> None:
        await pilot.press("n")
        await pilot.pause()
        await fill_form(pilot, {"id": "gz-metro", "name": "广州地铁", "province": "440000"})
        assert app.titled("Operator") == [
            ("Operator", "Operator gz-metro registered.", "information")
        ]
        await pilot.press("i")
        await pilot.pause()
        await fill_form(pilot, {"path": str(report)})
        (notice,) = app.titled("Acknowledgments imported")
        assert notice[1].startswith("acks.csv: 1 rows accepted, 1 refused.")
        assert "'nobody' is not registered" in notice[1]
        assert notice[2] == "warning"
        owed = rows(screen.query_one("#acks-table", DataTable))
        assert [r for r in owed if r[0].startswith("gz-metro")] == []  # registered today
        assert {r[0] for r in owed} == {f"{OPERATOR[0]} {OPERATOR[1]}"}  # the demo's
        await pilot.press("i")
        await pilot.pause()
        await fill_form(pilot, {"path": str(report)})
        assert app.titled("Report already imported")

    drive(screen, scenario)

    demo.clock.set(NOW + 3600 + 20 * DAY)  # the service's clock: 20 days on
    operator.close()  # its session ended at the idle limit long ago: ca-op-1 signs in again
    operator = console_of(demo, "ca-op-1")
    screen = PublicationScreen(operator)

    async def overdue(pilot: Pilot[None], app: ScreenApp) -> None:
        await pilot.press("a")
        await settle(pilot)
        owed = [
            r
            for r in rows(screen.query_one("#acks-table", DataTable))
            if r[0].startswith("gz-metro")
        ]
        # it reported loading the issuer whitelist; the other two lists are 20 days overdue
        assert sorted(r[1:4] for r in owed) == [
            ["ca-key-list", "—", "#2"],
            ["city-list", "—", "#2"],
        ]
        assert all(r[5] == "20" for r in owed)

    drive(screen, overdue)


# -- audit -------------------------------------------------------------------------------------
def test_audit_browse_newest_first_filter_and_pages(demo: Demo, monkeypatch: Any) -> None:
    import tui.screens.audit as audit_screen

    monkeypatch.setattr(audit_screen, "PAGE", 20)
    auditor = console_of(demo, "auditor-1")
    total = auditor.audit_page(size=1).total
    screen = AuditScreen(auditor)

    async def scenario(pilot: Pilot[None], app: ScreenApp) -> None:
        table = screen.query_one("#events", DataTable)
        shown = rows(table)
        assert [int(r[0]) for r in shown] == list(range(total, total - 20, -1))
        assert shown[0][2:4] == ["auditor-1", "auth.sign-in"]
        detail = str(screen.query_one("#detail").render())
        assert f"#{total}" in detail
        assert f'"certificate_serial": {auditor.certificate_serial}' in detail
        await pilot.press("n")
        await settle(pilot)
        assert int(rows(table)[0][0]) == total - 20
        assert "page 2" in str(screen.query_one("#status").render())
        await pilot.press("p")
        await settle(pilot)
        assert int(rows(table)[0][0]) == total
        await pilot.press("slash")
        await pilot.press(*"ceremony.run")
        await pilot.press("enter")
        await settle(pilot)
        filtered = rows(table)
        assert [r[3] for r in filtered] == ["ceremony.run"]
        assert filtered[0][2] == "ceremony:MOT root key ceremony 2026-12"
        detail = str(screen.query_one("#detail").render())
        assert '"witnesses_present": [\n    "赵六 (公证员)"\n  ]' in detail

    drive(screen, scenario)


def test_audit_verify_ok_then_finds_the_tampered_row(demo: Demo) -> None:
    auditor = console_of(demo, "auditor-1")
    screen = AuditScreen(auditor)

    async def scenario(pilot: Pilot[None], app: ScreenApp) -> None:
        assert screen.check_action("verify", ()) is True
        await pilot.press("v")
        await settle(pilot)
        (notice,) = app.titled("Audit log verified")
        assert (
            "OK — the log matches every signed checkpoint found outside the database" in notice[1]
        )
        assert isinstance(app.screen, ReportModal)
        await pilot.press("escape")
        with demo.runtime.engine.begin() as connection:
            connection.execute(
                text("UPDATE audit_event SET details = :d WHERE seq = 5"),
                {"d": json.dumps({"forged": True})},
            )
        await pilot.press("v")
        await settle(pilot)
        (broken,) = app.titled("Audit log tampered")
        assert broken[2] == "error"
        assert "entry 5  edited" in broken[1]
        assert screen.report is not None
        assert [f.seq for f in screen.report.findings][:1] == [5]

    drive(screen, scenario)


def test_verify_is_only_offered_to_those_who_may(demo: Demo) -> None:
    screen = AuditScreen(console_of(demo, "gd-1"))

    async def scenario(pilot: Pilot[None], app: ScreenApp) -> None:
        assert screen.check_action("verify", ()) is None  # dimmed: not for gd-1's roles
        footer_keys = {b.binding.key for b in screen.active_bindings.values() if b.enabled}
        assert "v" not in footer_keys
        await pilot.press("v")
        await settle(pilot)
        assert not app.titled("Audit log verified")
        assert screen.report is None
        assert rows(screen.query_one("#events", DataTable))  # browsing is for everyone

    drive(screen, scenario)


# -- ceremony ----------------------------------------------------------------------------------
async def sign_off_all(pilot: Pilot[None], screen: CeremonyScreen) -> None:
    assert screen.loaded is not None
    for step in range(len(screen.loaded.steps)):
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(pilot.app.screen, PickModal)
        if step == 1:
            await pilot.press("down")  # the second witness signs this one
        await pilot.press("enter")
        await pilot.pause()


async def load_file(pilot: Pilot[None], screen: CeremonyScreen, path: Path) -> None:
    await pilot.press("l")
    await pilot.pause()
    form = pilot.app.screen
    assert isinstance(form, FormModal)
    assert form.query_one("#field-path", Input).value == screen.file  # pre-filled
    form.query_one("#field-path", Input).value = str(path)
    await pilot.press("enter")
    await settle(pilot)


def test_ceremony_walk_runs_a_rollover_and_refuses_the_root_again(
    demo: Demo, tmp_path: Path
) -> None:
    rollover = tmp_path / "rollover.toml"
    rollover.write_text(ROLLOVER, encoding="utf-8")
    officer = console_of(demo, "mot-root-1")
    screen = CeremonyScreen(officer)
    shares = demo.credentials.shares
    saved: list[Path] = []

    async def scenario(pilot: Pilot[None], app: ScreenApp) -> None:
        await load_file(pilot, screen, rollover)
        assert screen.loaded is not None
        assert screen.loaded.ceremony.kind == "ca-rollover"
        steps = rows(screen.query_one("#steps", DataTable))
        assert len(steps) == len(screen.loaded.steps) == 6
        assert "central QR CA key 'mot-qr-ca-2' at CA public key index 2" in steps[3][1]
        await pilot.press("x")
        await pilot.pause()
        (refused,) = app.titled("Ceremony not ready")
        assert refused[1] == "steps 1–6 still need a witness sign-off (w)."
        await pilot.press("w")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert app.titled("Ceremony not ready")[-1][1].startswith("steps 2–6")
        await pilot.press("u")
        await sign_off_all(pilot, screen)
        assert screen.signed == ["赵六 (公证员)", "钱七 (内审)", *["钱七 (内审)"] * 4]
        assert [r[2] for r in rows(screen.query_one("#steps", DataTable))] == screen.signed
        await pilot.press("x")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        assert len(form.fields) == 2
        # the form names every witness of the file, with the steps each signed off
        assert "赵六 (公证员): signed off step 1\n" in form.note
        assert "钱七 (内审): signed off steps 2, 3, 4, 5, 6" in form.note
        await fill_form(pilot, {"share-1": shares[0], "share-2": shares[1]})
        assert len(app.titled("Ceremony done")) == 1
        assert screen.transcript is not None
        assert screen.transcript_file is not None
        saved.append(screen.transcript_file)
        assert isinstance(app.screen, ReportModal)
        report = str(app.screen.query_one("#report-text").render())
        assert "central QR CA key index 2" in report
        assert "witnesses present: 赵六 (公证员), 钱七 (内审)" in report
        await pilot.press("escape")

        await load_file(pilot, screen, ROOT_EXAMPLE)
        assert "Note: a ceremony of this name ran on" in str(screen.query_one("#about").render())
        # the screen knows it ran before asking anything: no sign-off, no shares
        await pilot.press("w")
        await pilot.pause()
        assert not isinstance(app.screen, PickModal)
        await pilot.press("x")
        await pilot.pause()
        assert not isinstance(app.screen, FormModal)
        refused = app.titled("Ceremony already run")
        assert len(refused) == 2
        assert "ceremony 'MOT root key ceremony 2026-12' has already run" in refused[0][1]
        # t shows what the service recorded of that run
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, ReportModal)
        report = str(app.screen.query_one("#report-text").render())
        assert "MOT root key ceremony 2026-12 (root) ran on" in report
        assert "赵六 (公证员)" in report
        await pilot.press("escape")
        assert not app.titled("Ceremony done")[1:]
        assert not app.titled("Ceremony refused")

    drive(screen, scenario)
    with Session(demo.runtime.engine) as session:
        keys = {(k.ca_index, k.status) for k in session.exec(select(CaKey))}
    assert keys == {(1, "verify-only"), (2, "active")}
    assert saved[0].parent == demo.state / "ceremonies"
    transcript = json.loads(saved[0].read_text(encoding="utf-8"))
    assert transcript["transcript"]["witnesses_present"] == ["赵六 (公证员)", "钱七 (内审)"]
    newest_run = officer.audit_page(action="ceremony.run", size=1).events[0]
    assert newest_run.subject == "MOT QR CA rollover (test)"
