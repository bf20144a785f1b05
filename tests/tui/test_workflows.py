"""The console's workflow screens end to end with Pilot at 80×24 on the demo state (real
SoftHSM2 tokens, SQLite, the policy, dual control, audit): Cities (apply, generate, deliver,
import), Approvals (approve, reject with a reason), Cleanup (dormant keys), Issuers (register,
issue from a request file, revoke). Each screen runs alone in a small app with a signed-in
``Console`` — a client of the service in-process, over its HTTP API; outcomes are read back from
the service's database, errors from the notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from demo_world import Demo
from sqlmodel import Session, col, select
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input

from ca.client.console import Console
from ca.core.errors import JtcaError
from ca.demo.seed import REVOKED
from ca.store.models import (
    CityKey,
    InteropCertificateRecord,
    KeyApplication,
    PendingAction,
)
from ca.vault.site import SiteVault
from tui.screens.approvals import ApprovalsScreen
from tui.screens.base import ConsoleScreen
from tui.screens.cities import CitiesScreen
from tui.screens.cleanup import CleanupScreen
from tui.screens.forms import FormModal, MarkTable, RowTable
from tui.screens.issuers import IssuersScreen

SIZE = (80, 24)
SHANTOU = "440500"
SHENZHEN = "440300"
CLEANUP = "city-key.cleanup-dormant"
DESTROY = "city-key.destroy-material"
REVOKE = "city-key.revoke"
TO_PROVINCE = "delivered-to-province"
AT_PROVINCE = "held-by-province"


class OneScreen(App[None]):
    """One console screen for one signed-in officer; every notification is kept."""

    def __init__(self, screen: ConsoleScreen) -> None:
        super().__init__()
        self.first = screen
        self.notices: list[tuple[str, str, str]] = []  # (severity, title, message)

    def on_mount(self) -> None:
        self.push_screen(self.first)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        self.notices.append((str(severity), title, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def errors(self) -> list[tuple[str, str]]:
        return [
            (title, message) for severity, title, message in self.notices if severity == "error"
        ]

    def said(self, title: str) -> list[str]:
        return [message for _, t, message in self.notices if t == title]


def console_of(demo: Demo, officer: str) -> Console:
    """``officer`` signed in with their own token (``Demo.console``)."""
    return demo.console(officer)


Step = Callable[[Pilot[None], OneScreen], Awaitable[None]]


def drive(
    demo: Demo,
    officer: str,
    screen: type[ConsoleScreen],
    step: Step,
) -> OneScreen:
    """Run ``screen`` for ``officer`` at 80×24 and let ``step`` drive it."""
    console = console_of(demo, officer)
    app = OneScreen(screen(console))

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await step(pilot, app)
            await settle(pilot)

    try:
        asyncio.run(run())
    finally:
        console.close()
    return app


async def settle(pilot: Pilot[None]) -> None:
    """Until the workers are done and their results (and the refreshes they start) are shown."""
    for _ in range(6):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def submit(pilot: Pilot[None], **values: str) -> None:
    """Fill the open form's fields and submit it (Enter on the last field, or on no field)."""
    form = pilot.app.screen
    assert isinstance(form, FormModal), f"no form open but {form!r}"
    for name, value in values.items():
        form.query_one(f"#field-{name}", Input).value = value
    inputs = list(form.query(Input))
    if inputs:
        inputs[-1].focus()
    await pilot.press("enter")
    await settle(pilot)


