"""The ``Signer`` over a token key: native where the token has a vendor SM2 mechanism,
host-assisted where it does not and policy allows it.

PKCS#11 defines no SM2 mechanism, so vendors use their own numbers. The mechanism map is data
(``policies/authority.toml``; ``ca`` reads it and hands it in) and each entry
says whether the mechanism signs the message (computing Z itself) or a pre-hashed
``e = SM3(Z ‖ M)`` computed here, and whether it returns raw ``r ‖ s`` or DER.

SoftHSM2 has none of these, so on SoftHSM2 the host-assisted path runs: the key leaves the
token only wrapped under a fresh transport key, is used once and wiped (``KeyStore``). A policy
switch forbids that path for a key class; then a token without a native mechanism cannot sign.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, cast

import pkcs11
from pkcs11.types import SignMixin

from hsm.errors import JtcaError
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.signer import SigningPath
from hsm.sm.sm2 import RAW_SIGNATURE_SIZE, SM2PublicKey, der_to_raw, sm2_digest


class MechanismInput(StrEnum):
    MESSAGE = "message"  # the token computes Z and e itself (SM3-with-SM2)
    DIGEST = "digest"  # the token signs a given e = SM3(Z ‖ M)


class SignatureEncoding(StrEnum):
    RAW = "raw"
    DER = "der"


@dataclass(frozen=True, slots=True)
class VendorMechanism:
    vendor: str
    mechanism: int
    input: MechanismInput
    output: SignatureEncoding = SignatureEncoding.RAW


# The numbers vendors document for SM2 signing; none could be run here (no such hardware).
# The shipped policy file repeats them; this is the fallback when no policy names any.
DEFAULT_VENDOR_MECHANISMS: Final = (
    VendorMechanism("Sansec", 0x80008102, MechanismInput.MESSAGE),
    VendorMechanism("TASS/Koal", 0x80008100, MechanismInput.DIGEST),
    VendorMechanism("Thales Luna", 0x80000B22, MechanismInput.MESSAGE),
    VendorMechanism("IBM EP11", 0x8005000C, MechanismInput.MESSAGE),
)


class HostAssistedForbidden(JtcaError):
    title = "Signing not allowed"
    exit_code = 6


def choose_mechanism(
    advertised: Iterable[int], known: Iterable[VendorMechanism]
) -> VendorMechanism | None:
    """The first known vendor mechanism the token advertises; message-signing mechanisms
    (Z computed inside the token) are preferred over pre-hashed ones."""
    available = set(advertised)
    candidates = [m for m in known if m.mechanism in available]
    candidates.sort(key=lambda m: m.input != MechanismInput.MESSAGE)
    return candidates[0] if candidates else None


class TokenSigner:
    """Signs with one SM2 key in a token; ``path`` says which way it signs."""

    def __init__(
        self,
        store: KeyStore,
        uri: Pkcs11Uri,
        *,
        allow_host_assisted: bool = True,
        vendor_mechanisms: Iterable[VendorMechanism] = DEFAULT_VENDOR_MECHANISMS,
        advertised_mechanisms: Iterable[int] | None = None,
    ) -> None:
        self._store = store
        self._uri = uri
        self._public_key = store.public_key(uri)
        advertised = (
            store.token.mechanisms if advertised_mechanisms is None else advertised_mechanisms
        )
        self._native = choose_mechanism(advertised, vendor_mechanisms)
        if self._native is None and not allow_host_assisted:
            raise HostAssistedForbidden(
                f"policy forbids host-assisted signing for {uri}, and token "
                f"{store.token.label!r} advertises no SM2 signing mechanism jtca knows"
            )

    @property
    def public_key(self) -> SM2PublicKey:
        return self._public_key

    @property
    def key_uri(self) -> str:
        return str(self._uri)

    @property
    def path(self) -> SigningPath:
        return SigningPath.NATIVE if self._native is not None else SigningPath.HOST_ASSISTED

    @property
    def mechanism(self) -> VendorMechanism | None:
        return self._native

    def sign(self, message: bytes) -> bytes:
        if self._native is None:
            return self._store.sign_host_assisted(self._uri, message)
        native = self._native
        data = (
            message
            if native.input == MechanismInput.MESSAGE
            else sm2_digest(self._public_key, message)
        )

        def sign(session: pkcs11.Session) -> bytes:
            key = cast(SignMixin, self._store.find(session, self._uri))
            return bytes(key.sign(data, mechanism=native.mechanism))

        signature = self._store.token.run(sign)
        return normalise_signature(signature, native.output)


def normalise_signature(signature: bytes, encoding: SignatureEncoding) -> bytes:
    if encoding == SignatureEncoding.DER:
        return der_to_raw(signature)
    if len(signature) != RAW_SIGNATURE_SIZE:
        raise JtcaError(
            f"the token returned a {len(signature)}-byte signature; raw SM2 is 64 bytes",
            title="Token error",
        )
    return signature
