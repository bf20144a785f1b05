"""Officers signed in for real in tests (issue #12): one SoftHSM2 token per officer.

``DeskClient.as_officer("gd-1")`` gives a client signed in as gd-1 exactly as ``jtca login``
does it — a token ``officer-gd-1`` in the state folder's SoftHSM2 (made on first use, with the
PIN ``officer_pin("gd-1")``), its SM2 key generated inside, challenge and response over the
real HTTP API, every request signed with the delegated session key. What is set up directly
is only the officer's *certificate* when the officer has none: ``enrol_directly`` does what the
root share quorum's enrolment does (``ca.service.officers.enrol``), for test worlds that run
no root ceremony. Tests of enrolment itself go through ``officer.enrol`` and ``officer.decide``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import select

from ca.client.http import Client
from ca.client.session import RequestSigner, SessionData
from ca.core.clock import Clock, SystemClock
from ca.officers.certificates import OFFICER_CA_TOKEN, issue_officer_certificate, open_officer_ca
from ca.service.runtime import Runtime
from ca.site.officer_token import (
    OfficerToken,
    create_embedded_token,
    default_label,
    sign_decision,
    sign_in,
)
from ca.store.db import transaction
from ca.store.models import Officer, OfficerCertificate
from hsm.pkcs11.softhsm2 import token_labels, use_softhsm
from hsm.pkcs11.token import EnvPin, FilePin


def officer_pin(officer_id: str) -> str:
    return f"pin-{officer_id}"[:32]


class FixedPinSource:
    def __init__(self, pin: str) -> None:
        self._pin = pin

    def pin(self) -> str:
        return self._pin

    def describe(self) -> str:
        return "the test's PIN"


def officer_token(state: Path, officer_id: str) -> OfficerToken:
    """The officer's own SoftHSM2 token with its key, made on first use."""
    label = default_label(officer_id)
    use_softhsm(state / "softhsm2")
    fresh = label not in token_labels()
    if fresh:
        create_embedded_token(state, label, officer_pin(officer_id))
    token = OfficerToken(label, FixedPinSource(officer_pin(officer_id)), state=state)
    if fresh:
        token.generate_key()
    return token


def enrol_directly(runtime: Runtime, token: OfficerToken, officer_id: str, now: int) -> int:
    """Certify ``token``'s key for a registered officer, as the quorum enrolment does."""
    with transaction(runtime.engine) as session:
        officer = session.get(Officer, officer_id)
        if officer is None:
            raise LookupError(f"test set-up: officer {officer_id} is not registered")
        with runtime.tokens(create=True) as vault:
            ca = open_officer_ca(
                session, vault.store(OFFICER_CA_TOKEN), now=now, actor="root share quorum"
            )
            cert = issue_officer_certificate(
                session,
                ca,
                officer_id=officer_id,
                name=officer.name,
                public_key=token.public_key,
                token_label=token.label,
                issued_by="root share quorum",
                now=now,
            )
        return cert.serial


def has_certificate(runtime: Runtime, officer_id: str) -> bool:
    from sqlmodel import Session

    with Session(runtime.engine) as session:
        return (
            session.exec(
                select(OfficerCertificate)
                .where(OfficerCertificate.officer_id == officer_id)
                .where(OfficerCertificate.status == "active")
            ).first()
            is not None
        )


class DeskClient(Client):
    """A client of an in-process service that can sign officers in (see the module doc)."""

    def __init__(self, http: Any, runtime: Runtime, clock: Clock | None = None, **kw: Any) -> None:
        super().__init__(http, **kw)
        self.runtime = runtime
        self.clock = clock or SystemClock()
        self._sessions: dict[str, SessionData] = {}
        self._tokens: dict[str, OfficerToken] = {}

    def signed_in(self, signer: RequestSigner | None) -> DeskClient:
        other = DeskClient(self.http, self.runtime, self.clock, signer=signer, target=self.target)
        other._sessions, other._tokens = self._sessions, self._tokens
        return other

    def token(self, officer_id: str) -> OfficerToken:
        if officer_id not in self._tokens:
            self._tokens[officer_id] = officer_token(self.runtime.state, officer_id)
        return self._tokens[officer_id]

    def as_officer(self, officer_id: str | None) -> DeskClient:
        """Signed in as ``officer_id`` (enrolled first if they have no certificate)."""
        if not officer_id:
            return self.signed_in(None)
        if officer_id not in self._sessions:
            token = self.token(officer_id)
            if not has_certificate(self.runtime, officer_id):
                enrol_directly(self.runtime, token, officer_id, self.clock.now())
            self._sessions[officer_id] = sign_in(
                self.signed_in(None), token, officer_id, clock=self.clock.now
            )
        return self.signed_in(RequestSigner(self._sessions[officer_id], self.clock.now))

    def forget(self, officer_id: str) -> None:
        self._sessions.pop(officer_id, None)

    def decision(self, subject: str, *, approve: bool = True) -> tuple[int, bytes]:
        """This officer's token-signed decision on ``subject`` (``at``, ``signature``)."""
        if self.signer is None:
            raise RuntimeError("sign in first")
        at, signature, _ = sign_decision(
            self, self.token(self.signer.data.officer), subject, approve=approve
        )
        return at, signature


__all__ = ["DeskClient", "EnvPin", "FilePin", "enrol_directly", "officer_pin", "officer_token"]