def point_at(pilot: Pilot[None], table_id: str, key: str) -> RowTable:
    table = pilot.app.screen.query_one(f"#{table_id}", RowTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    return table


def row_keys(pilot: Pilot[None], table_id: str) -> list[str]:
    table = pilot.app.screen.query_one(f"#{table_id}", RowTable)
    return [str(row.key.value) for row in table.ordered_rows]


def keys_of_city(demo: Demo, city: str) -> list[CityKey]:
    with Session(demo.runtime.engine) as session:
        return list(
            session.exec(select(CityKey).where(CityKey.city == city).order_by(col(CityKey.id)))
        )


def application_for(demo: Demo, cities: str) -> KeyApplication:
    with Session(demo.runtime.engine) as session:
        return session.exec(select(KeyApplication).where(KeyApplication.cities == cities)).one()


# -- city keys from application to the province ---------------------------------------------------
def test_apply_approve_generate_deliver_import(demo: Demo, tmp_path: Path) -> None:
    async def apply(pilot: Pilot[None], app: OneScreen) -> None:
        assert row_keys(pilot, "cities")[:3] == ["440100", "440200", "440300"]
        point_at(pilot, "cities", SHANTOU)
        await pilot.press("space", "a")
        await submit(pilot)  # the marked city is filled in

    app = drive(demo, "gd-1", CitiesScreen, apply)
    assert app.errors() == []
    application = application_for(demo, SHANTOU)
    assert (application.applicant, application.state) == ("gd-1", "pending")
    assert app.said("Applied") == [
        f"application #{application.id} for 汕头市 (440500) awaits approval"
    ]

    async def approve(pilot: Pilot[None], app: OneScreen) -> None:
        assert f"application:{application.id}" in row_keys(pilot, "pending")
        point_at(pilot, "pending", f"application:{application.id}")
        await pilot.press("a")
        await submit(pilot)  # the confirmation
        assert f"application:{application.id}" not in row_keys(pilot, "pending")

    app = drive(demo, "ca-op-1", ApprovalsScreen, approve)
    assert app.errors() == []
    assert application_for(demo, SHANTOU).state == "approved"

    packages = tmp_path / "packages"

    async def generate_and_deliver(pilot: Pilot[None], app: OneScreen) -> None:
        point_at(pilot, "applications", str(application.id))
        await pilot.press("g")
        await submit(pilot)
        generated = keys_of_city(demo, SHANTOU)
        assert sorted(row_keys(pilot, "deliveries")) == sorted(str(k.id) for k in generated)
        pilot.app.screen.query_one("#deliveries", RowTable).focus()
        await pilot.press("d")
        await settle(pilot)  # the form is pushed once the key is handled
        form = pilot.app.screen
        default = form.query_one("#field-folder", Input).value
        assert default == str(demo.state / "packages")
        await submit(pilot, folder=str(packages))
        assert row_keys(pilot, "deliveries") == []

    app = drive(demo, "mot-root-1", CitiesScreen, generate_and_deliver)
    assert app.errors() == []
    keys = keys_of_city(demo, SHANTOU)
    assert sorted(k.key_class for k in keys) == ["city-card", "city-qr"]
    assert {k.stage for k in keys} == {TO_PROVINCE}
    # a folder per hop and per application
    hop = packages / "to-440000" / f"application-{application.id}"
    assert sorted(p.name for p in hop.glob("*.jkp")) == sorted(
        f"{k.label}.to-440000.jkp" for k in keys
    )
    assert sorted(p.name for p in packages.rglob("*.jkp")) == sorted(
        p.name for p in hop.glob("*.jkp")
    )

    async def import_packages(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("i")
        await submit(pilot, path=str(packages))

    app = drive(demo, "gd-1", CitiesScreen, import_packages)
    assert app.errors() == []
    assert {k.stage for k in keys_of_city(demo, SHANTOU)} == {AT_PROVINCE}
    assert app.said("Imported")[0].startswith("2 keys imported")

    async def import_again(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("i")
        await pilot.pause()
        form = pilot.app.screen
        assert isinstance(form, FormModal)  # the province's own hop by default
        assert form.query_one("#field-path", Input).value == str(
            demo.state / "packages" / "to-440000"
        )
        await submit(pilot, path=str(packages))

    app = drive(demo, "gd-1", CitiesScreen, import_again)
    assert app.errors() == []  # imported before: no 'replayed' error beside the summary
    assert app.said("Imported") == ["nothing new: 2 packages imported before"]

    async def deliver_to_shantou(pilot: Pilot[None], app: OneScreen) -> None:
        pilot.app.screen.query_one("#deliveries", RowTable).focus()
        await pilot.press("d")
        await settle(pilot)
        await submit(pilot, folder=str(packages))
        assert isinstance(pilot.app.screen, FormModal)  # refused: the form stays open
        await pilot.press("escape")

    app = drive(demo, "gd-1", CitiesScreen, deliver_to_shantou)
    ((title, message),) = app.errors()
    assert title == "Transport key missing"
    # Shantou has no transport key: the console's key is named, not a command-line command
    assert "t on the Cities screen (transport key)" in message
    assert "jtca" not in message


# -- dormant cleanup under dual control ---------------------------------------------------------
def test_dormant_cleanup_approved_by_a_second_officer(demo: Demo) -> None:
    shenzhen = {str(k.id) for k in keys_of_city(demo, SHENZHEN)}

    async def request(pilot: Pilot[None], app: OneScreen) -> None:
        assert shenzhen <= set(row_keys(pilot, "dormant"))  # delivered 400 days ago, unused
        assert pilot.app.screen.query_one("#dormant", MarkTable).has_focus
        for key in sorted(shenzhen):
            point_at(pilot, "dormant", key)
            await pilot.press("space")
        await pilot.press("c")
        await submit(pilot, reason="never activated in 400 days")

    app = drive(demo, "gd-1", CleanupScreen, request)
    assert app.errors() == []
    with Session(demo.runtime.engine) as session:
        action = session.exec(select(PendingAction).where(PendingAction.action == CLEANUP)).one()
    assert action.state == "pending"
    assert set(action.key_ids.split(",")) == shenzhen
    assert app.said("Awaiting approvers") == [
        f"{CLEANUP} of "
        + ", ".join(k.label for k in keys_of_city(demo, SHENZHEN))
        + f" is request #{action.id}: 0 of 1 approvals (Approvals, 4)"
    ]

    async def own(pilot: Pilot[None], app: OneScreen) -> None:
        assert f"action:{action.id}" not in row_keys(pilot, "pending")  # not their own

    drive(demo, "gd-1", ApprovalsScreen, own)
    requester = console_of(demo, "gd-1")
    try:
        with pytest.raises(JtcaError, match="requester cannot approve their own"):
            requester.decide("action", action.id or 0, approve=True)
    finally:
        requester.close()

    async def approve(pilot: Pilot[None], app: OneScreen) -> None:
        point_at(pilot, "pending", f"action:{action.id}")
        await pilot.press("a")
        await submit(pilot)
        assert f"action:{action.id}" not in row_keys(pilot, "pending")

    app = drive(demo, "mot-root-1", ApprovalsScreen, approve)
    assert app.errors() == []
    assert app.said("Decision recorded") == [f"request #{action.id} approved: now done"]
    assert {k.state for k in keys_of_city(demo, SHENZHEN)} == {"revoked"}

    async def gone(pilot: Pilot[None], app: OneScreen) -> None:
        assert not shenzhen & set(row_keys(pilot, "dormant"))

    drive(demo, "gd-1", CleanupScreen, gone)


def test_material_destroyed_after_the_grace_period(demo: Demo) -> None:
    shenzhen = [k.id or 0 for k in keys_of_city(demo, SHENZHEN)]
    # the demo's revoked key (Huizhou's QR key) is due for destruction too
    revoked = [k.id or 0 for k in keys_of_city(demo, REVOKED.split("-")[2]) if k.label == REVOKED]
    asker, approver = console_of(demo, "gd-1"), console_of(demo, "mot-root-1")
    try:
        asked = asker.request(CLEANUP, shenzhen, "never activated")
        approver.decide("action", asked.action_id or 0, approve=True)
    finally:
        asker.close()
        approver.close()
    demo.clock.advance(31 * 86400)  # the service's clock: past the 30-day grace period

    async def destroy(pilot: Pilot[None], app: OneScreen) -> None:
        assert sorted(row_keys(pilot, "destroy")) == sorted(str(i) for i in shenzhen + revoked)
        await pilot.press("x")
        await submit(pilot)  # a confirmation: all listed keys

    app = drive(demo, "mot-root-2", CleanupScreen, destroy)
    assert app.errors() == []
    (message,) = app.said("Awaiting approvers")
    assert message.startswith(f"{DESTROY} of ")
    assert "city-card-440300-g1, city-qr-440300-g1" in message
    assert REVOKED in message

    async def approve(pilot: Pilot[None], app: OneScreen) -> None:
        (pending,) = [k for k in row_keys(pilot, "pending") if k.startswith("action:")]
        point_at(pilot, "pending", pending)
        await pilot.press("a")
        await submit(pilot)

    app = drive(demo, "mot-root-3", ApprovalsScreen, approve)
    assert app.errors() == []
    assert {k.state for k in keys_of_city(demo, SHENZHEN)} == {"destroyed"}

    # the service destroyed the ministry's copies; the province's await its own site
    labels = {k.label for k in keys_of_city(demo, SHENZHEN)}
    with SiteVault(state=demo.state) as tokens:
        assert not labels & {k.label for k in tokens.store("MOT-KEYS").list_keys()}
        assert labels <= {k.label for k in tokens.store("GD-KEYS").list_keys()}
    reader = console_of(demo, "gd-1")  # the keys are read by a signed-in officer (#12)
    try:
        for key_id in shenzhen:
            assert reader.key(key_id).copies_awaiting_destruction == ["440000"]
        at_province = sum(
            "440000" in reader.key(key_id).copies_awaiting_destruction
            for key_id in shenzhen + revoked
        )
    finally:
        reader.close()

    async def site_copies(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("d")
        await submit(pilot)  # the holder: the officer's province

    app = drive(demo, "gd-2", CleanupScreen, site_copies)
    assert app.errors() == []
    (message,) = app.said("Site copies")
    assert message.startswith(f"{at_province} copies of 440000 destroyed in GD-KEYS: ")
    with SiteVault(state=demo.state) as tokens:
        assert not labels & {k.label for k in tokens.store("GD-KEYS").list_keys()}
    reader = console_of(demo, "gd-1")
    try:
        for key_id in shenzhen:
            assert reader.key(key_id).copies_awaiting_destruction == []
    finally:
        reader.close()


def test_an_officer_cannot_approve_twice(demo: Demo) -> None:
    before = keys_of_city(demo, "440100")[0]
    guangzhou = [before.id or 0]
    asker = console_of(demo, "mot-root-2")
    try:
        outcome = asker.request(REVOKE, guangzhou[:1], "key compromised")
    finally:
        asker.close()
    assert (outcome.state, outcome.required) == ("pending", 2)

    async def twice(pilot: Pilot[None], app: OneScreen) -> None:
        for _ in range(2):
            point_at(pilot, "pending", f"action:{outcome.action_id}")
            await pilot.press("a")
            await submit(pilot)

    app = drive(demo, "mot-root-1", ApprovalsScreen, twice)
    assert app.said("Decision recorded") == [f"request #{outcome.action_id} approved: now pending"]
    assert app.errors() == [
        ("Key action", f"mot-root-1 has already decided on action {outcome.action_id}")
    ]
    assert keys_of_city(demo, "440100")[0].state == before.state  # 1 of 2 approvals: unchanged


# -- rejection needs a reason ----------------------------------------------------------------------
def test_rejecting_needs_a_reason(demo: Demo) -> None:
    zhuhai = application_for(demo, "440400")

    async def reject(pilot: Pilot[None], app: OneScreen) -> None:
        point_at(pilot, "pending", f"application:{zhuhai.id}")
        await pilot.press("x")
        await submit(pilot)  # no reason
        assert app.errors() == [("Key application", "a rejection needs a reason")]
        assert f"application:{zhuhai.id}" in row_keys(pilot, "pending")
        await pilot.press("x")
        await pilot.press(*"duplicate")
        await pilot.press("enter")
        await settle(pilot)

    app = drive(demo, "ca-op-1", ApprovalsScreen, reject)
    assert len(app.errors()) == 1
    assert application_for(demo, "440400").state == "rejected"
    assert app.said("Decision recorded") == [f"application #{zhuhai.id} rejected: now rejected"]


# -- interop certificates -------------------------------------------------------------------------
def make_request_file(demo: Demo, folder: Path, issuer_id: str) -> Path:
    """An issuer's request, signed by a key in its own embedded token (as ca.demo.seed does)."""
    from ca.qr.cert_request import make_request
    from ca.vault.embedded import embedded_token
    from hsm.pkcs11.signer import TokenSigner

    issuer_token = embedded_token("TEST-ISSUER", demo.state)
    try:
        key = issuer_token.store.generate_sm2("test-issuer")
        request = make_request(
            TokenSigner(issuer_token.store, key.uri, allow_host_assisted=True),
            issuer_id=issuer_id,
            issuer_name="测试发行机构",
            requested_expiry="1229",
            now=datetime.fromtimestamp(demo.clock.now(), UTC),
        )
    finally:
        issuer_token.token.close()
    path = folder / "request.der"
    path.write_bytes(request)
    return path


def test_issue_and_revoke_an_interop_certificate(demo: Demo, tmp_path: Path) -> None:
    request = make_request_file(demo, tmp_path, "02113451")
    shares = demo.credentials.shares

    async def issue_and_revoke(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("n")
        await submit(pilot, issuer_id="02113451", name="测试发行机构")
        assert "issuer:02113451" in row_keys(pilot, "certificates")
        await pilot.press("i")
        await submit(pilot, request=str(request), ca_index="1", share1=shares[0], share2=shares[1])
        rows = [k for k in row_keys(pilot, "certificates") if k.endswith(":02113451")]
        assert len(rows) == 1
        point_at(pilot, "certificates", rows[0])
        await pilot.press("v")
        await submit(pilot, reason="issuer key compromised")

    app = drive(demo, "ca-op-1", IssuersScreen, issue_and_revoke)
    assert app.errors() == []
    with Session(demo.runtime.engine) as session:
        cert = session.exec(
            select(InteropCertificateRecord).where(InteropCertificateRecord.issuer_id == "02113451")
        ).one()
    assert (cert.ca_index, cert.status, cert.revocation_reason) == (
        1,
        "revoked",
        "issuer key compromised",
    )
    assert app.said("Certificate issued") == [
        f"issuer 02113451: serial {cert.serial} under CA index 1, expiry 1229"
    ]


# -- errors are notifications --------------------------------------------------------------------
def test_errors_are_notifications(demo: Demo, tmp_path: Path) -> None:
    async def cities(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("a")
        await submit(pilot, cities="350100")  # 福州市, Fujian
        assert isinstance(pilot.app.screen, FormModal)  # the refused form stays open
        await pilot.press("escape")
        await pilot.press("i")
        await submit(pilot, path=str(tmp_path / "nothing.jkp"))
        await pilot.press("g")  # not a ministry officer: the binding is not there
        await settle(pilot)
        assert isinstance(pilot.app.screen, CitiesScreen)

    app = drive(demo, "gd-1", CitiesScreen, cities)
    errors = app.errors()
    assert errors[0][0] == "Not allowed by policy"
    assert errors[0][1].startswith("deny/other-province")
    assert errors[1][0] == "Bad input"
    assert "cannot read" in errors[1][1]
    assert len(errors) == 2
    with Session(demo.runtime.engine) as session:
        assert (
            session.exec(select(KeyApplication).where(KeyApplication.cities == "350100")).all()
            == []
        )

    async def issuers(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("i")
        await submit(pilot, request=str(tmp_path / "r.der"), ca_index="x")
        await pilot.press("i")
        await submit(pilot, request=str(tmp_path / "r.der"), ca_index="1")

    app = drive(demo, "ca-op-1", IssuersScreen, issuers)
    assert app.errors() == [
        ("Bad input", "the CA index must be a number, not 'x'"),
        ("Bad input", f"cannot read {tmp_path / 'r.der'}: No such file or directory"),
    ]
