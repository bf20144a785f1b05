"""Extractability (issue #15, point 1) on real SoftHSM2 tokens, through python-pkcs11 directly
where the question is what the token itself allows.

- A key of a class whose policy forbids host-assisted use is generated CKA_EXTRACTABLE=FALSE:
  no ``C_WrapKey`` takes it out (CKR_KEY_UNEXTRACTABLE), under any key, and the token says
  CKA_NEVER_EXTRACTABLE=TRUE.
- A token made by ``hsm.pkcs11.softhsm2.init_token`` holds the security officer's trusted wrapping
key
  (CKA_TRUSTED=TRUE); the keys it makes are CKA_WRAP_WITH_TRUSTED=TRUE: a user session cannot
  wrap one under an AES key of its own (CKR_KEY_NOT_WRAPPABLE), can under the trusted key; a
  user session cannot make a CKA_TRUSTED key, nor give the trusted key another capability, nor
  turn CKA_WRAP_WITH_TRUSTED off. A token made without one (before this) works as before, and
  the control cases show that each refusal above is the token's, not the test's.
- Host-assisted use asks the token's CKA_SIGN / CKA_DECRYPT.
- The root ceremony's transcript and ``jtca token show`` carry each key's attributes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pkcs11
import pkcs11.exceptions as p11e
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.types import Key, WrapMixin

from hsm.backup import backup_token, restore_token
from hsm.pkcs11.keys import TRUSTED_WRAP_LABEL, KeyStore, KeyUse, TokenKey
from hsm.pkcs11.softhsm2 import wrap_file
from hsm.pkcs11.token import TokenError

NewToken = Any
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def _user_wrap(store: KeyStore, key: TokenKey) -> bytes:
    """``C_WrapKey`` of ``key`` under a fresh AES-256 session key of the user session's own."""

    def wrap(session: pkcs11.Session) -> bytes:
        mine = session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: secrets.token_bytes(32),
                Attribute.TOKEN: False,
                Attribute.WRAP: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
            }
        )
        try:
            target = store.find(session, key.uri)
            return bytes(
                cast(WrapMixin, mine).wrap_key(
                    cast(Key, target), mechanism=Mechanism.AES_KEY_WRAP_PAD
                )
            )
        finally:
            mine.destroy()

    with store.token.session() as session:  # no retry: the PKCS#11 error itself is the answer
        return wrap(session)


def _trusted_wrap(store: KeyStore, key: TokenKey) -> bytes:
    with store.token.session() as session:
        trusted = session.get_key(label=TRUSTED_WRAP_LABEL)
        assert trusted[Attribute.TRUSTED] is True
        target = store.find(session, key.uri)
        return bytes(
            cast(WrapMixin, trusted).wrap_key(
                cast(Key, target), mechanism=Mechanism.AES_KEY_WRAP_PAD
            )
        )


# -- 1. keys that never leave the token ----------------------------------------------------
@pytest.mark.parametrize("kind", ["sm2", "sm4"])
def test_a_key_without_host_assisted_use_cannot_be_wrapped_at_all(
    new_token: NewToken, kind: str
) -> None:
    _, store, _ = new_token("NOEXT")
    if kind == "sm2":
        kept, control = store.generate_sm2("kept", host_assisted=False), store.generate_sm2("c")
    else:
        kept, control = store.generate_sm4("kept", host_assisted=False), store.generate_sm4("c")
        assert kept.check_value is None
        assert control.check_value is not None
    attributes = store.key_attributes(kept.uri)
    assert attributes.extractable is False
    assert attributes.never_extractable is True
    assert attributes.always_sensitive is True
    assert attributes.local is True
    with pytest.raises(p11e.KeyUnextractable):  # CKR_KEY_UNEXTRACTABLE
        _user_wrap(store, kept)
    with pytest.raises(p11e.KeyUnextractable):  # not even under the trusted key
        _trusted_wrap(store, kept)
    with pytest.raises(TokenError) as refused:
        store.with_key_material(kept.uri, len)
    assert refused.value.title == "Key not extractable"
    # it cannot be made extractable afterwards (PKCS#11: FALSE -> TRUE is not allowed)
    with store.token.session() as session, pytest.raises(p11e.PKCS11Error):
        store.find(session, kept.uri)[Attribute.EXTRACTABLE] = True
    # the control: a key of a host-assisted class is extractable, under the trusted key
    assert store.key_attributes(control.uri).never_extractable is False
    assert len(_trusted_wrap(store, control)) > 16


