"""The demo's client half (``jtca demo``; issue #12): the officers' personal tokens, their
enrolment, and the day's work as signed requests of those officers.

After the service has seeded the demo world's history (``demo.seed``, ``ca.demo.seed``), the
demo's client — at the same site, on the same state folder — does what officers at their desks
would do, over the service's HTTP API like any client:

1. For each demo officer, a SoftHSM2 token ``officer-<id>`` in the state folder with a random
   PIN (written to ``demo-credentials.json``, mode 0600, before the token is made, so an
   interrupted run can go on) and an SM2 key generated inside it.
2. Enrolment through ``officer.enrol``: the first two ministry root officers under the demo root
   share quorum (the bootstrap), every other officer requested by ``mot-root-1`` and approved by
   ``mot-root-2`` with a decision signed by their token (dual control).
3. The day's work, each step a signed request of the officer whose job it is: gd-1's usage
   reports (one shows Foshan's QR key used in Fujian, one Zhongshan's card key used in
   Huizhou, left open for an officer), gd-1's request to suspend that key and
   ca-op-2's signed approval, gd-2's application for Zhuhai (left awaiting the ministry, so an
   approver can sign a decision on it), a demo issuer's interop certificate (the issuer's own
   token makes the request; ca-op-1 registers and certifies it under the share quorum), and the
   lists published by publisher-1.

The service never sees a PIN. Sessions opened here stay in memory and are signed out at the end.
"""

# The named exception to "clients import no hsm" (issue #11): the site's own tokens.
from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from ca.client.http import Client
from ca.client.session import RequestSigner
from ca.core.clock import iso_utc
from ca.core.errors import BadInput, JtcaError
from ca.demo.credentials import (
    DemoCredentials,
    DemoCredentialsError,
    DemoOfficer,
    load_credentials,
    write_credentials,
)
from ca.ops import auth as auth_ops
from ca.ops import city as city_ops
from ca.ops import issuance as issuance_ops
from ca.ops import lists as lists_ops
from ca.ops import officers as officer_ops
from ca.ops.base import Empty
from ca.site.officer_token import OfficerToken, create_embedded_token, sign_decision, sign_in

DAY: Final = 86400
BOOTSTRAP: Final = ("mot-root-1", "mot-root-2")  # enrolled under the root share quorum
REQUESTER: Final = "mot-root-1"  # asks for every other officer's enrolment
APPROVER: Final = "mot-root-2"  # approves it with a decision signed by their token
ISSUER: Final = ("02113450", "示例发行机构")  # the demo QR issuer (cn8, name)
# the issuer's own token (at the issuer's site: here, the demo's); a label, not a secret
ISSUER_TOKEN: Final = "DEMO-ISSUER"  # noqa: S105
SUSPEND_REASON: Final = "used in Fujian (第十条)"
DORMANT_CITIES: Final = frozenset({"440300"})  # ca.demo.seed.DORMANT: delivered, never used


class DemoPin:
    """A demo officer's PIN, from demo-credentials.json (demo data only)."""

    def __init__(self, officer: DemoOfficer) -> None:
        if officer.pin is None:
            raise DemoCredentialsError(f"demo officer {officer.id} has no PIN yet")
        self._pin = officer.pin
        self._officer = officer.id

    def pin(self) -> str:
        return self._pin

    def describe(self) -> str:
        return f"the demo PIN of {self._officer} (demo-credentials.json)"


def _now() -> int:
    return int(time.time())


