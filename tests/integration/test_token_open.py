"""Opening tokens (hsm.pkcs11.token): module, label, PIN sources, and the session pool.

Every test runs against a real SoftHSM2 token made fresh for it (conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e
import pytest
from pkcs11 import Attribute, ObjectClass

from hsm.custody import ShareError, split_secret
from hsm.pkcs11.keys import KeyNotFound, KeyStore, TokenKey
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.softhsm2 import init_token
from hsm.pkcs11.token import (
    MODULE_ENV,
    SOFTHSM_PATHS,
    EnvPin,
    FilePin,
    PinSource,
    PromptPin,
    QuorumPin,
    Token,
    TokenError,
    find_module,
    pin_source_from_spec,
)
from hsm.pkcs11.uri import Pkcs11Uri

NewToken = Callable[..., tuple[Token, KeyStore, str]]

# python-pkcs11 cannot end a search on a session that was closed underneath it and says so
# from a finaliser; that is the library talking about the sessions these tests close.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. 'pkcs11._pkcs11.OperationContext.__del__'"
    ":pytest.PytestUnraisableExceptionWarning"
)
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SO_PIN = "so-pin-4321"


def unique_label(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _private_labels(token: Token) -> list[str]:
    """Labels of the private keys the token shows: only a logged-in session sees them."""

    def read(session: pkcs11.Session) -> list[str]:
        return sorted(
            str(o[Attribute.LABEL])
            for o in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        )

    return token.run(read)


def _token_with_key(new_token: NewToken) -> tuple[Token, KeyStore, str, TokenKey]:
    """A fresh token holding one private key, with its first Token closed (so logged out)."""
    token, store, pin = new_token("OPEN")
    key = store.generate_sm2("only-when-logged-in")
    token.close()  # the last session goes, and with it the login
    return token, store, pin, key


# -- the module ---------------------------------------------------------------------------
def test_softhsm_module_is_found_on_debian(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODULE_ENV, raising=False)
    assert SOFTHSM_MODULE.is_file()
    assert str(SOFTHSM_MODULE) in SOFTHSM_PATHS
    assert find_module() == SOFTHSM_MODULE


def test_module_env_override_is_honoured(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token, store, pin = new_token("ENV-MOD")
    store.generate_sm4("k")
    token.close()
    link = tmp_path / "vendor-pkcs11.so"  # a vendor's module path: the env var wins
    link.symlink_to(SOFTHSM_MODULE)
    monkeypatch.setenv(MODULE_ENV, str(link))
    assert find_module() == link
    monkeypatch.setenv("OVERRIDE_PIN", pin)
    with Token(token.label, EnvPin("OVERRIDE_PIN")) as opened:
        assert opened.module_path == link
        assert [k.label for k in KeyStore(opened).list_keys()] == ["k"]

    bogus = tmp_path / "no-such-vendor" / "libcryptoki.so"
    monkeypatch.setenv(MODULE_ENV, str(bogus))
    with pytest.raises(TokenError) as caught:
        find_module()
    assert caught.value.title == "PKCS#11 module missing"
    with pytest.raises(TokenError) as caught:
        Token(token.label, EnvPin("OVERRIDE_PIN"))
    assert caught.value.title == "PKCS#11 module missing"
    assert str(bogus) in caught.value.message
    # an explicit module beats the environment
    with Token(token.label, EnvPin("OVERRIDE_PIN"), module=SOFTHSM_MODULE) as explicit:
        assert explicit.module_path == SOFTHSM_MODULE
        assert [k.label for k in KeyStore(explicit).list_keys()] == ["k"]


def test_one_module_by_two_paths_shares_the_login(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Debian, both first entries of SOFTHSM_PATHS are one file (the first is a symlink to
    the multiarch one). A second Token object reaching the module by the other path, with the
    right PIN, while the first holds the login, must be let in, not told "Wrong PIN"."""
    multiarch = Path(SOFTHSM_PATHS[1])
    assert multiarch.resolve() == SOFTHSM_MODULE.resolve()
    token, store, pin = new_token("TWO-PATHS")
    key = store.generate_sm2("k")
    assert _private_labels(token) == ["k"]  # logged in through /usr/lib/softhsm/…
    monkeypatch.setenv("TWO_PATHS_PIN", pin)
    with Token(token.label, EnvPin("TWO_PATHS_PIN"), module=multiarch) as second:
        assert _private_labels(second) == ["k"]
        assert KeyStore(second).public_key(key.uri) == key.public_key


