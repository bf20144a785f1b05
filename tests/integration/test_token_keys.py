"""Keys inside a token (hsm.pkcs11.keys): generation, attributes, URIs, find, list, destroy.

Attributes are read back directly through python-pkcs11, not through KeyStore's own view, and
key values obtained through the host-assisted path are checked against gmssl, an independent
SM2/SM4 implementation.
"""

# "token" here is a token label, not a password (S106 is a false positive).
# ruff: noqa: S106

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e
import pytest
from asn1crypto.core import OctetString
from gmssl.sm2 import CryptSM2
from gmssl.sm4 import SM4_ENCRYPT, CryptSM4
from pkcs11 import Attribute, KeyType, ObjectClass

from hsm.pkcs11.keys import KEY_ID_SIZE, KeyKind, KeyNotFound, KeyStore, TokenKey
from hsm.pkcs11.token import EnvPin, Token, TokenError
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.sm.sm2 import GX, GY, SM2_CURVE_OID_DER, A, B, N, P
from hsm.sm.sm4 import sm4_key_check_value

NewToken = Callable[..., tuple[Token, KeyStore, str]]
SM2_OID_DER_HEX = "06082A811CCF5501822D"


def _read(store: KeyStore, uri: Pkcs11Uri, *attributes: Attribute) -> dict[Attribute, Any]:
    def read(session: pkcs11.Session) -> dict[Attribute, Any]:
        obj = store.find(session, uri)
        return {attribute: obj[attribute] for attribute in attributes}

    return store.token.run(read)


def _value_is_unreadable(store: KeyStore, uri: Pkcs11Uri) -> None:
    def read_value(session: pkcs11.Session) -> None:
        obj = store.find(session, uri)
        with pytest.raises(p11e.AttributeSensitive):
            obj[Attribute.VALUE]

    store.token.run(read_value)


def _gmssl_point(scalar: int) -> bytes:
    """d·G by gmssl's own point arithmetic (uncompressed)."""
    engine = CryptSM2(private_key=f"{scalar:064x}", public_key="")
    return b"\x04" + bytes.fromhex(engine._kg(scalar, engine.ecc_table["g"]))


def _gmssl_kcv(key: bytes) -> bytes:
    cipher = CryptSM4()
    cipher.set_key(key, SM4_ENCRYPT)
    return cipher.crypt_ecb(bytes(16))[:3]  # first block of the (padded) ECB output


# -- SM2 key pairs --------------------------------------------------------------------------
def test_generate_sm2_returns_a_uri_naming_the_private_object(new_token: NewToken) -> None:
    token, store, _ = new_token("SM2GEN")
    key = store.generate_sm2("qr-ca-17")
    assert key.kind == KeyKind.SM2
    assert key.label == "qr-ca-17"
    assert len(key.key_id) == KEY_ID_SIZE
    assert key.uri == Pkcs11Uri(token=token.label, object="qr-ca-17", id=key.key_id, type="private")
    assert str(key.uri).startswith(f"pkcs11:token={token.label};object=qr-ca-17;id=%")
    assert str(key.uri).endswith(";type=private")
    assert key.check_value is None
    assert key.public_key is not None
    other = store.generate_sm2("qr-ca-18")
    assert other.key_id != key.key_id
    assert other.public_key != key.public_key


