"""What the officers' console (``tui/``) does, without the screens: one signed-in officer's
client of the authority service (issue #7, issue #11).

The console holds no business rule, no query and no authority token: every method here is one
call of an operation (``ca.ops.*``) through ``ca.client.http.Client`` — the same operations the
command line calls — so policy, province scope, dual control and audit are the service's. This
module adds only the signed-in officer and small conveniences for the screens (reading a file
the officer names, writing the packages the service returns).

Signing in (``open_token`` then ``sign_in``, issue #12) is ``jtca login``'s: the officer's own
token (``ca.site.officer_token``, label ``officer-<id>`` by default) is opened with the PIN
typed at the console, signs the service's challenge and a fresh session key, and every request
of the session is signed with that key. The token stays open while the officer is signed in:
each approval or rejection is signed by it (``Console.decide``) over the exact request decided,
without the PIN being typed again. ``Console.close`` closes it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ca.client.http import Client, ServiceError
from ca.core.clock import Clock
from ca.core.errors import JtcaError
from ca.ops import approvals, audit, auth, ceremony, city, issuance, lists, officers, packages
from ca.ops import console as ops
from ca.ops.base import Empty

if TYPE_CHECKING:
    from ca.site.officer_token import OfficerToken
    from ca.vault.site import SiteVault

KEY_ACTIONS = {  # policy action -> the operation that requests it
    "city-key.suspend": city.SUSPEND,
    "city-key.resume": city.RESUME,
    "city-key.revoke": city.REVOKE,
}
CLEANUP = "city-key.cleanup-dormant"
DESTROY = "city-key.destroy-material"


DECIDABLE: Final = ("application", "action", "emergency", "enrolment")


class BadInput(JtcaError):
    title = "Bad input"
    exit_code = 3


class RequestChanged(JtcaError):
    title = "Request changed"
    exit_code = 5


def subject_of(kind: str, item_id: int) -> str:
    """What a decision on a pending item of ``kind`` is signed over: ``application 7``,
    ``action 3`` (a key action or an emergency publication), ``enrolment 2``."""
    if kind not in DECIDABLE:
        raise BadInput(f"nothing to decide of kind {kind!r}")
    return f"{'action' if kind == 'emergency' else kind} {int(item_id)}"


def session_over(exc: BaseException) -> bool:
    """Whether the service refused the officer's session itself (HTTP 401: expired, ended,
    the officer or their certificate no longer in force): sign in again."""
    return isinstance(exc, ServiceError) and exc.status == 401


class TypedPin:
    """The PIN typed at the console's sign-in, handed to the officer's token."""

    def __init__(self, pin: str) -> None:
        self._pin = pin

    def pin(self) -> str:
        if not self._pin:
            raise BadInput("type the PIN of your token", title="No PIN")
        return self._pin

    def describe(self) -> str:
        return "the PIN typed at sign-in"


class ServiceClock:
    """The service's time as measured at sign-in, carried on by this machine's monotonic
    clock: what the console shows agrees with what the service decides."""

    def __init__(self, service_now: int) -> None:
        self._at = service_now
        self._started = time.monotonic()

    def now(self) -> int:
        return self._at + int(time.monotonic() - self._started)


@dataclass
class Console:
    """A signed-in officer's view of the authority; ``client`` speaks as that officer."""

    client: Client  # signs every request with the session's key
    actor: auth.Officer
    actions: frozenset[str]
    clock: Clock
    token: OfficerToken | None = field(default=None, repr=False)  # signs decisions
    certificate_serial: int = 0
    expires_at: int = 0  # the session's absolute limit (the service's time)
    _closed: bool = field(default=False, repr=False)

    # -- who, what ----------------------------------------------------------------------------
    @property
    def province(self) -> str | None:
        return self.actor.province

    def now(self) -> int:
        return self.clock.now()

    def can(self, action: str) -> bool:
        """Whether one of the officer's roles grants ``action`` at all; the scope (province,
        CA index, lifetime…) is decided by the service for each subject."""
        return action in self.actions

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Forget the officer and close their token (the HTTP client belongs to whoever made
        it). Blocks on the token: call it from a thread worker."""
        self._closed = True
        token, self.token = self.token, None
        if token is not None:
            token.close()

    def sign_out(self) -> None:
        """End the session at the service (audited), then ``close``. A session the service
        has already ended (expired, refused) is simply closed here."""
        try:
            if not self._closed:
                self.client.call(auth.SIGN_OUT, Empty())
        except ServiceError as exc:
            if not session_over(exc):
                raise
        finally:
            self.close()

    # -- the console's own views ----------------------------------------------------------------
    def dashboard(self) -> ops.Dashboard:
        return self.client.call(ops.DASHBOARD, Empty())

    def pending(self) -> list[ops.PendingItem]:
        return self.client.call(ops.PENDING, Empty()).items

    def audit_page(
        self,
        *,
        before: int | None = None,
        size: int = 200,
        action: str = "",
        actor: str = "",
        subject: str = "",
        since: int | None = None,
        until: int | None = None,
    ) -> ops.AuditPage:
        """A page of the log, newest first, filtered (each text: contained); ``matching``
        counts what the filters match over every page."""
        return self.client.call(
            ops.AUDIT_PAGE,
            ops.AuditPageRequest(
                before=before,
                size=size,
                action=action,
                actor=actor,
                subject=subject,
                since=since,
                until=until,
            ),
        )

    def cleanup(self) -> ops.CleanupView:
        return self.client.call(ops.CLEANUP, Empty())

    def audit_verify(self) -> audit.VerifyResult:
        """The whole log against the checkpoints outside the database, verified at the service."""
        return self.client.call(audit.VERIFY, audit.VerifyRequest())

    # -- keys -----------------------------------------------------------------------------------
    def find_keys(self, chosen: city.KeyQuery | None = None) -> list[city.KeyView]:
        """Keys in the officer's scope matching ``chosen``, soonest end first."""
        asked = chosen or city.KeyQuery()
        return self.client.call(city.KEYS, city.KeysRequest(**asked.model_dump())).keys

    def find_page(
        self,
        chosen: city.KeyQuery | None = None,
        *,
        text: str = "",
        sort: city.SortKey = "not_after",
        descending: bool = False,
        limit: int = 500,
    ) -> city.KeyPage:
        """A page of the keys in the officer's scope matching ``chosen`` and free ``text``,
        sorted, and the total that match (both in SQL: fast with 100,000 keys)."""
        asked = chosen or city.KeyQuery()
        return self.client.call(
            city.PAGE,
            city.PageRequest(
                **asked.model_dump(), text=text, sort=sort, descending=descending, limit=limit
            ),
        )

    def key(self, key_id: int) -> city.KeyView:
        return self.client.call(city.SHOW, city.KeyRequest(key=key_id))

    def renew(self, key_id: int) -> city.KeyView:
        return self.client.call(city.RENEW, city.KeyRequest(key=key_id))

    def request(self, action: str, key_ids: Sequence[int], reason: str) -> city.ActionOutcome:
        """Request a key action (suspend, resume, revoke, dormant cleanup, destruction of
        material) of ``key_ids``; dual control decides whether it runs now or waits."""
        keys = [int(k) for k in key_ids]
        if action in KEY_ACTIONS:
            return self.client.call(
                KEY_ACTIONS[action], city.KeyActionRequest(keys=keys, reason=reason)
            )
        if action == CLEANUP:
            return self.client.call(city.CLEANUP, city.CleanupRequest(keys=keys, reason=reason))
        if action == DESTROY:
            return self.client.call(city.DESTROY_MATERIAL, city.DestroyRequest(keys=keys))
        raise BadInput(f"no key action {action!r}")

    # -- approvals (dual control) ------------------------------------------------------------
    def signed_request(self, kind: str, item_id: int) -> approvals.PendingRequestView:
        """The exact request that opened a pending item, as its requester signed it: what an
        approver sees (operation, requester, SM3) before signing a decision on it."""
        return self.client.call(
            approvals.REQUEST, approvals.SubjectRequest(subject=subject_of(kind, item_id))
        )

    def enrolments(self) -> list[officers.Enrolment]:
        return self.client.call(officers.ENROLMENTS, Empty()).enrolments

    def decide(
        self,
        kind: str,
        item_id: int,
        *,
        approve: bool,
        reason: str = "",
        shares: Sequence[str] = (),
        digest: str | None = None,
    ) -> str:
        """Approve or reject a pending item of ``pending()``; the item's state afterwards.

        The decision is signed by the officer's own token over the request that opened the
        item (``ca.site.officer_token.sign_decision`` fetches it and checks its SM3); with
        ``digest`` — the SM3 the officer was shown — a request that is no longer that one is
        not signed. An emergency publication's last approval publishes: ``shares`` open the
        signing key."""
        from ca.site.officer_token import sign_decision

        subject = subject_of(kind, item_id)
        if self.token is None:
            raise BadInput(
                "this session has no officer token to sign decisions with: sign in again",
                title="Decision not signed",
            )
        at, signature, request = sign_decision(self.client, self.token, subject, approve=approve)
        if digest is not None and request.digest != digest:
            raise RequestChanged(
                f"{subject}: the request on record (SM3 {request.digest[:16]}…) is not the one "
                f"you were shown (SM3 {digest[:16]}…); nothing was signed — look at it again"
            )
        if kind == "emergency":
            op = lists.APPROVE if approve else lists.REJECT
            return self.client.call(
                op,
                lists.DecideRequest(
                    request=item_id,
                    reason=reason,
                    shares=list(shares),
                    at=at,
                    signature=signature,
                ),
            ).state
        if kind == "enrolment":
            return self.client.call(
                officers.DECIDE,
                officers.Decision(
                    id=item_id, approve=approve, reason=reason, at=at, signature=signature
                ),
            ).state
        return self.client.call(
            city.DECIDE,
            city.DecideRequest(
                kind=kind,  # type: ignore[arg-type]
                id=item_id,
                approve=approve,
                reason=reason,
                at=at,
                signature=signature,
            ),
        ).state

    # -- cities -------------------------------------------------------------------------------
    def apply(self, cities: Sequence[str]) -> city.Application:
        return self.client.call(city.APPLY, city.ApplyRequest(cities=list(cities)))

    def applications(self) -> list[city.Application]:
        """The officer's province's applications (every one for the ministry), newest first."""
        found = self.client.call(city.APPLICATIONS, city.ApplicationsRequest()).applications
        return sorted(found, key=lambda a: a.id, reverse=True)

    def generate(self, application_id: int) -> list[city.KeyView]:
        return self.client.call(
            city.GENERATE, city.GenerateRequest(application=application_id)
        ).keys

    def import_usage(self, path: Path) -> city.UsageResult:
        """An activation and usage report (CSV or JSON, by its suffix), read here and sent."""
        kind = path.suffix.lower().lstrip(".")
        if kind not in ("csv", "json"):
            raise BadInput(f"{path}: a usage report is a .csv or a .json file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read {path}: {exc}") from None
        return self.client.call(
            city.USAGE,
            city.UsageRequest(report=text, format=kind, source=str(path)),  # type: ignore[arg-type]
        )

    # -- packages -----------------------------------------------------------------------------
    def awaiting_delivery(self) -> list[packages.KeyAwaitingDelivery]:
        """Keys this officer's side delivers next: generated ones for the ministry, the ones a
        province holds for its cities."""
        return self.client.call(packages.AWAITING_DELIVERY, Empty()).keys

    def transport_token(self, holder: str) -> str | None:
        """The token label of ``holder``'s active transport key, if it has one."""
        found = self.client.call(packages.TRANSPORT_KEY, packages.Holder(holder=holder)).active
        return found.token if found else None

    # -- the site's own token (the named exception: ``ca.site``) ------------------------------
    # Importing a package into a province's or a city's token, handing keys on from it, making
    # its transport key and destroying its copies once destroy-material has run need that token,
    # which the service never holds (issue #11, point 5): they run here, at the officer's site,
    # through ``ca.site`` (which imports ``hsm``), and report to the service. In the embedded
    # default the site's tokens are the state folder's SoftHSM2.
    def _site_tokens(self, *, create: bool = False) -> SiteVault:
        from ca.client.config import state_dir
        from ca.vault.site import SiteVault

        return SiteVault(state=state_dir(), create=create)

    def register_transport_key(self, holder: str, token: str) -> packages.TransportKeyInfo:
        """New transport keys for ``holder`` in ``token`` — a signing and an encryption key
        pair —: the ministry's are made at the service; a province's or a city's here, in its
        own token (made if missing)."""
        from ca.site import packages as site

        with self._site_tokens(create=True) as tokens:
            return site.register_transport_key(
                self.client, tokens, holder=holder, token=token, now=self.now()
            )

    def deliver(self, key_ids: Sequence[int], out_dir: Path) -> list[Path]:
        """Seal keys to their next holder and write the packages to ``out_dir`` (the files
        written): the ministry's are sealed by the service; a province hands keys on from its
        own token."""
        from ca.site import packages as site

        with self._site_tokens() as tokens:
            sent = site.deliver(
                self.client, tokens, keys=[int(k) for k in key_ids], out_dir=out_dir, now=self.now()
            )
        return [d.path for d in sent]

    def import_package(self, path: Path) -> packages.ImportedKey:
        """Open a key package (``.jkp``) into this site's token and report it to the service."""
        from ca.site import packages as site

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {path}: {exc.strerror}") from None
        with self._site_tokens() as tokens:
            return site.import_package(self.client, tokens, data)

    def destroy_copies(self, holder: str) -> list[packages.SiteCopy]:
        """Destroy in this site's token each of ``holder``'s copies that destroy-material left
        awaiting destruction (the service destroyed the ministry's), each reported to the
        service; a copy already gone counts as destroyed."""
        from ca.site import destruction

        with self._site_tokens() as tokens:
            return destruction.destroy_copies(self.client, tokens, holder)

    # -- issuers -------------------------------------------------------------------------------
    def issuers(self) -> list[issuance.IssuerView]:
        return self.client.call(issuance.ISSUERS, Empty()).issuers

    def register_issuer(self, issuer_id: str, name: str) -> issuance.IssuerView:
        return self.client.call(
            issuance.REGISTER_ISSUER, issuance.RegisterIssuerRequest(issuer_id=issuer_id, name=name)
        )

    def issue_interop(
        self, request_file: Path, ca_index: int, shares: Sequence[str]
    ) -> issuance.InteropCertificateView:
        try:
            request = request_file.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {request_file}: {exc.strerror}") from None
        return self.client.call(
            issuance.ISSUE,
            issuance.IssueRequest(request=request, ca_index=ca_index, shares=list(shares)),
        )

    def revoke_interop(
        self, ca_index: int, serial: int, reason: str
    ) -> issuance.InteropCertificateView:
        return self.client.call(
            issuance.REVOKE, issuance.RevokeRequest(ca_index=ca_index, serial=serial, reason=reason)
        )

    # -- publication ----------------------------------------------------------------------------
    def list_history(self) -> list[lists.HistoryEntry]:
        return self.client.call(lists.HISTORY, lists.HistoryRequest()).versions

    def preview(self) -> lists.PublishResult:
        """What publishing would change, entry by entry (nothing is signed or recorded)."""
        return self.client.call(lists.PUBLISH, lists.PublishRequest(dry_run=True))

    def publish(
        self, shares: Sequence[str], *, emergency_id: int | None = None
    ) -> lists.PublishResult:
        """Sign and publish (into the service's publication folder) with the root token's share
        quorum; ``emergency_id``: carry out that approved emergency request."""
        return self.client.call(
            lists.PUBLISH, lists.PublishRequest(shares=list(shares), emergency=emergency_id)
        )

    def overdue(self) -> list[lists.OverdueOperator]:
        return self.client.call(lists.OVERDUE, lists.OverdueRequest()).operators

    def import_acks(self, path: Path) -> lists.AckResult:
        """An operators' load report (CSV or JSON, by its suffix), read here and sent."""
        kind = path.suffix.lower().lstrip(".")
        if kind not in ("csv", "json"):
            raise BadInput(f"{path}: a report is a .csv or a .json file (see docs/publisher.md)")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise BadInput(f"cannot read {path}: {why}") from None
        return self.client.call(
            lists.ACK,
            lists.AckRequest(text=text, kind=kind, source=str(path)),  # type: ignore[arg-type]
        )

    def add_operator(self, operator_id: str, name: str, province: str | None) -> lists.Operator:
        return self.client.call(
            lists.OPERATOR_ADD,
            lists.OperatorRequest(operator_id=operator_id, name=name, province=province),
        )

    def request_emergency(self, reason: str) -> lists.EmergencyOutcome:
        return self.client.call(lists.EMERGENCY, lists.EmergencyRequest(reason=reason))

    def emergency_requests(self) -> list[ops.EmergencyRequestView]:
        return self.client.call(ops.EMERGENCY_REQUESTS, Empty()).requests

    # -- ceremonies -----------------------------------------------------------------------------
    def ceremonies(self) -> list[ops.CeremonyRunView]:
        return self.client.call(ops.CEREMONIES, Empty()).runs

    def run_ceremony(
        self, plan: str, shares: Sequence[str], witnesses: Sequence[str]
    ) -> ceremony.CeremonyOutcome:
        """Run the ceremony file ``plan`` (its text) at the service, which holds the tokens."""
        return self.client.call(
            ceremony.RUN,
            ceremony.RunRequest(plan=plan, shares=list(shares), witnesses=list(witnesses)),
        )


