"""An officer's personal token (issue #12): its SM2 key, sign-in, signed decisions.

The officer's key is generated inside their own token — a USB key reached through its PKCS#11
module in production (docs/officers.md says how GM/T 0016 SKF devices are reached), a SoftHSM2
token per officer in the tests and the demo (the embedded SoftHSM2 under the state folder,
label ``officer-<id>``; its PIN is the officer's, never written beside it). The PIN comes from
a hidden prompt, ``env:VAR`` or ``file:PATH``, never the command line.
"""

# The named exception to "ca.cli imports no hsm" (issue #11): an officer's own token.
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ca.client.http import Client
from ca.client.session import RequestSigner, SessionData
from ca.core.errors import JtcaError
from ca.officers.statements import (
    approval_statement,
    body_digest,
    enrolment_message,
    sign_in_message,
)
from ca.ops import approvals as approval_ops
from ca.ops import auth as auth_ops
from ca.ops.base import Empty
from ca.site.personal_token import PersonalToken, create_softhsm_token
from ca.site.personal_token import pin_source as personal_pin_source
from hsm.pkcs11.token import PinSource
from hsm.sm.sm2 import SM2PrivateKey

KEY_LABEL: Final = "officer-auth"


def default_label(officer_id: str) -> str:
    return f"officer-{officer_id}"


class DecisionRefused(JtcaError):
    title = "Decision not signed"
    exit_code = 5


def pin_source(spec: str | None, officer: str) -> PinSource:
    """``env:VAR`` or ``file:PATH``; ``None`` or ``prompt`` asks at a hidden prompt."""
    return personal_pin_source(spec, f"PIN of {officer}'s token: ")


def create_embedded_token(state: Path, label: str, pin: str) -> None:
    """A fresh SoftHSM2 token for one officer under the state folder (tests, the demo)."""
    create_softhsm_token(state / "softhsm2", label, pin)


class OfficerToken(PersonalToken):
    """One officer's token, opened with their PIN."""

    key_label = KEY_LABEL
    holder = "an officer"
    keygen = "jtca officer keygen --token {label}"

    def __init__(
        self,
        label: str,
        pin: PinSource,
        *,
        module: str | None = None,
        state: Path | None = None,
    ) -> None:
        from ca.vault.embedded import state_dir

        super().__init__(label, pin, module=module, softhsm=(state or state_dir()) / "softhsm2")

    def proof(self, officer_id: str) -> bytes:
        """Proof of possession for an enrolment (``ca.officers.statements.enrolment_message``)."""
        return self.sign(
            enrolment_message(officer=officer_id, public_key=self.public_key.uncompressed)
        )


def sign_in(
    client: Client, token: OfficerToken, officer_id: str, *, clock: Callable[[], int] | None = None
) -> SessionData:
    """Challenge and response: the token signs the challenge and a fresh session key."""
    challenge = client.signed_in(None).call(auth_ops.CHALLENGE, Empty())
    session_key = SM2PrivateKey.generate()
    at = (clock or _now)()
    message = sign_in_message(
        service=challenge.service,
        officer=officer_id,
        nonce=challenge.nonce,
        at=at,
        session_key=session_key.public_key.uncompressed,
    )
    opened = client.signed_in(None).call(
        auth_ops.SIGN_IN,
        auth_ops.SignInRequest(
            officer=officer_id,
            nonce=challenge.nonce,
            at=at,
            session_key=session_key.public_key.uncompressed,
            signature=token.sign(message),
        ),
    )
    return SessionData(
        url=client.target.url if client.target else str(client.http.base_url),
        service=opened.service,
        session=opened.session,
        officer=opened.officer.id,
        roles=opened.officer.roles,
        province=opened.officer.province,
        certificate_serial=opened.certificate_serial,
        expires_at=opened.expires_at,
        session_key=session_key.pkcs8_pem().decode(),
        token_label=token.label,
        module=token.module,
    )


def _now() -> int:
    return int(time.time())


def signed_client(
    client: Client, data: SessionData, *, clock: Callable[[], int] | None = None
) -> Client:
    return client.signed_in(RequestSigner(data, clock))


def sign_decision(
    client: Client, token: OfficerToken, subject: str, *, approve: bool
) -> tuple[int, bytes, approval_ops.PendingRequestView]:
    """Fetch the request that opened ``subject``, check its SM3 here, and sign the decision
    with the officer's token: ``(time, raw signature, the request)``."""
    if client.signer is None:
        raise DecisionRefused("sign in first (jtca login): a decision is made in a session")
    pending = client.call(approval_ops.REQUEST, approval_ops.SubjectRequest(subject=subject))
    if body_digest(pending.body) != pending.digest:
        raise DecisionRefused(
            f"{subject}: the service's copy of the request does not match its SM3 digest; "
            "not signing"
        )
    data = client.signer.data
    # the certificate in force now, as the service found it for this very request (a renewal
    # since sign-in gives a new serial for the same key)
    serial = pending.signer_certificate_serial
    at = client.signer.clock()
    statement = approval_statement(
        subject=subject,
        request_digest=pending.digest,
        approve=approve,
        officer=data.officer,
        serial=serial,
        at=at,
    )
    return at, token.sign(statement), pending