def test_sm2_private_object_attributes(new_token: NewToken) -> None:
    _, store, _ = new_token("SM2ATTR")
    key = store.generate_sm2("signing-key")
    attrs = _read(
        store,
        key.uri,
        Attribute.CLASS,
        Attribute.KEY_TYPE,
        Attribute.TOKEN,
        Attribute.PRIVATE,
        Attribute.SENSITIVE,
        Attribute.EXTRACTABLE,
        Attribute.ALWAYS_SENSITIVE,
        Attribute.NEVER_EXTRACTABLE,
        Attribute.EC_PARAMS,
        Attribute.SIGN,
        Attribute.DECRYPT,
        Attribute.LABEL,
        Attribute.ID,
    )
    assert attrs[Attribute.CLASS] == ObjectClass.PRIVATE_KEY
    assert attrs[Attribute.KEY_TYPE] == KeyType.EC
    assert attrs[Attribute.TOKEN] is True
    assert attrs[Attribute.PRIVATE] is True
    assert attrs[Attribute.SENSITIVE] is True
    assert attrs[Attribute.EXTRACTABLE] is True  # only by wrapping: the value stays hidden
    assert attrs[Attribute.ALWAYS_SENSITIVE] is True
    assert attrs[Attribute.NEVER_EXTRACTABLE] is False
    assert bytes(attrs[Attribute.EC_PARAMS]).hex().upper() == SM2_OID_DER_HEX
    assert bytes(attrs[Attribute.EC_PARAMS]) == SM2_CURVE_OID_DER
    assert attrs[Attribute.SIGN] is True
    assert attrs[Attribute.DECRYPT] is False  # not a transport key
    assert attrs[Attribute.LABEL] == "signing-key"
    assert bytes(attrs[Attribute.ID]) == key.key_id
    _value_is_unreadable(store, key.uri)


def test_transport_key_can_decrypt(new_token: NewToken) -> None:
    _, store, _ = new_token("SM2TRANS")
    key = store.generate_sm2("transport", decrypt=True)
    assert _read(store, key.uri, Attribute.DECRYPT, Attribute.SIGN) == {
        Attribute.DECRYPT: True,
        Attribute.SIGN: True,
    }
    assert _read(store, key.uri.with_type("public"), Attribute.ENCRYPT)[Attribute.ENCRYPT] is True


def test_sm2_public_point_is_read_from_the_token(new_token: NewToken) -> None:
    _, store, _ = new_token("SM2PUB")
    key = store.generate_sm2("k")
    assert key.public_key is not None
    attrs = _read(
        store,
        key.uri.with_type("public"),
        Attribute.CLASS,
        Attribute.TOKEN,
        Attribute.PRIVATE,
        Attribute.EC_PARAMS,
        Attribute.EC_POINT,
        Attribute.VERIFY,
        Attribute.ENCRYPT,
    )
    assert attrs[Attribute.CLASS] == ObjectClass.PUBLIC_KEY
    assert attrs[Attribute.TOKEN] is True
    assert attrs[Attribute.PRIVATE] is False
    assert attrs[Attribute.VERIFY] is True
    assert attrs[Attribute.ENCRYPT] is False
    assert bytes(attrs[Attribute.EC_PARAMS]) == SM2_CURVE_OID_DER
    # CKA_EC_POINT: DER OCTET STRING around the uncompressed point
    point = OctetString.load(bytes(attrs[Attribute.EC_POINT])).native
    assert len(point) == 65
    assert point[0] == 4
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    assert (y * y - (x * x * x + A * x + B)) % P == 0  # on the SM2 curve, checked by hand
    assert point == key.public_key.uncompressed
    assert store.public_key(key.uri) == key.public_key
    assert store.public_key(key.uri.with_type("public")) == key.public_key


def test_sm2_scalar_matches_the_public_point(new_token: NewToken) -> None:
    """The private value the token holds (seen once through the host-assisted path) times G,
    computed by gmssl, is the public point the token reports."""
    _, store, _ = new_token("SM2PAIR")
    key = store.generate_sm2("k")
    assert key.public_key is not None
    scalar = store.with_key_material(key.uri, lambda v: int.from_bytes(bytes(v), "big"))
    assert 1 <= scalar <= N - 2
    assert _gmssl_point(scalar) == key.public_key.uncompressed
    assert (key.public_key.x, key.public_key.y) != (GX, GY)


def test_key_material_buffer_is_wiped_after_use(new_token: NewToken) -> None:
    _, store, _ = new_token("WIPE")
    sm2 = store.generate_sm2("sm2")
    sm4 = store.generate_sm4("sm4")
    for key, size in ((sm2, 32), (sm4, 16)):
        seen: list[bytearray] = []

        def keep(value: bytearray, seen: list[bytearray] = seen) -> bytes:
            seen.append(value)
            return bytes(value)

        copy = store.with_key_material(key.uri, keep)
        assert len(copy) == size
        assert any(copy)
        assert seen[0] == bytearray(size)  # zeroed once the use returned


