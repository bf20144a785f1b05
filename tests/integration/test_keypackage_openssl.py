"""Key packages and the OpenSSL 3 command line, both ways (docs/keypackages.md).

- Packages built with the OpenSSL command line alone (tests/vectors/keypackages, committed and
  built afresh by its script) are verified by jtca and imported into a SoftHSM2 token.
- The documented step-by-step OpenSSL opening of a package, extracted from docs/keypackages.md
  and run verbatim, opens packages jtca made (and stops on a tampered one).
- The GM/T 0016 ENVELOPEDKEYBLOB for SKF devices opens with OpenSSL: its ECCCIPHERBLOB rebuilt as
  a DER SM2Cipher decrypts with the recipient's key, the SM4-ECB scalar matches the public key.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import keys, pem

from hsm.envelope import PackageRefused, export_key, import_key, verify_package
from hsm.pkcs11.keys import KeyKind, KeyStore
from hsm.pkcs11.signer import TokenSigner
from hsm.pkcs11.token import Token
from hsm.signer import SoftwareSigner
from hsm.skf import (
    FIXED_SIZE,
    SGD_SM4_ECB,
    SkfBlobError,
    export_skf_blob,
    open_skf_blob,
    read_skf_blob,
)
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey
from hsm.sm.sm4 import sm4_key_check_value

NewToken = Callable[..., tuple[Token, KeyStore, str]]
REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors" / "keypackages"
DOC = REPO / "docs" / "keypackages.md"


def _openssl(*args: str, cwd: Path | None = None, data: bytes | None = None) -> bytes:
    run = subprocess.run(["openssl", *args], cwd=cwd, input=data, capture_output=True, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    return run.stdout


def _scalar(pem_bytes: bytes) -> bytearray:
    """The 32-byte scalar of a PKCS#8 PEM SM2 key (a test key)."""
    _, _, der = pem.unarmor(pem_bytes)
    value = keys.PrivateKeyInfo.load(der)["private_key"].parsed["private_key"].native
    return bytearray(int(value).to_bytes(32, "big"))


def _compressed_point_of(scalar_hex: str, tmp: Path) -> str:
    """d·G as OpenSSL computes it from an ECPrivateKey holding only the scalar."""
    conf = tmp / "ec.cnf"
    conf.write_text(
        f"asn1=SEQUENCE:k\n[k]\nv=INTEGER:1\nd=FORMAT:HEX,OCTETSTRING:{scalar_hex}\n"
        "c=EXPLICIT:0,OID:1.2.156.10197.1.301\n"
    )
    _openssl("asn1parse", "-genconf", str(conf), "-noout", "-out", str(tmp / "ec.der"))
    spki = _openssl(
        "ec",
        "-inform",
        "DER",
        "-in",
        str(tmp / "ec.der"),
        "-pubout",
        "-conv_form",
        "compressed",
        "-outform",
        "DER",
    )
    return spki[-33:].hex()


