"""SM2, SM3, SM4 against the standards' published vectors, and our encodings.

Vectors: tests/vectors/sm_standard_vectors.json (each with its provenance).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asn1crypto.algos import DSASignature
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm.errors import InvalidKey, InvalidSignature
from hsm.signer import SigningPath, SoftwareSigner
from hsm.sm.sm2 import (
    DEFAULT_ID,
    A,
    B,
    N,
    P,
    SM2PrivateKey,
    SM2PublicKey,
    _load_point,
    _public_api_load,
    der_to_raw,
    raw_to_der,
    sm2_digest,
    sm2_z,
)
from hsm.sm.sm3 import sm3
from hsm.sm.sm4 import sm4_decrypt_block, sm4_encrypt_block, sm4_key_check_value

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sm_standard_vectors.json").read_text()
)
SM2V = VECTORS["sm2_signature"]


# -- SM3 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS["sm3"]["vectors"], ids=["abc", "64-byte"])
def test_sm3_standard_vectors(vector: dict[str, str]) -> None:
    assert sm3(vector["message_ascii"].encode()).hex() == vector["digest"]


def test_sm3_of_parts_is_sm3_of_concatenation() -> None:
    assert sm3(b"ab", b"", b"c") == sm3(b"abc")


# -- SM4 -------------------------------------------------------------------------------------
def test_sm4_standard_example() -> None:
    v = VECTORS["sm4"]
    key, plain = bytes.fromhex(v["key"]), bytes.fromhex(v["plaintext"])
    assert sm4_encrypt_block(key, plain).hex() == v["ciphertext_once"]
    assert sm4_decrypt_block(key, bytes.fromhex(v["ciphertext_once"])) == plain


@pytest.mark.slow
def test_sm4_million_rounds() -> None:
    """GB/T 32907-2016 example 2: the same key encrypting the plaintext 1,000,000 times."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    v = VECTORS["sm4"]
    key = bytes.fromhex(v["key"])
    block = bytes.fromhex(v["plaintext"])
    # one ECB context for speed; the first round is checked against sm4_encrypt_block
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()  # noqa: S305
    assert encryptor.update(block) == sm4_encrypt_block(key, block)
    block = sm4_encrypt_block(key, block)
    for _ in range(v["rounds"] - 1):
        block = encryptor.update(block)
    assert block.hex() == v["ciphertext_after_rounds"]


def test_sm4_key_check_value() -> None:
    key = bytes.fromhex(VECTORS["sm4"]["key"])
    assert sm4_key_check_value(key) == sm4_encrypt_block(key, bytes(16))[:3]
    assert len(sm4_key_check_value(key, 8)) == 8


@pytest.mark.parametrize(("key", "block"), [(bytes(15), bytes(16)), (bytes(17), bytes(16))])
def test_sm4_refuses_wrong_key_size(key: bytes, block: bytes) -> None:
    with pytest.raises(InvalidKey, match="16 bytes"):
        sm4_encrypt_block(key, block)


def test_sm4_refuses_wrong_block_size() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        sm4_encrypt_block(bytes(16), bytes(15))


# -- SM2: the standard's worked example ------------------------------------------------------
def vector_public_key() -> SM2PublicKey:
    return SM2PublicKey.from_coordinates(int(SM2V["public_x"], 16), int(SM2V["public_y"], 16))


def vector_signature() -> bytes:
    return bytes.fromhex(SM2V["r"] + SM2V["s"])


def test_sm2_standard_signature_verifies() -> None:
    key = vector_public_key()
    message = SM2V["message_ascii"].encode()
    assert SM2V["user_id_ascii"].encode() == DEFAULT_ID
    key.verify(vector_signature(), message)
    key.verify_der(raw_to_der(vector_signature()), message)


def test_sm2_standard_z_and_e() -> None:
    key = vector_public_key()
    message = SM2V["message_ascii"].encode()
    assert sm2_z(key).hex().upper() == SM2V["z"]
    assert sm2_digest(key, message).hex().upper() == SM2V["e"]


