"""SM2 X.509 certificates from ca.pki.x509, judged by the OpenSSL 3 CLI (issue #4 point 5).

OpenSSL is the outside judge: it must be installed (the tests fail, never skip, without it).
The commands run here are the ones ca/pki/x509.py documents for docs/ceremony.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509

from ca.lists.asn1 import IssuerEntry, IssuerStatus, ListContentError, ListType
from ca.lists.build import build_list
from ca.lists.verify import load_list
from ca.log.anchors import Anchor, AnchorError, audit_key_of, root_keys
from ca.pki.x509 import (
    LEGACY_EXTENDED_KEY_USAGE,
    LIST_SIGNING_EKU,
    LOG_SIGNING_EKU,
    MAX_SERIAL,
    OFFICER_AUTH_EKU,
    SM2_DISTID,
    CertificateError,
    certificate_info,
    has_extended_key_usage,
    issue_certificate,
    key_identifier,
    pem,
    pem_to_der,
    self_signed_root,
    verify_certificate,
)
from hsm.errors import InvalidSignature
from hsm.oids import (
    JTCA_ARC,
    LEGACY_LIST_SIGNING_EKU,
    LEGACY_LOG_SIGNING_EKU,
    arcs_fit_32_bits,
)
from hsm.pkcs11.signer import TokenSigner
from hsm.signer import Signer, SigningPath, SoftwareSigner
from hsm.sm.sm2 import SM2PrivateKey, SM2PublicKey, raw_to_der

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
AT = str(int((NOW + timedelta(days=1)).timestamp()))  # openssl verify -attime
ROOT_NAME = {"CN": "交通运输部 交通一卡通根CA 2026", "O": "中华人民共和国交通运输部", "C": "CN"}
LIST_NAME = {"CN": "交通一卡通名单签名 2026", "O": "中华人民共和国交通运输部", "C": "CN"}
VFYOPT = ("-vfyopt", f"distid:{SM2_DISTID}")


# -- the judge --------------------------------------------------------------------------------
def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("openssl")
    assert tool, "the OpenSSL 3 CLI is required for these tests (apt-get install openssl)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_openssl_is_version_3(tmp_path: Path) -> None:
    version = openssl("version", cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("OpenSSL 3."), version.stdout


def write_pem(folder: Path, name: str, der: bytes) -> str:
    (folder / name).write_bytes(pem(der))
    return name


def openssl_verify(
    folder: Path, ca: str, cert: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return openssl("verify", "-attime", AT, *extra, "-CAfile", ca, cert, cwd=folder)


def openssl_checks_self_signature(folder: Path, cert: str) -> subprocess.CompletedProcess[str]:
    """The root self-signature recipe of ca/pki/x509.py's docstring, with the OpenSSL CLI only."""
    parsed = openssl("asn1parse", "-in", cert, cwd=folder)
    assert parsed.returncode == 0, parsed.stderr
    offsets = re.findall(r"^\s*(\d+):d=1 .*BIT STRING", parsed.stdout, re.MULTILINE)
    assert parsed.stdout.splitlines()[1].lstrip().startswith("4:d=1"), "TBS not at offset 4"
    steps = [
        ("asn1parse", "-in", cert, "-strparse", "4", "-noout", "-out", "tbs.der"),
        ("asn1parse", "-in", cert, "-strparse", offsets[-1], "-noout", "-out", "sig.der"),
        ("x509", "-in", cert, "-pubkey", "-noout", "-out", "pub.pem"),
    ]
    for step in steps:
        done = openssl(*step, cwd=folder)
        assert done.returncode == 0, (step, done.stderr)
    return openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "tbs.der",
        "-sigfile", "sig.der", "-digest", "sm3", "-pkeyopt", f"distid:{SM2_DISTID}",
        cwd=folder,
    )  # fmt: skip


def colon_hex(data: bytes | None) -> str:
    assert data is not None
    return ":".join(f"{b:02X}" for b in data)