def test_a_backup_names_a_key_that_cannot_leave(new_token: NewToken) -> None:
    _, store, _ = new_token("NOEXTBK")
    store.generate_sm2("kept", host_assisted=False)
    with pytest.raises(TokenError) as refused:
        backup_token(store, threshold=2, custodians=3)
    assert "'kept'" in refused.value.message
    assert "not extractable" in refused.value.message


# -- 2. the trusted wrapping key -----------------------------------------------------------
def test_a_wrap_with_trusted_key_leaves_only_under_the_trusted_key(new_token: NewToken) -> None:
    _, store, _ = new_token("WWT")
    sm2, sm4 = store.generate_sm2("signing"), store.generate_sm4("card")
    for key in (sm2, sm4):
        assert store.key_attributes(key.uri).wrap_with_trusted is True
        with pytest.raises(p11e.KeyNotWrappable):  # CKR_KEY_NOT_WRAPPABLE
            _user_wrap(store, key)
        assert len(_trusted_wrap(store, key)) > 16
    # and the host-assisted path, which wraps under the trusted key, still signs
    assert sm2.public_key is not None
    message = b"trusted path"
    sm2.public_key.verify(store.sign_host_assisted(sm2.uri, message), message)


def test_a_token_made_before_keeps_its_one_use_key_path(new_token: NewToken) -> None:
    """The control for the test above: without a trusted key the same wrap goes through."""
    _, store, _ = new_token("OLD", trusted_wrap=False)
    assert store.trusted_wrap_status().present is False
    key = store.generate_sm2("signing")
    assert store.key_attributes(key.uri).wrap_with_trusted is False
    assert len(_user_wrap(store, key)) > 16  # anyone with the PIN can: what #15 closes
    assert key.public_key is not None
    key.public_key.verify(store.sign_host_assisted(key.uri, b"old"), b"old")


def test_a_user_session_cannot_make_or_change_a_trusted_key(new_token: NewToken) -> None:
    _, store, _ = new_token("NOTRUST")
    key = store.generate_sm2("signing")
    with store.token.session() as session:
        with pytest.raises(p11e.AttributeReadOnly):  # only the SO sets CKA_TRUSTED=TRUE
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: secrets.token_bytes(32),
                    Attribute.TOKEN: False,
                    Attribute.WRAP: True,
                    Attribute.TRUSTED: True,
                }
            )
        trusted = session.get_key(label=TRUSTED_WRAP_LABEL)
        # an unwrap or decrypt capability would hand back what it wraps: not modifiable
        for capability in (Attribute.UNWRAP, Attribute.DECRYPT):
            with pytest.raises(p11e.PKCS11Error):
                trusted[capability] = True
            assert trusted[capability] is False
        with pytest.raises(p11e.PKCS11Error):  # nor copied with one
            trusted.copy({Attribute.UNWRAP: True})
        with pytest.raises(p11e.PKCS11Error):  # nor destroyed
            trusted.destroy()
        target = store.find(session, key.uri)
        with pytest.raises(p11e.AttributeReadOnly):  # once TRUE, CKA_WRAP_WITH_TRUSTED stays
            target[Attribute.WRAP_WITH_TRUSTED] = False
        with pytest.raises(p11e.PKCS11Error):  # nor copied without it (CKA_COPYABLE=FALSE)
            target.copy({Attribute.WRAP_WITH_TRUSTED: False})
        assert trusted[Attribute.SENSITIVE] is True
        assert trusted[Attribute.EXTRACTABLE] is False
        with pytest.raises(p11e.AttributeSensitive):
            trusted[Attribute.VALUE]


def test_the_wrap_file_is_the_host_half(new_token: NewToken, tmp_path: Path) -> None:
    token, store, _ = new_token("WRAPFILE")
    path = wrap_file(token.label)
    assert store.trusted_wrap_file == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == 32
    status = store.trusted_wrap_status()
    assert status.present
    assert status.file == path
    assert status.file_matches
    key = store.generate_sm2("signing")
    # without the host's file the key cannot be used host-assisted
    moved = tmp_path / "moved.wrap"
    path.rename(moved)
    try:
        with pytest.raises(TokenError) as missing:
            store.sign_host_assisted(key.uri, b"x")
        assert missing.value.title == "Trusted wrapping key missing"
        assert str(path) in missing.value.message
        with pytest.raises(TokenError):  # nor can a key be made that no one could use
            store.generate_sm2("another")
        # another token's file is told apart (its CKA_ID)
        other, _, _ = new_token("WRAPOTHER")
        path.write_bytes(wrap_file(other.label).read_bytes())
        with pytest.raises(TokenError) as wrong:
            store.sign_host_assisted(key.uri, b"x")
        assert wrong.value.title == "Trusted wrapping key unusable"
        assert store.trusted_wrap_status().file_matches is False
    finally:
        moved.replace(path)
    assert key.public_key is not None
    key.public_key.verify(store.sign_host_assisted(key.uri, b"x"), b"x")


