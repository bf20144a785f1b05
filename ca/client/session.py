"""The signed-in officer's session on this machine (issue #12), and the signing of requests.

``jtca login`` writes the session file (mode 0600, in a 0700 folder): the session id, the
officer, the service's identity and the *session key* — a fresh SM2 key the officer's token
delegated at sign-in (ca/officers/statements.py). Every request of the session is signed with it;
the officer's token itself is needed again only to approve (its PIN is never stored).

Where: ``$JTCA_SESSION`` if set, else ``$XDG_STATE_HOME/jtca/sessions/<service>.json``
(``~/.local/state`` by default), one file per service URL.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from ca.core.errors import BadInput
from ca.officers.statements import (
    NONCE_BYTES,
    SESSION_HEADER,
    SIGNATURE_HEADER,
    RequestSignature,
    b64url,
    request_base,
)
from hsm.sm.sm2 import SM2PrivateKey
from hsm.sm.sm3 import sm3

SESSION_ENV: Final = "JTCA_SESSION"


@dataclass(frozen=True, slots=True)
class SessionData:
    url: str  # the service this session is with
    service: str  # the service's identity it signed into
    session: str
    officer: str
    roles: list[str]
    province: str | None
    certificate_serial: int
    expires_at: int
    session_key: str  # the delegated session key, PKCS#8 PEM
    token_label: str  # the officer's token, for approvals
    module: str | None  # its PKCS#11 module; None: the embedded SoftHSM2


def session_path(url: str) -> Path:
    explicit = os.environ.get(SESSION_ENV)
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "jtca" / "sessions" / f"{sm3(url.encode()).hex()[:20]}.json"


def save(path: Path, data: SessionData) -> None:
    """Write atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(data), out)
    os.replace(temp, path)


def load(path: Path) -> SessionData | None:
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise BadInput(
            f"{path}: the session file is readable by others (mode {mode:o}); it holds a "
            "session key — remove it and sign in again"
        )
    try:
        data = SessionData(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise BadInput(
            f"{path}: not a jtca session file ({exc}); remove it and sign in again"
        ) from None
    return data


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


class RequestSigner:
    """Signs each request of a session with its delegated session key."""

    def __init__(self, data: SessionData, clock: Callable[[], int] | None = None) -> None:
        self.data = data
        self.clock = clock or (lambda: int(time.time()))
        self._key = SM2PrivateKey.from_pem(data.session_key.encode())

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        at = self.clock()
        nonce = b64url(secrets.token_bytes(NONCE_BYTES))
        message = request_base(
            method=method, path=path, session=self.data.session, at=at, nonce=nonce, body=body
        )
        signature = RequestSignature(at, nonce, self._key.sign(message))
        return {SESSION_HEADER: self.data.session, SIGNATURE_HEADER: signature.header()}
