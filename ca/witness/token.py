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
from pathlib import Path
from typing import Final

from ca.core.errors import BadInput
from ca.site.personal_token import LABEL_MAX, PersonalToken, create_softhsm_token
from ca.site.personal_token import pin_source as personal_pin_source
from hsm.pkcs11.token import PinSource
from hsm.sm.sm2 import raw_to_der

KEY_LABEL: Final = "witness-cosign"


def default_label(name: str) -> str:
    """``witness-<name>``, with what a token label cannot hold made '-', cut to 32 bytes."""
    return ("witness-" + re.sub(r"[^A-Za-z0-9._-]", "-", name))[:LABEL_MAX]


def pin_source(spec: str | None, name: str) -> PinSource:
    """``env:VAR`` or ``file:PATH``; ``None`` or ``prompt`` asks at a hidden prompt."""
    return personal_pin_source(spec, f"PIN of witness {name}'s token: ")


def create_embedded_token(softhsm: Path, label: str, pin: str) -> None:
    """A fresh SoftHSM2 token for the witness in the embedded SoftHSM2 folder ``softhsm``."""
    create_softhsm_token(softhsm, label, pin)


class WitnessToken(PersonalToken):
    """The witness's token, opened with its PIN: one key (``witness-cosign``), made once — a
    token that holds one is refused (two folders with one key could cosign two views)."""

    key_label = KEY_LABEL
    holder = "a witness"
    keygen = "jtca witness init"

    def __init__(
        self, label: str, pin: PinSource, *, module: str | None, softhsm: Path | None
    ) -> None:
        if module is None and softhsm is None:
            raise BadInput("a witness token needs --module or the embedded SoftHSM2 folder")
        super().__init__(label, pin, module=module, softhsm=softhsm or Path())

    def sign_der(self, message: bytes) -> bytes:
        """A DER SM2 signature (what a signed note carries) over ``message``."""
        return raw_to_der(self.sign(message))