# -- making certificates ----------------------------------------------------------------------
def make_root(signer: Signer, serial: int = 0x2026_0001) -> bytes:
    return self_signed_root(
        signer, ROOT_NAME, serial, NOW, NOW + timedelta(days=20 * 365), path_length=1
    )


def make_list_cert(issuer: Signer, subject_key: SM2PublicKey, **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "subject": LIST_NAME,
        "subject_public_key": subject_key,
        "issuer_name": ROOT_NAME,
        "serial": 0x2026_0002,
        "not_before": NOW,
        "not_after": NOW + timedelta(days=2 * 365),
        "ca": False,
        "path_length": None,
        "key_usage": {"digital_signature"},
        "extended_key_usage": [LIST_SIGNING_EKU],
    }
    args.update(overrides)
    return issue_certificate(issuer, **args)


def check_pair_with_openssl(folder: Path, root: Signer, root_der: bytes, leaf_der: bytes) -> None:
    write_pem(folder, "root.pem", root_der)
    write_pem(folder, "list.pem", leaf_der)
    accepted = openssl_verify(folder, "root.pem", "root.pem")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "root.pem: OK"
    selfsig = openssl_checks_self_signature(folder, "root.pem")
    assert selfsig.returncode == 0, selfsig.stdout + selfsig.stderr
    assert "Signature Verified Successfully" in selfsig.stdout
    chain = openssl_verify(folder, "root.pem", "list.pem", *VFYOPT)
    assert chain.returncode == 0, chain.stderr
    assert chain.stdout.strip() == "list.pem: OK"
    root_info = verify_certificate(root_der, root.public_key, at=NOW)
    leaf_info = verify_certificate(leaf_der, root.public_key, at=NOW)
    assert leaf_info.authority_key_id == root_info.subject_key_id