# -- SM4 keys ---------------------------------------------------------------------------
def test_sm4_key_attributes_and_check_value(new_token: NewToken) -> None:
    token, store, _ = new_token("SM4")
    key = store.generate_sm4("city-0571")
    assert key.kind == KeyKind.SM4
    assert key.uri == Pkcs11Uri(
        token=token.label, object="city-0571", id=key.key_id, type="secret-key"
    )
    assert key.public_key is None
    attrs = _read(
        store,
        key.uri,
        Attribute.CLASS,
        Attribute.KEY_TYPE,
        Attribute.VALUE_LEN,
        Attribute.TOKEN,
        Attribute.PRIVATE,
        Attribute.SENSITIVE,
        Attribute.EXTRACTABLE,
        Attribute.ALWAYS_SENSITIVE,
        Attribute.ENCRYPT,
        Attribute.DECRYPT,
        Attribute.SIGN,
        Attribute.WRAP,
        Attribute.UNWRAP,
    )
    assert attrs[Attribute.CLASS] == ObjectClass.SECRET_KEY
    assert attrs[Attribute.KEY_TYPE] == KeyType.GENERIC_SECRET
    assert attrs[Attribute.VALUE_LEN] == 16
    assert attrs[Attribute.TOKEN] is True
    assert attrs[Attribute.PRIVATE] is True
    assert attrs[Attribute.SENSITIVE] is True
    assert attrs[Attribute.EXTRACTABLE] is True
    assert attrs[Attribute.ALWAYS_SENSITIVE] is True
    for capability in (Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN, Attribute.WRAP):
        assert attrs[capability] is False, capability
    assert attrs[Attribute.UNWRAP] is False
    _value_is_unreadable(store, key.uri)

    assert key.check_value is not None
    assert len(key.check_value) == 3
    value = store.with_key_material(key.uri, bytes)
    assert len(value) == 16
    assert key.check_value == sm4_key_check_value(value)
    assert key.check_value == _gmssl_kcv(value)  # another SM4 implementation agrees
    other = store.generate_sm4("city-0572")
    assert other.check_value != key.check_value  # a fresh random key each time


# -- labels, listing, finding, destroying -----------------------------------------------
def test_duplicate_and_empty_labels_are_refused(new_token: NewToken) -> None:
    _, store, _ = new_token("DUP")
    store.generate_sm2("taken")
    store.generate_sm4("secret")
    for make in (store.generate_sm2, store.generate_sm4):
        for label in ("taken", "secret"):
            with pytest.raises(TokenError) as caught:
                make(label)
            assert caught.value.title == "Duplicate key label"
            assert repr(label) in caught.value.message
        with pytest.raises(TokenError, match="must not be empty"):
            make("")
    assert sorted(k.label for k in store.list_keys()) == ["secret", "taken"]


def test_list_keys_lists_both_kinds(new_token: NewToken) -> None:
    _, store, _ = new_token("LIST")
    assert store.list_keys() == []
    made = {
        "b-sm2": store.generate_sm2("b-sm2"),
        "a-sm4": store.generate_sm4("a-sm4"),
        "c-transport": store.generate_sm2("c-transport", decrypt=True),
    }
    listed = store.list_keys()
    assert [k.label for k in listed] == ["a-sm4", "b-sm2", "c-transport"]
    for key in listed:
        original = made[key.label]
        assert (key.uri, key.kind, key.key_id) == (original.uri, original.kind, original.key_id)
        assert key.public_key == original.public_key
    assert all(isinstance(k, TokenKey) for k in listed)