def test_sm2_standard_private_key_gives_public_key() -> None:
    private = SM2PrivateKey.from_scalar(bytes.fromhex(SM2V["private_key"]))
    assert private.public_key == vector_public_key()
    assert private.public_key.x == int(SM2V["public_x"], 16)
    assert private.public_key.y == int(SM2V["public_y"], 16)


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("where", ["message", "r", "s"])
def test_sm2_standard_signature_tampered(where: str) -> None:
    key = vector_public_key()
    message = SM2V["message_ascii"].encode()
    signature = vector_signature()
    if where == "message":
        message = flip(message, 0)
    else:
        signature = flip(signature, 5 if where == "r" else 40)
    with pytest.raises(InvalidSignature):
        key.verify(signature, message)


@pytest.mark.parametrize(
    "signature",
    [
        bytes(64),
        bytes(32) + bytes.fromhex(SM2V["s"]),
        bytes.fromhex(SM2V["r"]) + bytes(32),
        N.to_bytes(32, "big") + bytes.fromhex(SM2V["s"]),
        bytes.fromhex(SM2V["r"]) + (N + 1).to_bytes(32, "big"),
        b"\xff" * 64,
        bytes(63),
    ],
    ids=["zero", "r0", "s0", "r=n", "s>n", "all-ff", "short"],
)
def test_sm2_out_of_range_signature_is_invalid(signature: bytes) -> None:
    with pytest.raises(InvalidSignature):
        vector_public_key().verify(signature, b"message digest")


# -- SM2: our own keys -------------------------------------------------------------------------
def test_signatures_verify_and_are_randomised() -> None:
    signer = SoftwareSigner.generate()
    assert signer.path == SigningPath.SOFTWARE
    assert signer.key_uri == "software:" + signer.public_key.compressed.hex()
    first, second = signer.sign(b"ride"), signer.sign(b"ride")
    assert len(first) == 64
    assert first != second
    signer.public_key.verify(first, b"ride")
    signer.public_key.verify(second, b"ride")
    with pytest.raises(InvalidSignature):
        signer.public_key.verify(first, b"ride!")


@pytest.mark.parametrize("scalar", [0, N - 1, N, -1])
def test_private_scalar_range(scalar: int) -> None:
    with pytest.raises(InvalidKey):
        SM2PrivateKey.from_scalar(scalar)


def test_key_serialisations_round_trip() -> None:
    private = SM2PrivateKey.generate()
    again = SM2PrivateKey.from_pem(private.pkcs8_pem())
    assert again.public_key == private.public_key
    public = private.public_key
    assert SM2PublicKey.from_pem(public.pem()) == public
    assert SM2PublicKey.from_spki_der(public.spki_der()) == public
    assert SM2PublicKey.from_bytes(public.uncompressed) == public
    assert hash(SM2PublicKey.from_bytes(public.compressed)) == hash(public)
    assert "PRIVATE" not in repr(private)


def test_sm2_encryption_round_trip_and_tamper() -> None:
    private = SM2PrivateKey.generate()
    sealed = private.public_key.encrypt(b"k" * 16)
    assert private.decrypt(sealed) == b"k" * 16
    with pytest.raises(InvalidKey):
        SM2PrivateKey.generate().decrypt(sealed)
    with pytest.raises(InvalidKey):
        private.decrypt(flip(sealed, len(sealed) - 1))


# -- encodings ---------------------------------------------------------------------------------
scalars = st.integers(min_value=1, max_value=N - 1)
small_or_high = st.one_of(
    scalars,
    st.integers(min_value=1, max_value=2**16),
    st.integers(min_value=2**255, max_value=N - 1),
)


@given(r=small_or_high, s=small_or_high)
def test_raw_der_round_trip(r: int, s: int) -> None:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = raw_to_der(raw)
    assert der == DSASignature({"r": r, "s": s}).dump()
    assert der_to_raw(der) == raw


@pytest.mark.parametrize(
    "der",
    [
        bytes.fromhex("3081060201010201 01".replace(" ", "")),  # long-form length: BER
        DSASignature({"r": 1, "s": 1}).dump() + b"\x00",  # trailing byte
        bytes.fromhex("3006020101020181"),  # truncated
        bytes.fromhex("30060201ff020101"),  # negative r
        bytes.fromhex("3006040101020101"),  # OCTET STRING instead of INTEGER
        bytes.fromhex("300702020001020101"),  # non-minimal INTEGER
        b"",
    ],
    ids=["ber-length", "trailing", "truncated", "negative", "wrong-type", "non-minimal", "empty"],
)
def test_der_to_raw_refuses_non_der(der: bytes) -> None:
    with pytest.raises(InvalidSignature):
        der_to_raw(der)


