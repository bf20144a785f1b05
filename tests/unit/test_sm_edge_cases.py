"""SM edge cases beyond the standard vectors (those are in test_sm2.py and test_sm3_sm4.py):
the software signer's identity, SM2 encryption, keys of other algorithms, the fast point loader's
own prefix check, the KCV size."""

from __future__ import annotations

import pytest

from hsm.errors import InvalidKey, InvalidSignature
from hsm.signer import SigningPath, SoftwareSigner
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey, _load_point
from hsm.sm.sm4 import sm4_key_check_value


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


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


def test_sm2_encryption_round_trip_and_tamper() -> None:
    private = SM2PrivateKey.generate()
    sealed = private.public_key.encrypt(b"k" * 16)
    assert private.decrypt(sealed) == b"k" * 16
    with pytest.raises(InvalidKey):
        SM2PrivateKey.generate().decrypt(sealed)
    with pytest.raises(InvalidKey):
        private.decrypt(flip(sealed, len(sealed) - 1))


def test_keys_of_other_algorithms_are_invalid_keys() -> None:
    """A P-256 key is well-formed but not SM2: a clean InvalidKey, never a library exception."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from ca.pki.x509 import CertificateError, certificate_info

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
    with pytest.raises(CertificateError, match="not SM2-with-SM3"):
        certificate_info(cert.public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize("data", [b"\x00", b"\x06" + bytes(64), b"\x07" + bytes(64), b""])
def test_fast_loader_refuses_infinity_and_hybrid(data: bytes) -> None:
    with pytest.raises(ValueError, match="point type"):
        _load_point(data)


def test_kcv_size_is_checked() -> None:
    with pytest.raises(ValueError, match="1-16 bytes"):
        sm4_key_check_value(bytes(16), -1)
