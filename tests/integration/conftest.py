"""SoftHSM2 harness for the token tests.

``softhsm`` (session scope) points SoftHSM2 at a private folder of this test run: it writes
its own softhsm2.conf there, sets SOFTHSM2_CONF and re-initialises the loaded module, so the
user's own tokens are never seen, let alone touched. ``new_token`` (function scope) makes a
fresh token with a unique label for each call and opens it with an environment-variable PIN.

Creating a token re-initialises the PKCS#11 module (SoftHSM2 reads its token folder at
C_Initialize), which voids every session handle in the process; the tokens a test opened
earlier must cope with that themselves (hsm.pkcs11.token.rescan and the module generation),
so ``new_token`` does nothing to help them.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pkcs11
import pkcs11.exceptions as p11e
import pytest
from pkcs11 import Attribute

from hsm.pkcs11.keys import TRUSTED_WRAP_LABEL, KeyStore
from hsm.pkcs11.softhsm2 import CONF_ENV, init_token, use_softhsm
from hsm.pkcs11.token import EnvPin, Token

SO_PIN = "so-pin-8765"
LABEL_MAX = 32  # CK_TOKEN_INFO.label is 32 bytes

NewToken = Callable[..., tuple[Token, KeyStore, str]]
Snapshot = list[tuple[int, str, bytes | None]]


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The private SoftHSM2 folder of this run (config and token directory)."""
    previous = os.environ.get(CONF_ENV)
    folder = tmp_path_factory.mktemp("softhsm")
    conf = use_softhsm(folder)
    assert os.environ[CONF_ENV] == str(conf.resolve())
    assert conf.read_text().startswith(f"directories.tokendir = {(folder / 'tokens').resolve()}")
    yield folder
    if previous is None:
        os.environ.pop(CONF_ENV, None)
    else:
        os.environ[CONF_ENV] = previous


def unique_label(prefix: str) -> str:
    label = f"{prefix}-{uuid.uuid4().hex[:12]}"
    assert len(label.encode("utf-8")) <= LABEL_MAX, f"label prefix {prefix!r} is too long"
    return label


@pytest.fixture
def new_token(softhsm: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NewToken]:
    """``new_token(label_prefix="T") -> (Token, KeyStore, pin)``: a fresh, empty token (with
    the security officer's trusted wrapping key unless ``trusted_wrap=False``: a token made
    before issue #15)."""
    opened: list[Token] = []

    def make(
        label_prefix: str = "T", *, pin: str | None = None, trusted_wrap: bool = True
    ) -> tuple[Token, KeyStore, str]:
        label = unique_label(label_prefix)
        pin = pin or f"pin-{secrets.token_hex(6)}"
        init_token(label, pin, SO_PIN, trusted_wrap=trusted_wrap)
        variable = f"JTCA_TEST_PIN_{uuid.uuid4().hex[:8].upper()}"
        monkeypatch.setenv(variable, pin)
        token = Token(label, EnvPin(variable))
        opened.append(token)
        return token, KeyStore(token), pin

    yield make
    for token in opened:
        token.close()


def _trusted(obj: pkcs11.Object) -> bool:
    try:
        return bool(obj[Attribute.TRUSTED])
    except p11e.AttributeTypeInvalid:  # not a key
        return False


def _object_row(obj: pkcs11.Object) -> tuple[int, str, bytes | None]:
    try:
        key_id: bytes | None = bytes(obj[Attribute.ID])
    except p11e.AttributeTypeInvalid:  # data objects carry no CKA_ID
        key_id = None
    return int(obj[Attribute.CLASS]), str(obj[Attribute.LABEL]), key_id


@pytest.fixture
def snapshot() -> Callable[[KeyStore], Snapshot]:
    """Every object a logged-in session sees in a token, as sorted (class, label, id) rows,
    read directly through python-pkcs11: to prove that nothing was half-imported. The
    security officer's trusted wrapping key (made with the token, never by an operation) is
    left out."""

    def take(store: KeyStore) -> Snapshot:
        def collect(session: pkcs11.Session) -> Snapshot:
            return sorted(
                _object_row(obj)
                for obj in list(session.get_objects())
                if not (obj[Attribute.LABEL] == TRUSTED_WRAP_LABEL and _trusted(obj))
            )

        return store.token.run(collect)

    return take


# -- databases: every store test runs on SQLite and on PostgreSQL -------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``(url, engine)`` of a fresh, migrated database of each kind."""
    from db_fixtures import fresh_database

    with fresh_database(request.param, tmp_path) as pair:
        yield pair
