"""Outside judges of our SM2: the OpenSSL 3 CLI and the pure-Python gmssl package.

OpenSSL verifies our signatures (with the default ID passed as distid, since OpenSSL 3.0
defaults to an empty ID) and signs messages we verify; gmssl, an independent implementation,
does the same in both directions. gmssl is a test dependency only (its nonces come from
``random``).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from gmssl import func as gm_func
from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3
from gmssl import sm4 as gm_sm4
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm.errors import InvalidSignature
from hsm.sm.sm2 import N, SM2PrivateKey, SM2PublicKey, der_to_raw, raw_to_der
from hsm.sm.sm3 import sm3
from hsm.sm.sm4 import sm4_encrypt_block

DISTID = "distid:1234567812345678"
VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sm_standard_vectors.json").read_text()
)


def openssl() -> str:
    found = shutil.which("openssl")
    assert found, "the OpenSSL 3 CLI is required (scripts/bootstrap installs Debian's openssl)"
    version = subprocess.run([found, "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("OpenSSL 3"), version.stdout
    return found


def openssl_verify(
    tmp: Path, public: SM2PublicKey, message: bytes, der: bytes, *, distid: bool = True
) -> subprocess.CompletedProcess[str]:
    (tmp / "pub.pem").write_bytes(public.pem())
    (tmp / "msg").write_bytes(message)
    (tmp / "sig").write_bytes(der)
    args = [
        openssl(),
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
    ]
    if distid:
        args += ["-pkeyopt", DISTID]
    return subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("size", [0, 1, 267, 1 << 20], ids=["empty", "1B", "267B", "1MiB"])
def test_openssl_verifies_ours(tmp_path: Path, size: int) -> None:
    private = SM2PrivateKey.generate()
    message = secrets.token_bytes(size)
    signature = raw_to_der(private.sign(message))
    ok = openssl_verify(tmp_path, private.public_key, message, signature)
    assert ok.returncode == 0, ok.stderr
    assert "Signature Verified Successfully" in ok.stdout
    tampered = openssl_verify(tmp_path, private.public_key, message + b"x", signature)
    assert tampered.returncode != 0


def test_openssl_without_distid_rejects_ours(tmp_path: Path) -> None:
    """OpenSSL 3.0 hashes Z over an empty ID unless told: our Z is over 1234567812345678."""
    private = SM2PrivateKey.generate()
    signature = raw_to_der(private.sign(b"ride"))
    assert openssl_verify(tmp_path, private.public_key, b"ride", signature).returncode == 0
    assert (
        openssl_verify(tmp_path, private.public_key, b"ride", signature, distid=False).returncode
        != 0
    )


def test_openssl_verifies_the_standard_vector(tmp_path: Path) -> None:
    v = VECTORS["sm2_signature"]
    public = SM2PublicKey.from_coordinates(int(v["public_x"], 16), int(v["public_y"], 16))
    der = raw_to_der(bytes.fromhex(v["r"] + v["s"]))
    result = openssl_verify(tmp_path, public, v["message_ascii"].encode(), der)
    assert result.returncode == 0, result.stderr


def test_ours_verifies_openssl(tmp_path: Path) -> None:
    tool = openssl()
    key, pub = tmp_path / "key.pem", tmp_path / "pub.pem"
    subprocess.run(
        [tool, "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True, capture_output=True
    )
    subprocess.run(
        [tool, "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
        check=True,
        capture_output=True,
    )
    public = SM2PublicKey.from_pem(pub.read_bytes())
    assert SM2PrivateKey.from_pem(key.read_bytes()).public_key == public
    for size in (0, 33, 4096):
        message = secrets.token_bytes(size)
        (tmp_path / "msg").write_bytes(message)
        subprocess.run(
            [
                tool,
                "pkeyutl",
                "-sign",
                "-inkey",
                str(key),
                "-rawin",
                "-in",
                str(tmp_path / "msg"),
                "-out",
                str(tmp_path / "sig"),
                "-digest",
                "sm3",
                "-pkeyopt",
                DISTID,
            ],
            check=True,
            capture_output=True,
        )
        der = (tmp_path / "sig").read_bytes()
        public.verify_der(der, message)
        public.verify(der_to_raw(der), message)
        with pytest.raises(InvalidSignature):
            public.verify(der_to_raw(der), message + b"\x00")


def test_openssl_decrypts_our_sm2_ciphertext(tmp_path: Path) -> None:
    private = SM2PrivateKey.generate()
    (tmp_path / "key.pem").write_bytes(private.pkcs8_pem())
    (tmp_path / "ct").write_bytes(private.public_key.encrypt(b"envelope key 16B"))
    result = subprocess.run(
        [
            openssl(),
            "pkeyutl",
            "-decrypt",
            "-inkey",
            str(tmp_path / "key.pem"),
            "-in",
            str(tmp_path / "ct"),
        ],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"envelope key 16B"


# -- gmssl ---------------------------------------------------------------------------------------
def gmssl_engine(private_hex: str, public: SM2PublicKey) -> gm_sm2.CryptSM2:
    engine = gm_sm2.CryptSM2(private_key=private_hex, public_key="")
    # gmssl's constructor strips *every* leading '0' and '4' from a key given as "04…"
    # (str.lstrip): set the 128-hex-digit x || y directly instead.
    engine.public_key = f"{public.x:064x}{public.y:064x}"
    return engine


@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=400))
def test_gmssl_verifies_ours(message: bytes) -> None:
    private = SM2PrivateKey.generate()
    signature = private.sign(message)
    engine = gmssl_engine("", private.public_key)
    assert engine.verify_with_sm3(signature.hex(), message)
    assert not engine.verify_with_sm3(signature.hex(), message + b"!")


@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=400), d=st.integers(min_value=1, max_value=N - 2))
def test_ours_verifies_gmssl(message: bytes, d: int) -> None:
    private = SM2PrivateKey.from_scalar(d)
    engine = gmssl_engine(f"{d:064x}", private.public_key)
    nonce = f"{secrets.randbelow(N - 1) + 1:064x}"  # a CSPRNG nonce, not gmssl's random
    signature = bytes.fromhex(engine.sign_with_sm3(message, nonce))
    private.public_key.verify(signature, message)


@settings(max_examples=50, deadline=None)
@given(message=st.binary(max_size=300))
def test_gmssl_sm3_agrees(message: bytes) -> None:
    assert gm_sm3.sm3_hash(gm_func.bytes_to_list(message)) == sm3(message).hex()


@settings(max_examples=50, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), block=st.binary(min_size=16, max_size=16))
def test_gmssl_sm4_agrees(key: bytes, block: bytes) -> None:
    engine = gm_sm4.CryptSM4()
    engine.set_key(key, gm_sm4.SM4_ENCRYPT)
    ours = sm4_encrypt_block(key, block)
    # gmssl pads ECB input with PKCS#7: the first block is the block cipher's output
    assert engine.crypt_ecb(block)[:16] == ours
