"""SM2 X.509 certificates judged by the OpenSSL 3 CLI, signed in software and in a token."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509

from ca.certificates import (
    LIST_SIGNING_EKU,
    CertificateError,
    certificate_info,
    issue_certificate,
    pem,
    self_signed_root,
    verify_certificate,
)
from hsm.errors import InvalidSignature
from hsm.pkcs11.signer import TokenSigner
from hsm.signer import Signer, SoftwareSigner

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ROOT = {"CN": "交通运输部 交通一卡通根CA 2026", "O": "中华人民共和国交通运输部", "C": "CN"}
DISTID = "distid:1234567812345678"


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("openssl")
    assert tool, "the OpenSSL 3 CLI is required (scripts/bootstrap installs it)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, check=False)


def make_pair(root: Signer, leaf_key: Signer) -> tuple[bytes, bytes]:
    root_der = self_signed_root(
        root, subject=ROOT, serial=0x1234, not_before=NOW, not_after=NOW + timedelta(days=3650)
    )
    leaf_der = issue_certificate(
        root,
        subject={"CN": "交通一卡通名单签名 2026", "C": "CN"},
        subject_public_key=leaf_key.public_key,
        issuer_name=ROOT,
        serial=2,
        not_before=NOW,
        not_after=NOW + timedelta(days=365),
        ca=False,
        path_length=None,
        key_usage={"digital_signature"},
        extended_key_usage=[LIST_SIGNING_EKU],
    )
    return root_der, leaf_der


def openssl_checks_root_self_signature(
    tmp: Path, root_der: bytes
) -> subprocess.CompletedProcess[str]:
    cert = x509.Certificate.load(root_der)
    (tmp / "tbs.der").write_bytes(cert["tbs_certificate"].dump())
    (tmp / "sig.der").write_bytes(bytes(cert["signature_value"].native))
    (tmp / "root.pem").write_bytes(pem(root_der))
    openssl("x509", "-in", "root.pem", "-pubkey", "-noout", "-out", "root-pub.pem", cwd=tmp)
    return openssl(
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "root-pub.pem",
        "-rawin",
        "-in",
        "tbs.der",
        "-sigfile",
        "sig.der",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        cwd=tmp,
    )


def check_with_openssl(tmp: Path, root_der: bytes, leaf_der: bytes) -> None:
    (tmp / "root.pem").write_bytes(pem(root_der))
    (tmp / "leaf.pem").write_bytes(pem(leaf_der))
    text = openssl("x509", "-in", "root.pem", "-noout", "-text", cwd=tmp)
    assert text.returncode == 0, text.stderr
    assert "SM2-with-SM3" in text.stdout
    assert "CA:TRUE" in text.stdout
    at = str(int((NOW + timedelta(days=1)).timestamp()))
    chain = openssl(
        "verify", "-attime", at, "-vfyopt", DISTID, "-CAfile", "root.pem", "leaf.pem", cwd=tmp
    )
    assert chain.returncode == 0, chain.stderr
    assert "leaf.pem: OK" in chain.stdout
    selfsig = openssl_checks_root_self_signature(tmp, root_der)
    assert selfsig.returncode == 0, selfsig.stderr


def test_software_signed_chain(tmp_path: Path) -> None:
    root, leaf = SoftwareSigner.generate(), SoftwareSigner.generate()
    root_der, leaf_der = make_pair(root, leaf)
    check_with_openssl(tmp_path, root_der, leaf_der)
    info = verify_certificate(leaf_der, root.public_key)
    assert info.public_key == leaf.public_key
    assert not info.is_ca
    assert info.extended_key_usage == (LIST_SIGNING_EKU,)
    assert info.key_usage == {"digital_signature"}
    root_info = verify_certificate(root_der, root.public_key)
    assert root_info.is_ca
    assert root_info.subject == root_info.issuer


def test_token_signed_chain(tmp_path: Path, new_token) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = new_token("CERT")
    root = TokenSigner(store, store.generate_sm2("root").uri)
    leaf = TokenSigner(store, store.generate_sm2("list").uri)
    root_der, leaf_der = make_pair(root, leaf)
    check_with_openssl(tmp_path, root_der, leaf_der)


def test_wrong_issuer_and_tampering_fail(tmp_path: Path) -> None:
    root, impostor, leaf = (SoftwareSigner.generate() for _ in range(3))
    root_der, _ = make_pair(root, leaf)
    _, forged = make_pair(impostor, leaf)  # same names, signed by another key
    (tmp_path / "root.pem").write_bytes(pem(root_der))
    (tmp_path / "forged.pem").write_bytes(pem(forged))
    refused = openssl(
        "verify", "-vfyopt", DISTID, "-CAfile", "root.pem", "forged.pem", cwd=tmp_path
    )
    assert refused.returncode != 0
    with pytest.raises(InvalidSignature):
        verify_certificate(forged, root.public_key)
    tampered = bytearray(root_der)
    tampered[root_der.index(b"2026")] ^= 0x01
    with pytest.raises((InvalidSignature, CertificateError)):
        verify_certificate(bytes(tampered), root.public_key)
    assert openssl_checks_root_self_signature(tmp_path, bytes(tampered)).returncode != 0


def test_ours_reads_an_openssl_certificate(tmp_path: Path) -> None:
    assert openssl("genpkey", "-algorithm", "SM2", "-out", "key.pem", cwd=tmp_path).returncode == 0
    made = openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "key.pem",
        "-sm3",
        "-sigopt",
        DISTID,
        "-subj",
        "/CN=openssl-made",
        "-days",
        "1",
        "-out",
        "c.pem",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    der = openssl("x509", "-in", "c.pem", "-outform", "DER", "-out", "c.der", cwd=tmp_path)
    assert der.returncode == 0
    data = (tmp_path / "c.der").read_bytes()
    info = certificate_info(data)
    assert info.subject == "common_name=openssl-made"
    verify_certificate(data, info.public_key)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"serial": 0}, "serial 0"),
        ({"serial": 1 << 160}, "20 octets"),
        ({"not_after": NOW - timedelta(days=1)}, "later than not_before"),
        ({"subject": {"O": "no common name"}}, "needs CN"),
        ({"key_usage": {"fly"}}, "key usage"),
    ],
    ids=["fail/serial-zero", "fail/serial-huge", "fail/validity", "fail/no-cn", "fail/usage"],
)
def test_bad_input(kwargs: dict[str, object], needle: str) -> None:
    signer = SoftwareSigner.generate()
    args: dict[str, object] = dict(
        subject={"CN": "x"},
        subject_public_key=signer.public_key,
        issuer_name={"CN": "x"},
        serial=1,
        not_before=NOW,
        not_after=NOW + timedelta(days=1),
        ca=False,
        path_length=None,
        key_usage={"digital_signature"},
    )
    args.update(kwargs)
    with pytest.raises(CertificateError, match=needle):
        issue_certificate(signer, **args)  # type: ignore[arg-type]