# -- the root ---------------------------------------------------------------------------------
def test_self_signed_root_is_accepted_by_openssl(tmp_path: Path) -> None:
    root = SoftwareSigner.generate()
    der = make_root(root)
    write_pem(tmp_path, "root.pem", der)

    accepted = openssl_verify(tmp_path, "root.pem", "root.pem")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "root.pem: OK"
    selfsig = openssl_checks_self_signature(tmp_path, "root.pem")
    assert selfsig.returncode == 0, selfsig.stdout + selfsig.stderr

    info = verify_certificate(der, root.public_key, at=NOW)
    text = openssl("x509", "-in", "root.pem", "-noout", "-text", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert out.count("Signature Algorithm: SM2-with-SM3") == 2  # TBS and outer
    assert "Public Key Algorithm: id-ecPublicKey" in out
    assert "ASN1 OID: SM2" in out
    assert "Version: 3 (0x2)" in out
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:1" in out
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in out
    assert (
        f"X509v3 Subject Key Identifier: \n                {colon_hex(info.subject_key_id)}" in out
    )
    assert (
        f"X509v3 Authority Key Identifier: \n                {colon_hex(info.subject_key_id)}"
        in out
    )
    assert "Not Before: Dec  1 08:00:00 2026 GMT" in out
    assert "Extended Key Usage" not in out

    fingerprint = openssl(
        "x509", "-in", "root.pem", "-noout", "-fingerprint", "-sha256", cwd=tmp_path
    )
    assert fingerprint.stdout.strip() == f"sha256 Fingerprint={info.sha256_openssl}"
    assert info.is_ca
    assert info.path_length == 1
    assert (
        info.subject
        == info.issuer
        == ("C=CN, O=中华人民共和国交通运输部, CN=交通运输部 交通一卡通根CA 2026")
    )
    assert info.subject_key_id == info.authority_key_id == key_identifier(root.public_key)
    assert info.public_key == root.public_key
    assert info.serial == 0x2026_0001
    assert info.key_usage == {"key_cert_sign", "crl_sign"}
    assert len(bytes.fromhex(info.sm3_fingerprint)) == 32
    assert pem_to_der((tmp_path / "root.pem").read_bytes()) == der


def test_openssl_3_0_needs_the_id_and_skips_a_root_self_signature(tmp_path: Path) -> None:
    """Pins what ca/pki/x509.py documents about OpenSSL 3.0, so a change in OpenSSL is noticed:
    without ``-vfyopt distid:`` the SM2 signature is checked over another ID; ``openssl verify``
    accepts a root whose self-signature is bad; ``-check_ss_sig`` fails even a good SM2 root."""
    root, other, leaf = (SoftwareSigner.generate() for _ in range(3))
    root_der = make_root(root)
    write_pem(tmp_path, "root.pem", root_der)
    write_pem(tmp_path, "list.pem", make_list_cert(root, leaf.public_key))

    no_id = openssl_verify(tmp_path, "root.pem", "list.pem")
    assert no_id.returncode != 0
    assert "certificate signature failure" in no_id.stdout + no_id.stderr

    # Same names, same key identifiers, the root's public key, but signed by another key.
    bad_root = issue_certificate(
        other,
        subject=ROOT_NAME,
        subject_public_key=root.public_key,
        issuer_name=ROOT_NAME,
        serial=0x2026_0001,
        not_before=NOW,
        not_after=NOW + timedelta(days=20 * 365),
        ca=True,
        path_length=1,
        key_usage={"key_cert_sign", "crl_sign"},
        issuer_key_id=key_identifier(root.public_key),
    )
    write_pem(tmp_path, "bad-root.pem", bad_root)
    fooled = openssl_verify(tmp_path, "bad-root.pem", "bad-root.pem", *VFYOPT)
    assert fooled.returncode == 0, "OpenSSL now checks trust anchors: simplify ca/pki/x509.py docs"
    assert openssl_checks_self_signature(tmp_path, "bad-root.pem").returncode != 0
    with pytest.raises(InvalidSignature):
        verify_certificate(bad_root, root.public_key)

    strict = openssl_verify(tmp_path, "root.pem", "root.pem", "-check_ss_sig", *VFYOPT)
    assert strict.returncode != 0, "-check_ss_sig now honours distid: simplify ca/pki/x509.py docs"


# -- the list-signing certificate -------------------------------------------------------------
def test_list_signing_certificate_from_the_root(tmp_path: Path) -> None:
    root, leaf = SoftwareSigner.generate(), SoftwareSigner.generate()
    root_der = make_root(root)
    leaf_der = make_list_cert(root, leaf.public_key)
    check_pair_with_openssl(tmp_path, root, root_der, leaf_der)

    text = openssl("x509", "-in", "list.pem", "-noout", "-text", cwd=tmp_path).stdout
    assert "X509v3 Basic Constraints: critical\n                CA:FALSE" in text
    assert "X509v3 Key Usage: critical\n                Digital Signature\n" in text
    assert f"X509v3 Extended Key Usage: \n                {LIST_SIGNING_EKU}" in text

    info = verify_certificate(leaf_der, root.public_key)
    assert not info.is_ca
    assert info.path_length is None
    assert info.key_usage == {"digital_signature"}
    assert info.extended_key_usage == (LIST_SIGNING_EKU,)
    assert info.public_key == leaf.public_key
    assert info.subject_key_id == key_identifier(leaf.public_key)
    assert info.authority_key_id == key_identifier(root.public_key)
    assert info.issuer == certificate_info(root_der).subject
    with pytest.raises(InvalidSignature):
        verify_certificate(leaf_der, leaf.public_key)  # not its issuer


def test_certificate_signed_by_another_key_fails(tmp_path: Path) -> None:
    root, impostor, leaf = (SoftwareSigner.generate() for _ in range(3))
    write_pem(tmp_path, "root.pem", make_root(root))
    # The impostor claims the root's name and key identifier, so OpenSSL finds the root as
    # issuer and really checks the signature (rather than failing to find an issuer).
    forged = make_list_cert(
        impostor, leaf.public_key, issuer_key_id=key_identifier(root.public_key)
    )
    write_pem(tmp_path, "forged.pem", forged)
    refused = openssl_verify(tmp_path, "root.pem", "forged.pem", *VFYOPT)
    assert refused.returncode != 0
    assert "certificate signature failure" in refused.stdout + refused.stderr
    with pytest.raises(InvalidSignature):
        verify_certificate(forged, root.public_key)
    verify_certificate(forged, impostor.public_key)  # what it really is


def tbs_span(der: bytes) -> tuple[int, int]:
    tbs = asn1_x509.Certificate.load(der)["tbs_certificate"].dump()
    start = der.index(tbs)
    return start, start + len(tbs)


def test_tampered_certificates_fail(tmp_path: Path) -> None:
    root, leaf = SoftwareSigner.generate(), SoftwareSigner.generate()
    root_der = make_root(root)
    leaf_der = make_list_cert(root, leaf.public_key)
    write_pem(tmp_path, "root.pem", root_der)

    # One byte of the subject's common name, inside the TBS: still well formed, not signed.
    for name, der in (("root-x.pem", root_der), ("list-x.pem", leaf_der)):
        tampered = bytearray(der)
        where = der.rindex(b"2026", *tbs_span(der))  # the subject comes after the issuer
        tampered[where] ^= 0x01  # "2026" -> "3026"
        write_pem(tmp_path, name, bytes(tampered))
        assert certificate_info(bytes(tampered)).subject.endswith("3026")
        with pytest.raises(InvalidSignature):
            verify_certificate(bytes(tampered), root.public_key)
    assert openssl_checks_self_signature(tmp_path, "root-x.pem").returncode != 0
    refused = openssl_verify(tmp_path, "root.pem", "list-x.pem", *VFYOPT)
    assert refused.returncode != 0
    assert "certificate signature failure" in refused.stdout + refused.stderr

    # Every single-bit change anywhere in the TBS is refused, one way or the other.
    start, end = tbs_span(leaf_der)
    for offset in range(start, end):
        flipped = bytearray(leaf_der)
        flipped[offset] ^= 0x04
        with pytest.raises((InvalidSignature, CertificateError)):
            verify_certificate(bytes(flipped), root.public_key)


# -- a token key ------------------------------------------------------------------------------
def test_token_keys_sign_certificates_openssl_accepts(tmp_path: Path, new_token: Any) -> None:
    _, store, _ = new_token("X509")
    root_key = store.generate_sm2("mot-root")
    root = TokenSigner(store, root_key.uri)
    leaf = TokenSigner(store, store.generate_sm2("list-signing").uri)
    assert root.path == SigningPath.HOST_ASSISTED  # SoftHSM2 has no SM2 mechanism
    root_der = make_root(root)
    leaf_der = make_list_cert(root, leaf.public_key)
    check_pair_with_openssl(tmp_path, root, root_der, leaf_der)
    assert certificate_info(root_der).public_key == root_key.public_key


# -- OpenSSL's certificates, read by us -------------------------------------------------------
def openssl_sm2_certificate(folder: Path, *sigopt: str) -> bytes:
    made = openssl("genpkey", "-algorithm", "SM2", "-out", "key.pem", cwd=folder)
    assert made.returncode == 0, made.stderr
    made = openssl(
        "req", "-x509", "-new", "-key", "key.pem", "-sm3", *sigopt,
        "-subj", "/C=CN/O=OpenSSL made/CN=openssl-root", "-days", "1", "-out", "c.pem",
        cwd=folder,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return pem_to_der((folder / "c.pem").read_bytes())


def test_we_verify_a_certificate_openssl_made(tmp_path: Path) -> None:
    der = openssl_sm2_certificate(tmp_path, "-sigopt", f"distid:{SM2_DISTID}")
    info = certificate_info(der)
    public = openssl("pkey", "-in", "key.pem", "-pubout", cwd=tmp_path)
    assert info.public_key == SM2PublicKey.from_pem(public.stdout.encode())
    assert verify_certificate(der, info.public_key) == info
    assert info.subject == info.issuer == "C=CN, O=OpenSSL made, CN=openssl-root"
    assert info.is_ca
    assert info.subject_key_id is not None
    assert len(info.subject_key_id) == 20  # SHA-1 there
    assert info.subject_key_id != key_identifier(info.public_key)

    # And the other way round: OpenSSL's key signs through us, under OpenSSL's names and key
    # identifier, and OpenSSL accepts the chain.
    key = SM2PrivateKey.from_pem((tmp_path / "key.pem").read_bytes())
    child = issue_certificate(
        SoftwareSigner(key),
        subject=LIST_NAME,
        subject_public_key=SoftwareSigner.generate().public_key,
        issuer_name=info.subject_name,
        serial=7,
        not_before=datetime.now(UTC) - timedelta(minutes=5),
        not_after=datetime.now(UTC) + timedelta(hours=1),
        ca=False,
        path_length=None,
        key_usage={"digitalSignature"},
        extended_key_usage=[LIST_SIGNING_EKU, "code_signing"],
        issuer_key_id=info.subject_key_id,
    )
    write_pem(tmp_path, "child.pem", child)
    accepted = openssl("verify", *VFYOPT, "-CAfile", "c.pem", "child.pem", cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    child_info = verify_certificate(child, info.public_key)
    assert child_info.issuer == info.subject
    assert child_info.extended_key_usage == (LIST_SIGNING_EKU, "1.3.6.1.5.5.7.3.3")


def test_openssl_without_the_id_signs_something_else(tmp_path: Path) -> None:
    """OpenSSL 3.0's own default for SM2 is not 1234567812345678: a certificate it signs
    without ``-sigopt distid:`` verifies in OpenSSL with no ID and is refused by us."""
    der = openssl_sm2_certificate(tmp_path)
    # The recipe (with the default ID) fails, and leaves tbs.der, sig.der and pub.pem behind.
    assert openssl_checks_self_signature(tmp_path, "c.pem").returncode != 0
    no_id = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "tbs.der",
        "-sigfile", "sig.der", "-digest", "sm3", cwd=tmp_path,
    )  # fmt: skip
    assert no_id.returncode == 0, no_id.stdout + no_id.stderr
    with pytest.raises(InvalidSignature):
        verify_certificate(der, certificate_info(der).public_key)


def test_a_non_sm2_certificate_is_refused(tmp_path: Path) -> None:
    made = openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "p256.key", "-subj", "/CN=p256", "-days", "1", "-out", "p256.pem",
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    der = pem_to_der((tmp_path / "p256.pem").read_bytes())
    with pytest.raises(CertificateError, match="not SM2-with-SM3"):
        certificate_info(der)


# -- times ------------------------------------------------------------------------------------
def test_times_utc_before_2050_generalized_after(tmp_path: Path) -> None:
    root = SoftwareSigner.generate()
    beijing = timezone(timedelta(hours=8))
    start = datetime(2049, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    der = self_signed_root(
        root, ROOT_NAME, 1, start.astimezone(beijing), datetime(2050, 1, 1, tzinfo=UTC)
    )
    validity = asn1_x509.Certificate.load(der)["tbs_certificate"]["validity"]
    assert validity["not_before"].name == "utc_time"
    assert validity["not_after"].name == "general_time"
    info = verify_certificate(der, root.public_key)
    assert info.not_before == start.replace(microsecond=0)  # Beijing time stored as Zulu
    assert info.not_after == datetime(2050, 1, 1, tzinfo=UTC)
    write_pem(tmp_path, "root.pem", der)
    text = openssl("x509", "-in", "root.pem", "-noout", "-dates", cwd=tmp_path).stdout
    assert "notBefore=Dec 31 23:59:59 2049 GMT" in text
    assert "notAfter=Jan  1 00:00:00 2050 GMT" in text

    with pytest.raises(CertificateError, match="valid from"):
        verify_certificate(der, root.public_key, at=datetime(2050, 1, 1, 0, 0, 1, tzinfo=UTC))
    with pytest.raises(CertificateError, match="valid from"):
        verify_certificate(der, root.public_key, at=datetime(2049, 1, 1, tzinfo=UTC))


# -- input validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"serial": 0}, "serial 0: must be a positive integer"),
        ({"serial": -5}, "serial -5"),
        ({"serial": MAX_SERIAL + 1}, "at most 20 octets"),
        ({"serial": True}, "serial True"),
        ({"not_after": NOW - timedelta(days=1)}, "must be later than not_before"),
        ({"not_after": NOW + timedelta(microseconds=5)}, "must be later than not_before"),
        ({"not_before": datetime(2026, 12, 1)}, "not_before must carry a timezone"),
        ({"subject": {}}, "subject must be a non-empty dict"),
        ({"subject": asn1_x509.Name.build({})}, "subject must not be empty"),
        ({"issuer_name": {}}, "issuer_name must be a non-empty dict"),
        ({"subject": {"CN": ""}}, "CN must be a non-empty string"),
        ({"subject": {"CN": "  "}}, "CN must be a non-empty string"),
        ({"subject": {"CN": " x"}}, "leading or trailing spaces"),
        ({"subject": {"CN": "x" * 65}}, "RFC 5280 allows 64"),
        ({"subject": {"CN": "x", "EMAIL": "a@b"}}, "unknown attribute 'EMAIL'"),
        ({"subject": {"CN": "x", "C": "CHN"}}, "ISO 3166 two-letter"),
        ({"key_usage": set()}, r"key usage \(none\)"),
        ({"key_usage": {"fly"}}, r"key usage \['fly'\]"),
        ({"key_usage": {"key_cert_sign"}}, "key_cert_sign needs ca=True"),
        ({"ca": True, "key_usage": {"digital_signature"}}, "needs key usage key_cert_sign"),
        ({"path_length": 0}, "path_length applies only to CA"),
        ({"ca": True, "key_usage": {"key_cert_sign"}, "path_length": -1}, "non-negative"),
        ({"extended_key_usage": []}, "at least one purpose"),
        ({"extended_key_usage": ["list-signing"]}, "not a dotted OID"),
        ({"extended_key_usage": ["1.2.3", "1.2.3"]}, "listed twice"),
        ({"issuer_key_id": b""}, "non-empty byte string"),
    ],
    ids=[
        "fail/serial-zero",
        "fail/serial-negative",
        "fail/serial-21-octets",
        "fail/serial-bool",
        "fail/not-after-before-not-before",
        "fail/validity-under-a-second",
        "fail/naive-time",
        "fail/empty-subject",
        "fail/empty-subject-name",
        "fail/empty-issuer",
        "fail/empty-cn",
        "fail/blank-cn",
        "fail/padded-cn",
        "fail/long-cn",
        "fail/unknown-attribute",
        "fail/country-code",
        "fail/no-key-usage",
        "fail/unknown-key-usage",
        "fail/cert-sign-without-ca",
        "fail/ca-without-cert-sign",
        "fail/path-length-on-leaf",
        "fail/negative-path-length",
        "fail/empty-eku",
        "fail/eku-not-an-oid",
        "fail/eku-duplicate",
        "fail/empty-issuer-key-id",
    ],
)
def test_bad_input_is_refused(overrides: dict[str, Any], message: str) -> None:
    signer = SoftwareSigner.generate()
    with pytest.raises(CertificateError, match=message) as caught:
        make_list_cert(signer, signer.public_key, **overrides)
    assert caught.value.exit_code == 3
    assert caught.value.title == "Bad certificate"


def test_largest_serial_is_accepted(tmp_path: Path) -> None:
    root = SoftwareSigner.generate()
    der = make_root(root, serial=MAX_SERIAL)
    assert certificate_info(der).serial == MAX_SERIAL
    write_pem(tmp_path, "root.pem", der)
    assert openssl_verify(tmp_path, "root.pem", "root.pem").returncode == 0
    serial = openssl("x509", "-in", "root.pem", "-noout", "-serial", cwd=tmp_path).stdout
    assert serial.strip() == f"serial={MAX_SERIAL:040X}"


def test_malformed_certificates_are_refused() -> None:
    root = SoftwareSigner.generate()
    der = make_root(root)
    cases = {
        "empty": b"",
        "pem": pem(der),
        "truncated": der[:-1],
        "trailing": der + b"\x00",
        "not-der": b"\x30\x83\x00" + der[2:],  # BER long-form length with a leading zero
        "garbage": b"\x30\x03\x02\x01\x01",
    }
    for label, data in cases.items():
        with pytest.raises(CertificateError):
            verify_certificate(data, root.public_key)
        with pytest.raises(CertificateError):
            certificate_info(data)
        assert label  # names the case in a failure's traceback
    with pytest.raises(CertificateError, match="not 'CERTIFICATE'"):
        pem_to_der(root.public_key.pem())


class MismatchedSigner:
    """A signer whose key is not the public key it claims (a mislabelled token object)."""

    def __init__(self) -> None:
        self._claimed, self._real = SoftwareSigner.generate(), SoftwareSigner.generate()
        self.public_key = self._claimed.public_key
        self.key_uri = "pkcs11:token=T;object=mislabelled;type=private"
        self.path = SigningPath.SOFTWARE

    def sign(self, message: bytes) -> bytes:
        return self._real.sign(message)


def test_a_signer_that_is_not_its_key_yields_no_certificate() -> None:
    signer = MismatchedSigner()
    with pytest.raises(InvalidSignature, match=r"mislabelled.*no certificate was made"):
        make_root(signer)


# -- jtca's OIDs: 32-bit arcs; the pre-#15 2.25 OIDs verified for migration, never issued ------
def test_jtca_oids_fit_32_bit_arcs_under_one_placeholder_arc() -> None:
    ours = {"list": LIST_SIGNING_EKU, "officer": OFFICER_AUTH_EKU, "log": LOG_SIGNING_EKU}
    assert len(set(ours.values())) == 3
    for name, oid in ours.items():
        assert oid.startswith(JTCA_ARC + ".1."), name  # .1: extended key usages
        assert arcs_fit_32_bits(oid), name
        assert max(int(arc) for arc in oid.split(".")) < 1 << 32, name
        # DER: no arc takes more than five base-128 octets
        assert len(asn1_x509.KeyPurposeId(oid).dump()) < 2 + 5 * len(oid.split(".")), name
    assert JTCA_ARC.startswith("1.3.6.1.4.1.32473.")  # RFC 5612's documentation PEN
    for legacy in LEGACY_EXTENDED_KEY_USAGE.values():
        assert not arcs_fit_32_bits(legacy)


@pytest.mark.parametrize("legacy", sorted(LEGACY_EXTENDED_KEY_USAGE.values()))
def test_the_pre_15_oids_are_never_issued(legacy: str) -> None:
    root = SoftwareSigner.generate()
    with pytest.raises(CertificateError, match=r"exceeds 32 bits.*hsm\.oids"):
        make_list_cert(root, root.public_key, extended_key_usage=[legacy])


def remade_with_eku(der: bytes, purposes: list[str], issuer: Signer) -> bytes:
    """``der`` with its extended key usage replaced and signed again by ``issuer``: a
    certificate as jtca issued it before issue #15 (issue_certificate no longer does)."""
    cert = asn1_x509.Certificate.load(der)
    tbs = cert["tbs_certificate"]
    for extension in tbs["extensions"]:
        if extension["extn_id"].native == "extended_key_usage":
            extension["extn_value"] = asn1_x509.ExtKeyUsageSyntax(purposes)
    tbs_der = tbs.dump(force=True)
    return asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": cert["signature_algorithm"],
            "signature_value": raw_to_der(issuer.sign(tbs_der)),
        }
    ).dump()


