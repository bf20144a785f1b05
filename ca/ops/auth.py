"""Operations of sign-in (issue #12): challenge and response, sessions (see
ca/officers/statements.py).

``auth.challenge`` hands out a fresh nonce and the service's identity; the officer's token key
signs ``ca.officers.statements.sign_in_message`` over them; ``auth.sign-in`` checks that signature
against the officer's certificate in force and opens a session bound to the officer and to the
client's session key. Every later request of the session is signed with that session key.
"""

from __future__ import annotations

from pydantic import Field

from ca.ops.base import Empty, Model, operation


class Challenge(Model):
    nonce: str  # base64url, single use
    service: str  # the service's identity, signed into the response
    now: int  # the service's time (Unix seconds)
    expires_at: int


class SignInRequest(Model):
    officer: str = Field(max_length=100)
    nonce: str = Field(max_length=64)
    at: int  # the time the client signed, Unix seconds
    session_key: bytes = Field(min_length=65, max_length=65)  # uncompressed SM2 point
    signature: bytes = Field(min_length=64, max_length=64)  # raw r ‖ s by the token key


class Officer(Model):
    id: str
    name: str
    roles: list[str]
    province: str | None


class Session(Model):
    session: str  # the session id (not a secret on its own: requests are signed)
    officer: Officer
    certificate_serial: int
    actions: list[str]  # the policy actions the officer's roles grant
    service: str
    now: int
    idle_seconds: int
    expires_at: int  # the absolute limit


class WhoAmI(Model):
    session: str
    officer: Officer
    certificate_serial: int
    certificate_not_after: int
    signed_in_at: int
    last_seen: int
    expires_at: int
    idle_seconds: int
    actions: list[str]


CHALLENGE = operation(
    "auth.challenge",
    Empty,
    Challenge,
    "a fresh single-use nonce and the service's identity, for a sign-in",
    officer=False,
)
SIGN_IN = operation(
    "auth.sign-in",
    SignInRequest,
    Session,
    "sign in: the officer's token signature over a challenge opens a session (audited)",
    officer=False,
)
SIGN_OUT = operation("auth.sign-out", Empty, Empty, "end this session (audited)")
WHOAMI = operation(
    "auth.whoami", Empty, WhoAmI, "who this session is, and until when", mutating=False
)