@dataclass
class _Desk:
    """The demo's officers at their desks: their tokens, and sessions opened as needed."""

    client: Client
    state: Path
    clock: Callable[[], int]
    stack: ExitStack
    tokens: dict[str, OfficerToken]
    sessions: dict[str, Client]

    def token(self, officer: DemoOfficer) -> OfficerToken:
        if officer.id not in self.tokens:
            from hsm.pkcs11.softhsm2 import token_labels, use_softhsm

            use_softhsm(self.state / "softhsm2")
            if officer.token_label not in token_labels():
                create_embedded_token(self.state, officer.token_label, DemoPin(officer).pin())
            token = OfficerToken(officer.token_label, DemoPin(officer), state=self.state)
            self.stack.callback(token.close)
            try:
                token.public_key  # noqa: B018 - raises BadInput when the token holds no key
            except BadInput:
                token.generate_key()
            self.tokens[officer.id] = token
        return self.tokens[officer.id]

    def as_officer(self, officer: DemoOfficer) -> Client:
        """``officer`` signed in by challenge and response with their token (once)."""
        if officer.id not in self.sessions:
            data = sign_in(
                self.client.signed_in(None), self.token(officer), officer.id, clock=self.clock
            )
            signed = self.client.signed_in(RequestSigner(data, self.clock))
            self.sessions[officer.id] = signed
            self.stack.callback(_sign_out, signed)
        return self.sessions[officer.id]


def _sign_out(client: Client) -> None:
    with suppress(JtcaError):  # a session not signed out ends by itself at its idle limit
        client.call(auth_ops.SIGN_OUT, Empty())


@contextmanager
def _desk(client: Client, state: Path, clock: Callable[[], int]) -> Iterator[_Desk]:
    with ExitStack() as stack:
        yield _Desk(client, state, clock, stack, {}, {})


def complete(
    client: Client,
    state: Path,
    *,
    clock: Callable[[], int] | None = None,
    report: Callable[[str], None] | None = None,
) -> DemoCredentials:
    """Finish a seeded demo state folder (see the module doc); a complete one is left as it is.
    ``clock`` is the time the officers' clients sign with (the service's, within its skew)."""
    credentials = load_credentials(state)
    if credentials.stage == "complete":
        return credentials
    if credentials.stage == "signing":
        raise DemoCredentialsError(
            f"the demo's signed requests in {state} were interrupted part-way; seed a fresh "
            "demo state folder (JTCA_STATE=<new folder> jtca demo)"
        )
    say = report or (lambda _line: None)
    with _desk(client, state, clock or _now) as desk:
        if credentials.stage == "seeded":
            credentials = _enrol_all(desk, credentials, say)
        credentials = replace(credentials, stage="signing")
        write_credentials(state, credentials)
        say("jtca demo: the day's work, as signed requests of the officers…")
        _days_work(desk, credentials)
        _show_transport_keys(desk, credentials, say)
        credentials = replace(credentials, stage="complete")
        write_credentials(state, credentials)
    return credentials


def _enrol_all(
    desk: _Desk, credentials: DemoCredentials, say: Callable[[str], None]
) -> DemoCredentials:
    # every PIN is on file before its token exists: a run cut short goes on where it stopped
    for officer in credentials.officers:
        if officer.pin is None:
            credentials = credentials.with_officer(replace(officer, pin=secrets.token_urlsafe(12)))
    write_credentials(desk.state, credentials)
    say(
        f"jtca demo: {len(credentials.officers)} officers' personal tokens (SoftHSM2, an SM2 "
        "key made inside each), enrolled through officer.enrol…"
    )
    registry = {
        view.id: view
        for view in desk.client.signed_in(None).call(officer_ops.LIST, Empty()).officers
    }
    ordered = [credentials.officer(b) for b in BOOTSTRAP] + [
        o for o in credentials.officers if o.id not in BOOTSTRAP
    ]
    for officer in ordered:
        token = desk.token(officer)
        view = registry.get(officer.id)
        if view is not None and view.certificate and view.certificate.status == "active":
            enrolled = replace(officer, certificate_serial=view.certificate.serial)
        elif officer.id in BOOTSTRAP:
            enrolled = _enrol_by_quorum(desk, credentials, officer, token)
        else:
            enrolled = _enrol_by_request(desk, credentials, officer, token)
        credentials = credentials.with_officer(enrolled)
        write_credentials(desk.state, credentials)
    credentials = replace(credentials, stage="enrolled")
    write_credentials(desk.state, credentials)
    return credentials