def test_missing_module_path(new_token: NewToken, tmp_path: Path) -> None:
    token, _, _ = new_token("NO-MOD")
    missing = tmp_path / "libmissing.so"
    with pytest.raises(TokenError) as caught:
        Token(token.label, EnvPin("UNUSED"), module=missing)
    assert caught.value.title == "PKCS#11 module missing"
    assert caught.value.message == f"PKCS#11 module {missing} does not exist"


def test_a_file_that_is_not_a_module(new_token: NewToken, tmp_path: Path) -> None:
    token, _, _ = new_token("JUNK-MOD")
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"\x7fELF not really")
    with pytest.raises(TokenError) as caught:
        Token(token.label, EnvPin("UNUSED"), module=junk)
    assert caught.value.title == "PKCS#11 module unusable"
    assert str(junk) in caught.value.message


# -- the token ----------------------------------------------------------------------------
def test_missing_token_names_the_tokens_there_are(new_token: NewToken) -> None:
    token, _, _ = new_token("THERE")
    absent = unique_label("ABSENT")
    with pytest.raises(TokenError) as caught:
        Token(absent, EnvPin("UNUSED"))
    assert caught.value.title == "Token missing"
    assert f"no token labelled {absent!r}" in caught.value.message
    assert token.label in caught.value.message  # the labels that do exist
    assert str(SOFTHSM_MODULE) in caught.value.message


def test_two_tokens_with_one_label_are_ambiguous(softhsm: Path) -> None:
    label = unique_label("TWIN")
    init_token(label, "1111", SO_PIN)
    init_token(label, "2222", SO_PIN)
    with pytest.raises(TokenError) as caught:
        Token(label, EnvPin("UNUSED"))
    assert caught.value.title == "Token ambiguous"
    assert label in caught.value.message


# -- PIN sources --------------------------------------------------------------------------
def _open_with(token: Token, source: PinSource, key: TokenKey) -> None:
    with Token(token.label, source) as opened:
        assert _private_labels(opened) == [key.label]
        assert KeyStore(opened).public_key(key.uri) == key.public_key


def test_env_pin_opens_the_token(new_token: NewToken, monkeypatch: pytest.MonkeyPatch) -> None:
    token, _, pin, key = _token_with_key(new_token)
    monkeypatch.setenv("JTCA_PIN_UNDER_TEST", pin)
    _open_with(token, EnvPin("JTCA_PIN_UNDER_TEST"), key)


def test_file_pin_opens_the_token(new_token: NewToken, tmp_path: Path) -> None:
    token, _, pin, key = _token_with_key(new_token)
    pin_file = tmp_path / "pin.txt"
    pin_file.write_text(f"{pin}\n", encoding="utf-8")  # the newline an editor adds
    _open_with(token, FilePin(pin_file), key)


def test_prompt_pin_opens_the_token(new_token: NewToken) -> None:
    token, _, pin, key = _token_with_key(new_token)
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return pin

    _open_with(token, PromptPin("PIN for the ministry token: ", ask=ask), key)
    assert prompts == ["PIN for the ministry token: "]  # asked once, not per operation


def test_quorum_pin_opens_the_token(new_token: NewToken) -> None:
    token, _, pin, key = _token_with_key(new_token)
    shares = split_secret(pin.encode("utf-8"), 2, 3)
    _open_with(token, QuorumPin([shares[2], shares[0]]), key)
    with (
        Token(token.label, QuorumPin(shares[:1])) as short,
        pytest.raises(ShareError, match="needs 2 of 3"),
    ):
        short.run(lambda s: None)