def test_restored_keys_are_wrap_with_trusted_in_their_new_token(new_token: NewToken) -> None:
    _, source, _ = new_token("BKSRC", trusted_wrap=False)  # an old token's keys
    old = source.generate_sm2("signing")
    source.generate_sm4("card")
    backup = backup_token(source, threshold=2, custodians=3)
    _, target, _ = new_token("BKDST")
    restored = restore_token(target, backup.archive, backup.shares[:2])
    assert sorted(k.label for k in restored) == ["card", "signing"]
    for key in restored:
        attributes = target.key_attributes(key.uri)
        assert attributes.wrap_with_trusted is True
        assert attributes.local is False
        with pytest.raises(p11e.KeyNotWrappable):
            _user_wrap(target, key)
    # and back again: a WRAP_WITH_TRUSTED token's backup restores into an old one
    again = backup_token(target, threshold=2, custodians=3)
    _, old_kind, _ = new_token("BKOLD", trusted_wrap=False)
    back = {k.label: k for k in restore_token(old_kind, again.archive, again.shares[1:])}
    assert back["signing"].public_key == old.public_key


# -- 3. capabilities on the host-assisted path ----------------------------------------------
def test_host_assisted_use_asks_the_token_what_a_key_may_do(new_token: NewToken) -> None:
    _, store, _ = new_token("PURPOSE")
    encryption = store.generate_sm2("encryption", decrypt=True, sign=False)
    signing = store.generate_sm2("signing")
    with pytest.raises(TokenError) as refused:
        store.sign_host_assisted(encryption.uri, b"x")
    assert refused.value.title == "Key may not sign"
    with pytest.raises(TokenError) as refused:
        store.with_key_material(signing.uri, len, purpose=KeyUse.DECRYPT)
    assert refused.value.title == "Key may not decrypt"
    assert store.with_key_material(encryption.uri, len, purpose=KeyUse.DECRYPT) == 32
    assert store.with_key_material(signing.uri, len) == 32  # no purpose: as before


