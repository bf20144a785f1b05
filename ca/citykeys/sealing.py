"""Sealing one city key into a key package: the one way both sides do it — the service with the
ministry's tokens (ministry → province), a province's client with its own token (province →
city). Tokens and keys only: no database, so a site's client may import it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from ca.signing import token_signer
from hsm.envelope import export_key
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.sm.sm2 import SM2PublicKey


class Stores(Protocol):
    """The tokens a side reaches by label (the service's vault, a site's tokens)."""

    def store(self, token_label: str) -> KeyStore: ...


def point(hex_point: str) -> SM2PublicKey:
    return SM2PublicKey.from_bytes(bytes.fromhex(hex_point))


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
    """The sender's copy of the key (``source_uri`` in ``source_token``) sealed to the
    recipient's transport key and signed by the sender's transport key (``sender_uri``)."""
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
