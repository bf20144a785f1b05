"""One URI names a key fully (hsm.pkcs11.resolve.open_key, issue #15, point 5), against real
SoftHSM2 tokens: module-path is the SoftHSM2 library, pin-source a file of mode 0600."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from hsm.errors import JtcaError
from hsm.pkcs11.keys import KeyKind, KeyNotFound, KeyStore
from hsm.pkcs11.resolve import MODULE_DIRS, UriPinFile, open_key
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.token import FilePin, Token, TokenError, find_module
from hsm.pkcs11.uri import PinValueRefused, Pkcs11Uri, UriError
from policies.rules import DEFAULT_POLICY_PATH, parse_policy

NewToken = Callable[..., tuple[Token, KeyStore, str]]


def pin_file(folder: Path, pin: str, mode: int = 0o600, name: str = "token.pin") -> Path:
    path = folder / name
    path.write_text(pin + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def softhsm_module() -> Path:
    module = find_module()  # the SoftHSM2 library this run's tokens live in
    assert module.is_absolute()
    return module


def test_one_uri_opens_the_key(new_token: NewToken, tmp_path: Path, softhsm_module: Path) -> None:
    token, store, pin = new_token("URI")
    made = store.generate_sm2("qr-ca-17")
    secret = store.generate_sm4("city-card")
    source = pin_file(tmp_path, pin)
    for pin_source in (f"file:{source}", f"file://{source}", str(source)):
        text = f"{made.uri}?pin-source={quote(pin_source, safe='/:')}&module-path={softhsm_module}"
        with open_key(text) as opened:
            assert opened.key == made
            assert opened.uri == made.uri  # the key's name: no query, what the database stores
            assert "?" not in str(opened.uri)
            assert opened.module == softhsm_module
            signer = TokenSigner(opened.store, opened.uri)
            assert signer.key_uri == str(made.uri)
            signer.public_key.verify(signer.sign(b"one URI"), b"one URI")
    # by label alone (no type, no id): the one key of that label; a secret key too
    with open_key(
        f"pkcs11:token={token.label};object=city-card?pin-source={source}"
        f"&module-path={softhsm_module}"
    ) as opened:
        assert opened.key.kind == KeyKind.SM4
        assert opened.key.key_id == secret.key_id


def test_module_name_is_looked_up_in_the_standard_directories(
    new_token: NewToken, tmp_path: Path, softhsm_module: Path
) -> None:
    _token, store, pin = new_token("NAME")
    made = store.generate_sm2("k")
    source = pin_file(tmp_path, pin)
    with open_key(f"{made.uri}?pin-source={source}&module-name=softhsm2") as opened:
        assert opened.module.name == "libsofthsm2.so"
        assert str(opened.module.parent) in MODULE_DIRS
        assert opened.module.resolve() == softhsm_module.resolve()
        assert opened.key == made
    with pytest.raises(TokenError) as caught:
        open_key(f"{made.uri}?pin-source={source}&module-name=no-such-pkcs11")
    assert caught.value.title == "PKCS#11 module missing"
    assert "libno-such-pkcs11.so" in caught.value.message
    assert MODULE_DIRS[0] in caught.value.message
    # the directories are the caller's to give: one holding no module finds none
    with pytest.raises(TokenError, match=r"PKCS#11 module missing|neither"):
        open_key(
            f"{made.uri}?pin-source={source}&module-name=softhsm2", module_dirs=(str(tmp_path),)
        )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o610])
def test_a_pin_file_others_may_read_or_write_is_refused(
    new_token: NewToken, tmp_path: Path, softhsm_module: Path, mode: int
) -> None:
    _token, store, pin = new_token("MODE")
    made = store.generate_sm2("k")
    source = pin_file(tmp_path, pin, mode)
    with pytest.raises(TokenError) as caught:
        open_key(f"{made.uri}?pin-source=file:{source}&module-path={softhsm_module}")
    assert caught.value.title == "PIN file refused"
    assert f"mode {mode:04o}" in caught.value.message
    assert str(source) in caught.value.message
    assert pin not in caught.value.message
    source.chmod(0o400)  # read-only for its owner: accepted
    with open_key(f"{made.uri}?pin-source=file:{source}&module-path={softhsm_module}") as opened:
        assert opened.key == made


def test_pin_source_refusals(new_token: NewToken, tmp_path: Path, softhsm_module: Path) -> None:
    _token, store, pin = new_token("SRC")
    made = store.generate_sm2("k")
    tail = f"&module-path={softhsm_module}"
    missing = tmp_path / "absent.pin"
    with pytest.raises(TokenError, match="cannot read PIN file") as caught:
        open_key(f"{made.uri}?pin-source={missing}{tail}")
    assert caught.value.title == "No PIN"
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(TokenError, match="not a regular file"):
        open_key(f"{made.uri}?pin-source={folder}{tail}")
    empty = pin_file(tmp_path, "", name="empty.pin")
    with pytest.raises(TokenError, match="is empty"):
        open_key(f"{made.uri}?pin-source={empty}{tail}")
    for bad in ("relative/pin", "file:relative", "file://host.example/etc/pin", "|cat%20/p"):
        with pytest.raises(UriError, match="pin-source"):
            open_key(f"{made.uri}?pin-source={bad}{tail}")
    wrong = pin_file(tmp_path, pin + "x", name="wrong.pin")
    fresh_token, fresh_store, _ = new_token("WRONG")
    fresh = fresh_store.generate_sm2("k")
    fresh_token.close()
    with pytest.raises(TokenError) as caught:
        open_key(f"{fresh.uri}?pin-source={wrong}{tail}")
    assert caught.value.title == "Wrong PIN"
    assert f"pin-source {wrong}" in caught.value.message


def test_missing_or_unusable_module(new_token: NewToken, tmp_path: Path) -> None:
    _token, store, pin = new_token("MOD")
    made = store.generate_sm2("k")
    source = pin_file(tmp_path, pin)
    with pytest.raises(TokenError) as caught:
        open_key(f"{made.uri}?pin-source={source}&module-path=/nonexistent/libpkcs11-x.so")
    assert caught.value.title == "PKCS#11 module missing"
    assert "/nonexistent/libpkcs11-x.so" in caught.value.message
    not_a_module = tmp_path / "libfake.so"
    not_a_module.write_bytes(b"not an ELF shared object")
    with pytest.raises(TokenError) as caught:
        open_key(f"{made.uri}?pin-source={source}&module-path={not_a_module}")
    assert caught.value.title == "PKCS#11 module unusable"
    with pytest.raises(UriError, match="not an absolute path"):
        open_key(f"{made.uri}?pin-source={source}&module-path=libsofthsm2.so")


def test_pin_value_refused_unless_the_policy_allows_it(
    new_token: NewToken, softhsm_module: Path
) -> None:
    _token, store, pin = new_token("PINV")
    made = store.generate_sm2("k")
    text = f"{made.uri}?pin-value={quote(pin)}&module-path={softhsm_module}"
    shipped = parse_policy(DEFAULT_POLICY_PATH.read_bytes())
    assert shipped.pkcs11_uri.allow_pin_value is False
    with pytest.raises(PinValueRefused) as caught:
        open_key(text, allow_pin_value=shipped.pkcs11_uri.allow_pin_value)
    assert "pkcs11_uri.allow_pin_value" in caught.value.message
    assert pin not in caught.value.message
    # a parsed URI holding pin-value is refused by open_key as well, not only by parse
    parsed = Pkcs11Uri.parse(text, allow_pin_value=True)
    with pytest.raises(PinValueRefused, match=r"pkcs11_uri\.allow_pin_value"):
        open_key(parsed)
    permissive = parse_policy(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
            "allow_pin_value = false", "allow_pin_value = true"
        )
    )
    assert permissive.pkcs11_uri.allow_pin_value is True
    with open_key(text, allow_pin_value=permissive.pkcs11_uri.allow_pin_value) as opened:
        assert opened.key == made
        assert "pin-value" not in str(opened.uri)
        assert pin not in repr(opened)


def test_the_token_must_be_the_one_the_uri_describes(
    new_token: NewToken, tmp_path: Path, softhsm_module: Path
) -> None:
    token, store, pin = new_token("WHO")
    made = store.generate_sm2("k")
    source = pin_file(tmp_path, pin)
    tail = f"?pin-source={source}&module-path={softhsm_module}"
    described = Pkcs11Uri(
        token=token.label,
        object="k",
        type="private",
        manufacturer="SoftHSM project",
        model="SoftHSM v2",
    )
    with open_key(f"{described}{tail}") as opened:
        assert opened.key == made
    for attribute, value in (("manufacturer", "Sansec"), ("model", "SoftHSM v3")):
        other = Pkcs11Uri(token=token.label, object="k", type="private", **{attribute: value})
        with pytest.raises(TokenError) as caught:
            open_key(f"{other}{tail}")
        assert caught.value.title == "Token mismatch"
        assert attribute in caught.value.message
        assert repr(value) in caught.value.message
    with pytest.raises(TokenError, match=r"Token missing|no token labelled"):
        open_key(f"pkcs11:token=NO-SUCH-TOKEN;object=k;manufacturer=SoftHSM%20project{tail}")
    with pytest.raises(KeyNotFound):
        open_key(f"pkcs11:token={token.label};object=absent{tail}")
    with pytest.raises(UriError, match="names no key"):
        open_key(f"pkcs11:token={token.label};type=private{tail}")
    with pytest.raises(UriError, match="type=public"):
        open_key(f"pkcs11:token={token.label};object=k;type=public{tail}")


def test_stored_uris_keep_working(new_token: NewToken, tmp_path: Path) -> None:
    """A URI from the database has no query: it parses as before and opens with a PIN source
    given beside it and the default module."""
    _token, store, pin = new_token("STORED")
    made = store.generate_sm2("k")
    stored = str(made.uri)
    assert "?" not in stored
    assert Pkcs11Uri.parse(stored) == made.uri
    source = pin_file(tmp_path, pin)
    with open_key(stored, pin_source=FilePin(source)) as opened:
        assert opened.key == made
    with pytest.raises(UriError, match="gives no PIN"):
        open_key(stored)
    assert UriPinFile(f"file:{source}").pin() == pin


def test_refusals_are_jtca_errors() -> None:
    for text in ("pkcs11:token=T?pin-source=relative", "pkcs11:token=T?bogus=1"):
        with pytest.raises(JtcaError):
            open_key(text)