def open_token(
    officer_id: str,
    pin: str,
    *,
    label: str | None = None,
    module: str | None = None,
    state: Path | None = None,
) -> OfficerToken:
    """The officer's own token (``officer-<id>`` unless ``label``; the embedded SoftHSM2 under
    the state folder unless ``module``), logged in with ``pin`` and holding an officer key: a
    wrong PIN is ``Wrong PIN``, a locked one ``PIN locked``, here, before the service is
    asked anything. Blocks on the token: call it from a thread worker."""
    from ca.site.officer_token import OfficerToken, default_label

    officer = officer_id.strip()
    if not officer:
        raise BadInput("type your officer id", title="Sign in")
    token = OfficerToken(label or default_label(officer), TypedPin(pin), module=module, state=state)
    try:
        token.public_key  # noqa: B018 - logs in, checks the PIN, finds the officer key
    except BaseException:
        token.close()
        raise
    return token


def sign_in(
    client: Client, token: OfficerToken, officer_id: str, *, clock: Clock | None = None
) -> Console:
    """``officer_id`` signed in with their ``token`` by challenge and response, as ``jtca
    login`` does (``ca.site.officer_token.sign_in``); the console keeps ``token`` to sign
    decisions. ``clock`` stands in for the service's time (tests); by default this machine
    signs with its own time and shows the service's."""
    from ca.site.officer_token import sign_in as token_sign_in
    from ca.site.officer_token import signed_client

    now = clock.now if clock is not None else None
    data = token_sign_in(client.signed_in(None), token, officer_id.strip(), clock=now)
    signed = signed_client(client, data, clock=now)
    who = signed.call(auth.WHOAMI, Empty())
    return Console(
        client=signed,
        actor=who.officer,
        actions=frozenset(who.actions),
        clock=clock or ServiceClock(who.last_seen),
        token=token,
        certificate_serial=who.certificate_serial,
        expires_at=who.expires_at,
    )
