"""The embedded default: SoftHSM2 tokens under the state folder.

``state/softhsm2/`` holds the SoftHSM2 config and token directory. Each token made here gets a
random PIN stored beside it (``<label>.pin``, mode 0600) so the demo and a single-machine
installation run unattended, and the value of its trusted wrapping key (``<label>.wrap``, mode
0600, written by ``hsm.pkcs11.softhsm2.init_token``; docs/tokens.md, "Extractability"): keys made
in it
leave it only under that key, for the host-assisted path. That is the embedded default only: a
real deployment names its module and tokens and takes PINs from the environment, a file, a
prompt or a custodian quorum.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hsm.crashpoints import crash_point
from hsm.names import token_label
from hsm.pkcs11.keys import KeyStore, TokenKey
from hsm.pkcs11.softhsm2 import init_token, token_labels, use_softhsm
from hsm.pkcs11.token import (
    FilePin,
    PinSource,
    Token,
    TokenError,
    find_module,
    rescan,
    write_pin_file,
)

STATE_ENV: Final = "JTCA_STATE"
# Finding a token while other processes log in to it (issue #14, point 6): SoftHSM2 rewrites a
# token's token.object at every login (its flags); a process that reads the file meanwhile
# finds it empty, takes the token for invalid and shows its slot with no label ("Token
# missing") until the module is initialised again, or fails the call (CKR_GENERAL_ERROR,
# "Token unavailable"). Both states pass within milliseconds: the look-up is tried again, after
# a rescan when the token was missing (the rescan also finds a token another process made since
# this one loaded the module).
FIND_TRIES: Final = 6
PASSING: Final = ("Token missing", "Token unavailable")


def _pause(attempt: int) -> None:
    time.sleep(0.01 * 2**attempt)  # 20, 40, 80, 160 ms between rescans; 320 ms when failing


def open_token(
    label: str, pin_source: PinSource, module: str | os.PathLike[str] | None = None
) -> Token:
    """``Token(label, pin_source)``, found despite the passing states above. The caller holds
    the runtime's token lock (a rescan voids other tokens' sessions, which they notice)."""
    for attempt in range(1, FIND_TRIES + 1):
        try:
            return Token(label, pin_source, module)
        except TokenError as exc:
            if exc.title not in PASSING or attempt == FIND_TRIES:
                raise
            missing = exc.title == "Token missing"
        if attempt > 1 or not missing:
            _pause(attempt - 1 if missing else attempt)
        if missing:
            rescan(find_module(module))
    raise AssertionError("unreachable")  # pragma: no cover


def token_present(label: str) -> bool:
    """Whether the configured module has a token labelled ``label``, not mistaking a token
    being rewritten by another process for an absent one (a second token of the same label
    would be made): looked for again, after a rescan and a pause, before it is absent."""
    for attempt in range(1, FIND_TRIES - 2):
        try:
            found = label in token_labels()
        except Exception:  # a PKCS#11 error of a passing state: look again
            found = False
        if found:
            return True
        if attempt > 1:
            _pause(attempt - 1)
        rescan(find_module())
    try:
        return label in token_labels()
    except Exception:  # the module still failing: a token it cannot show is not there to use
        return False


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV, "state"))


@dataclass(frozen=True, slots=True)
class EmbeddedToken:
    token: Token
    store: KeyStore
    pin_file: Path


def embedded_token(label: str, state: Path | None = None, *, create: bool = True) -> EmbeddedToken:
    """Open the SoftHSM2 token ``label`` under the state folder; create it on first use only
    when ``create`` is true."""
    folder = (state or state_dir()) / "softhsm2"
    use_softhsm(folder)
    pin_file = folder / f"{token_label(label)}.pin"  # BadName (exit 3): no path in a label
    if not token_present(label):
        if not create:
            raise TokenError(
                f"no token labelled {label!r} in the embedded SoftHSM2 under {folder} "
                f"(create it with: jtca token init --token {label})",
                title="Token missing",
            )
        pin = secrets.token_hex(8)
        so_pin = secrets.token_hex(8)
        # the PIN file first: a crash between the two leaves a PIN file with no token (the
        # next creation writes it again), never a token whose PIN nobody knows
        write_pin_file(pin_file, pin)
        crash_point("token.create:after-pin-file")
        init_token(label, pin, so_pin)
    token = open_token(label, FilePin(pin_file, nofollow=True))
    return EmbeddedToken(token, KeyStore(token), pin_file)


def sm2_key(store: KeyStore, label: str) -> TokenKey:
    """The SM2 key labelled ``label`` in the store, generated in the token on first use."""
    for key in store.list_keys():
        if key.label == label:
            return key
    return store.generate_sm2(label)


class EmbeddedVault:
    """The tokens of the embedded SoftHSM2, opened once each (``ca.citykeys.common.Vault``).
    ``create`` makes a missing token (the first transport key of a new holder)."""

    def __init__(self, state: Path | None = None, *, create: bool = False) -> None:
        self._state = state
        self._create = create
        self._open: dict[str, EmbeddedToken] = {}

    def store(self, token_label: str) -> KeyStore:
        if token_label not in self._open:
            self._open[token_label] = embedded_token(token_label, self._state, create=self._create)
        return self._open[token_label].store

    def close(self) -> None:
        for opened in self._open.values():
            opened.token.close()
        self._open.clear()

    def __enter__(self) -> EmbeddedVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
