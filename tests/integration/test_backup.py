"""Backup of a token's keys as a wrapped archive, restore into a fresh token (hsm.backup).

Restores are proven the way the issue asks: every restored SM2 key signs and the signature
verifies with the ORIGINAL public key; every SM4 key has the original check value. Refused
restores leave the target token exactly as it was (objects read through python-pkcs11).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pkcs11.exceptions as p11e
import pytest
from pkcs11 import Attribute

from hsm.backup import FORMAT, Backup, BackupError, _derive, _mac, backup_token, restore_token
from hsm.custody import ShareError, combine_secret, parse_share
from hsm.envelope import PackageRefused, export_key, import_key
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.token import Token, TokenError
from hsm.sm.sm2 import SM2PrivateKey
from hsm.sm.sm4 import sm4_key_check_value

NewToken = Callable[..., tuple[Token, KeyStore, str]]
Snapshot = Callable[[KeyStore], list[Any]]


@dataclass
class Source:
    store: KeyStore
    keys: dict[str, TokenKey]
    backup: Backup


@pytest.fixture
def source(new_token: NewToken) -> Source:
    _, store, _ = new_token("BACKUP-SRC")
    keys = {
        "a-root-sm2": store.generate_sm2("a-root-sm2"),
        "b-city-sm2": store.generate_sm2("b-city-sm2"),
        "c-city-sm4": store.generate_sm4("c-city-sm4"),
    }
    return Source(store, keys, backup_token(store, threshold=2, custodians=3))


def _doc(archive: bytes) -> dict[str, Any]:
    doc = json.loads(archive)
    assert isinstance(doc, dict)
    return doc


def _assert_restored(source: Source, target: KeyStore, restored: list[TokenKey]) -> None:
    assert [k.label for k in restored] == sorted(source.keys)
    assert [k.label for k in target.list_keys()] == sorted(source.keys)
    for key in restored:
        original = source.keys[key.label]
        assert key.kind == original.kind
        assert key.uri.token == target.token.label
        if key.kind == KeyKind.SM2:
            assert original.public_key is not None
            assert key.public_key == original.public_key
            assert target.public_key(key.uri) == original.public_key
            message = f"proof of {key.label}".encode()
            original.public_key.verify(target.sign_host_assisted(key.uri, message), message)
        else:
            assert key.check_value == original.check_value
            kcv = target.with_key_material(key.uri, lambda v: sm4_key_check_value(bytes(v)))
            assert kcv == original.check_value

        def value_hidden(session: Any, uri: Any = key.uri) -> bool:
            obj = target.find(session, uri)
            with pytest.raises(p11e.AttributeSensitive):
                obj[Attribute.VALUE]
            return bool(obj[Attribute.SENSITIVE])

        assert target.token.run(value_hidden) is True


# -- the archive ---------------------------------------------------------------------------
def test_archive_lists_wrapped_keys_only(source: Source) -> None:
    doc = _doc(source.backup.archive)
    assert doc["format"] == FORMAT
    assert doc["token"] == source.store.token.label
    assert (doc["threshold"], doc["custodians"]) == (2, 3)
    assert [e["label"] for e in doc["keys"]] == sorted(source.keys)
    assert [e["kind"] for e in doc["keys"]] == ["sm2", "sm2", "sm4"]
    assert len(doc["mac"]) == 64  # HMAC-SM3, hex
    for entry in doc["keys"]:
        key = source.keys[entry["label"]]
        wrapped = base64.b64decode(entry["wrapped"])
        value = source.store.with_key_material(key.uri, bytes)
        assert value not in wrapped
        assert value.hex() not in source.backup.archive.decode()
        assert base64.b64encode(value) not in source.backup.archive
        if key.kind == KeyKind.SM2:
            assert key.public_key is not None
            assert entry["public_key"] == key.public_key.compressed.hex()
        else:
            assert key.check_value is not None
            assert entry["check_value"] == key.check_value.hex()
            assert len(wrapped) == 24  # AES key wrap with padding of 16 bytes
    shares = [parse_share(s, n) for n, s in enumerate(source.backup.shares, 1)]
    assert [(s.threshold, s.total, s.index) for s in shares] == [(2, 3, 1), (2, 3, 2), (2, 3, 3)]
    assert len(combine_secret(source.backup.shares[:2])) == 32


# -- restoring -----------------------------------------------------------------------------
def test_restore_into_a_fresh_token_with_shares_1_and_3(
    source: Source, new_token: NewToken
) -> None:
    _, target, _ = new_token("BACKUP-DST")
    shares = [source.backup.shares[0], source.backup.shares[2]]
    restored = restore_token(target, source.backup.archive, shares)
    _assert_restored(source, target, restored)


def test_any_two_shares_in_any_order_restore(source: Source, new_token: NewToken) -> None:
    _, target, _ = new_token("BACKUP-ORDER")
    shares = [source.backup.shares[2], source.backup.shares[1]]
    _assert_restored(source, target, restore_token(target, source.backup.archive, shares))


def _refused_restore(
    target: KeyStore,
    snapshot: Snapshot,
    archive: bytes,
    shares: list[str],
    error: type[Exception] = BackupError,
    match: str | None = None,
) -> None:
    before = snapshot(target)
    with pytest.raises(error, match=match):
        restore_token(target, archive, shares)
    assert snapshot(target) == before, "a refused restore left objects behind"


def _edited(archive: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    doc = _doc(archive)
    edit(doc)
    return json.dumps(doc, indent=2).encode()


def _flip_wrapped(doc: dict[str, Any], index: int = 0) -> None:
    wrapped = bytearray(base64.b64decode(doc["keys"][index]["wrapped"]))
    wrapped[5] ^= 0x01
    doc["keys"][index]["wrapped"] = base64.b64encode(wrapped).decode()


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


MAC = "MAC does not verify"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(_flip_wrapped, MAC, id="wrapped-value"),
        pytest.param(lambda d: _set(d, ("keys", 0, "label"), "a-root-sm2x"), MAC, id="label"),
        pytest.param(lambda d: _set(d, ("keys", 2, "check_value"), "000000"), MAC, id="kcv"),
        pytest.param(lambda d: _set(d, ("keys", 1, "kind"), "sm4"), MAC, id="kind"),
        pytest.param(lambda d: _set(d, ("token",), "ELSEWHERE"), MAC, id="token-label"),
        pytest.param(lambda d: _set(d, ("threshold",), 3), MAC, id="threshold"),
        pytest.param(lambda d: d["keys"].pop(1), MAC, id="key-removed"),
        pytest.param(lambda d: d["keys"].reverse(), MAC, id="keys-reordered"),
        pytest.param(lambda d: _set(d, ("mac",), "0" * 64), MAC, id="mac"),
        pytest.param(lambda d: d.pop("mac"), "not a jtca token backup", id="mac-missing"),
        pytest.param(
            lambda d: _set(d, ("format",), "jtca-token-backup/2"), "archive format", id="format"
        ),
    ],
)
def test_tampered_archive_is_refused_and_the_token_left_empty(
    source: Source,
    new_token: NewToken,
    snapshot: Snapshot,
    edit: Callable[[dict[str, Any]], None],
    match: str,
) -> None:
    _, target, _ = new_token("BACKUP-TAMPER")
    archive = _edited(source.backup.archive, edit)
    assert archive != source.backup.archive
    _refused_restore(target, snapshot, archive, source.backup.shares[:2], match=match)
    assert target.list_keys() == []
    assert snapshot(target) == []


@pytest.mark.parametrize(
    "archive",
    [b"", b"not json", b"[]", b"null", b"42", b'"text"', b"{}", b'{"format": 1}', b"\xff\xfe"],
)
def test_not_an_archive_is_refused(
    source: Source, new_token: NewToken, snapshot: Snapshot, archive: bytes
) -> None:
    _, target, _ = new_token("BACKUP-JUNK")
    _refused_restore(target, snapshot, archive, source.backup.shares[:2], match="backup|format")


def test_shares_of_another_backup_are_refused(
    source: Source, new_token: NewToken, snapshot: Snapshot
) -> None:
    _, target, _ = new_token("BACKUP-OTHER")
    other = backup_token(source.store, threshold=2, custodians=3)  # same keys, new secret
    _refused_restore(
        target, snapshot, source.backup.archive, other.shares[:2], match="MAC does not verify"
    )
    mixed = [source.backup.shares[0], other.shares[1]]
    _refused_restore(
        target, snapshot, source.backup.archive, mixed, ShareError, match="another split"
    )
    _refused_restore(
        target,
        snapshot,
        source.backup.archive,
        source.backup.shares[:1],
        ShareError,
        match="needs 2 of 3",
    )
    assert snapshot(target) == []
    # the other backup with its own shares is good
    _assert_restored(source, target, restore_token(target, other.archive, other.shares[1:]))


def test_restoring_twice_into_one_token_is_refused_without_leftovers(
    source: Source, new_token: NewToken, snapshot: Snapshot
) -> None:
    _, target, _ = new_token("BACKUP-TWICE")
    restore_token(target, source.backup.archive, source.backup.shares[:2])
    after_first = snapshot(target)
    with pytest.raises(TokenError) as caught:
        restore_token(target, source.backup.archive, source.backup.shares[1:])
    assert caught.value.title == "Duplicate key label"
    assert snapshot(target) == after_first


def test_a_clash_on_the_last_key_rolls_back_the_ones_before(
    source: Source, new_token: NewToken, snapshot: Snapshot
) -> None:
    """The first two keys go in, the third clashes with a key the target already holds:
    the two are taken out again, and the target's own key is untouched."""
    _, target, _ = new_token("BACKUP-CLASH")
    own = target.generate_sm4("c-city-sm4")
    before = snapshot(target)
    with pytest.raises(TokenError, match="c-city-sm4"):
        restore_token(target, source.backup.archive, source.backup.shares[:2])
    assert snapshot(target) == before
    assert [k.uri for k in target.list_keys()] == [own.uri]
    kcv = target.with_key_material(own.uri, lambda v: sm4_key_check_value(bytes(v)))
    assert kcv == own.check_value


