"""A token in one holder's own hands with one SM2 key of one purpose: an officer's
(``ca.site.officer_token``) or a witness's (``ca.witness.token``).

The key is generated inside the token (``CKM_EC_KEY_PAIR_GEN`` on the SM2 curve) under the
purpose's label and never leaves it except through the signer's host-assisted path
(ARCHITECTURE.md, the key model). In production the token is a USB key or an HSM reached through
its PKCS#11 module (``--module``); the tests, the demo and small sites use a SoftHSM2 token in
the embedded SoftHSM2 folder. The PIN comes from a hidden prompt, ``env:VAR`` or ``file:PATH``,
never the command line, and is never written anywhere.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import ClassVar, Final, Self

from ca.core.errors import BadInput
from hsm.names import token_label
from hsm.pkcs11.keys import KeyStore, TokenKey
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.token import PinSource, PromptPin, Token, pin_source_from_spec
from hsm.sm.sm2 import SM2PublicKey

LABEL_MAX: Final = 32  # CK_TOKEN_INFO.label is 32 bytes


def pin_source(spec: str | None, prompt: str) -> PinSource:
    """``env:VAR`` or ``file:PATH``; ``None`` or ``prompt`` asks at a hidden prompt."""
    if spec is None or spec == "prompt":
        return PromptPin(prompt)
    if not (spec.startswith("env:") or spec.startswith("file:")):
        raise BadInput(
            "--pin-source: use env:VAR, file:PATH or prompt (the value given is not repeated "
            "here, in case it was a PIN; a PIN is never typed on the command line)"
        )
    return pin_source_from_spec(spec)


class GivenPin:
    """A PIN already read (a new token's, asked for once and used twice)."""

    def __init__(self, pin: str) -> None:
        self._pin = pin

    def pin(self) -> str:
        return self._pin

    def describe(self) -> str:
        return "the PIN given for the new token"


def new_pin(spec: str | None, whose: str) -> str:
    """The PIN of a token about to be made for ``whose`` ("mot-root-1", "witness w1"): from
    ``env:``/``file:``, else asked twice at a hidden prompt."""
    if spec is not None and spec != "prompt":
        return pin_source(spec, f"PIN of {whose}'s token: ").pin()
    import getpass

    first = getpass.getpass(f"New PIN for {whose}'s token: ")
    if not first:
        raise BadInput("no PIN entered")
    if getpass.getpass("The same PIN again: ") != first:
        raise BadInput("the two PINs differ; nothing was made")
    return first


def create_softhsm_token(softhsm: Path, label: str, pin: str) -> None:
    """A fresh SoftHSM2 token ``label`` in the SoftHSM2 folder ``softhsm`` (refused if taken)."""
    from hsm.pkcs11.softhsm2 import init_token, token_labels, use_softhsm

    token_label(label, "--token")  # BadName (exit 3): 1-32 letters, digits, '-', '_'
    use_softhsm(softhsm)
    if label in token_labels():
        raise BadInput(f"a token labelled {label!r} already exists in {softhsm}")
    init_token(label, pin, secrets.token_hex(8))


class PersonalToken:
    """The token, opened with its PIN: one key labelled ``key_label``, made once."""

    key_label: ClassVar[str]
    holder: ClassVar[str]  # "an officer", "a witness": named in refusals
    keygen: ClassVar[str]  # the command that makes the key ("{label}": this token's label)

    def __init__(self, label: str, pin: PinSource, *, module: str | None, softhsm: Path) -> None:
        if module is None:
            from hsm.pkcs11.softhsm2 import use_softhsm

            token_label(label, "--token")  # the embedded SoftHSM2 made it: a checked label
            use_softhsm(softhsm)
        self.label = label
        self.module = module
        self._token = Token(label, pin, module=module)
        self._store = KeyStore(self._token)
        self._signer: TokenSigner | None = None

    def _key(self) -> TokenKey | None:
        for key in self._store.list_keys():
            if key.label == self.key_label and key.public_key is not None:
                return key
        return None

    def generate_key(self) -> SM2PublicKey:
        """The key, generated in the token once: a token that holds one is refused (one key,
        one holder)."""
        if self._key() is not None:
            raise BadInput(
                f"token {self.label!r} already holds {self.holder} key ({self.key_label}); use "
                "a fresh token for a new key"
            )
        key = self._store.generate_sm2(self.key_label)
        if key.public_key is None:  # pragma: no cover - generate_sm2 returns the point
            raise BadInput(f"token {self.label!r} returned no public key")
        return key.public_key

    def signer(self) -> TokenSigner:
        if self._signer is None:
            from ca.policy.in_force import load_policy
            from ca.vault.signers import vendor_mechanisms

            key = self._key()
            if key is None:
                raise BadInput(
                    f"token {self.label!r} holds no {self.holder.split()[-1]} key "
                    f"({self.key_label}): make one with {self.keygen.format(label=self.label)}"
                )
            self._signer = TokenSigner(
                self._store, key.uri, vendor_mechanisms=vendor_mechanisms(load_policy())
            )
        return self._signer

    @property
    def public_key(self) -> SM2PublicKey:
        return self.signer().public_key

    def sign(self, message: bytes) -> bytes:
        """Raw r || s over ``message`` (SM2 with SM3, Z over the default ID)."""
        return self.signer().sign(message)

    def close(self) -> None:
        self._token.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
