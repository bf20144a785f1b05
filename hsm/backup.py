"""Backup of a token's keys as a wrapped archive, and restore into a fresh token.

The backup secret (32 random bytes) never exists whole outside a ceremony: it is split into
M-of-N custodian shares (``hsm.custody``). From it HKDF-SM3 derives a wrapping key and a MAC
key. The token wraps each key (``C_WrapKey``, AES key wrap with padding) under the wrapping
key; the archive lists each key's label, kind, public point or check value and wrapped form,
and carries an HMAC-SM3 over all of it. Restore needs the quorum, checks the MAC, unwraps every
key into the new token (all or nothing), and proves each one: an SM2 key by signing a challenge
verified with the archived public key, an SM4 key by its check value.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, cast

import pkcs11
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.types import Key, WrapMixin

from hsm.custody import combine_secret, split_secret
from hsm.errors import InvalidSignature, JtcaError
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey, _key_value, wipe
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm4 import sm4_key_check_value

FORMAT: Final = "jtca-token-backup/1"


class BackupError(JtcaError):
    title = "Backup refused"
    exit_code = 4


@dataclass(frozen=True, slots=True)
class Backup:
    archive: bytes  # JSON, safe to store anywhere: every key in it is wrapped
    shares: list[str]  # one per custodian; any ``threshold`` rebuild the backup secret


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SM3(), length=32, salt=None, info=purpose).derive(secret)


def _mac(key: bytes, body: dict[str, Any]) -> str:
    h = hmac.HMAC(key, hashes.SM3())
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return h.finalize().hex()


def backup_token(store: KeyStore, *, threshold: int, custodians: int) -> Backup:
    secret = bytearray(secrets.token_bytes(32))
    try:
        wrap_key = bytearray(_derive(bytes(secret), b"jtca backup wrap"))
        mac_key = _derive(bytes(secret), b"jtca backup mac")
        shares = split_secret(bytes(secret), threshold, custodians)
    finally:
        wipe(secret)
    keys = store.list_keys()
    entries = []
    try:
        for key in keys:
            wrapped = store.token.run(partial(_wrap_under, store=store, key=key, wrap_key=wrap_key))
            entry: dict[str, Any] = {
                "label": key.label,
                "kind": key.kind.value,
                "wrapped": base64.b64encode(wrapped).decode(),
            }
            if key.kind == KeyKind.SM2:
                if key.public_key is None:
                    raise BackupError(f"{key.uri} has no public key object to back up with it")
                entry["public_key"] = key.public_key.compressed.hex()
                entry["transport"] = store.token.run(partial(_opens_packages, store=store, key=key))
            else:
                entry["check_value"] = store.with_key_material(
                    key.uri, lambda v: sm4_key_check_value(bytes(v))
                ).hex()
            entries.append(entry)
    finally:
        wipe(wrap_key)
    body = {
        "format": FORMAT,
        # package ids already imported: a restored token must still refuse them (replays)
        "imported_packages": store.token.run(_imported_packages),
        "token": store.token.label,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "threshold": threshold,
        "custodians": custodians,
        "keys": entries,
    }
    archive = dict(body, mac=_mac(mac_key, body))
    return Backup(json.dumps(archive, indent=2).encode(), shares)


def _opens_packages(session: pkcs11.Session, *, store: KeyStore, key: TokenKey) -> bool:
    return bool(store.find(session, key.uri)[Attribute.DECRYPT])


def _imported_packages(session: pkcs11.Session) -> list[str]:
    from hsm.envelope import REPLAY_MARKER_APP

    return sorted(
        bytes(obj[Attribute.VALUE]).hex()
        for obj in list(session.get_objects({Attribute.CLASS: ObjectClass.DATA}))
        if obj[Attribute.APPLICATION] == REPLAY_MARKER_APP
    )


def _restore_markers(session: pkcs11.Session, package_ids: list[str]) -> None:
    from hsm.envelope import replay_marker

    for package_id in package_ids:
        session.create_object(replay_marker(bytes.fromhex(package_id)))


def _wrap_under(
    session: pkcs11.Session, *, store: KeyStore, key: TokenKey, wrap_key: bytearray
) -> bytes:
    wrapping = session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: bytes(wrap_key),
            Attribute.TOKEN: False,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.WRAP: True,
            Attribute.UNWRAP: False,
        }
    )
    try:
        target = store.find(session, key.uri)
        return bytes(
            cast(WrapMixin, wrapping).wrap_key(
                cast(Key, target), mechanism=Mechanism.AES_KEY_WRAP_PAD
            )
        )
    finally:
        wrapping.destroy()


def restore_token(store: KeyStore, archive: bytes, shares: list[str]) -> list[TokenKey]:
    """Restore every key of ``archive`` into ``store``'s token. All or nothing."""
    try:
        doc = json.loads(archive)
        if not isinstance(doc, dict):
            raise TypeError("the archive is not a JSON object")
        body = {k: v for k, v in doc.items() if k != "mac"}
        mac = doc["mac"]
        if doc["format"] != FORMAT:
            raise BackupError(f"archive format {doc['format']!r} is not {FORMAT}")
        entries = list(doc["keys"])
        if not all(isinstance(e, dict) for e in entries):
            raise TypeError("an archive entry is not a JSON object")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"not a jtca token backup: {exc}") from None
    secret = bytearray(combine_secret(shares))
    try:
        wrap_key = bytearray(_derive(bytes(secret), b"jtca backup wrap"))
        mac_key = _derive(bytes(secret), b"jtca backup mac")
    finally:
        wipe(secret)
    try:
        if not secrets.compare_digest(_mac(mac_key, body), str(mac)):
            raise BackupError("the archive's MAC does not verify: altered, or other shares")
        restored: list[TokenKey] = []
        try:
            for entry in entries:
                restored.append(_restore_one(store, entry, wrap_key))
            markers = [str(p) for p in doc.get("imported_packages", [])]
            store.token.run(partial(_restore_markers, package_ids=markers))
        except BaseException:
            for key in restored:
                store.destroy(key.uri)
            raise
        return restored
    finally:
        wipe(wrap_key)


def _restore_one(store: KeyStore, entry: dict[str, Any], wrap_key: bytearray) -> TokenKey:
    label = str(entry["label"])
    kind = KeyKind(entry["kind"])
    try:
        plain = bytearray(
            aes_key_unwrap_with_padding(bytes(wrap_key), base64.b64decode(entry["wrapped"]))
        )
    except (InvalidUnwrap, ValueError):
        raise BackupError(f"key {label!r} does not unwrap under the backup key") from None
    try:
        material = _key_value(plain)
    finally:
        wipe(plain)
    try:
        if kind == KeyKind.SM2:
            public = SM2PublicKey.from_bytes(bytes.fromhex(entry["public_key"]))
            key = store.install_key(
                kind, label, material, public_key=public, decrypt=bool(entry.get("transport"))
            )
            challenge = secrets.token_bytes(32)
            try:
                public.verify(store.sign_host_assisted(key.uri, challenge), challenge)
            except InvalidSignature:
                store.destroy(key.uri)
                raise BackupError(f"restored key {label!r} does not sign as the original") from None
            return key
        check_value = bytes.fromhex(entry["check_value"])
        return store.install_key(kind, label, material, check_value=check_value)
    finally:
        wipe(material)