def _reseal(archive: bytes, shares: list[str], edit: Callable[[dict[str, Any]], None]) -> bytes:
    """An archive edited by someone who holds a quorum (so the MAC is made good again)."""
    doc = _doc(archive)
    edit(doc)
    body = {k: v for k, v in doc.items() if k != "mac"}
    doc["mac"] = _mac(_derive(combine_secret(shares), b"jtca backup mac"), body)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        pytest.param(
            lambda d: _flip_wrapped(d, 2), BackupError, "does not unwrap", id="last-wrapped"
        ),
        pytest.param(
            lambda d: _set(
                d,
                ("keys", 1, "public_key"),
                SM2PrivateKey.generate().public_key.compressed.hex(),
            ),
            TokenError,
            "does not match its public key",
            id="public-key-of-another",
        ),
        pytest.param(
            lambda d: _set(d, ("keys", 2, "check_value"), "000000"),
            TokenError,
            "check value differs",
            id="check-value",
        ),
    ],
)
def test_a_resealed_but_wrong_archive_is_refused_all_or_nothing(
    source: Source,
    new_token: NewToken,
    snapshot: Snapshot,
    edit: Callable[[dict[str, Any]], None],
    error: type[Exception],
    match: str,
) -> None:
    _, target, _ = new_token("BACKUP-RESEAL")
    shares = source.backup.shares[:2]
    archive = _reseal(source.backup.archive, shares, edit)
    _refused_restore(target, snapshot, archive, shares, error, match)
    assert snapshot(target) == []


