"""The Signer over a token key (hsm.pkcs11.signer): host-assisted on SoftHSM2, native by map.

The map is matched on (manufacturer, model, mechanism number) from C_GetTokenInfo (issue #15):
SoftHSM2's real manufacturer ("SoftHSM project") and mechanism list decide what is chosen here.

SoftHSM2 has no SM2 mechanism, so the host-assisted path runs for real and its signatures are
checked by Tongsuo (our verify) and by the OpenSSL 3 CLI. The native path cannot run here (no
such hardware): its selection is tested against mechanism sets, and its pre-hash by standing in
for the token's C_Sign only — the one stand-in in these tests — with gmssl, an independent
pure-Python SM2, signing exactly the bytes the signer hands to the token.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from gmssl.sm2 import CryptSM2
from hypothesis import given
from hypothesis import strategies as st
from pkcs11 import Attribute, Mechanism, ObjectClass

from hsm.errors import InvalidSignature, JtcaError
from hsm.pkcs11.keys import KeyKind, KeyStore, TokenKey
from hsm.pkcs11.signer import (
    DEFAULT_VENDOR_MECHANISMS,
    HostAssistedForbidden,
    MechanismInput,
    SignatureEncoding,
    TokenIdentity,
    TokenSigner,
    VendorMechanism,
    choose_mechanism,
    model_matches,
    normalise_signature,
    token_identity,
)
from hsm.pkcs11.token import Token
from hsm.signer import Signer, SigningPath
from hsm.sm.sm2 import N, SM2PrivateKey, SM2PublicKey, raw_to_der, sm2_digest

NewToken = Callable[..., tuple[Token, KeyStore, str]]

SANSEC = 0x80008102  # message in, Z computed by the token
TASS_KOAL = 0x80008100  # pre-hashed e in
LUNA = 0x80000B22
EP11 = 0x8005000C
SOFTHSM = TokenIdentity("SoftHSM project", "SoftHSM v2")  # what SoftHSM2 2.6 reports
SANSEC_HSM = TokenIdentity("Sansec", "SJJ1012")
TASS_HSM = TokenIdentity("TASS", "EVSM")
LUNA_HSM = TokenIdentity("Safenet, Inc.", "Luna K7")
EP11_HSM = TokenIdentity("IBM", "EP11")


def _openssl_verify(tmp: Path, public_key: SM2PublicKey, signature: bytes, message: bytes) -> str:
    (tmp / "pub.pem").write_bytes(public_key.pem())
    (tmp / "sig").write_bytes(raw_to_der(signature))
    (tmp / "msg").write_bytes(message)
    run = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(tmp / "pub.pem"),
            "-rawin",
            "-in",
            str(tmp / "msg"),
            "-sigfile",
            str(tmp / "sig"),
            "-digest",
            "sm3",
            "-pkeyopt",
            "distid:1234567812345678",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"{run.returncode}: {run.stdout}{run.stderr}"


# -- host-assisted on SoftHSM2 ----------------------------------------------------------
def test_softhsm_signs_host_assisted(new_token: NewToken, tmp_path: Path) -> None:
    _, store, _ = new_token("HOST")
    key = store.generate_sm2("qr-ca-17")
    signer = TokenSigner(store, key.uri)
    assert isinstance(signer, Signer)
    assert signer.path == SigningPath.HOST_ASSISTED
    assert signer.mechanism is None
    assert signer.key_uri == str(key.uri)
    assert signer.public_key == key.public_key == store.public_key(key.uri)
    message = "互通证书 issuer 0571".encode()
    signatures = [signer.sign(message) for _ in range(3)]
    for signature in signatures:
        assert len(signature) == 64
        signer.public_key.verify(signature, message)
    assert len(set(signatures)) == 3  # a fresh k each time
    out = _openssl_verify(tmp_path, signer.public_key, signatures[0], message)
    assert out.startswith("0: "), out
    assert "Signature Verified Successfully" in out
    tampered = message + b"!"
    out = _openssl_verify(tmp_path, signer.public_key, signatures[0], tampered)
    assert out.startswith("1: "), out
    assert "Signature Verification Failure" in out
    with pytest.raises(InvalidSignature):
        signer.public_key.verify(signatures[0], tampered)
    other = store.generate_sm2("other")
    assert other.public_key is not None
    with pytest.raises(InvalidSignature):
        other.public_key.verify(signatures[0], message)


def test_policy_can_forbid_host_assisted_signing(new_token: NewToken) -> None:
    token, store, _ = new_token("FORBID")
    key = store.generate_sm2("root")
    assert token_identity(store) == SOFTHSM
    assert choose_mechanism(SOFTHSM, token.mechanisms, DEFAULT_VENDOR_MECHANISMS) is None
    with pytest.raises(HostAssistedForbidden) as caught:
        TokenSigner(store, key.uri, allow_host_assisted=False)
    assert caught.value.title == "Signing not allowed"
    assert str(key.uri) in caught.value.message
    assert token.label in caught.value.message
    assert "'SoftHSM project'" in caught.value.message
    assert "'SoftHSM v2'" in caught.value.message
    # a token of another maker advertising TASS's number is still not TASS's token
    with pytest.raises(HostAssistedForbidden):
        TokenSigner(store, key.uri, allow_host_assisted=False, advertised_mechanisms={TASS_KOAL})
    # where a native mechanism exists for the token's maker, the policy switch does not stand
    # in the way
    native = TokenSigner(
        store,
        key.uri,
        allow_host_assisted=False,
        advertised_mechanisms={TASS_KOAL},
        identity=TASS_HSM,
    )
    assert native.path == SigningPath.NATIVE
    assert native.identity == TASS_HSM


def test_the_token_advertised_mechanisms_are_what_selection_reads(new_token: NewToken) -> None:
    """With no override, the signer asks the token (C_GetMechanismList): a map entry naming a
    mechanism SoftHSM2 really advertises (CKM_ECDSA, pretending) is chosen."""
    token, store, _ = new_token("ADVERT")
    key = store.generate_sm2("k")
    assert int(Mechanism.ECDSA) in token.mechanisms
    assert SANSEC not in token.mechanisms
    pretend = VendorMechanism(
        "pretend", int(Mechanism.ECDSA), MechanismInput.DIGEST, manufacturer="SoftHSM project"
    )
    signer = TokenSigner(store, key.uri, vendor_mechanisms=[*DEFAULT_VENDOR_MECHANISMS, pretend])
    assert signer.identity == SOFTHSM  # read from the token (C_GetTokenInfo)
    assert signer.path == SigningPath.NATIVE
    assert signer.mechanism == pretend


def test_a_number_softhsm_advertises_under_another_makers_name_is_never_chosen(
    new_token: NewToken, tmp_path: Path
) -> None:
    """Issue #15: a map entry whose number SoftHSM2 really advertises (CKM_ECDSA), but which
    names another maker (or SoftHSM's maker with another model), is never chosen: the token
    signs host-assisted, and with host-assisted forbidden it refuses, naming its maker."""
    token, store, _ = new_token("MAKER")
    key = store.generate_sm2("k")
    ecdsa = int(Mechanism.ECDSA)
    assert ecdsa in token.mechanisms
    foreign = [
        VendorMechanism("Sansec", ecdsa, MechanismInput.MESSAGE, manufacturer="Sansec"),
        VendorMechanism("Luna", ecdsa, MechanismInput.DIGEST, manufacturer="Safenet, Inc."),
        VendorMechanism("no maker", ecdsa, MechanismInput.DIGEST),  # names no manufacturer
        VendorMechanism(
            "case", ecdsa, MechanismInput.DIGEST, manufacturer="softhsm project", model="*"
        ),
        VendorMechanism(
            "other model",
            ecdsa,
            MechanismInput.DIGEST,
            manufacturer="SoftHSM project",
            model="SoftHSM v1",
        ),
        VendorMechanism("prefix", ecdsa, MechanismInput.DIGEST, manufacturer="SoftHSM", model="*"),
    ]
    signer = TokenSigner(store, key.uri, vendor_mechanisms=foreign)
    assert signer.mechanism is None
    assert signer.path == SigningPath.HOST_ASSISTED
    signature = signer.sign(b"never ECDSA")
    out = _openssl_verify(tmp_path, signer.public_key, signature, b"never ECDSA")
    assert out.startswith("0: "), out  # an SM2 signature, made host-assisted
    with pytest.raises(HostAssistedForbidden, match="'SoftHSM project'"):
        TokenSigner(store, key.uri, allow_host_assisted=False, vendor_mechanisms=foreign)
    # the same number for SoftHSM's maker and a pattern of its model is chosen
    mine = VendorMechanism(
        "mine", ecdsa, MechanismInput.DIGEST, manufacturer="SoftHSM project", model="SoftHSM v*"
    )
    chosen = TokenSigner(store, key.uri, vendor_mechanisms=[*foreign, mine])
    assert chosen.mechanism == mine


# -- choosing a native mechanism --------------------------------------------------------
ALL_VENDOR = {SANSEC, TASS_KOAL, LUNA, EP11}


@pytest.mark.parametrize(
    ("identity", "advertised", "expected"),
    [
        pytest.param(SANSEC_HSM, set(), None, id="none"),
        pytest.param(SOFTHSM, {0x1041, 0x1050, 0x2109}, None, id="softhsm-like"),
        pytest.param(SOFTHSM, ALL_VENDOR, None, id="softhsm-advertising-every-vendor-number"),
        pytest.param(TASS_HSM, {TASS_KOAL}, "TASS/Koal", id="digest-only"),
        pytest.param(SANSEC_HSM, {SANSEC}, "Sansec", id="message-only"),
        pytest.param(SANSEC_HSM, {TASS_KOAL, SANSEC}, "Sansec", id="own-makers-only"),
        pytest.param(TASS_HSM, {TASS_KOAL, SANSEC}, "TASS/Koal", id="other-makers-number-ignored"),
        pytest.param(SANSEC_HSM, {TASS_KOAL}, None, id="fail/another-makers-number"),
        pytest.param(LUNA_HSM, ALL_VENDOR, "Thales Luna", id="luna-any-model"),
        pytest.param(EP11_HSM, ALL_VENDOR, "IBM EP11", id="ep11-model"),
        pytest.param(TokenIdentity("IBM", "CCA"), ALL_VENDOR, None, id="fail/ibm-other-model"),
        pytest.param(TokenIdentity("IBM", "EP11x"), {EP11}, None, id="fail/model-not-prefix"),
        pytest.param(TokenIdentity("ibm", "EP11"), {EP11}, None, id="fail/maker-case"),
        pytest.param(TokenIdentity("", ""), ALL_VENDOR, None, id="fail/blank-maker"),
        pytest.param(TokenIdentity("Acme", "X"), ALL_VENDOR, None, id="fail/unknown-maker"),
        pytest.param(
            TokenIdentity("  IBM  ", "EP11      "), {EP11}, "IBM EP11", id="blank-padded-info"
        ),
        pytest.param(SANSEC_HSM, {SANSEC + 1}, None, id="near-miss"),
    ],
)
def test_choose_mechanism(
    identity: TokenIdentity, advertised: set[int], expected: str | None
) -> None:
    chosen = choose_mechanism(identity, advertised, DEFAULT_VENDOR_MECHANISMS)
    assert (chosen.vendor if chosen else None) == expected
    if chosen is not None:
        assert chosen.mechanism in advertised
        assert chosen.manufacturer == identity.manufacturer
    # a (manufacturer, model) pair is accepted as well as a TokenIdentity
    pair = (identity.manufacturer, identity.model)
    assert choose_mechanism(pair, advertised, DEFAULT_VENDOR_MECHANISMS) == chosen


@given(
    manufacturer=st.text(max_size=32),
    model=st.text(max_size=16),
    advertised=st.sets(st.integers(0x80000000, 0xFFFFFFFF), max_size=8),
)
def test_a_maker_no_entry_names_is_never_sent_a_vendor_number(
    manufacturer: str, model: str, advertised: set[int]
) -> None:
    makers = {m.manufacturer for m in DEFAULT_VENDOR_MECHANISMS}
    if manufacturer.strip() in makers:
        manufacturer += "!"
    known = [*DEFAULT_VENDOR_MECHANISMS, VendorMechanism("anon", SANSEC, MechanismInput.DIGEST)]
    every = advertised | ALL_VENDOR
    assert choose_mechanism((manufacturer, model), every, known) is None


def test_choose_mechanism_with_a_policy_map() -> None:
    maker = TokenIdentity("Maker", "M-2")
    digest_a = VendorMechanism("A", 0x80000001, MechanismInput.DIGEST, manufacturer="Maker")
    digest_b = VendorMechanism(
        "B", 0x80000002, MechanismInput.DIGEST, SignatureEncoding.DER, manufacturer="Maker"
    )
    message_c = VendorMechanism("C", 0x80000003, MechanismInput.MESSAGE, manufacturer="Maker")
    known = [digest_a, digest_b, message_c]
    assert choose_mechanism(maker, {0x80000002, 0x80000001}, known) is digest_a
    assert choose_mechanism(maker, {0x80000002, 0x80000003}, known) is message_c
    assert choose_mechanism(maker, {0x80000002}, known) is digest_b
    assert choose_mechanism(maker, {SANSEC}, known) is None  # only what the map names counts
    assert choose_mechanism(maker, iter([0x80000003]), iter(known)) is message_c  # iterables
    # an entry naming the model exactly is preferred to a pattern, kind for kind
    pattern = VendorMechanism("P", 0x80000004, MechanismInput.DIGEST, manufacturer="Maker")
    exact = VendorMechanism(
        "E", 0x80000005, MechanismInput.DIGEST, manufacturer="Maker", model="M-2"
    )
    assert choose_mechanism(maker, {0x80000004, 0x80000005}, [pattern, exact]) is exact
    other = VendorMechanism(
        "O", 0x80000005, MechanismInput.MESSAGE, manufacturer="Maker", model="M-3"
    )
    assert choose_mechanism(maker, {0x80000005}, [other]) is None


@pytest.mark.parametrize(
    ("pattern", "model", "matches"),
    [
        ("*", "anything", True),
        ("*", "", True),
        ("EP11", "EP11", True),
        ("EP11", "EP11 ", True),  # CK_TOKEN_INFO pads with blanks
        ("EP11", "EP1", False),
        ("EP11", "ep11", False),
        ("Luna *", "Luna K7", True),
        ("Luna *", "LunaSA", False),
        ("SJJ10??", "SJJ1012", True),
        ("SJJ10??", "SJJ101", False),
        ("a.b", "axb", False),  # regex characters are themselves
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
    ],
)
def test_model_patterns(pattern: str, model: str, matches: bool) -> None:
    assert model_matches(pattern, model) is matches


# -- the native path, with a stand-in for the token's C_Sign ------------------------------
@dataclass
class FakeKeyObject:
    """The private key object as the native path sees it; its C_Sign is gmssl's."""

    engine: CryptSM2
    input: MechanismInput
    der: bool = False
    calls: list[tuple[bytes, int]] = field(default_factory=list)

    def sign(self, data: bytes, mechanism: int) -> bytes:
        self.calls.append((bytes(data), int(mechanism)))
        k = f"{secrets.randbelow(N - 1) + 1:064x}"
        if self.input == MechanismInput.MESSAGE:  # the token computes Z and e itself
            raw_hex = self.engine.sign_with_sm3(data, k)
        else:  # the token signs the e it is given, as is
            raw_hex = self.engine.sign(data, k)
        assert raw_hex is not None  # (r = 0 or s = 0: probability 2^-255)
        raw = bytes.fromhex(raw_hex)
        return raw_to_der(raw) if self.der else raw


@dataclass
class FakeSession:
    key: FakeKeyObject
    searches: list[dict[Attribute, Any]] = field(default_factory=list)

    def get_objects(self, attrs: dict[Attribute, Any]) -> Iterator[FakeKeyObject]:
        self.searches.append(dict(attrs))
        yield self.key


@dataclass
class NativeKey:
    store: KeyStore
    key: TokenKey
    public: SM2PublicKey
    engine: CryptSM2


@pytest.fixture
def native_key(new_token: NewToken) -> NativeKey:
    """A key whose scalar we know (we made it), installed into the token, and gmssl loaded
    with the same scalar to play the token's vendor mechanism."""
    _, store, _ = new_token("NATIVE")
    scalar = secrets.randbelow(N - 2) + 1
    public = SM2PrivateKey.from_scalar(scalar).public_key
    key = store.install_key(KeyKind.SM2, "native-key", bytearray(scalar.to_bytes(32, "big")))
    assert key.public_key == public
    assert store.public_key(key.uri) == public  # the public object went in with it
    engine = CryptSM2(private_key=f"{scalar:064x}", public_key="")
    engine.public_key = f"{public.x:064x}{public.y:064x}"  # set directly: x||y, no prefix
    return NativeKey(store, key, public, engine)


def _stand_in_for_the_token(
    monkeypatch: pytest.MonkeyPatch, store: KeyStore, key_object: FakeKeyObject
) -> FakeSession:
    session = FakeSession(key_object)

    def run(operation: Callable[[pkcs11.Session], Any]) -> Any:
        return operation(session)  # type: ignore[arg-type]

    monkeypatch.setattr(store.token, "run", run)
    return session


def test_native_digest_mechanism_signs_e_computed_on_the_host(
    native_key: NativeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = native_key.store
    signer = TokenSigner(
        store, native_key.key.uri, advertised_mechanisms={TASS_KOAL}, identity=TASS_HSM
    )
    assert signer.path == SigningPath.NATIVE
    assert signer.mechanism is not None
    assert signer.mechanism.vendor == "TASS/Koal"
    assert signer.public_key == native_key.public

    key_object = FakeKeyObject(native_key.engine, MechanismInput.DIGEST)
    session = _stand_in_for_the_token(monkeypatch, store, key_object)
    for message in (b"", b"abc", "一城一密".encode() * 50):
        signature = signer.sign(message)
        data, mechanism = key_object.calls[-1]
        assert mechanism == TASS_KOAL
        assert len(data) == 32
        assert data == sm2_digest(native_key.public, message)
        assert data.hex() == native_key.engine._sm3_z(message)  # gmssl's own SM3(Z || M)
        # end to end: gmssl signed exactly e, and our verifier (its own Z and e) accepts it
        native_key.public.verify(signature, message)
        with pytest.raises(InvalidSignature):
            native_key.public.verify(signature, message + b"x")
    # the signer looked for the private key the URI names, in the token
    assert session.searches[-1] == {
        Attribute.LABEL: "native-key",
        Attribute.ID: native_key.key.key_id,
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
    }


def test_native_message_mechanism_sends_the_message_unchanged(
    native_key: NativeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = native_key.store
    signer = TokenSigner(
        store, native_key.key.uri, advertised_mechanisms={SANSEC, TASS_KOAL}, identity=SANSEC_HSM
    )
    assert signer.mechanism is not None
    assert signer.mechanism.vendor == "Sansec"
    key_object = FakeKeyObject(native_key.engine, MechanismInput.MESSAGE)
    _stand_in_for_the_token(monkeypatch, store, key_object)
    message = b"QR payload bytes 0..266"
    signature = signer.sign(message)
    assert key_object.calls == [(message, SANSEC)]
    native_key.public.verify(signature, message)


def test_native_der_output_is_normalised_to_raw(
    native_key: NativeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = native_key.store
    der_vendor = VendorMechanism(
        "DER-vendor", 0x80001234, MechanismInput.DIGEST, SignatureEncoding.DER, "DER Co.", "*"
    )
    signer = TokenSigner(
        store,
        native_key.key.uri,
        vendor_mechanisms=[der_vendor],
        advertised_mechanisms={0x80001234},
        identity=TokenIdentity("DER Co.", "D1"),
    )
    key_object = FakeKeyObject(native_key.engine, MechanismInput.DIGEST, der=True)
    _stand_in_for_the_token(monkeypatch, store, key_object)
    message = b"city list 2031-01"
    signature = signer.sign(message)
    assert len(signature) == 64
    assert key_object.calls[0][1] == 0x80001234
    native_key.public.verify(signature, message)


def test_native_and_host_assisted_signatures_verify_alike(native_key: NativeKey) -> None:
    """The same installed key signs host-assisted too: one public key checks both paths."""
    store = native_key.store
    message = b"same key, other path"
    host = TokenSigner(store, native_key.key.uri)
    assert host.path == SigningPath.HOST_ASSISTED
    native_key.public.verify(host.sign(message), message)


def test_normalise_signature() -> None:
    key = SM2PrivateKey.generate()
    raw = key.sign(b"m")
    assert normalise_signature(raw, SignatureEncoding.RAW) == raw
    assert normalise_signature(raw_to_der(raw), SignatureEncoding.DER) == raw
    for wrong in (raw[:-1], raw + b"\x00", raw_to_der(raw)):
        with pytest.raises(JtcaError) as caught:
            normalise_signature(wrong, SignatureEncoding.RAW)
        assert caught.value.title == "Token error"
        assert f"{len(wrong)}-byte signature" in caught.value.message
    for junk in (raw, b"\x30\x00", raw_to_der(raw) + b"\x00"):
        with pytest.raises(InvalidSignature):
            normalise_signature(junk, SignatureEncoding.DER)


def test_a_wrong_sized_native_signature_is_refused(
    native_key: NativeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = native_key.store
    signer = TokenSigner(
        store, native_key.key.uri, advertised_mechanisms={TASS_KOAL}, identity=TASS_HSM
    )
    # a token that (wrongly) answers DER where the map says raw
    key_object = FakeKeyObject(native_key.engine, MechanismInput.DIGEST, der=True)
    _stand_in_for_the_token(monkeypatch, store, key_object)
    with pytest.raises(JtcaError, match="raw SM2 is 64 bytes"):
        signer.sign(b"m")
