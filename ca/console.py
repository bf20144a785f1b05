"""What the officers' console (``tui/``) does, without the screens: one signed-in officer's
view of the authority and the actions the policy lets them take (issue #7).

The console holds no business rule of its own: every action here calls the same function the
CLI calls (``ca.citykeys``, ``ca.applications``, ``ca.issuance``, ``ca.publish``, ``ca.audit``,
``ca.ceremony``), so policy, dual control, audit and atomicity are theirs. This module adds only
the signed-in officer, their province's scope, and views shaped for tables.

Signing in: a registered, active officer proves themselves with the PIN of a token they hold —
their province's key token for a provincial officer, the ministry key token otherwise — or with
the custodians' quorum of shares of the ministry root token. The PIN is checked by logging in to
the token itself; every attempt, good or bad, is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from ca import applications, audit
from ca.citykeys import misuse, queries, renewal, usage, workflow
from ca.citykeys.common import MINISTRY, get_key
from ca.clock import Clock, iso_utc
from ca.errors import JtcaError
from ca.lists.asn1 import ListType
from ca.officers import OfficerError, actor_of
from ca.publish import acks, emergency, publisher
from ca.signing import load_policy
from ca.store.db import transaction
from ca.store.models import (
    AuditEvent,
    CityKey,
    Issuer,
    KeyApplication,
    ListVersion,
    PendingAction,
    TransportKey,
)
from ca.tokens import EmbeddedVault
from hsm.pkcs11.token import PinSource, QuorumPin, Token, TokenError
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import Actor, Subject

SIGN_IN: Final = "console.sign-in"


class SignInRefused(JtcaError):
    title = "Sign-in refused"
    exit_code = 6


class _FixedPin:
    def __init__(self, pin: str) -> None:
        self._pin = pin

    def pin(self) -> str:
        return self._pin

    def describe(self) -> str:
        return "the PIN typed at sign-in"


def _token_of_holder(session: Session, holder: str) -> str | None:
    row = session.exec(
        select(TransportKey.token)
        .where(TransportKey.holder == holder)
        .where(TransportKey.status == "active")
        .order_by(col(TransportKey.id).desc())
    ).first()
    return row


def _root_token(session: Session, now: int) -> str | None:
    record = publisher.current_certificate(session, "root", now)
    return Pkcs11Uri.parse(record.key_uri).token if record else None


def sign_in(
    engine: Engine,
    officer_id: str,
    *,
    clock: Clock,
    pin: str | None = None,
    shares: Sequence[str] = (),
    state: Path | None = None,
) -> Console:
    """The officer, proven by a token PIN or the root token's share quorum (see the module
    docstring). Refused with a reason that does not say which part was wrong."""
    now = clock.now()
    try:
        actor = actor_of(engine, officer_id.strip())
    except OfficerError:
        _audit_attempt(engine, officer_id, False, "unknown officer", now)
        raise SignInRefused("unknown officer or wrong PIN") from None
    with Session(engine) as session:
        if shares:
            label = _root_token(session, now)
            how = "share quorum of the root token"
        else:
            holder = actor.province if actor.province is not None else MINISTRY
            label = _token_of_holder(session, holder)
            how = f"PIN of the {holder} key token"
    if label is None:
        raise SignInRefused(
            "no token to sign in with yet: "
            + ("run the root ceremony first" if shares else "register the transport key first")
        )
    source: PinSource = QuorumPin(list(shares)) if shares else _FixedPin(pin or "")
    try:
        if state is not None:
            from hsm.softhsm import use_softhsm

            use_softhsm(state / "softhsm2")
        with Token(label, source) as token:
            token.run(lambda s: None)  # logs in: the token itself checks the PIN
    except (TokenError, JtcaError) as exc:
        _audit_attempt(engine, actor.id, False, f"{how}: {exc.message}", now)
        raise SignInRefused("unknown officer or wrong PIN") from None
    _audit_attempt(engine, actor.id, True, how, now)
    return Console(engine, actor, clock, state)


def _audit_attempt(engine: Engine, officer: str, ok: bool, how: str, now: int) -> None:
    with transaction(engine) as session:
        audit.append(
            session,
            actor=officer.strip()[:200] or "(empty)",
            action=SIGN_IN if ok else f"{SIGN_IN}.refused",
            subject="console",
            details={"how": how},
            at=now,
        )


@dataclass
class Console:
    engine: Engine
    actor: Actor
    clock: Clock
    state: Path | None = None
    _vault: EmbeddedVault | None = field(default=None, repr=False)

    # -- who, what ----------------------------------------------------------------------------
    @property
    def province(self) -> str | None:
        return self.actor.province

    def now(self) -> int:
        return self.clock.now()

    def can(self, action: str) -> bool:
        """Whether one of the officer's roles grants ``action`` at all; the scope (province,
        CA index, lifetime…) is decided for each subject when the action is taken."""
        policy = load_policy()
        return any(action in policy.roles[r].actions for r in self.actor.roles if r in policy.roles)

    def vault(self) -> EmbeddedVault:
        if self._vault is None:
            self._vault = EmbeddedVault(self.state)
        return self._vault

    def close(self) -> None:
        if self._vault is not None:
            self._vault.close()
            self._vault = None

    # -- dashboard ----------------------------------------------------------------------------
    def dashboard(self) -> dict[str, Any]:
        now = self.now()
        with Session(self.engine) as session:
            counts = queries.summary(session, now=now, province=self.province)
            freshness = []
            for list_type in ListType:
                latest = publisher.latest(session, list_type)
                freshness.append(
                    {
                        "list": list_type.value,
                        "sequence": latest.sequence if latest else None,
                        "next_update": iso_utc(latest.next_update) if latest else None,
                        "stale": latest is None or now > latest.next_update,
                    }
                )
            overdue = acks.overdue(session, now=now)
            pending = len(self.pending())
        return {
            "keys": counts,
            "lists": freshness,
            "overdue_acks": len(overdue),
            "pending_approvals": pending,
        }

    # -- keys -----------------------------------------------------------------------------------
    def find_keys(
        self, chosen: queries.KeyFilter | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        base = chosen or queries.KeyFilter()
        if self.province is not None:
            base = _scoped(base, self.province)  # a province sees its own keys only
        now = self.now()
        with Session(self.engine) as session:
            return [
                queries.key_view(k, now)
                for k in queries.find_keys(session, base, now=now, limit=limit)
            ]

    def find_page(
        self,
        chosen: queries.KeyFilter | None = None,
        *,
        text: str = "",
        sort: str = "not_after",
        descending: bool = False,
        limit: int = 500,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the keys in the officer's scope matching ``chosen`` and free ``text``,
        sorted, and the total that match (both in SQL: fast with 100,000 keys)."""
        base = chosen or queries.KeyFilter()
        if self.province is not None:
            base = _scoped(base, self.province)
        now = self.now()
        with Session(self.engine) as session:
            keys, total = queries.find_page(
                session, base, now=now, text=text, sort=sort, descending=descending, limit=limit
            )
            return [queries.key_view(k, now) for k in keys], total

    def key(self, key_id: int) -> dict[str, Any]:
        with Session(self.engine) as session:
            found = get_key(session, key_id, lock=False)
        if self.province is not None and found.province != self.province:
            raise SignInRefused(
                f"key {key_id} is not of province {self.province}", title="Not yours"
            )
        return queries.key_view(found, self.now())

    def renew(self, key_id: int) -> CityKey:
        return renewal.renew(self.engine, self.vault(), self.actor, key_id, now=self.now())

    def request(self, action: str, key_ids: Sequence[int], reason: str) -> misuse.ActionOutcome:
        return misuse.request(
            self.engine,
            self.vault(),
            self.actor,
            action,
            list(key_ids),
            reason=reason,
            now=self.now(),
        )

    def city_keys(self, city: str, action: str) -> list[int]:
        with Session(self.engine) as session:
            return misuse.keys_of_city(session, city, action)

    def dormant(self) -> list[dict[str, Any]]:
        now = self.now()
        with Session(self.engine) as session:
            return [
                queries.key_view(k, now) for k in misuse.dormant_keys(session, now, self.province)
            ]

    def destroy_due(self) -> list[dict[str, Any]]:
        now = self.now()
        with Session(self.engine) as session:
            return [
                queries.key_view(k, now) for k in misuse.destroy_due(session, now, self.province)
            ]

    # -- approvals (dual control) ------------------------------------------------------------
    def pending(self) -> list[dict[str, Any]]:
        """Applications and key actions awaiting a decision this officer may give (not their
        own requests)."""
        rows: list[dict[str, Any]] = []
        with Session(self.engine) as session:
            for app in applications.pending(session, self.province):
                if app.applicant != self.actor.id and self.can(applications.APPROVE):
                    rows.append(
                        {
                            "kind": "application",
                            "id": app.id,
                            "what": f"key sets for {app.cities}",
                            "by": app.applicant,
                            "at": iso_utc(app.created_at),
                            "reason": "",
                        }
                    )
            for action in misuse.pending_actions(session):
                if action.requested_by == self.actor.id or not self.can(action.action):
                    continue
                keys = [
                    get_key(session, int(k), lock=False) for k in action.key_ids.split(",") if k
                ]
                if self.province is not None and any(k.province != self.province for k in keys):
                    continue
                rows.append(
                    {
                        "kind": "action",
                        "id": action.id,
                        "what": f"{action.action} of " + ", ".join(k.label for k in keys),
                        "by": action.requested_by,
                        "at": iso_utc(action.requested_at),
                        "reason": action.reason,
                    }
                )
            for request in session.exec(
                select(PendingAction)
                .where(PendingAction.action == emergency.EMERGENCY)
                .where(PendingAction.state == "pending")
            ):
                if request.requested_by != self.actor.id and self.can(emergency.EMERGENCY):
                    rows.append(
                        {
                            "kind": "emergency",
                            "id": request.id,
                            "what": "emergency publication of every list",
                            "by": request.requested_by,
                            "at": iso_utc(request.requested_at),
                            "reason": request.reason,
                        }
                    )
        return rows

    def decide(self, kind: str, item_id: int, *, approve: bool, reason: str = "") -> str:
        now = self.now()
        if kind == "application":
            return applications.decide_application(
                self.engine, self.actor, item_id, approve=approve, now=now, reason=reason
            ).state
        if kind == "action":
            return misuse.decide(
                self.engine,
                self.vault(),
                self.actor,
                item_id,
                approve=approve,
                now=now,
                reason=reason,
            ).state
        if kind == "emergency":
            return emergency.decide(
                self.engine, self.actor, item_id, approve=approve, now=now, reason=reason
            ).state
        raise JtcaError(f"nothing to decide of kind {kind!r}")

    # -- cities -------------------------------------------------------------------------------
    def apply(self, cities: Sequence[str]) -> KeyApplication:
        return applications.apply(self.engine, self.actor, list(cities), self.now())

    def applications(self) -> list[KeyApplication]:
        with Session(self.engine) as session:
            query = select(KeyApplication).order_by(col(KeyApplication.id).desc())
            if self.province is not None:
                query = query.where(KeyApplication.province == self.province)
            return list(session.exec(query))

    def generate(self, application_id: int) -> list[CityKey]:
        return workflow.generate(
            self.engine, self.vault(), self.actor, application_id, now=self.now()
        )

    def deliver(self, key_ids: Sequence[int], out_dir: Path) -> list[workflow.Delivered]:
        return workflow.deliver(
            self.engine, self.vault(), self.actor, list(key_ids), out_dir=out_dir, now=self.now()
        )

    def awaiting_delivery(self) -> list[dict[str, Any]]:
        """Keys this officer's side delivers next: generated ones for the ministry, the ones
        a province holds for that province (a municipality's are installed at the province)."""
        now = self.now()
        with Session(self.engine) as session:
            query = select(CityKey).where(
                col(CityKey.state).in_(["pre-active", "active", "suspended"])
            )
            if self.province is None:
                query = query.where(CityKey.stage == workflow.GENERATED)
            else:
                query = (
                    query.where(CityKey.stage == workflow.AT_PROVINCE)
                    .where(CityKey.province == self.province)
                    .where(CityKey.city != CityKey.province)
                )
            rows = session.exec(query.order_by(col(CityKey.id))).all()
            return [queries.key_view(k, now) for k in rows]

    def import_package(self, path: Path) -> workflow.Imported:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise JtcaError(f"cannot read {path}: {exc.strerror}", title="Bad input") from None
        return workflow.import_package(self.engine, self.vault(), self.actor, data, now=self.now())

    def import_usage(self, path: Path) -> usage.UsageImport:
        """``jtca city usage``: an activation and usage report (CSV or JSON, by its suffix)."""
        kind = path.suffix.lower().lstrip(".")
        if kind not in ("csv", "json"):
            raise JtcaError(f"{path}: a usage report is a .csv or a .json file", title="Bad input")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise JtcaError(f"cannot read {path}: {exc}", title="Bad input") from None
        return usage.import_usage(
            self.engine, self.actor, text, kind, source=str(path), now=self.now()
        )

    def transport_token(self, holder: str) -> str | None:
        """The token label of ``holder``'s active transport key, if it has one."""
        with Session(self.engine) as session:
            return _token_of_holder(session, holder)

    def register_transport_key(self, holder: str, token: str) -> TransportKey:
        """``jtca city transport-key``: a new transport key for ``holder`` in ``token`` (the
        token is made if missing)."""
        vault = EmbeddedVault(self.state, create=True)
        try:
            return workflow.register_transport_key(
                self.engine, vault, self.actor, holder=holder, token=token, now=self.now()
            )
        finally:
            vault.close()

    # -- issuers -------------------------------------------------------------------------------
    def issuers(self) -> list[dict[str, Any]]:
        from ca.store.models import InteropCertificateRecord

        with Session(self.engine) as session:
            certs = session.exec(
                select(InteropCertificateRecord).order_by(col(InteropCertificateRecord.id))
            ).all()
            by_issuer: dict[str, list[InteropCertificateRecord]] = {}
            for cert in certs:
                by_issuer.setdefault(cert.issuer_id, []).append(cert)
            return [
                {
                    "issuer_id": i.issuer_id,
                    "name": i.name,
                    "status": i.status,
                    "certificates": [
                        {
                            "ca_index": c.ca_index,
                            "serial": c.serial,
                            "expiry": c.expiry,
                            "status": c.status,
                        }
                        for c in by_issuer.get(i.issuer_id, [])
                    ],
                }
                for i in session.exec(select(Issuer).order_by(col(Issuer.issuer_id)))
            ]

    def _root_token(self, shares: Sequence[str]) -> Token:
        from ca.tokens import state_dir
        from hsm.softhsm import use_softhsm

        with Session(self.engine) as session:
            label = _root_token(session, self.now())
        if label is None:
            raise JtcaError("no root token: run the root ceremony first", title="No root token")
        use_softhsm((self.state or state_dir()) / "softhsm2")
        return Token(label, QuorumPin(list(shares)))

    def issue_interop(self, request_file: Path, ca_index: int, shares: Sequence[str]) -> Any:
        from ca.authorization import interop_authorizer
        from ca.issuance import IssueContext, issue
        from ca.requests import read_request
        from ca.signing import token_signer
        from ca.store.models import CaKey
        from hsm.pkcs11.keys import KeyStore

        try:
            request = read_request(request_file.read_bytes())
        except OSError as exc:
            raise JtcaError(
                f"cannot read {request_file}: {exc.strerror}", title="Bad input"
            ) from None
        with Session(self.engine) as session:
            ca_key = session.exec(
                select(CaKey).where(CaKey.ca_index == ca_index).where(CaKey.status == "active")
            ).first()
        if ca_key is None:
            raise JtcaError(f"no active central CA key at index {ca_index}", title="Bad input")
        uri = Pkcs11Uri.parse(ca_key.key_uri)
        with self._root_token(shares) as token:
            now = self.now()
            ctx = IssueContext(
                actor=self.actor.id,
                ca_signer=token_signer(KeyStore(token), uri, "central-qr-ca"),
                ca_index=ca_index,
                now=now,
                authorize=interop_authorizer(self.actor, ca_index, now),
            )
            return issue(self.engine, request, ctx)

    def revoke_interop(self, ca_index: int, serial: int, reason: str) -> Any:
        from ca.authorization import require
        from ca.issuance import ACTION_REVOKE, revoke
        from ca.store.models import CaKey, InteropCertificateRecord

        require(self.actor, ACTION_REVOKE, Subject(ca_index=ca_index), self.now())
        with Session(self.engine) as session:
            found = session.exec(
                select(InteropCertificateRecord)
                .where(InteropCertificateRecord.ca_index == ca_index)
                .where(InteropCertificateRecord.serial == serial)
                .where(
                    col(InteropCertificateRecord.ca_key).in_(
                        select(CaKey.public_key).where(CaKey.ca_index == ca_index)
                    )
                )
            ).first()
        if found is None:
            raise JtcaError(
                f"no interop certificate {serial} under CA index {ca_index}", title="Bad input"
            )
        return revoke(
            self.engine,
            ca_key_hex=found.ca_key,
            serial=serial,
            reason=reason,
            actor=self.actor.id,
            now=self.now(),
        )

    def register_issuer(self, issuer_id: str, name: str) -> Issuer:
        from ca.authorization import require
        from ca.registry.issuers import register_issuer

        require(self.actor, "issuer.register", Subject(), self.now())
        return register_issuer(
            self.engine, issuer_id=issuer_id, name=name, actor=self.actor.id, now=self.now()
        )

    # -- publication ---------------------------------------------------------------------------
    def list_history(self) -> list[ListVersion]:
        with Session(self.engine) as session:
            return publisher.history(session)

    def preview(self, out_dir: Path) -> list[publisher.Outcome]:
        return publisher.publish(
            self.engine,
            None,
            publisher.Settings(out_dir),
            actor=self.actor,
            now=self.now(),
            dry_run=True,
        )

    def publish(
        self, out_dir: Path, shares: Sequence[str], *, emergency_id: int | None = None
    ) -> list[publisher.Outcome]:
        from hsm.pkcs11.keys import KeyStore

        reason = emergency.approved(self.engine, emergency_id).reason if emergency_id else ""
        with self._root_token(shares) as token:
            signing = publisher.list_signing(self.engine, self.now(), lambda _: KeyStore(token))
            outcomes = publisher.publish(
                self.engine,
                signing,
                publisher.Settings(out_dir),
                actor=self.actor,
                now=self.now(),
                emergency=emergency_id is not None,
                reason=reason,
            )
        if emergency_id is not None:
            emergency.mark_done(
                self.engine,
                emergency_id,
                self.actor,
                {o.list_type.value: o.sequence or 0 for o in outcomes},
                self.now(),
            )
        return outcomes

    def overdue(self) -> list[acks.Overdue]:
        with Session(self.engine) as session:
            return acks.overdue(session, now=self.now())

    # -- audit -----------------------------------------------------------------------------------
    def audit_page(
        self, *, before: int | None = None, size: int = 200, action: str = ""
    ) -> list[AuditEvent]:
        with Session(self.engine) as session:
            query = select(AuditEvent)
            if before is not None:
                query = query.where(col(AuditEvent.seq) < before)
            if action:
                query = query.where(col(AuditEvent.action).contains(action))
            return list(session.exec(query.order_by(col(AuditEvent.seq).desc()).limit(size)))

    def audit_verify(self) -> audit.VerifyReport:
        with Session(self.engine) as session:
            return audit.verify(session)

    def audit_count(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(AuditEvent)).one())


def _scoped(chosen: queries.KeyFilter, province: str) -> queries.KeyFilter:
    from dataclasses import replace

    return replace(chosen, province=province)