def test_a_pre_15_list_signer_still_signs_and_verifies(tmp_path: Path) -> None:
    """Migration: a list-signing certificate with the old 2.25 OID (made before issue #15)
    still signs lists and terminals running jtca's verifier still take them; OpenSSL too."""
    root, leaf = SoftwareSigner.generate(), SoftwareSigner.generate()
    root_der = make_root(root)
    old = remade_with_eku(make_list_cert(root, leaf.public_key), [LEGACY_LIST_SIGNING_EKU], root)
    info = verify_certificate(old, root.public_key, at=NOW)
    assert info.extended_key_usage == (LEGACY_LIST_SIGNING_EKU,)
    assert has_extended_key_usage(info, LIST_SIGNING_EKU)
    check_pair_with_openssl(tmp_path, root, root_der, old)
    at = int(NOW.timestamp()) + 60
    entries = [IssuerEntry("02113450", 1, 1, IssuerStatus.ACTIVE, "1230")]
    data = build_list(
        ListType.ISSUERS,
        entries,
        sequence=1,
        this_update=at,
        next_update=at + 86400,
        signer=leaf,
        signer_certificate_der=old,
    )
    taken = load_list(data, trusted_root_der=root_der, now=at + 60, grace_seconds=0)
    assert taken.signer.extended_key_usage == (LEGACY_LIST_SIGNING_EKU,)


