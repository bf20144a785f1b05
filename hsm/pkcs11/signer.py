"""The ``Signer`` over a token key: native where the token has a vendor SM2 mechanism,
host-assisted where it does not and policy allows it.

PKCS#11 defines no SM2 mechanism, so vendors use their own numbers. The mechanism map is data
(``policies/authority.toml``; ``ca`` reads it and hands it in) and each entry
says whether the mechanism signs the message (computing Z itself) or a pre-hashed
``e = SM3(Z ‖ M)`` computed here, and whether it returns raw ``r ‖ s`` or DER.

Vendor-defined numbers (``CKM_VENDOR_DEFINED`` and above) collide across makers: one maker's
SM2 signature may be another's key derivation. So an entry names the maker and model it is for
(``CK_TOKEN_INFO.manufacturerID`` and ``model``), and an entry is chosen only for a token whose
manufacturer is the entry's, exactly, and whose model matches the entry's model (a literal, or
a pattern where ``*`` is any run of characters and ``?`` one). A token of a maker no entry
names is never sent a vendor-defined number (issue #15).

SoftHSM2 has none of these, so on SoftHSM2 the host-assisted path runs: the key leaves the
token only wrapped under a fresh transport key, is used once and wiped (``KeyStore``). A policy
switch forbids that path for a key class; then a token without a native mechanism cannot sign.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
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


CKM_VENDOR_DEFINED: Final = 0x80000000  # PKCS#11 §2.1: numbers from here on are each maker's own


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """Who made a token: ``CK_TOKEN_INFO.manufacturerID`` and ``model`` (C_GetTokenInfo), as
    python-pkcs11 reads them (``Token.manufacturer_id``, ``Token.model``); blank padding is not
    part of the name."""

    manufacturer: str
    model: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "manufacturer", self.manufacturer.strip())
        object.__setattr__(self, "model", self.model.strip())


@dataclass(frozen=True, slots=True)
class VendorMechanism:
    """One vendor SM2 signing mechanism: ``vendor`` is a name for people; ``manufacturer``
    (exact) and ``model`` (exact, or a pattern with ``*`` and ``?``) say which tokens it is
    for. An entry without a manufacturer is never chosen."""

    vendor: str
    mechanism: int
    input: MechanismInput
    output: SignatureEncoding = SignatureEncoding.RAW
    manufacturer: str | None = None
    model: str = "*"

    def is_for(self, token: TokenIdentity) -> bool:
        """Whether this entry names ``token``'s maker and model."""
        if self.manufacturer is None or not token.manufacturer:
            return False
        return self.manufacturer.strip() == token.manufacturer and model_matches(
            self.model, token.model
        )


def model_matches(pattern: str, model: str) -> bool:
    """``pattern`` against a token's model: ``*`` is any run of characters (``"*"`` alone: any
    model of the maker), ``?`` one character, every other character itself (case counts)."""
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.strip()
    )
    return re.fullmatch(regex, model.strip(), flags=re.DOTALL) is not None


# The numbers vendors document for SM2 signing; none could be run here (no such hardware). The
# makers' names are what their tokens report in CK_TOKEN_INFO.manufacturerID as far as could be
# checked without the hardware: IBM EP11 from openCryptoki's EP11 token (manufacturer "IBM",
# model "EP11"); the others are unconfirmed (docs/tokens.md) and must be checked against the
# token (pkcs11-tool -L prints them) before relying on them.
# The shipped policy file repeats them; this is the fallback when no policy names any.
DEFAULT_VENDOR_MECHANISMS: Final = (
    VendorMechanism("Sansec", 0x80008102, MechanismInput.MESSAGE, manufacturer="Sansec"),
    VendorMechanism("TASS/Koal", 0x80008100, MechanismInput.DIGEST, manufacturer="TASS"),
    VendorMechanism(
        "Thales Luna", 0x80000B22, MechanismInput.MESSAGE, manufacturer="Safenet, Inc."
    ),
    VendorMechanism(
        "IBM EP11", 0x8005000C, MechanismInput.MESSAGE, manufacturer="IBM", model="EP11"
    ),
)


