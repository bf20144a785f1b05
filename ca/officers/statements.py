"""What an officer signs, byte for byte: sign-in, requests and approvals (docs/officers.md).

Pure: no I/O, no token, no SQL. The client builds these messages and signs them; the service
builds the same bytes from what it received and verifies. All signatures are SM2 with SM3 and
Z over the default ID ``1234567812345678`` (GB/T 32918, GM/T 0009 §10).

- **Sign-in** (challenge and response): the officer's token key signs ::

      jtca-sign-in/1
      service: <service identity>
      officer: <officer id>
      nonce: <challenge nonce, base64url>
      time: <Unix seconds>
      session-key: <the client's fresh SM2 session public key, 65 bytes, hex>

  The service checks it against the officer's current certificate and binds a session to that
  session key: the session key is *delegated* by the token key for the session's lifetime
  (idle and absolute limits in policy), as in RFC 9449 (DPoP) proof of possession.

- **Requests**: every request of a signed-in officer carries ``Jtca-Session`` and a
  ``Jtca-Signature: t=<time>;n=<nonce>;s=<base64 raw r‖s>`` made with the session key over ::

      jtca-request/1
      <METHOD> <path>
      session: <session id>
      time: <Unix seconds>
      nonce: <nonce>
      content-sm3: <SM3 of the body, hex>

  A canonical-body signature in the spirit of RFC 9421, not RFC 9421 itself: RFC 9421 has no
  SM2 algorithm registered and its signature base covers headers a proxy may rewrite, while our
  body is already the exact JSON bytes of one typed request. The nonce is single-use per
  session for state-changing requests and the time must be within the policy's skew, so a
  captured request can neither be replayed nor altered.

- **Approvals**: the approver's *token* key (not the session key) signs ::

      jtca-approval/1
      subject: <e.g. application 7>
      request-sm3: <SM3 of exactly the request approved, hex>
      decision: approve | reject
      officer: <approver id>
      certificate: <approver's certificate serial, decimal>
      time: <Unix seconds>

  The audit event stores this statement, the DER signature and the certificate serial, so
  ``openssl dgst -sm3 -verify`` with the officer's certificate alone checks it offline.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from ca.core.errors import BadInput, InvalidSignature, JtcaError
from hsm.sm.sm2 import RAW_SIGNATURE_SIZE, SM2PublicKey
from hsm.sm.sm3 import sm3

SIGN_IN_CONTEXT: Final = "jtca-sign-in/1"
REQUEST_CONTEXT: Final = "jtca-request/1"
APPROVAL_CONTEXT: Final = "jtca-approval/1"
SESSION_HEADER: Final = "Jtca-Session"
SIGNATURE_HEADER: Final = "Jtca-Signature"
NONCE_BYTES: Final = 16
MAX_NONCE: Final = 64  # characters of base64url
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_OFFICER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SUBJECT = re.compile(r"^[a-z][a-z -]{0,40} [0-9]{1,19}$")


class AuthError(JtcaError):
    """A sign-in, session or request signature the service refuses (HTTP 401)."""

    title = "Not authenticated"
    exit_code = 6
    http_status = 401

    def __init__(self, message: str, *, reason: str = "unauthenticated") -> None:
        super().__init__(message)
        self.reason = reason


def check_officer_id(value: str, what: str = "officer") -> str:
    if not _OFFICER.match(value):
        raise BadInput(
            f"{what} {value[:40]!r}: 1 to 100 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return value


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check_nonce(value: str, field: str = "nonce", reason: str = "bad-nonce") -> str:
    if not _NONCE.match(value):
        raise AuthError(
            f"{field}: 16 to 64 base64url characters, got {value[:70]!r}", reason=reason
        )
    return value


def _lines(*lines: str) -> bytes:
    for line in lines:
        if "\n" in line or "\r" in line:
            raise BadInput(f"a signed field may not contain a line break: {line[:40]!r}")
    return ("\n".join(lines) + "\n").encode()


def sign_in_message(
    *, service: str, officer: str, nonce: str, at: int, session_key: bytes
) -> bytes:
    return _lines(
        SIGN_IN_CONTEXT,
        f"service: {service}",
        f"officer: {officer}",
        f"nonce: {nonce}",
        f"time: {at}",
        f"session-key: {session_key.hex()}",
    )


ENROLMENT_CONTEXT: Final = "jtca-enrolment/1"


def enrolment_message(*, officer: str, public_key: bytes) -> bytes:
    """What a new token key signs to prove it is held (proof of possession, RFC 4211 §4)."""
    return _lines(ENROLMENT_CONTEXT, f"officer: {officer}", f"public-key: {public_key.hex()}")


def body_digest(body: bytes) -> str:
    return sm3(body).hex()


def request_base(
    *, method: str, path: str, session: str, at: int, nonce: str, body: bytes
) -> bytes:
    return _lines(
        REQUEST_CONTEXT,
        f"{method.upper()} {path}",
        f"session: {session}",
        f"time: {at}",
        f"nonce: {nonce}",
        f"content-sm3: {body_digest(body)}",
    )


def approval_statement(
    *, subject: str, request_digest: str, approve: bool, officer: str, serial: int, at: int
) -> bytes:
    if not _SUBJECT.match(subject):
        raise BadInput(f"subject {subject[:60]!r}: not a pending subject such as 'application 7'")
    if not re.fullmatch(r"[0-9a-f]{64}", request_digest):
        raise BadInput(f"request digest {request_digest[:70]!r}: 64 lower-case hex digits of SM3")
    return _lines(
        APPROVAL_CONTEXT,
        f"subject: {subject}",
        f"request-sm3: {request_digest}",
        f"decision: {'approve' if approve else 'reject'}",
        f"officer: {officer}",
        f"certificate: {serial}",
        f"time: {at}",
    )


@dataclass(frozen=True, slots=True)
class RequestSignature:
    at: int
    nonce: str
    signature: bytes  # raw r ‖ s

    def header(self) -> str:
        return f"t={self.at};n={self.nonce};s={base64.b64encode(self.signature).decode()}"


def parse_signature_header(value: str) -> RequestSignature:
    """``t=<time>;n=<nonce>;s=<base64>``; each part named when it is wrong."""
    parts: dict[str, str] = {}
    for item in value.split(";"):
        key, sep, val = item.strip().partition("=")
        if not sep or key not in {"t", "n", "s"} or key in parts:
            raise AuthError(
                f"{SIGNATURE_HEADER}: expected t=<time>;n=<nonce>;s=<signature>, "
                f"got part {item.strip()[:30]!r}",
                reason="bad-signature-header",
            )
        parts[key] = val.strip()
    missing = sorted({"t", "n", "s"} - parts.keys())
    if missing:
        raise AuthError(
            f"{SIGNATURE_HEADER}: part {missing[0]} missing", reason="bad-signature-header"
        )
    if not re.fullmatch(r"[0-9]{1,12}", parts["t"]):
        raise AuthError(
            f"{SIGNATURE_HEADER} t: Unix seconds, got {parts['t'][:20]!r}",
            reason="bad-signature-header",
        )
    nonce = check_nonce(parts["n"], f"{SIGNATURE_HEADER} n", "bad-signature-header")
    try:
        signature = base64.b64decode(parts["s"], validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(
            f"{SIGNATURE_HEADER} s: not base64", reason="bad-signature-header"
        ) from None
    if len(signature) != RAW_SIGNATURE_SIZE:
        raise AuthError(
            f"{SIGNATURE_HEADER} s: {len(signature)} bytes, a raw SM2 signature is "
            f"{RAW_SIGNATURE_SIZE}",
            reason="bad-signature-header",
        )
    return RequestSignature(int(parts["t"]), nonce, signature)


def verify(public_key: SM2PublicKey, signature: bytes, message: bytes, what: str) -> None:
    """Raise ``AuthError`` (reason ``bad-signature``) unless ``signature`` (raw) verifies."""
    try:
        public_key.verify(signature, message)
    except (InvalidSignature, ValueError):
        raise AuthError(f"{what}: the signature does not verify", reason="bad-signature") from None
