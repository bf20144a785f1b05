"""Sealing one city key into a key package: the one way both sides do it — the service with the
ministry's tokens (ministry → province), a province's client with its own token (province →
city). Tokens and keys only: no database, so a site's client may import it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypedDict

from ca.core.errors import JtcaError
from ca.ops.packages import ENC, SIGN, registration_statement, transport_key_label
from ca.policy.in_force import load_policy
from ca.vault.signers import token_signer
from hsm.envelope import export_key
from hsm.pkcs11.keys import KeyKind, KeyNotFound, KeyStore, TokenKey
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.sm.sm2 import SM2PublicKey


class Stores(Protocol):
    """The tokens a side reaches by label (the service's vault, a site's tokens)."""

    def store(self, token_label: str) -> KeyStore: ...


def point(hex_point: str) -> SM2PublicKey:
    return SM2PublicKey.from_bytes(bytes.fromhex(hex_point))


class TransportRegistration(TypedDict):
    """What a holder registers of its transport pair, as the service records it and a site
    reports it (both halves' URI and public key, and the proof of possession)."""

    uri: str  # the encryption key's
    public_key: str
    sign_uri: str
    sign_public_key: str
    proof: str


@dataclass(frozen=True, slots=True)
class TransportPair:
    """A holder's new transport keys in its token (issue #15): ``sign`` signs the packages it
    sends, ``enc`` (CKA_DECRYPT, never CKA_SIGN) opens the packages enveloped to it; ``proof``
    is the signing key's signature (hex r||s) over ``registration_statement``."""

    token: str
    sign: TokenKey
    sign_public_key: str  # compressed, hex
    enc: TokenKey
    enc_public_key: str
    proof: str

    def registration(self) -> TransportRegistration:
        return TransportRegistration(
            uri=str(self.enc.uri),
            public_key=self.enc_public_key,
            sign_uri=str(self.sign.uri),
            sign_public_key=self.sign_public_key,
            proof=self.proof,
        )

    def destroy(self, store: KeyStore) -> None:
        """Both key pairs gone from the token again (no key without its record)."""
        for key in (self.enc, self.sign):
            with contextlib.suppress(KeyNotFound):
                store.destroy(key.uri)


def make_transport_pair(store: KeyStore, *, holder: str, token: str, now: int) -> TransportPair:
    """Generate ``holder``'s signing key pair (``transport-HOLDER-sign-…``) and encryption key
    pair (``transport-HOLDER-enc-…``) in ``store`` and sign the registration statement with the
    new signing key. A failure after the first key is made destroys what was made."""
    # both halves are used on the host where the token has no SM2 mechanism (SoftHSM2): the
    # transport class's policy says whether that is allowed (CKA_EXTRACTABLE otherwise FALSE)
    host_assisted = load_policy().host_assisted_allowed("transport")
    sign = store.generate_sm2(transport_key_label(holder, now, SIGN), host_assisted=host_assisted)
    enc: TokenKey | None = None
    try:
        enc = store.generate_sm2(
            transport_key_label(holder, now, ENC),
            decrypt=True,
            sign=False,
            host_assisted=host_assisted,
        )
        if sign.public_key is None or enc.public_key is None:
            raise JtcaError(f"token {token!r} returned no public key for a transport key")
        sign_hex, enc_hex = sign.public_key.compressed.hex(), enc.public_key.compressed.hex()
        statement = registration_statement(
            holder=holder,
            token=token,
            sign_uri=str(sign.uri),
            sign_public_key=sign_hex,
            uri=str(enc.uri),
            public_key=enc_hex,
        )
        proof = token_signer(store, sign.uri, "transport").sign(statement).hex()
        return TransportPair(token, sign, sign_hex, enc, enc_hex, proof)
    except BaseException:
        for key in (enc, sign):
            if key is not None:
                with contextlib.suppress(KeyNotFound):
                    store.destroy(key.uri)
        raise


def seal_key(
    stores: Stores,
    *,
    source_token: str,
    source_uri: str,
    kind: str,
    label: str,
    public_key: str | None,
    check_value: str | None,
    sender_token: str,
    sender_uri: str,
    recipient: str,
    recipient_public_key: str,
    now: int,
) -> bytes:
    """The sender's copy of the key (``source_uri`` in ``source_token``) enveloped to the
    recipient's encryption key (``recipient_public_key``) and signed by the sender's signing
    key (``sender_uri``)."""
    uri = Pkcs11Uri.parse(source_uri)
    key = TokenKey(
        uri=uri,
        kind=KeyKind(kind),
        label=label,
        key_id=uri.id or b"",
        public_key=point(public_key) if public_key else None,
        check_value=bytes.fromhex(check_value) if check_value else None,
    )
    signer = token_signer(stores.store(sender_token), Pkcs11Uri.parse(sender_uri), "transport")
    return export_key(
        stores.store(source_token),
        key,
        sender=signer,
        recipient_transport_key=point(recipient_public_key),
        recipient_name=recipient,
        now=datetime.fromtimestamp(now, UTC),
    )
