"""Operators (issue #16, point 2): registration with an SM2 key, signed acknowledgments.

An operator loads the lists into its terminals and reports back within 15 days (第十二条). One
with API access registers an SM2 key made in its own token (``jtca operator keygen``), with a
proof of possession: an SM2 signature by that key over :func:`possession_message`. It then
reports each load with ``POST /acks`` (no officer session): the body is a signed statement,
:class:`AckStatement` serialised by :func:`statement_text` (canonical JSON: sorted keys, no
spaces, ASCII), and an SM2 signature (DER, hex) over ``ACK_CONTEXT + statement``. The service
refuses a statement that is not exactly its canonical form, so what was signed is what is read.

This module is pure (no token, no SQL): the reference client (``jtca operator ack``) and the
service build and read the same bytes here.
"""

from __future__ import annotations

import json
import re
from typing import Final, Literal

from pydantic import Field

from ca.ops.base import Empty, Model, operation

ACK_CONTEXT: Final = b"jtca-list-ack-v1\n"  # domain separation: an ack signature is nothing else
POSSESSION_CONTEXT: Final = b"jtca-operator-key-v1\n"
STATEMENT_VERSION: Final = 1
MAX_STATEMENT: Final = 4096  # bytes of a statement's text
MAX_CITIES: Final = 200
NONCE_PATTERN: Final = re.compile(r"[0-9a-f]{32,64}")
SM3_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
ListName = Literal["issuer-whitelist", "city-list", "ca-key-list"]


def possession_message(operator_id: str, public_key_hex: str) -> bytes:
    """What the operator's new key signs to prove the registrant holds it: the context, the
    operator's id and the key itself (a proof for one operator is no proof for another)."""
    return POSSESSION_CONTEXT + f"{operator_id}\n{public_key_hex.lower()}".encode()


class AckStatement(Model):
    """What an operator signs: it loaded ``list_type`` version ``sequence`` (whose DER has SM3
    ``sm3``) into ``terminals`` terminals at ``loaded_at``, in ``cities`` (each served by it);
    ``signed_at`` and ``nonce`` make the statement usable once (replay is refused)."""

    v: int = STATEMENT_VERSION
    operator: str = Field(min_length=1, max_length=100)
    list_type: ListName
    sequence: int = Field(ge=1, le=10**18 - 1)
    sm3: str = Field(pattern=SM3_PATTERN.pattern)  # of the list's DER, lower-case hex
    terminals: int = Field(ge=0, le=10**18 - 1)
    loaded_at: int = Field(ge=0, le=2**62)  # Unix seconds
    signed_at: int = Field(ge=0, le=2**62)
    nonce: str = Field(pattern=NONCE_PATTERN.pattern)  # 16-32 random bytes, lower-case hex
    cities: list[str] = Field(default_factory=list, max_length=MAX_CITIES)  # GB/T 2260


def statement_text(statement: AckStatement) -> str:
    """The canonical JSON of ``statement``: the exact text that is signed and posted."""
    return json.dumps(
        statement.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


def signed_message(text: str) -> bytes:
    return ACK_CONTEXT + text.encode("utf-8")


class SignedAck(Model):
    """The body of ``POST /acks``."""

    statement: str = Field(max_length=MAX_STATEMENT)
    signature: str = Field(max_length=200)  # SM2 over ACK_CONTEXT + statement, DER, hex


class AckReceipt(Model):
    operator_id: str
    list_type: str
    sequence: int
    terminals: int
    loaded_at: int
    received_at: int
    statement_sm3: str  # the audit entry's subject names it


# -- registration (an officer the policy allows list.register-operator) ------------------------
class OperatorKeyRequest(Model):
    operator_id: str = Field(max_length=1000)  # the use case names what an id may be
    name: str = Field(default="", max_length=200)
    province: str = Field(max_length=100)  # GB/T 2260 province code
    cities: list[str] = Field(default_factory=list, max_length=MAX_CITIES)
    public_key: str = Field(max_length=200)  # SM2, uncompressed point, hex
    proof: str = Field(max_length=200)  # SM2 over possession_message(), DER, hex


class OperatorView(Model):
    operator_id: str
    name: str
    province: str | None
    cities: list[str]
    public_key: str | None  # None: reports by CSV/JSON import only
    registered_at: int
    registered_by: str
    newest_ack: dict[str, int]  # list type -> the newest sequence it acknowledged


class OperatorList(Model):
    operators: list[OperatorView]


REGISTER = operation(
    "operators.register",
    OperatorKeyRequest,
    OperatorView,
    "register an operator with its SM2 key (proof of possession) and the cities it serves",
)
LIST = operation(
    "operators.list",
    Empty,
    OperatorList,
    "the operators, their keys and cities and the newest version each acknowledged",
    mutating=False,
)