class HostAssistedForbidden(JtcaError):
    title = "Signing not allowed"
    exit_code = 6


def choose_mechanism(
    token: TokenIdentity | tuple[str, str],
    advertised: Iterable[int],
    known: Iterable[VendorMechanism],
) -> VendorMechanism | None:
    """The known vendor mechanism to sign with on a token of maker and model ``token`` that
    advertises ``advertised`` (C_GetMechanismList), or None.

    Only entries for the token's maker and model count (``VendorMechanism.is_for``); of those
    the token advertises, message-signing mechanisms (Z computed inside the token) are
    preferred over pre-hashed ones, then an entry naming the model exactly over a pattern,
    then the map's order. A vendor-defined number is never chosen for a token whose maker is
    blank (unknown)."""
    identity = token if isinstance(token, TokenIdentity) else TokenIdentity(*token)
    available = set(advertised)
    candidates = [
        m
        for m in known
        if m.mechanism in available
        and m.is_for(identity)
        and (identity.manufacturer or m.mechanism < CKM_VENDOR_DEFINED)
    ]
    candidates.sort(
        key=lambda m: (m.input != MechanismInput.MESSAGE, "*" in m.model or "?" in m.model)
    )
    return candidates[0] if candidates else None


def token_identity(store: KeyStore) -> TokenIdentity:
    """The maker and model of ``store``'s token, read by C_GetTokenInfo in a session."""

    def read(session: pkcs11.Session) -> TokenIdentity:
        return TokenIdentity(str(session.token.manufacturer_id), str(session.token.model))

    return store.token.run(read)


_counted: Counter[tuple[str, str]] = Counter()
_counted_lock = threading.Lock()


def signature_counts() -> dict[tuple[str, str], int]:
    """Signatures this process made with token keys: (key URI without its query, path) →
    count (issue #16: the service's ``jtca_token_signatures_total``). Never a PIN: the URI is
    the one audit records carry."""
    with _counted_lock:
        return dict(_counted)


def _count(uri: str, path: SigningPath) -> None:
    with _counted_lock:
        _counted[(uri, path.value)] += 1


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
        identity: TokenIdentity | None = None,
    ) -> None:
        self._store = store
        # the key's name without the query (pin-source, pin-value, module…): what audit
        # records and messages carry never holds a PIN or a path of this host
        self._uri = uri.without_query()
        self._public_key = store.public_key(self._uri)
        advertised = (
            store.token.mechanisms if advertised_mechanisms is None else advertised_mechanisms
        )
        self._identity = token_identity(store) if identity is None else identity
        self._native = choose_mechanism(self._identity, advertised, vendor_mechanisms)
        if self._native is None and not allow_host_assisted:
            raise HostAssistedForbidden(
                f"policy forbids host-assisted signing for {self._uri}, and token "
                f"{store.token.label!r} (manufacturer {self._identity.manufacturer!r}, model "
                f"{self._identity.model!r}) advertises no SM2 signing mechanism jtca knows "
                "for its maker and model"
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

    @property
    def identity(self) -> TokenIdentity:
        """The token's maker and model, which chose the mechanism."""
        return self._identity

    def sign(self, message: bytes) -> bytes:
        if self._native is None:
            made = self._store.sign_host_assisted(self._uri, message)
            _count(str(self._uri), SigningPath.HOST_ASSISTED)
            return made
        native = self._native
        data = (
            message
            if native.input == MechanismInput.MESSAGE
            else sm2_digest(self._public_key, message)
        )

        def sign(session: pkcs11.Session) -> bytes:
            key = cast(SignMixin, self._store.find(session, self._uri))
            return bytes(key.sign(data, mechanism=native.mechanism))

        signature = normalise_signature(self._store.token.run(sign), native.output)
        _count(str(self._uri), SigningPath.NATIVE)
        return signature


def normalise_signature(signature: bytes, encoding: SignatureEncoding) -> bytes:
    if encoding == SignatureEncoding.DER:
        return der_to_raw(signature)
    if len(signature) != RAW_SIGNATURE_SIZE:
        raise JtcaError(
            f"the token returned a {len(signature)}-byte signature; raw SM2 is 64 bytes",
            title="Token error",
        )
    return signature