def test_quorum_of_a_non_text_secret_is_refused() -> None:
    shares = split_secret(b"\xff\xfe not utf-8", 2, 2)
    with pytest.raises(TokenError) as caught:
        QuorumPin(shares).pin()
    assert caught.value.title == "Bad shares"
    assert QuorumPin(shares).describe() == "quorum:2 shares"


def _assert_wrong_pin(token: Token, source: PinSource) -> None:
    with Token(token.label, source) as wrong, pytest.raises(TokenError) as caught:
        wrong.run(lambda s: None)
    assert caught.value.title == "Wrong PIN"
    assert token.label in caught.value.message
    assert source.describe() in caught.value.message


def test_wrong_pin_is_refused(new_token: NewToken) -> None:
    token, _, pin, _ = _token_with_key(new_token)
    _assert_wrong_pin(token, PromptPin(ask=lambda _: pin + "x"))
    _assert_wrong_pin(token, PromptPin(ask=lambda _: "x" * 300))  # beyond any PIN length


def test_wrong_pin_is_refused_while_another_token_object_is_logged_in(
    new_token: NewToken,
) -> None:
    token, store, pin = new_token("LOGGED-IN")
    key = store.generate_sm2("k")
    assert _private_labels(token) == ["k"]  # the first Token object holds the login
    _assert_wrong_pin(token, PromptPin(ask=lambda _: "not-" + pin))
    _assert_wrong_pin(token, PromptPin(ask=lambda _: pin[:-1]))
    # the right PIN shares the login, and the first object is unharmed
    with Token(token.label, PromptPin(ask=lambda _: pin)) as second:
        assert _private_labels(second) == ["k"]
    assert store.public_key(key.uri) == key.public_key