def _enrol_request(
    officer: DemoOfficer, token: OfficerToken, shares: tuple[str, ...] = ()
) -> officer_ops.EnrolRequest:
    return officer_ops.EnrolRequest(
        officer_id=officer.id,
        name=officer.name,
        roles=list(officer.roles),
        province=officer.province,
        public_key=token.public_key.uncompressed,
        proof=token.proof(officer.id),
        token_label=officer.token_label,
        shares=list(shares),
    )


def _enrolled(officer: DemoOfficer, enrolment: officer_ops.Enrolment, how: str) -> DemoOfficer:
    if enrolment.state != "approved" or enrolment.certificate is None:
        raise DemoCredentialsError(
            f"the enrolment of demo officer {officer.id} is {enrolment.state}, not approved"
        )
    return replace(officer, certificate_serial=enrolment.certificate.serial, enrolled_by=how)


def _enrol_by_quorum(
    desk: _Desk, credentials: DemoCredentials, officer: DemoOfficer, token: OfficerToken
) -> DemoOfficer:
    enrolment = desk.client.signed_in(None).call(
        officer_ops.ENROL, _enrol_request(officer, token, credentials.shares)
    )
    return _enrolled(officer, enrolment, enrolment.requested_by)


def _enrol_by_request(
    desk: _Desk, credentials: DemoCredentials, officer: DemoOfficer, token: OfficerToken
) -> DemoOfficer:
    requester = desk.as_officer(credentials.officer(REQUESTER))
    approver_officer = credentials.officer(APPROVER)
    approver = desk.as_officer(approver_officer)
    pending = next(
        (
            e
            for e in requester.call(officer_ops.ENROLMENTS, Empty()).enrolments
            if e.officer_id == officer.id
        ),
        None,
    ) or requester.call(officer_ops.ENROL, _enrol_request(officer, token))
    at, signature, _request = sign_decision(
        approver, desk.token(approver_officer), pending.subject, approve=True
    )
    decided = approver.call(
        officer_ops.DECIDE,
        officer_ops.Decision(id=pending.id, approve=True, at=at, signature=signature),
    )
    return _enrolled(officer, decided, pending.subject)


TRANSPORT_HOLDERS: Final = ("ministry", "440000", "440100", "440300", "440600")


def _show_transport_keys(
    desk: _Desk, credentials: DemoCredentials, say: Callable[[str], None]
) -> None:
    """Each demo holder's transport keys, both halves (issue #15): the signing key its
    packages are signed with and the encryption key packages for it are enveloped to."""
    from ca.ops import packages as package_ops

    gd1 = desk.as_officer(credentials.officer("gd-1"))
    say("jtca demo: transport keys (a signing and an encryption key pair per holder):")
    for holder in TRANSPORT_HOLDERS:
        row = gd1.call(package_ops.TRANSPORT_KEY, package_ops.Holder(holder=holder)).active
        if row is None:
            continue
        if row.legacy or row.sign_uri is None:
            say(f"  {holder:8} legacy (one key signs and decrypts): {row.uri}")
            continue
        say(f"  {holder:8} sign {row.sign_uri}")
        say(f"  {'':8} enc  {row.uri}")