def test_keys_are_token_objects_that_outlive_the_session(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, store, pin = new_token("PERSIST")
    key = store.generate_sm2("k")
    sm4 = store.generate_sm4("s")
    token.close()
    monkeypatch.setenv("PERSIST_PIN", pin)
    with Token(token.label, EnvPin("PERSIST_PIN")) as again:
        reopened = KeyStore(again)
        assert [k.uri for k in reopened.list_keys()] == [key.uri, sm4.uri]
        assert reopened.public_key(key.uri) == key.public_key


def _find(store: KeyStore, uri: Pkcs11Uri) -> tuple[int, str, bytes]:
    def find(session: pkcs11.Session) -> tuple[int, str, bytes]:
        obj = store.find(session, uri)
        return int(obj[Attribute.CLASS]), str(obj[Attribute.LABEL]), bytes(obj[Attribute.ID])

    return store.token.run(find)


def test_find_by_uri(new_token: NewToken) -> None:
    token, store, _ = new_token("FIND")
    sm2 = store.generate_sm2("pair")
    sm4 = store.generate_sm4("secret")
    t = token.label
    # by label only, by id only, by both: one object each
    assert _find(store, Pkcs11Uri(token=t, object="secret")) == (
        ObjectClass.SECRET_KEY,
        "secret",
        sm4.key_id,
    )
    assert _find(store, Pkcs11Uri(token=t, id=sm4.key_id))[1] == "secret"
    assert _find(store, Pkcs11Uri(token=t, id=sm2.key_id, type="private")) == (
        ObjectClass.PRIVATE_KEY,
        "pair",
        sm2.key_id,
    )
    assert _find(store, Pkcs11Uri(token=t, object="pair", type="public"))[0] == (
        ObjectClass.PUBLIC_KEY
    )
    # a URI as stored in the database, parsed back
    assert _find(store, Pkcs11Uri.parse(str(sm2.uri)))[2] == sm2.key_id

    refusals = {
        Pkcs11Uri(token="SOME-OTHER-TOKEN", object="pair", type="private"): "names token",
        Pkcs11Uri(token=t, object="pair"): "2 objects match",  # private and public halves
        Pkcs11Uri(token=t, id=sm2.key_id): "2 objects match",
        Pkcs11Uri(token=t, object="absent"): "no object matches",
        Pkcs11Uri(token=t, object="secret", type="private"): "no object matches",
        Pkcs11Uri(token=t, object="pair", id=sm4.key_id): "no object matches",
        Pkcs11Uri(token=t, type="private"): "names no object",
        Pkcs11Uri(token=t): "names no object",
    }
    for uri, complaint in refusals.items():
        with pytest.raises(KeyNotFound) as caught:
            _find(store, uri)
        assert complaint in caught.value.message, uri
        assert caught.value.title == "Key not found"
    with pytest.raises(KeyNotFound):
        store.public_key(Pkcs11Uri(token="SOME-OTHER-TOKEN", object="pair"))


def test_destroy(new_token: NewToken, snapshot: Callable[[KeyStore], Any]) -> None:
    _, store, _ = new_token("DESTROY")
    doomed = store.generate_sm2("doomed")
    kept = store.generate_sm2("kept")
    secret = store.generate_sm4("secret")
    assert len(snapshot(store)) == 5
    assert store.destroy(doomed.uri) == 2  # the private and the public object
    rows = snapshot(store)
    assert [label for _, label, _ in rows].count("doomed") == 0
    assert len(rows) == 3
    for uri in (doomed.uri, doomed.uri.with_type("public")):
        with pytest.raises(KeyNotFound):
            _find(store, uri)
    with pytest.raises(KeyNotFound):
        store.public_key(doomed.uri)
    with pytest.raises(KeyNotFound):
        store.sign_host_assisted(doomed.uri, b"too late")
    with pytest.raises(KeyNotFound):
        store.destroy(doomed.uri)
    assert store.destroy(secret.uri) == 1
    with pytest.raises(KeyNotFound):
        store.with_key_material(secret.uri, bytes)
    assert [k.uri for k in store.list_keys()] == [kept.uri]
    message = b"the other key is untouched"
    assert kept.public_key is not None
    kept.public_key.verify(store.sign_host_assisted(kept.uri, message), message)
    # the label is free again
    assert store.generate_sm4("doomed").label == "doomed"