# -- 4. attributes in the ceremony transcript and in `jtca token show` ------------------------
def test_the_ceremony_transcript_records_each_keys_attributes(
    database: Any, softhsm: Path, new_token: NewToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_ceremony import prepare

    import ca.policy.in_force
    from ca.ceremony.run import run, transcript_message
    from ca.log import audit
    from hsm.sm.sm2 import SM2PublicKey

    # a policy that forbids host-assisted use of the list-signing key (the ceremony certifies
    # it with the root; it never signs with it)
    shipped = ca.policy.in_force.load_policy()
    classes = dict(shipped.key_classes)
    classes["list-signing"] = dataclasses.replace(classes["list-signing"], host_assisted=False)
    forbidding = dataclasses.replace(shipped, key_classes=classes)
    monkeypatch.setattr(ca.policy.in_force, "load_policy", lambda path=None: forbidding)

    _, engine = database
    ceremony, shares = prepare(secrets.token_hex(3))
    _, log_store, _ = new_token("LOGX")
    try:
        transcript = run(
            ceremony,
            engine,
            module=None,
            shares=[shares[0], shares[2]],
            witnesses_present=["赵六 (公证员)"],
            now=NOW,
            log_store=log_store,
        )
    finally:
        audit.install_sealer(None)
    keys = {k["class"]: k for k in transcript.data["keys"]}
    assert set(keys) == {"ministry-root", "central-qr-ca", "list-signing", "audit"}
    for key_class, entry in keys.items():
        attributes = entry["attributes"]
        assert attributes["CKA_LOCAL"] is True, key_class
        assert attributes["CKA_ALWAYS_SENSITIVE"] is True, key_class
        never = key_class == "list-signing"
        assert attributes["CKA_EXTRACTABLE"] is not never, key_class
        assert attributes["CKA_NEVER_EXTRACTABLE"] is never, key_class
        assert attributes["CKA_WRAP_WITH_TRUSTED"] is not never, key_class
    # signed with the rest: the root's signature covers them
    public = SM2PublicKey.from_bytes(bytes.fromhex(transcript.signer_public_key))
    public.verify(bytes.fromhex(transcript.signature), transcript_message(transcript.data))


JTCA = str(Path(sys.executable).with_name("jtca"))


def test_token_show_prints_each_keys_attributes(tmp_path: Path) -> None:
    env = dict(os.environ, JTCA_STATE=str(tmp_path / "state"))
    env.pop("SOFTHSM2_CONF", None)

    def jtca(*args: str) -> str:
        result = subprocess.run(
            [JTCA, "token", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    jtca("init", "--token", "SHOW")
    wrap = tmp_path / "state" / "softhsm2" / "SHOW.wrap"
    assert stat.S_IMODE(wrap.stat().st_mode) == 0o600
    jtca("keygen", "--token", "SHOW", "--label", "signer", "--kind", "sm2")
    jtca("keygen", "--token", "SHOW", "--label", "card", "--kind", "sm4")
    shown = json.loads(jtca("show", "--token", "SHOW", "--json"))
    assert shown["trusted_wrapping_key"] == {
        "present": True,
        "file": str(wrap),
        "file_matches": True,
    }
    rows = {k["label"]: k for k in shown["keys"]}
    assert set(rows) == {"signer", "card"}
    for row in rows.values():
        assert row["attributes"]["CKA_EXTRACTABLE"] is True
        assert row["attributes"]["CKA_NEVER_EXTRACTABLE"] is False
        assert row["attributes"]["CKA_ALWAYS_SENSITIVE"] is True
        assert row["attributes"]["CKA_LOCAL"] is True
        assert row["attributes"]["CKA_WRAP_WITH_TRUSTED"] is True
        assert row["extraction"] == "trusted-key-only"
    assert rows["signer"]["attributes"]["CKA_SIGN"] is True
    text = jtca("show", "--token", "SHOW")
    assert "trusted wrapping key: present" in text
    assert "(matches)" in text
    assert "CKA_EXTRACTABLE=TRUE  CKA_NEVER_EXTRACTABLE=FALSE" in text
    assert "CKA_LOCAL=TRUE" in text
    assert "leaves: trusted-key-only" in text
    # without the host's file, show says so
    wrap.rename(tmp_path / "SHOW.wrap.away")
    assert "(MISSING or not this token's)" in jtca("show", "--token", "SHOW")


def test_token_keygen_takes_the_class_from_the_policy(
    new_token: NewToken, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``jtca token keygen --class``: a class whose policy forbids host-assisted use gets a key
    that never leaves the token (in this process, with a policy that forbids it)."""
    import argparse

    import ca.policy.in_force
    from ca.cli.token import cmd_keygen
    from ca.core.errors import BadInput
    from hsm.pkcs11.token import find_module

    token, store, pin = new_token("KEYGENCLS")
    monkeypatch.setenv("JTCA_KEYGEN_PIN", pin)
    shipped = ca.policy.in_force.load_policy()
    classes = dict(shipped.key_classes)
    classes["list-signing"] = dataclasses.replace(classes["list-signing"], host_assisted=False)
    forbidding = dataclasses.replace(shipped, key_classes=classes)
    monkeypatch.setattr(ca.policy.in_force, "load_policy", lambda path=None: forbidding)

    def keygen(label: str, kind: str, key_class: str, transport: bool = False) -> dict[str, Any]:
        args = argparse.Namespace(
            token=token.label,
            module=str(find_module()),
            pin_source="env:JTCA_KEYGEN_PIN",
            label=label,
            kind=kind,
            transport=transport,
            key_class=key_class,
            json=True,
        )
        assert cmd_keygen(args) == 0
        return cast(dict[str, Any], json.loads(capsys.readouterr().out))

    never = keygen("never", "sm2", "list-signing")
    sm4 = keygen("never-sm4", "sm4", "list-signing")
    usable = keygen("usable", "sm2", "ministry-root")
    by_label = {k.label: k for k in store.list_keys()}
    assert store.key_attributes(by_label["never"].uri).never_extractable is True
    assert store.key_attributes(by_label["never-sm4"].uri).never_extractable is True
    assert sm4["check_value"] is None
    assert store.key_attributes(by_label["usable"].uri).wrap_with_trusted is True
    assert never["uri"] != usable["uri"]
    with pytest.raises(BadInput) as refused:
        keygen("nope", "sm2", "no-such-class")
    assert "no such class" in refused.value.message
    with pytest.raises(BadInput):  # a key that opens packages is opened on the host
        keygen("nope", "sm2", "list-signing", transport=True)
