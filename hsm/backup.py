"""Backup of a token's keys as a wrapped archive, and restore into a fresh token.

The backup secret (32 random bytes) never exists whole outside a ceremony: it is split into
M-of-N custodian shares (``hsm.custody``). From it HKDF-SM3 derives a wrapping key and a MAC
key. Each key is wrapped (AES key wrap with padding) under the wrapping key: by the token
(``C_WrapKey``) for a key made before issue #15, and for a ``CKA_WRAP_WITH_TRUSTED`` key by the
token under its trusted wrapping key, then on the host under the backup's key
(``KeyStore.wrap_under``; the same bytes either way). A ``CKA_EXTRACTABLE=FALSE`` key cannot be
backed up: the backup is refused, naming it. Restored keys are installed the way the target
token makes keys (``CKA_WRAP_WITH_TRUSTED`` when it holds a trusted wrapping key). The
archive lists each key's label, kind, public point or check value and wrapped form,
and carries an HMAC-SM3 over all of it. Restore needs the quorum, checks the MAC, unwraps every
key into the new token (all or nothing), and proves each one: an SM2 key by signing a challenge
verified with the archived public key, an SM4 key by its check value.

A restore cut by a power cut (issue #14) is finished by running it again: a key of the archive
the token already holds under the same label — the same public point (and it signs as the
original) or the same SM4 check value — is adopted, the rest installed, the replay markers
completed; a different key under an archived label is refused by name, never overwritten and
never a 'Duplicate key label'. The intent that names what the restore will install is the
caller's (``ca.site.backup_recovery``); ``describe_archive`` gives it the archive's keys without
the shares. Crash points: ``token.restore:before-key``/``after-key`` (once per key installed),
``token.restore:before-markers``/``after-markers``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

import pkcs11
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding
from pkcs11 import Attribute, ObjectClass

from hsm.crashpoints import crash_point
from hsm.custody import combine_secret, split_secret
from hsm.errors import InvalidSignature, JtcaError
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey, _key_value, wipe
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm4 import sm4_key_check_value

FORMAT: Final = "jtca-token-backup/1"
MAX_ARCHIVE: Final = 16 << 20  # a token backup larger than this is not one


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


KeysTrack = Callable[[list[TokenKey]], Iterable[TokenKey]]  # the keys, as they are backed up


def backup_token(
    store: KeyStore, *, threshold: int, custodians: int, track: KeysTrack | None = None
) -> Backup:
    """Every key of ``store``'s token wrapped into an archive, and the M-of-N shares of its
    secret; ``track`` sees the keys go by (the command line's progress bar)."""
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
        for key in keys if track is None else track(keys):
            # the token's C_WrapKey under a key of the backup's value, or, for a key that may
            # leave only under the token's trusted key, that and a rewrap on the host (issue #15)
            wrapped = store.wrap_under(key.uri, wrap_key)
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


@dataclass(frozen=True, slots=True)
class ArchivedKey:
    """One key of an archive as its plan names it: label, kind and public identity."""

    label: str
    kind: KeyKind
    public_key: str | None = None  # SM2: compressed point, hex
    check_value: str | None = None  # SM4: 3-byte check value, hex

    def as_plan(self) -> dict[str, str]:
        out = {"label": self.label, "kind": self.kind.value}
        if self.public_key is not None:
            out["public_key"] = self.public_key
        if self.check_value is not None:
            out["check_value"] = self.check_value
        return out


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """What an archive holds, read without the shares (its MAC is checked at restore)."""

    token: str
    sha256: str
    keys: list[ArchivedKey]
    imported_packages: list[str]


def _parse(archive: bytes, *, strict: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The archive's JSON and its key entries; ``strict`` checks each entry's fields too (the
    MAC, checked first where the shares are at hand, says more about a tampered one)."""
    if len(archive) > MAX_ARCHIVE:
        raise BackupError(f"not a jtca token backup: over {MAX_ARCHIVE} bytes")
    try:
        doc = json.loads(archive.decode("utf-8"))
        if not isinstance(doc, dict):
            raise TypeError("the archive is not a JSON object")
        if doc["format"] != FORMAT:
            raise BackupError(f"archive format {str(doc['format'])[:40]!r} is not {FORMAT}")
        entries = list(doc["keys"])
        if "mac" not in doc:
            raise KeyError("mac")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise TypeError(f"keys[{i}] is not a JSON object")
            if not strict:
                continue
            if not isinstance(entry.get("label"), str) or not entry["label"]:
                raise TypeError(f"keys[{i}].label is not a label")
            kind = KeyKind(str(entry.get("kind")))
            field = "public_key" if kind == KeyKind.SM2 else "check_value"
            bytes.fromhex(str(entry[field]))
        markers = [str(p) for p in doc.get("imported_packages", [])]
        for marker in markers if strict else []:
            bytes.fromhex(marker)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BackupError(f"not a jtca token backup: {exc}") from None
    return doc, entries


def describe_archive(archive: bytes) -> ArchiveInfo:
    """The keys an archive will install (for the restore's intent), checked for form only."""
    doc, entries = _parse(archive)
    keys = []
    for entry in entries:
        kind = KeyKind(entry["kind"])
        keys.append(
            ArchivedKey(
                label=str(entry["label"]),
                kind=kind,
                public_key=str(entry["public_key"]) if kind == KeyKind.SM2 else None,
                check_value=str(entry["check_value"]) if kind == KeyKind.SM4 else None,
            )
        )
    return ArchiveInfo(
        token=str(doc.get("token", "")),
        sha256=hashlib.sha256(archive).hexdigest(),
        keys=keys,
        imported_packages=[str(p) for p in doc.get("imported_packages", [])],
    )


def holds(store: KeyStore, key: TokenKey, archived: ArchivedKey) -> bool:
    """Whether ``key`` (in ``store``) is ``archived``: same label and kind, and the same SM2
    public point — the key signs as it — or the same SM4 check value."""
    if key.label != archived.label or key.kind != archived.kind:
        return False
    if key.kind == KeyKind.SM2:
        if archived.public_key is None:
            return False
        public = SM2PublicKey.from_bytes(bytes.fromhex(archived.public_key))
        if key.public_key is not None and key.public_key != public:
            return False
        challenge = secrets.token_bytes(32)
        try:
            public.verify(store.sign_host_assisted(key.uri, challenge), challenge)
        except (InvalidSignature, JtcaError):
            return False
        return True
    kcv = store.with_key_material(key.uri, lambda v: sm4_key_check_value(bytes(v)))
    return archived.check_value is not None and kcv.hex() == archived.check_value


def restore_markers(store: KeyStore, package_ids: list[str]) -> int:
    """The replay markers of ``package_ids`` the token lacks; returns how many were made."""
    have = set(store.token.run(_imported_packages))
    missing = [p for p in package_ids if p not in have]
    if missing:
        store.token.run(partial(_restore_markers, package_ids=missing))
    return len(missing)


def _verified_wrap_key(doc: dict[str, Any], shares: list[str]) -> bytearray:
    """The archive's wrapping key from the shares, once its MAC verifies (the caller wipes)."""
    body = {k: v for k, v in doc.items() if k != "mac"}
    secret = bytearray(combine_secret(shares))
    try:
        wrap_key = bytearray(_derive(bytes(secret), b"jtca backup wrap"))
        mac_key = _derive(bytes(secret), b"jtca backup mac")
    finally:
        wipe(secret)
    if not secrets.compare_digest(_mac(mac_key, body), str(doc.get("mac"))):
        wipe(wrap_key)
        raise BackupError("the archive's MAC does not verify: altered, or other shares")
    return wrap_key


def verify_archive(archive: bytes, shares: list[str]) -> ArchiveInfo:
    """The archive's MAC checked with the custodians' shares, then its keys described: what a
    restore's intent names before the first key is installed."""
    doc, _ = _parse(archive, strict=False)
    wipe(_verified_wrap_key(doc, shares))
    return describe_archive(archive)


RestoreStep = Callable[[str, TokenKey], None]  # ("installed" | "adopted", key)


def restore_token(
    store: KeyStore,
    archive: bytes,
    shares: list[str],
    *,
    progress: RestoreStep | None = None,
    adopt: bool = False,
) -> list[TokenKey]:
    """Restore every key of ``archive`` into ``store``'s token. All or nothing for the keys
    installed by this call: a failure destroys them again. With ``adopt`` (the rerun of a cut
    restore, ``ca.site.backup_recovery``) a key of the archive the token already holds is
    adopted, and kept on failure; without it, a label the token holds is refused
    ('Duplicate key label'): restoring the same archive twice is a mistake."""
    doc, entries = _parse(archive, strict=False)
    wrap_key = _verified_wrap_key(doc, shares)
    try:
        info = describe_archive(archive)
        present = {k.label: k for k in store.list_keys()} if adopt else {}
        restored: list[TokenKey] = []
        installed: list[TokenKey] = []
        try:
            for entry, archived in zip(entries, info.keys, strict=True):
                existing = present.get(archived.label)
                if existing is not None:
                    adopted = _adopt(store, existing, archived)
                    if adopted is not None:
                        restored.append(adopted)
                        if progress is not None:
                            progress("adopted", adopted)
                        continue
                crash_point("token.restore:before-key")
                key = _restore_one(store, entry, wrap_key)
                installed.append(key)
                restored.append(key)
                crash_point("token.restore:after-key")
                if progress is not None:
                    progress("installed", key)
            crash_point("token.restore:before-markers")
            restore_markers(store, info.imported_packages)
            crash_point("token.restore:after-markers")
        except BaseException:
            for key in installed:
                store.destroy(key.uri)
            raise
        return restored
    finally:
        wipe(wrap_key)


def _adopt(store: KeyStore, existing: TokenKey, archived: ArchivedKey) -> TokenKey | None:
    """The token already holds a key under an archived label: adopted when it is the archived
    key (returned, with its public part or check value); destroyed when it is the archived key
    cut half-way in (an SM2 private key whose public object was never made: None, to install
    again whole); refused when it is another key."""
    if holds(store, existing, archived):
        if existing.kind == KeyKind.SM2 and existing.public_key is None:
            store.destroy(existing.uri)
            return None
        if existing.kind == KeyKind.SM4 and archived.check_value is not None:
            return TokenKey(
                existing.uri,
                existing.kind,
                existing.label,
                existing.key_id,
                None,
                bytes.fromhex(archived.check_value),
            )
        return existing
    raise BackupError(
        f"token {store.token.label!r} already holds another key labelled {archived.label!r} "
        f"({existing.uri}): restore into a fresh token, or destroy that key first"
    )


def _restore_one(store: KeyStore, entry: dict[str, Any], wrap_key: bytearray) -> TokenKey:
    label = str(entry["label"])
    kind = KeyKind(entry["kind"])
    try:
        plain = bytearray(
            aes_key_unwrap_with_padding(bytes(wrap_key), base64.b64decode(entry["wrapped"]))
        )
    except (InvalidUnwrap, ValueError, TypeError):
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