def non_residue_x() -> int:
    x = 1
    while True:
        rhs = (x**3 + A * x + B) % P
        if pow(rhs, (P - 1) // 2, P) != 1:
            return x
        x += 1


@pytest.mark.parametrize(
    ("point", "needle"),
    [
        (b"", "got 0 bytes"),
        (b"\x00" + bytes(32), "starting 0x00"),
        (b"\x05" + bytes(32), "starting 0x05"),
        (b"\x04" + bytes(32), "starting 0x04"),
        (b"\x02" + bytes(31), "got 32 bytes"),
        (b"\x02" + P.to_bytes(32, "big"), "not below the field prime"),
        (b"\x03" + non_residue_x().to_bytes(32, "big"), "not on the curve"),
    ],
    ids=["empty", "prefix-00", "prefix-05", "04-with-33", "short", "x=p", "non-residue"],
)
def test_points_refused(point: bytes, needle: str) -> None:
    with pytest.raises(InvalidKey, match=needle):
        SM2PublicKey.from_bytes(point)


def test_uncompressed_point_off_curve_refused() -> None:
    good = SM2PrivateKey.generate().public_key.uncompressed
    y = int.from_bytes(good[33:], "big")
    bad = good[:33] + ((y + 1) % P).to_bytes(32, "big")
    with pytest.raises(InvalidKey, match="not on the curve"):
        SM2PublicKey.from_bytes(bad)


@settings(max_examples=60, deadline=None)
@given(scalar=st.integers(min_value=1, max_value=N - 2))
def test_fast_point_loader_agrees_with_public_api(scalar: int) -> None:
    public = SM2PrivateKey.from_scalar(scalar).public_key
    for encoded in (public.compressed, public.uncompressed):
        fast, reference = (
            SM2PublicKey(_load_point(encoded)),
            SM2PublicKey(_public_api_load(encoded)),
        )
        assert fast.compressed == reference.compressed == public.compressed
        assert fast.uncompressed == reference.uncompressed
    # parity of y in the prefix
    assert public.compressed[0] == 2 + (public.y & 1)


def test_fast_loader_refuses_what_the_public_api_refuses() -> None:
    for bad in (
        b"\x03" + non_residue_x().to_bytes(32, "big"),
        b"\x02" + P.to_bytes(32, "big"),
    ):
        with pytest.raises(ValueError, match="Invalid public bytes"):
            _load_point(bad)
        with pytest.raises(ValueError, match="Invalid public bytes"):
            _public_api_load(bad)


def test_key_loaded_by_fast_loader_verifies() -> None:
    private = SM2PrivateKey.generate()
    loaded = SM2PublicKey.from_bytes(private.public_key.compressed)
    loaded.verify(private.sign(b"m"), b"m")


def test_keys_of_other_algorithms_are_invalid_keys() -> None:
    """A P-256 key is well-formed but not SM2: a clean InvalidKey, never a library exception."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from ca.certificates import CertificateError, certificate_info

    p256 = ec.generate_private_key(ec.SECP256R1())
    pem_private = p256.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    spki = p256.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidKey):
        SM2PrivateKey.from_pem(pem_private)
    with pytest.raises(InvalidKey):
        SM2PublicKey.from_spki_der(spki)
    with pytest.raises(InvalidKey):
        SM2PublicKey.from_pem(
            p256.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    # a P-256 certificate given to the SM2 certificate reader
    import datetime as dt

    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "p256")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        cx509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(p256.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(p256, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="not an SM2"):
        certificate_info(cert.public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize("data", [b"\x00", b"\x06" + bytes(64), b"\x07" + bytes(64), b""])
def test_fast_loader_refuses_infinity_and_hybrid(data: bytes) -> None:
    with pytest.raises(ValueError, match="point type"):
        _load_point(data)


def test_kcv_size_is_checked() -> None:
    with pytest.raises(ValueError, match="1-16 bytes"):
        sm4_key_check_value(bytes(16), -1)
