"""The witness's own token and SM2 key (like an officer's, ``ca.site.officer_token``).

The key is generated inside the token (``CKM_EC_KEY_PAIR_GEN`` on the SM2 curve) under the label
``witness-cosign`` and never leaves it except through the signer's host-assisted path
(ARCHITECTURE.md, the key model). A production witness uses a USB key or an HSM through its
PKCS#11 module (``--module``); the tests and small sites use a SoftHSM2 token in the embedded
SoftHSM2 folder of the client's state folder. The PIN comes from ``--pin-source env:VAR``,
``file:PATH`` or a hidden prompt; it is never written into the witness's folder.
"""

# The witness is a site's own client with a token in the site's own hands (issue #13), like
# ca/site: it reports to the service and never opens the database.
from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Final

from ca.errors import BadInput
from hsm.pkcs11.keys import KeyStore, TokenKey
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.token import PinSource, PromptPin, Token, pin_source_from_spec
from hsm.sm.sm2 import SM2PublicKey, raw_to_der

KEY_LABEL: Final = "witness-cosign"
LABEL_MAX: Final = 32  # CK_TOKEN_INFO.label is 32 bytes


def default_label(name: str) -> str:
    """``witness-<name>``, with what a token label cannot hold made '-', cut to 32 bytes."""
    return ("witness-" + re.sub(r"[^A-Za-z0-9._-]", "-", name))[:LABEL_MAX]


def pin_source(spec: str | None, name: str) -> PinSource:
    """``env:VAR`` or ``file:PATH``; ``None`` or ``prompt`` asks at a hidden prompt."""
    if spec is None or spec == "prompt":
        return PromptPin(f"PIN of witness {name}'s token: ")
    if not (spec.startswith("env:") or spec.startswith("file:")):
        raise BadInput(
            "--pin-source: use env:VAR, file:PATH or prompt (the value given is not repeated "
            "here, in case it was a PIN)"
        )
    return pin_source_from_spec(spec)


def create_embedded_token(softhsm: Path, label: str, pin: str) -> None:
    """A fresh SoftHSM2 token for the witness in the embedded SoftHSM2 folder ``softhsm``."""
    from hsm.softhsm import init_token, token_labels, use_softhsm

    if len(label.encode("utf-8")) > LABEL_MAX:
        raise BadInput(f"--token: {label!r} is longer than {LABEL_MAX} bytes")
    use_softhsm(softhsm)
    if label in token_labels():
        raise BadInput(f"a token labelled {label!r} already exists in {softhsm}")
    init_token(label, pin, secrets.token_hex(8))


class WitnessToken:
    """The witness's token, opened with its PIN."""

    def __init__(
        self, label: str, pin: PinSource, *, module: str | None, softhsm: Path | None
    ) -> None:
        if module is None:
            from hsm.softhsm import use_softhsm

            if softhsm is None:
                raise BadInput("a witness token needs --module or the embedded SoftHSM2 folder")
            use_softhsm(softhsm)
        self.label = label
        self._token = Token(label, pin, module=module)
        self._store = KeyStore(self._token)
        self._signer: TokenSigner | None = None

    def _key(self) -> TokenKey | None:
        for key in self._store.list_keys():
            if key.label == KEY_LABEL and key.public_key is not None:
                return key
        return None

    def generate_key(self) -> SM2PublicKey:
        """The witness's key, made in the token once: a token that holds one is refused (one
        key is one witness; two folders with one key could cosign two views)."""
        if self._key() is not None:
            raise BadInput(
                f"token {self.label!r} already holds a witness key ({KEY_LABEL}): a witness key "
                "belongs to one witness folder; use a fresh token"
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
                    f"token {self.label!r} holds no witness key ({KEY_LABEL}): make one with "
                    "jtca witness init"
                )
            self._signer = TokenSigner(
                self._store, key.uri, vendor_mechanisms=vendor_mechanisms(load_policy())
            )
        return self._signer

    @property
    def public_key(self) -> SM2PublicKey:
        return self.signer().public_key

    def sign_der(self, message: bytes) -> bytes:
        """A DER SM2 signature (what a signed note carries) over ``message``."""
        return raw_to_der(self.signer().sign(message))

    def close(self) -> None:
        self._token.close()

    def __enter__(self) -> WitnessToken:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
