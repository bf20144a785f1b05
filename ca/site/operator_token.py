"""An operator's own token and SM2 key (issue #16, point 2), like a witness's
(``ca.witness.token``) and an officer's (``ca.site.officer_token``).

The key is generated inside the token (``CKM_EC_KEY_PAIR_GEN`` on the SM2 curve) under the label
``operator-ack`` and never leaves it except through the signer's host-assisted path
(ARCHITECTURE.md, the key model). It signs the proof of possession at registration and each
load acknowledgment (``ca.ops.operators``). In production the token is the operator's USB key
or HSM (``--module``); tests and small operators use a SoftHSM2 token in the embedded SoftHSM2
folder of the client's state folder. The PIN comes from ``--pin-source``, never the command line.
"""

# An operator is a client with a token in its own hands: it reports to the service over HTTP
# and never opens the database.
from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from ca.core.errors import BadInput
from ca.site.personal_token import LABEL_MAX, PersonalToken, create_softhsm_token
from ca.site.personal_token import pin_source as personal_pin_source
from hsm.pkcs11.token import PinSource
from hsm.sm.sm2 import raw_to_der

KEY_LABEL: Final = "operator-ack"


def default_label(operator_id: str) -> str:
    """``op-<id>``, with what a token label cannot hold made '-', cut to 32 bytes."""
    return ("op-" + re.sub(r"[^A-Za-z0-9_-]", "-", operator_id))[:LABEL_MAX]


def pin_source(spec: str | None, operator_id: str) -> PinSource:
    """``env:VAR`` or ``file:PATH``; ``None`` or ``prompt`` asks at a hidden prompt."""
    return personal_pin_source(spec, f"PIN of operator {operator_id}'s token: ")


def create_embedded_token(softhsm: Path, label: str, pin: str) -> None:
    """A fresh SoftHSM2 token for the operator in the embedded SoftHSM2 folder ``softhsm``."""
    create_softhsm_token(softhsm, label, pin)


class OperatorToken(PersonalToken):
    """The operator's token, opened with its PIN: one key (``operator-ack``), made once."""

    key_label = KEY_LABEL
    holder = "an operator"
    keygen = "jtca operator keygen --token {label}"

    def __init__(
        self, label: str, pin: PinSource, *, module: str | None, softhsm: Path | None
    ) -> None:
        if module is None and softhsm is None:
            raise BadInput("an operator's token needs --module or the embedded SoftHSM2 folder")
        super().__init__(label, pin, module=module, softhsm=softhsm or Path())

    def sign_der(self, message: bytes) -> bytes:
        """A DER SM2 signature over ``message`` (SM3, Z over the default ID)."""
        return raw_to_der(self.sign(message))