# -- OpenSSL-made packages, read and imported by jtca -------------------------------------
def _vectors(which: str, tmp_path: Path) -> Path:
    if which == "committed":
        return VECTORS
    out = tmp_path / "fresh"
    out.mkdir()
    for name in ("sender-sign.pem", "recipient-enc.pem", "city-sm2.pem", "city-sm4.hex"):
        if which == "fresh-same-keys":
            shutil.copy(VECTORS / name, out / name)
    run = subprocess.run(
        ["sh", str(VECTORS / "make_vectors.sh"), str(out)], capture_output=True, check=False
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    return out


@pytest.mark.parametrize("which", ["committed", "fresh-new-keys", "fresh-same-keys"])
def test_openssl_made_packages_verify_and_import(
    new_token: NewToken, tmp_path: Path, which: str
) -> None:
    folder = _vectors(which, tmp_path)
    sender = SM2PrivateKey.from_pem((folder / "sender-sign.pem").read_bytes()).public_key
    city_sm2 = SM2PrivateKey.from_pem((folder / "city-sm2.pem").read_bytes()).public_key
    city_sm4 = bytes.fromhex((folder / "city-sm4.hex").read_text().strip())
    _, province, _ = new_token("PROVINCE")
    recipient = province.install_key(
        KeyKind.SM2,
        "vector-recipient-enc",
        _scalar((folder / "recipient-enc.pem").read_bytes()),
        decrypt=True,
    )
    sm4_package = (folder / "package-sm4.der").read_bytes()
    sm2_package = (folder / "package-sm2.der").read_bytes()

    info = verify_package(sm4_package, [sender])
    assert (info.kind, info.key_label, info.recipient_name) == (
        KeyKind.SM4,
        "vector-city-sm4",
        "vector province",
    )
    assert info.check_value == sm4_key_check_value(city_sm4)
    imported = import_key(province, sm4_package, transport_key=recipient, trusted_senders=[sender])
    assert province.with_key_material(imported.uri, bytes) == city_sm4

    info = verify_package(sm2_package, [sender])
    assert info.kind == KeyKind.SM2
    assert info.check_value == city_sm2.compressed
    imported = import_key(province, sm2_package, transport_key=recipient, trusted_senders=[sender])
    assert imported.public_key == city_sm2
    message = b"signed by the key OpenSSL packaged"
    city_sm2.verify(TokenSigner(province, imported.uri).sign(message), message)

    # and the same OpenSSL-made packages are refused like any other
    with pytest.raises(PackageRefused) as caught:
        import_key(province, sm4_package, transport_key=recipient, trusted_senders=[sender])
    assert caught.value.reason == "replayed"
    with pytest.raises(PackageRefused) as caught:
        verify_package(sm2_package, [SM2PrivateKey.generate().public_key])
    assert caught.value.reason == "untrusted-sender"


# -- jtca-made packages, opened by the documented OpenSSL steps ---------------------------
def _documented_steps() -> str:
    text = DOC.read_text()
    found = re.search(
        r"<!-- openssl-open:begin -->\n```sh\n(.*?)```\n<!-- openssl-open:end -->", text, re.S
    )
    assert found, "docs/keypackages.md lost its OpenSSL block"
    return found.group(1)


def _run_documented(package: bytes, recipient_pem: Path, sender_pub: Path, work: Path) -> str:
    work.mkdir()
    (work / "package.der").write_bytes(package)
    env = os.environ | {
        "PACKAGE": str(work / "package.der"),
        "RECIPIENT_KEY": str(recipient_pem),
        "SENDER_PUB": str(sender_pub),
    }
    run = subprocess.run(
        ["sh", "-c", _documented_steps()], cwd=work, env=env, capture_output=True, check=False
    )
    if run.returncode != 0:
        raise AssertionError((run.stdout + run.stderr).decode(errors="replace"))
    return run.stdout.decode()


def test_the_documented_openssl_steps_open_jtca_packages(
    new_token: NewToken, tmp_path: Path
) -> None:
    _, ministry, _ = new_token("MINISTRY")
    sender = TokenSigner(ministry, ministry.generate_sm2("ministry-signing").uri)
    city_sm4 = ministry.generate_sm4("city-0571-sm4")
    city_sm2 = ministry.generate_sm2("city-0571-sm2")
    recipient = SM2PrivateKey.generate()
    (tmp_path / "recipient.pem").write_bytes(recipient.pkcs8_pem())
    (tmp_path / "sender.pub").write_bytes(sender.public_key.pem())

    for key in (city_sm4, city_sm2):
        package = export_key(
            ministry,
            key,
            sender=sender,
            recipient_transport_key=recipient.public_key,
            recipient_name="浙江省 province",
        )
        out = _run_documented(
            package, tmp_path / "recipient.pem", tmp_path / "sender.pub", tmp_path / key.label
        )
        value = ministry.with_key_material(key.uri, bytes).hex()
        assert f"opened: key {value}," in out
        assert "Signature Verified Successfully" in out
        if key.kind == KeyKind.SM2:
            assert key.public_key is not None
            assert _compressed_point_of(value, tmp_path) == key.public_key.compressed.hex()

    # the steps stop on a package whose content was changed after signing, and on a package
    # signed by someone else
    package = bytearray(
        export_key(
            ministry,
            city_sm4,
            sender=sender,
            recipient_transport_key=recipient.public_key,
            recipient_name="x",
        )
    )
    package[100] ^= 0x01  # inside the EnvelopedData (the SM2Cipher of the content key)
    with pytest.raises(AssertionError):
        _run_documented(
            bytes(package), tmp_path / "recipient.pem", tmp_path / "sender.pub", tmp_path / "t1"
        )
    stranger = SoftwareSigner.generate()
    forged = export_key(
        ministry,
        city_sm4,
        sender=stranger,
        recipient_transport_key=recipient.public_key,
        recipient_name="x",
    )
    with pytest.raises(AssertionError, match="Signature Verification Failure"):
        _run_documented(
            forged, tmp_path / "recipient.pem", tmp_path / "sender.pub", tmp_path / "t2"
        )


# -- GM/T 0016 ENVELOPEDKEYBLOB ---------------------------------------------------------------
def test_skf_blob_opens_with_openssl_and_matches_the_public_key(
    new_token: NewToken, tmp_path: Path
) -> None:
    _, ministry, _ = new_token("MINISTRY")
    city = ministry.generate_sm2("city-0755-sm2")
    assert city.public_key is not None
    device = SM2PrivateKey.generate()  # the SKF device's encryption key
    (tmp_path / "device.pem").write_bytes(device.pkcs8_pem())
    blob = export_skf_blob(ministry, city, recipient_transport_key=device.public_key)

    # the layout, field by field (little-endian ULONGs, right-aligned 64-byte fields)
    assert len(blob) == FIXED_SIZE + 16
    assert struct.unpack_from("<III", blob, 0) == (1, SGD_SM4_ECB, 256)
    assert blob[12 : 12 + 32] == bytes(32)  # cbEncryptedPriKey: 32 bytes right-aligned
    assert struct.unpack_from("<I", blob, 76) == (256,)  # PubKey.BitLen
    assert blob[80 : 80 + 32] == bytes(32)
    assert blob[112:144] == city.public_key.x.to_bytes(32, "big")
    assert blob[176:208] == city.public_key.y.to_bytes(32, "big")
    assert struct.unpack_from("<I", blob, FIXED_SIZE - 4) == (16,)  # CipherLen
    parsed = read_skf_blob(blob)
    assert parsed.public_key == city.public_key

    # OpenSSL opens the ECCCIPHERBLOB (as the DER SM2Cipher) and SM4-ECB-decrypts the scalar
    (tmp_path / "cipher.der").write_bytes(parsed.sm2_cipher_der())
    symmetric = _openssl(
        "pkeyutl",
        "-decrypt",
        "-inkey",
        str(tmp_path / "device.pem"),
        "-in",
        str(tmp_path / "cipher.der"),
    )
    assert len(symmetric) == 16
    scalar = _openssl(
        "enc",
        "-d",
        "-sm4-ecb",
        "-nopad",
        "-K",
        symmetric.hex(),
        data=parsed.encrypted_private_key,
    )
    assert scalar.hex() == ministry.with_key_material(city.uri, bytes).hex()
    assert _compressed_point_of(scalar.hex(), tmp_path) == city.public_key.compressed.hex()
    # jtca's own reader agrees
    assert bytes(open_skf_blob(parsed, device)) == scalar
    # another device cannot open it
    with pytest.raises(Exception, match="decrypt"):
        open_skf_blob(parsed, SM2PrivateKey.generate())


def test_skf_blob_reader_refuses_what_is_not_one(new_token: NewToken) -> None:
    _, ministry, _ = new_token("MINISTRY")
    city = ministry.generate_sm2("city-0755-sm2")
    blob = export_skf_blob(
        ministry, city, recipient_transport_key=SM2PrivateKey.generate().public_key
    )
    for bad, words in (
        (blob[:-1], "CipherLen"),
        (blob + b"\x00", "CipherLen"),
        (blob[:100], "at least"),
        (struct.pack("<I", 0x402) + blob[4:], "ulSymmAlgID"),
        (struct.pack("<I", 2) + blob[4:], "Version"),
        (blob[:12] + b"\x01" + blob[13:], "cbEncryptedPriKey"),
        (blob[:112] + bytes(32) + blob[144:], "PubKey"),
    ):
        with pytest.raises(SkfBlobError, match=words):
            read_skf_blob(bad)
    sm4 = ministry.generate_sm4("city-0755-sm4")
    with pytest.raises(Exception, match="SM2 key pair"):
        export_skf_blob(
            ministry,
            sm4,
            recipient_transport_key=SM2PublicKey.from_bytes(
                SM2PrivateKey.generate().public_key.compressed
            ),
        )