def test_empty_pin_sources_are_refused(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token, _, _, _ = _token_with_key(new_token)
    monkeypatch.setenv("JTCA_EMPTY_PIN", "")
    monkeypatch.delenv("JTCA_UNSET_PIN", raising=False)
    blank = tmp_path / "blank.pin"
    blank.write_text("  \n", encoding="utf-8")
    sources: list[tuple[PinSource, str]] = [
        (EnvPin("JTCA_EMPTY_PIN"), "environment variable JTCA_EMPTY_PIN holds no PIN"),
        (EnvPin("JTCA_UNSET_PIN"), "environment variable JTCA_UNSET_PIN holds no PIN"),
        (FilePin(blank), f"PIN file {blank} is empty"),
        (FilePin(tmp_path / "absent.pin"), "cannot read PIN file"),
        (PromptPin(ask=lambda _: ""), "no PIN entered"),
    ]
    for source, message in sources:
        with Token(token.label, source) as opened, pytest.raises(TokenError) as caught:
            opened.run(lambda s: None)
        assert caught.value.title == "No PIN"
        assert message in caught.value.message


@pytest.mark.parametrize(
    ("spec", "kind", "detail"),
    [
        ("env:JTCA_PIN", EnvPin, "env:JTCA_PIN"),
        ("file:/run/secrets/pin", FilePin, "file:/run/secrets/pin"),
        ("file:/odd:name/pin", FilePin, "file:/odd:name/pin"),
        ("prompt", PromptPin, "prompt"),
    ],
)
def test_pin_source_from_spec(spec: str, kind: type, detail: str) -> None:
    source = pin_source_from_spec(spec)
    assert isinstance(source, kind)
    assert source.describe() == detail


@pytest.mark.parametrize("spec", ["", "env:", "file:", "prompt:", "env", "pin:1234", "ENV:X"])
def test_pin_source_from_spec_refusals(spec: str) -> None:
    with pytest.raises(TokenError) as caught:
        pin_source_from_spec(spec)
    assert caught.value.title == "Bad PIN source"


# -- the session pool ---------------------------------------------------------------------
def _fill_pool(token: Token, depth: int = 3) -> None:
    """Hold ``depth`` sessions at once (one thread) so that the pool keeps several; they are
    given back in the order they were taken, as operations that finish in turn would."""
    taken = [token.session() for _ in range(depth)]
    held = [cm.__enter__() for cm in taken]
    assert len({id(s) for s in held}) == depth
    for cm in taken:
        cm.__exit__(None, None, None)
    assert len(token.pooled_sessions()) >= depth


def _drop_every_session(token: Token) -> list[Any]:
    sessions = token.pooled_sessions()
    assert sessions, "the pool should hold sessions after operations"
    for session in sessions:
        session.close()  # underneath the pool: it is not told
    return sessions


@pytest.mark.parametrize("operation", ["sign", "public_key", "list_keys", "generate"])
def test_pool_survives_dropped_sessions(new_token: NewToken, operation: str) -> None:
    token, store, _ = new_token("DROP")
    key = store.generate_sm2("survivor")
    _fill_pool(token)
    before = token.reconnects
    dropped = _drop_every_session(token)
    if operation == "sign":
        message = b"signed after the sessions were dropped"
        key.public_key.verify(store.sign_host_assisted(key.uri, message), message)
    elif operation == "public_key":
        assert store.public_key(key.uri) == key.public_key
    elif operation == "list_keys":
        assert [k.uri for k in store.list_keys()] == [key.uri]
    else:
        store.generate_sm4("made-after-the-drop")
        assert {k.label for k in store.list_keys()} == {"survivor", "made-after-the-drop"}
    assert token.reconnects == before + 1
    assert not {id(s) for s in dropped} & {id(s) for s in token.pooled_sessions()}


def test_pool_logs_in_again_with_the_pin_source(new_token: NewToken) -> None:
    token, store, pin = new_token("RELOGIN")
    key = store.generate_sm2("k")
    token.close()
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return pin

    with Token(token.label, PromptPin(ask=ask)) as prompted:
        signer = TokenSigner(KeyStore(prompted), key.uri)
        signer.sign(b"one")
        assert len(asked) == 1
        for round_ in range(3):
            _drop_every_session(prompted)
            message = f"after drop {round_}".encode()
            key.public_key.verify(signer.sign(message), message)
        assert prompted.reconnects == 3
        assert len(asked) == 4  # a fresh login each time: the PIN was asked for again


@pytest.mark.parametrize("which", [0, 1, 2])
def test_pool_survives_any_one_session_dropped(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch, which: int
) -> None:
    """Close one of three pooled sessions underneath the pool (python-pkcs11's close logs the
    session out first if it holds the login, as a dropped login session does): whatever
    session the pool hands out next, operations still succeed."""
    token, store, pin = new_token("DROP1")
    key = store.generate_sm2("k")
    token.close()
    monkeypatch.setenv("DROP1_PIN", pin)
    with Token(token.label, EnvPin("DROP1_PIN")) as fresh:
        fresh_store = KeyStore(fresh)
        _fill_pool(fresh)
        sessions = fresh.pooled_sessions()
        assert len(sessions) == 3
        sessions[which].close()
        for depth in range(len(sessions)):
            # hold ``depth`` sessions, so that the operation takes the next one down the pool
            held = [fresh.session() for _ in range(depth)]
            for cm in held:
                cm.__enter__()
            message = f"drop {which}, depth {depth}".encode()
            key.public_key.verify(fresh_store.sign_host_assisted(key.uri, message), message)
            for cm in held:
                cm.__exit__(None, None, None)
            assert fresh_store.public_key(key.uri) == key.public_key
        assert fresh.reconnects == 1  # the dropped session was met, and survived, once


def test_a_failed_operation_does_not_leak_its_session(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operation that fails for a reason other than a dropped session (here: a URI naming
    no key, the commonest mistake) must give its session back to the pool or close it, not
    leave it open and forgotten: real HSMs have a small session limit."""
    token, store, pin = new_token("LEAK")
    store.generate_sm2("k")
    token.close()
    monkeypatch.setenv("LEAK_PIN", pin)
    with Token(token.label, EnvPin("LEAK_PIN")) as fresh:
        _fill_pool(fresh)
        pooled = fresh.pooled_sessions()
        missing = Pkcs11Uri(token=fresh.label, object="no-such-key", type="private")
        for _ in range(len(pooled) + 2):
            with pytest.raises(KeyNotFound):
                KeyStore(fresh).public_key(missing)
        still_pooled = {id(s) for s in fresh.pooled_sessions()}
        leaked = []
        for session in pooled:
            if id(session) in still_pooled:
                continue
            try:
                list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}))
            except p11e.SessionHandleInvalid:
                continue  # closed: that is fine
            leaked.append(session.handle)
        assert not leaked, f"sessions {leaked} left the pool yet are still open"


REINITIALISED = """
import json, os, sys
from pathlib import Path
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import EnvPin, Token
from hsm.pkcs11.softhsm2 import init_token, use_softhsm

use_softhsm(Path(sys.argv[1]))
os.environ["REINIT_PIN"] = "pin-1234"
init_token("REINIT-A", "pin-1234", "so-pin-4321")
a = Token("REINIT-A", EnvPin("REINIT_PIN"))
a_store = KeyStore(a)
a_key = a_store.generate_sm2("a-key")
init_token("REINIT-B", "pin-1234", "so-pin-4321")  # re-initialises the module under A
b = Token("REINIT-B", EnvPin("REINIT_PIN"))
KeyStore(b).generate_sm2("b-key")
try:
    listed = [k.label for k in a_store.list_keys()]
except Exception as exc:
    listed = f"{type(exc).__name__}: {exc}"
print(json.dumps({"listed": listed, "reconnects": a.reconnects}))
"""


def test_module_reinitialised_under_an_open_token_acts_on_its_own_token(
    tmp_path: Path,
) -> None:
    """A module re-initialisation (what hsm.pkcs11.softhsm2.init_token and hsm.pkcs11.token.rescan
    do,
    and what a device reset looks like) invalidates every session handle. The pool must not go
    on using its old handles: after C_Initialize the module numbers new sessions from the
    start again, so an old handle may now be a session of another token. Run in a child
    process, so that handle numbers start where a fresh process starts them."""
    child = subprocess.run(
        [sys.executable, "-c", REINITIALISED, str(tmp_path / "softhsm")],
        env={k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout)
    # token A lists its own key: not token B's, and not an error
    assert report["listed"] == ["a-key"]
    assert report["reconnects"] == 1


CONCURRENT_SIGNING = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from hsm.pkcs11.keys import KeyStore
from hsm.pkcs11.token import EnvPin, Token
from hsm.pkcs11.uri import Pkcs11Uri
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.uri import Pkcs11Uri

label, uris = sys.argv[1], sys.argv[2:]
token = Token(label, EnvPin("CONCURRENT_PIN"))
store = KeyStore(token)
signers = [TokenSigner(store, Pkcs11Uri.parse(u)) for u in uris]

def sign(job):
    thread, n = job
    which = (thread + n) % len(signers)
    message = f"thread {thread} message {n}".encode()
    return which, message.hex(), signers[which].sign(message).hex()

with ThreadPoolExecutor(max_workers=4) as pool:
    results = list(pool.map(sign, [(t, n) for t in range(4) for n in range(10)]))
print(json.dumps({"results": results, "reconnects": token.reconnects,
                  "pooled": len(token.pooled_sessions())}))
"""


def test_concurrent_signing_from_several_threads(new_token: NewToken) -> None:
    """4 threads x 10 host-assisted signatures through one Token. Run in a child process:
    if the module is driven from several threads at once without locking, the process can
    die of a segmentation fault, and that must fail this test, not end the test run."""
    token, store, pin = new_token("THREADS")
    keys = [store.generate_sm2(f"k{i}") for i in range(2)]
    token.close()
    child = subprocess.run(
        [sys.executable, "-c", CONCURRENT_SIGNING, token.label, *(str(k.uri) for k in keys)],
        env=os.environ | {"CONCURRENT_PIN": pin},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, (
        f"concurrent signing died (exit status {child.returncode}): {child.stderr[-2000:]}"
    )
    report = json.loads(child.stdout)
    results = report["results"]
    assert len(results) == 40
    for which, message, signature in results:
        keys[which].public_key.verify(bytes.fromhex(signature), bytes.fromhex(message))
    assert len({sig for _, _, sig in results}) == 40
    assert 1 <= report["pooled"] <= 5  # pool_size idle sessions plus the login
    assert report["reconnects"] == 0