def test_a_restored_token_still_refuses_packages_imported_before_the_backup(
    new_token: NewToken, snapshot: Snapshot
) -> None:
    _, ministry, _ = new_token("BK-MINISTRY")
    _, province, _ = new_token("BK-PROVINCE")
    _, restored_province, _ = new_token("BK-RESTORED")
    sender = TokenSigner(ministry, ministry.generate_sm2("signing").uri)
    city = ministry.generate_sm4("city")
    transport = province.generate_sm2("transport", decrypt=True)
    assert transport.public_key is not None

    def package() -> bytes:
        assert transport.public_key is not None
        return export_key(
            ministry,
            city,
            sender=sender,
            recipient_transport_key=transport.public_key,
            recipient_name="province",
        )

    imported_before = package()
    import_key(
        province, imported_before, transport_key=transport, trusted_senders=[sender.public_key]
    )
    backup = backup_token(province, threshold=2, custodians=3)
    assert len(_doc(backup.archive)["imported_packages"]) == 1
    restored = {
        k.label: k for k in restore_token(restored_province, backup.archive, backup.shares[:2])
    }
    assert set(restored) == {"city", "transport"}
    before = snapshot(restored_province)
    with pytest.raises(PackageRefused) as caught:
        import_key(
            restored_province,
            imported_before,
            transport_key=restored["transport"],
            trusted_senders=[sender.public_key],
            label="city-again",
        )
    assert caught.value.reason == "replayed"
    assert snapshot(restored_province) == before
    # a new package still opens with the restored transport key
    fresh = import_key(
        restored_province,
        package(),
        transport_key=restored["transport"],
        trusted_senders=[sender.public_key],
        label="city-new",
    )
    assert fresh.check_value == city.check_value


def test_restored_transport_key_keeps_its_marking(new_token) -> None:  # type: ignore[no-untyped-def]
    """A transport key (CKA_DECRYPT) is restored as one; a signing key is not."""
    import pkcs11 as p11

    from hsm.backup import backup_token, restore_token

    _, source, _ = new_token("SRC")
    source.generate_sm2("transport", decrypt=True)
    source.generate_sm2("signing")
    backup = backup_token(source, threshold=2, custodians=2)
    _, target, _ = new_token("DST")
    restored = {k.label: k for k in restore_token(target, backup.archive, backup.shares)}

    def decrypt_flag(label: str) -> bool:
        key = restored[label]
        return bool(target.token.run(lambda s: target.find(s, key.uri)[p11.Attribute.DECRYPT]))

    assert decrypt_flag("transport") is True
    assert decrypt_flag("signing") is False
