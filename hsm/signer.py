"""One ``Signer`` interface over every SM2 key, wherever it lives.

A signer produces raw ``r || s`` signatures (SM2 with SM3 and Z over the default ID) and says
which path made them, because the path is part of every audit record (ARCHITECTURE.md, the key
model): ``software`` (a key in this process: tests, the demo), ``host-assisted`` (a token key
unwrapped for one signature) or ``native`` (a vendor SM2 mechanism inside the token). The bytes
are the same whichever path ran.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable

from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey


class SigningPath(StrEnum):
    SOFTWARE = "software"
    HOST_ASSISTED = "host-assisted"
    NATIVE = "native"


@runtime_checkable
class Signer(Protocol):
    """Anything that signs with one SM2 key."""

    @property
    def public_key(self) -> SM2PublicKey: ...

    @property
    def key_uri(self) -> str:
        """Where the key lives: an RFC 7512 ``pkcs11:`` URI, or ``software:<fingerprint>``."""
        ...

    @property
    def path(self) -> SigningPath: ...

    def sign(self, message: bytes) -> bytes:
        """Raw 64-byte ``r || s`` over ``message``."""
        ...


class SoftwareSigner:
    """A signer over an in-process key (tests, the demo, wallets simulated by the demo)."""

    __slots__ = ("_key",)

    def __init__(self, key: SM2PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SoftwareSigner:
        return cls(SM2PrivateKey.generate())

    @property
    def public_key(self) -> SM2PublicKey:
        return self._key.public_key

    @property
    def key_uri(self) -> str:
        return "software:" + self._key.public_key.compressed.hex()

    @property
    def path(self) -> SigningPath:
        return SigningPath.SOFTWARE

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
