"""An officer's personal token (issue #12): its SM2 key, sign-in, signed decisions.

The officer's key is generated inside their own token — a USB key reached through its PKCS#11
module in production (docs/officers.md says how GM/T 0016 SKF devices are reached), a SoftHSM2
token per officer in the tests and the demo (the embedded SoftHSM2 under the state folder,
label ``officer-<id>``; its PIN is the officer's, never written beside it). The PIN comes from
a hidden prompt, ``env:VAR`` or ``file:PATH``, never the command line.
"""

# The named exception to "ca.cli imports no hsm" (issue #11): an officer's own token.
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ca.client.http import Client
from ca.client.session import RequestSigner, SessionData
from ca.errors import BadInput, JtcaError
from ca.officer_auth import approval_statement, body_digest, enrolment_message, sign_in_message
from ca.ops import approvals as approval_ops
from ca.ops import auth as auth_ops
from ca.ops.base import Empty
from hsm.pkcs11.keys import KeyStore, TokenKey
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.token import PinSource, PromptPin, Token, pin_source_from_spec
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey

KEY_LABEL: Final = "officer-auth"


def default_label(officer_id: str) -> str:
    return f"officer-{officer_id}"


class DecisionRefused(JtcaError):
    title = "Decision not signed"
    exit_code = 5


def pin_source(spec: str | None, officer: str) -> PinSource:
    """``env:VAR`` or ``file:PATH``; ``None`` or ``prompt`` asks at a hidden prompt."""
    if spec is None or spec == "prompt":
        return PromptPin(f"PIN of {officer}'s token: ")
    if not (spec.startswith("env:") or spec.startswith("file:")):
        raise BadInput(
            "--pin-source: use env:VAR, file:PATH or prompt (the value given is not repeated "
            "here, in case it was a PIN; a PIN is never "
            "typed on the command line)"
        )
    return pin_source_from_spec(spec)


def create_embedded_token(state: Path, label: str, pin: str) -> None:
    """A fresh SoftHSM2 token for one officer under the state folder (tests, the demo)."""
    from hsm.softhsm import init_token, token_labels, use_softhsm

    use_softhsm(state / "softhsm2")
    if label in token_labels():
        raise BadInput(f"a token labelled {label!r} already exists")
    init_token(label, pin, secrets.token_hex(8))


class OfficerToken:
    """One officer's token, opened with their PIN."""

    def __init__(
        self,
        label: str,
        pin: PinSource,
        *,
        module: str | None = None,
        state: Path | None = None,
    ) -> None:
        if module is None:
            from ca.tokens import state_dir
            from hsm.softhsm import use_softhsm

            use_softhsm((state or state_dir()) / "softhsm2")
        self.label = label
        self.module = module
        self._token = Token(label, pin, module=module)
        self._store = KeyStore(self._token)
        self._signer: TokenSigner | None = None

    def _key(self) -> TokenKey | None:
        for key in self._store.list_keys():
            if key.label == KEY_LABEL and key.public_key is not None:
                return key
        return None

    def generate_key(self) -> SM2PublicKey:
        """Generate the officer's key in the token (once: an existing key is refused)."""
        if self._key() is not None:
            raise BadInput(
                f"token {self.label!r} already holds an officer key ({KEY_LABEL}); enrol it, "
                "or use a fresh token for a new key"
            )
        key = self._store.generate_sm2(KEY_LABEL)
        if key.public_key is None:  # pragma: no cover - generate_sm2 returns the point
            raise BadInput(f"token {self.label!r} returned no public key")
        return key.public_key

    def signer(self) -> TokenSigner:
        if self._signer is None:
            from ca.signing import load_policy, vendor_mechanisms

            key = self._key()
            if key is None:
                raise BadInput(
                    f"token {self.label!r} holds no officer key: make one with "
                    f"jtca officer keygen --token {self.label}"
                )
            self._signer = TokenSigner(
                self._store, key.uri, vendor_mechanisms=vendor_mechanisms(load_policy())
            )
        return self._signer

    @property
    def public_key(self) -> SM2PublicKey:
        return self.signer().public_key

    def sign(self, message: bytes) -> bytes:
        return self.signer().sign(message)

    def proof(self, officer_id: str) -> bytes:
        """Proof of possession for an enrolment (``ca.officer_auth.enrolment_message``)."""
        return self.sign(
            enrolment_message(officer=officer_id, public_key=self.public_key.uncompressed)
        )

    def close(self) -> None:
        self._token.close()

    def __enter__(self) -> OfficerToken:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
