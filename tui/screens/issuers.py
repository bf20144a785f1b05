"""Issuers (5): the QR issuers (发行机构) and their interop certificates (annex §三(五),
互通证书域). Register an issuer, issue an interop certificate from an issuer's request file
under a central CA key (signed in the root token, opened by a quorum of PIN shares), revoke a
certificate with a reason. The work is the service's (``issuer.list``, ``issuer.register``,
``ca.issue``, ``ca.revoke``), reached through ``Console``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from ca.client.console import Console
from ca.core.errors import JtcaError
from ca.ops.issuance import InteropCertificateView, IssuerView
from tui.screens.base import ConsoleFooter, describe_error
from tui.screens.forms import Field, FieldError, FormModal, RowTable, field_named_in
from tui.screens.panels import ProgressScreen, WorkProgress

ISSUE = "qr-ca.issue-interop-cert"
REVOKE = "qr-ca.revoke-interop-cert"
REGISTER = "issuer.register"


class BadInput(JtcaError):
    title = "Bad input"


def _number(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BadInput(f"{what} must be a number, not {text.strip()!r}") from None


class IssuersScreen(ProgressScreen):
    """QR issuers and their interop certificates: register, issue from a request file,
    revoke."""

    KEY: ClassVar[str] = "5"
    TITLE: ClassVar[str] = "Issuers"
    ACTIONS: ClassVar[tuple[str, ...]] = (ISSUE, REVOKE, REGISTER)

    DEFAULT_CSS = """
    IssuersScreen #issuers-title { height: 1; background: $boost; text-style: bold; }
    IssuersScreen #certificates { height: 1fr; border: round $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "issue", "Issue cert"),
        Binding("v", "revoke", "Revoke cert"),
        Binding("n", "register", "New issuer"),
        Binding("r,f5", "refresh", "Refresh"),
    ]

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.allowed = {
            "issue": console.can(ISSUE),
            "revoke": console.can(REVOKE),
            "register": console.can(REGISTER),
        }
        self.needs = {"issue": (ISSUE,), "revoke": (REVOKE,), "register": (REGISTER,)}
        self.rows: dict[str, InteropCertificateView] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="issuers-title", markup=False)
        table = RowTable(id="certificates")
        table.border_title = "Issuers and interop certificates"
        yield table
        yield WorkProgress()
        yield ConsoleFooter()

    def on_mount(self) -> None:
        table = self.query_one("#certificates", RowTable)
        table.add_columns("Issuer", "Name", "Issuer status", "CA", "Serial", "Expiry", "Cert")
        table.focus()

    def on_screen_resume(self) -> None:
        self.action_refresh()  # shown again: another officer or screen may have changed things

    def action_refresh(self) -> None:
        self.run_blocking(self.console.issuers, done=self._show, quiet=True)

    def _show(self, issuers: list[IssuerView]) -> None:
        rows: list[tuple[str, list[str]]] = []
        self.rows = {}
        certificates = 0
        for issuer in issuers:
            head = [issuer.issuer_id, issuer.name, issuer.status]
            if not issuer.certificates:
                rows.append((f"issuer:{issuer.issuer_id}", [*head, "", "", "", ""]))
            for cert in issuer.certificates:
                key = f"cert:{cert.ca_index}:{cert.serial}:{issuer.issuer_id}"
                self.rows[key] = cert
                certificates += 1
                rows.append(
                    (key, [*head, str(cert.ca_index), str(cert.serial), cert.expiry, cert.status])
                )
        self.query_one("#issuers-title", Static).update(
            f" {len(issuers)} issuers · {certificates} interop certificates"
        )
        self.query_one("#certificates", RowTable).fill(rows)

    # -- register ---------------------------------------------------------------------------------
    def action_register(self) -> None:
        def register(result: dict[str, str]) -> Any:
            issuer_id, name = result["issuer_id"].strip(), result["name"].strip()
            if not name:
                raise FieldError("name", "type the issuer's name")
            return self.console.register_issuer(issuer_id, name)

        def field_for(exc: BaseException) -> str | None:
            found = field_named_in(exc, ("issuer_id", "name"))
            if found is not None:
                return found
            _title, message = describe_error(exc)  # the id's format, or already registered
            return "name" if "name" in message.lower() else "issuer_id"

        self.app.push_screen(
            FormModal(
                "Register an issuer",
                [
                    Field("issuer_id", "Issuer id (8 digits)", placeholder="02113450"),
                    Field("name", "Name", placeholder="发行机构名称"),
                ],
                act=register,
                done=lambda issuer: self._done("Issuer registered", issuer.issuer_id),
                field_for=field_for,
            )
        )

    # -- issue ------------------------------------------------------------------------------------
    def action_issue(self) -> None:
        def given(result: dict[str, str] | None) -> None:
            if result is None:
                return
            try:
                ca_index = _number(result["ca_index"], "the CA index")
            except JtcaError as exc:
                self.fail(exc)
                return
            request = Path(result["request"].strip()).expanduser()
            shares = [result["share1"].strip(), result["share2"].strip()]
            self.work(
                lambda: self.console.issue_interop(request, ca_index, shares),
                done=lambda cert: self._done(
                    "Certificate issued",
                    f"issuer {cert.issuer_id}: serial {cert.serial} under CA index "
                    f"{cert.ca_index}, expiry {cert.expiry}",
                ),
                busy="Signing in the root token…",
            )

        self.app.push_screen(
            FormModal(
                "Issue an interop certificate",
                [
                    Field("request", "Request file", placeholder="path/to/request.der"),
                    Field("ca_index", "Central CA index", "1"),
                    Field("share1", "Root token PIN share 1", password=True),
                    Field("share2", "Root token PIN share 2", password=True),
                ],
            ),
            given,
        )

    # -- revoke -----------------------------------------------------------------------------------
    def action_revoke(self) -> None:
        key = self.query_one("#certificates", RowTable).current_key()
        cert = self.rows.get(key or "")
        if cert is None:
            self.fail(BadInput("choose a certificate to revoke", title="Revoke"))
            return
        ca_index, serial = cert.ca_index, cert.serial

        def given(result: dict[str, str] | None) -> None:
            if result is not None:
                reason = result["reason"]
                self.work(
                    lambda: self.console.revoke_interop(ca_index, serial, reason),
                    done=lambda _: self._done(
                        "Certificate revoked", f"serial {serial} under CA index {ca_index}"
                    ),
                    busy="Revoking…",
                )

        self.app.push_screen(
            FormModal(
                f"Revoke certificate {serial} (CA index {ca_index})",
                [Field("reason", "Reason", placeholder="e.g. issuer key compromised")],
                note=f"issuer {cert.issuer_id}, expiry {cert.expiry}, {cert.status}",
            ),
            given,
        )

    def _done(self, title: str, message: str) -> None:
        self.app.notify(message, title=title, markup=False)
        self.action_refresh()