def test_a_pre_15_oid_stands_only_for_its_own_purpose() -> None:
    """The old log-signing OID does not make a list signer, nor the old list-signing OID an
    audit key; an unrelated 2.25 OID makes neither."""
    root, leaf = SoftwareSigner.generate(), SoftwareSigner.generate()
    root_der = make_root(root)
    at = int(NOW.timestamp()) + 60
    for wrong in (LEGACY_LOG_SIGNING_EKU, "2.25.1"):
        cert = remade_with_eku(make_list_cert(root, leaf.public_key), [wrong], root)
        assert not has_extended_key_usage(certificate_info(cert), LIST_SIGNING_EKU)
        with pytest.raises(ListContentError, match="list-signing extended key usage"):
            build_list(
                ListType.ISSUERS,
                [],
                sequence=1,
                this_update=at,
                next_update=at + 86400,
                signer=leaf,
                signer_certificate_der=cert,
            )
    audit_cert = remade_with_eku(
        make_list_cert(root, leaf.public_key), [LEGACY_LIST_SIGNING_EKU], root
    )
    with pytest.raises(AnchorError, match="log-signing"):
        audit_key_of(
            Anchor("audit-1.pem", pem(audit_cert)), root_keys([Anchor("r.pem", pem(root_der))])
        )


def test_a_pre_15_audit_certificate_still_anchors_the_log() -> None:
    """Migration: the audit key's certificate from a ceremony before issue #15 (old 2.25
    log-signing OID) still names the key that signed the log's checkpoints."""
    root, audit_key = SoftwareSigner.generate(), SoftwareSigner.generate()
    root_der = make_root(root)
    new = make_list_cert(
        root, audit_key.public_key, extended_key_usage=[LOG_SIGNING_EKU], subject=LIST_NAME
    )
    old = remade_with_eku(new, [LEGACY_LOG_SIGNING_EKU], root)
    roots = root_keys([Anchor("root-1.pem", pem(root_der))])
    for der in (new, old):
        assert audit_key_of(Anchor("audit-1.pem", pem(der)), roots) == audit_key.public_key
