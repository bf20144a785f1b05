"""gmssl 3.2.2, a pure-Python implementation with no code in common with Tongsuo or OpenSSL, as
an independent judge of hsm.sm: SM2 signatures both ways, SM3 and SM4 on random inputs, and the
GB/T 32918.5-2017 example (tests/vectors/sm2.json) reproduced from its k.

gmssl is a test-only dependency and never runs in the product: its nonces come from
``random.choice`` and its key handling has the quirks documented below.

gmssl quirks met here (gmssl/sm2.py, version 3.2.2):

* ``CryptSM2.__init__`` does ``public_key.lstrip("04")`` when the hex starts with "04", meant to
  drop the uncompressed-point prefix. ``str.lstrip`` strips *every* leading '0' and '4'
  character, so "04" + x || y loses more than the prefix whenever x's hex begins with 0 or 4,
  and an unprefixed x || y is mangled when x begins with the byte 0x04 (one key in 256).
  The key is then 126 hex digits and verification crashes (TypeError) or fails. Workaround:
  construct with ``public_key=""`` and set the attribute afterwards to the zero-padded
  128-hex-digit x || y, without prefix (``_gmssl``). ``test_gmssl_constructor_mangles_…``
  shows the bug, so the workaround is known to be needed.
* The public key must be 128 hex digits (two zero-padded 64-digit coordinates) with no 04
  prefix; the private key is parsed with int(…, 16), so leading zeros are harmless there.
* ``sm3_hash`` appends its padding to the list it is given: pass a fresh list each time.
* ``CryptSM4.crypt_ecb`` pads with PKCS#7 unless ``padding_mode`` is neither 0 (PKCS7) nor
  1 (ZERO); a single block needs no padding, so we pass 2.
* ``CryptSM2.verify`` does not check 1 ≤ r, s < n; only our refusals are tested for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gmssl import sm2 as gm_sm2
from gmssl.sm3 import sm3_hash
from gmssl.sm4 import SM4_DECRYPT, SM4_ENCRYPT, CryptSM4
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hsm.errors import InvalidSignature
from hsm.sm.sm2 import N, SM2PrivateKey, SM2PublicKey, raw_to_der, sm2_digest, sm2_z
from hsm.sm.sm3 import sm3
from hsm.sm.sm4 import sm4_decrypt_block, sm4_encrypt_block

VECTOR: dict[str, str] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sm2.json").read_text()
)["vectors"][0]
VECTOR_D = int(VECTOR["private_key"], 16)

# Scalars whose public keys trip gmssl's key parsing (found by walking d = 1, 2, …):
D_X_STARTS_04 = 11  # x = 04b3cb10…: the unprefixed hex starts with "04"
D_X_STARTS_00 = 327  # x = 00d06204…: a leading zero byte ("04" + hex loses it to lstrip)
D_Y_STARTS_00 = 107  # y = 007b8326…
GMSSL_NO_PADDING = 2

scalars = st.integers(min_value=1, max_value=N - 2)


def _xy_hex(public: SM2PublicKey) -> str:
    """x || y as gmssl wants it: 128 hex digits, each coordinate zero-padded, no 04 prefix."""
    text = f"{public.x:064x}{public.y:064x}"
    assert len(text) == 128
    return text


def _gmssl(public: SM2PublicKey, d: int | None = None) -> gm_sm2.CryptSM2:
    """A gmssl SM2 context; the public key is set after construction (see the module doc)."""
    crypt = gm_sm2.CryptSM2(private_key="" if d is None else f"{d:064x}", public_key="")
    crypt.public_key = _xy_hex(public)
    return crypt


def _gmssl_sign(d: int, message: bytes) -> bytes:
    crypt = _gmssl(SM2PrivateKey.from_scalar(d).public_key, d)
    signature = crypt.sign_with_sm3(message)
    assert signature is not None  # None only for r = 0, r + k = n or s = 0 (probability ~2^-255)
    assert len(signature) == 128  # raw r || s, 64 hex digits each
    return bytes.fromhex(signature)


def _gmssl_sm4(key: bytes, block: bytes, mode: int) -> bytes:
    crypt = CryptSM4(padding_mode=GMSSL_NO_PADDING)
    crypt.set_key(key, mode)
    return crypt.crypt_ecb(block)


# -- gmssl itself is right on the standard's example ---------------------------------------------
def test_gmssl_reproduces_the_gbt_32918_5_example() -> None:
    """With the standard's k, gmssl's signing yields exactly the published r and s, and its Z/e
    agree with ours; a judge that failed here would prove nothing below."""
    public = SM2PrivateKey.from_scalar(VECTOR_D).public_key
    crypt = _gmssl(public, VECTOR_D)
    message = VECTOR["message_ascii"].encode("ascii")
    e = bytes.fromhex(crypt._sm3_z(message))  # gmssl's e = SM3(Z || M), default ID
    assert e.hex().upper() == VECTOR["e"]
    assert e == sm2_digest(public, message)
    assert sm3(sm2_z(public), message) == e
    signature = crypt.sign(e, VECTOR["k"])
    assert signature == (VECTOR["r"] + VECTOR["s"]).lower()
    assert crypt.verify_with_sm3(signature, message) is True
    public.verify(bytes.fromhex(signature), message)


def test_gmssl_default_id_is_ours() -> None:
    """gmssl hard-codes ENTL = 0x0080 and ID = 31323334353637383132333435363738 in _sm3_z."""
    public = SM2PrivateKey.from_scalar(D_Y_STARTS_00).public_key
    assert bytes.fromhex(_gmssl(public)._sm3_z(b"abc")) == sm2_digest(public, b"abc")


def test_gmssl_constructor_mangles_a_key_whose_x_starts_with_04() -> None:
    """The quirk behind _gmssl: constructing with the key truncates it to 126 digits."""
    public = SM2PrivateKey.from_scalar(D_X_STARTS_04).public_key
    assert public.uncompressed[1] == 0x04
    naive = gm_sm2.CryptSM2(private_key="", public_key=_xy_hex(public))
    assert len(naive.public_key) == 126
    prefixed = SM2PrivateKey.from_scalar(D_X_STARTS_00).public_key
    naive_prefixed = gm_sm2.CryptSM2(private_key="", public_key="04" + _xy_hex(prefixed))
    assert len(naive_prefixed.public_key) < 128
    # the workaround keeps all 128 digits, and gmssl then verifies
    assert len(_gmssl(public).public_key) == 128
    signature = SM2PrivateKey.from_scalar(D_X_STARTS_04).sign(b"quirk")
    assert _gmssl(public).verify_with_sm3(signature.hex(), b"quirk") is True


# -- ours -> gmssl ---------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(d=scalars, message=st.binary(max_size=300))
@example(d=D_X_STARTS_04, message=b"x starts with 04")
@example(d=D_X_STARTS_00, message=b"x starts with 00")
@example(d=D_Y_STARTS_00, message=b"y starts with 00")
@example(d=VECTOR_D, message=b"")
def test_gmssl_verifies_our_signatures(d: int, message: bytes) -> None:
    private = SM2PrivateKey.from_scalar(d)
    signature = private.sign(message)
    judge = _gmssl(private.public_key)
    assert judge.verify_with_sm3(signature.hex(), message) is True
    assert judge.verify_with_sm3(signature.hex(), message + b"\x01") is False
    tampered_s = signature[:63] + bytes([signature[63] ^ 1])
    assert judge.verify_with_sm3(tampered_s.hex(), message) is False


def test_gmssl_refuses_our_signature_under_another_key() -> None:
    signature = SM2PrivateKey.from_scalar(VECTOR_D).sign(b"m")
    other = SM2PrivateKey.from_scalar(VECTOR_D + 1).public_key
    assert _gmssl(other).verify_with_sm3(signature.hex(), b"m") is False


# -- gmssl -> ours ---------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(d=scalars, message=st.binary(max_size=300))
@example(d=D_X_STARTS_04, message=b"x starts with 04")
@example(d=D_X_STARTS_00, message=b"x starts with 00")
@example(d=1, message=b"d = 1")
@example(d=N - 2, message=b"d = n - 2")
def test_we_verify_gmssl_signatures(d: int, message: bytes) -> None:
    raw = _gmssl_sign(d, message)
    public = SM2PrivateKey.from_scalar(d).public_key
    public.verify(raw, message)
    public.verify_der(raw_to_der(raw), message)
    SM2PublicKey.from_bytes(public.compressed).verify(raw, message)
    with pytest.raises(InvalidSignature):
        public.verify(raw, message + b"\x01")


def test_gmssl_signatures_are_randomised_and_all_verify() -> None:
    public = SM2PrivateKey.from_scalar(VECTOR_D).public_key
    signatures = {_gmssl_sign(VECTOR_D, b"same") for _ in range(4)}
    assert len(signatures) == 4
    for raw in signatures:
        public.verify(raw, b"same")


# -- SM3 -------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400))
@example(data=b"")
@example(data=b"abc")
@example(data=b"\x00" * 55)  # padding fits the block
@example(data=b"\x00" * 56)  # padding needs a second block
@example(data=b"\xff" * 64)
@example(data=b"\x80" * 119)
def test_gmssl_sm3_agrees_with_ours(data: bytes) -> None:
    assert sm3_hash(list(data)) == sm3(data).hex()


# -- SM4 -------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), block=st.binary(min_size=16, max_size=16))
@example(key=bytes(16), block=bytes(16))
@example(key=b"\xff" * 16, block=b"\xff" * 16)
def test_gmssl_sm4_agrees_with_ours(key: bytes, block: bytes) -> None:
    encrypted = sm4_encrypt_block(key, block)
    assert _gmssl_sm4(key, block, SM4_ENCRYPT) == encrypted
    assert _gmssl_sm4(key, encrypted, SM4_DECRYPT) == block
    assert sm4_decrypt_block(key, _gmssl_sm4(key, block, SM4_ENCRYPT)) == block