def _days_work(desk: _Desk, credentials: DemoCredentials) -> None:
    now = desk.clock()
    gd1 = desk.as_officer(credentials.officer("gd-1"))
    keys = gd1.call(city_ops.KEYS, city_ops.KeysRequest(province="440000")).keys
    # every live key delivered to its city is in use; Shenzhen's never went on (dormant)
    in_use = [
        k for k in keys if k.city not in DORMANT_CITIES and k.state in ("pre-active", "active")
    ]
    header = "key,city,first_use,last_use,used_in\n"
    gd1.call(
        city_ops.USAGE,
        city_ops.UsageRequest(
            report=header
            + "\n".join(
                f"{k.label},{k.city},{iso_utc((k.installed_at or now - 380 * DAY) + 14 * DAY)},"
                f"{iso_utc(now - 4 * DAY)},{k.city[:4]}03"
                for k in in_use
            ),
            format="csv",
            source="demo-usage.csv",
        ),
    )
    # Foshan's QR key used in Fujian: a scope violation, then suspended under dual control
    fs_qr = next(k for k in in_use if k.city == "440600" and k.key_class == "city-qr")
    gd1.call(
        city_ops.USAGE,
        city_ops.UsageRequest(
            report=header + f"{fs_qr.label},440600,{iso_utc(now - 8 * DAY)},"
            f"{iso_utc(now - 7 * DAY)},350102\n",
            format="csv",
            source="demo-violation.csv",
        ),
    )
    # Zhongshan's card key seen in Huizhou yesterday: a violation still open for an officer
    zs_card = next(k for k in in_use if k.city == "442000" and k.key_class == "city-card")
    gd1.call(
        city_ops.USAGE,
        city_ops.UsageRequest(
            report=header + f"{zs_card.label},442000,{iso_utc(now - 2 * DAY)},"
            f"{iso_utc(now - DAY)},441302\n",
            format="csv",
            source="demo-violation-open.csv",
        ),
    )
    asked = gd1.call(
        city_ops.SUSPEND, city_ops.KeyActionRequest(keys=[fs_qr.id], reason=SUSPEND_REASON)
    )
    if asked.action_id is not None and asked.state == "pending":
        _decide(desk, credentials.officer("ca-op-2"), "action", asked.action_id)
    # Zhuhai: applied for, awaiting the ministry's approval (a signed request an approver signs)
    desk.as_officer(credentials.officer("gd-2")).call(
        city_ops.APPLY, city_ops.ApplyRequest(cities=["440400"])
    )
    _issuer(desk, credentials, now)
    desk.as_officer(credentials.officer("publisher-1")).call(
        lists_ops.PUBLISH, lists_ops.PublishRequest(shares=list(credentials.shares))
    )


def _decide(
    desk: _Desk, officer: DemoOfficer, kind: Literal["application", "action"], subject_id: int
) -> None:
    approver = desk.as_officer(officer)
    at, signature, _request = sign_decision(
        approver, desk.token(officer), f"{kind} {subject_id}", approve=True
    )
    approver.call(
        city_ops.DECIDE,
        city_ops.DecideRequest(
            kind=kind,
            id=subject_id,
            approve=True,
            at=at,
            signature=signature,
        ),
    )


def _issuer(desk: _Desk, credentials: DemoCredentials, now: int) -> None:
    """The demo issuer's request, made with its own token at its site, then registered and
    certified by ca-op-1 under the root share quorum."""
    from ca.qr.cert_request import make_request
    from ca.vault.embedded import embedded_token
    from hsm.pkcs11.signer import TokenSigner

    issuer_id, name = ISSUER
    issuer_token = embedded_token(ISSUER_TOKEN, desk.state)
    try:
        key = issuer_token.store.generate_sm2("demo-issuer")
        request = make_request(
            TokenSigner(issuer_token.store, key.uri, allow_host_assisted=True),
            issuer_id=issuer_id,
            issuer_name=name,
            requested_expiry="1230",
            now=datetime.fromtimestamp(now, UTC),
        )
    finally:
        issuer_token.token.close()
    operator = desk.as_officer(credentials.officer("ca-op-1"))
    operator.call(
        issuance_ops.REGISTER_ISSUER,
        issuance_ops.RegisterIssuerRequest(issuer_id=issuer_id, name=name),
    )
    operator.call(
        issuance_ops.ISSUE,
        issuance_ops.IssueRequest(request=request, ca_index=1, shares=list(credentials.shares)),
    )
