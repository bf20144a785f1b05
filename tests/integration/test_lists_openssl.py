"""Signed lists (ca/lists) judged by the OpenSSL 3 CLI, with the commands of docs/lists.md.

The shell block under ``<!-- openssl-verify-list -->`` in docs/lists.md is read from the file and
run verbatim with ``bash -euo pipefail``, so the documentation cannot drift from what works.
OpenSSL is the outside judge: it must be installed (these tests fail, never skip, without it).
Lists and certificates are made here from fresh SoftwareSigner keys, valid around the real
time, because ``openssl verify`` in the documented commands checks validity now.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ca.lists.asn1 import (
    CaKeyEntry,
    CityEntry,
    InteropStatus,
    IssuerEntry,
    IssuerStatus,
    ListType,
    decode_signed_list,
    encode_signed_list,
    encode_tbs,
    make_content,
)
from ca.lists.build import build_list
from ca.lists.verify import ListReason, ListRefused, load_list
from ca.pki.x509 import LIST_SIGNING_EKU, SM2_DISTID, issue_certificate, pem, self_signed_root
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import raw_to_der

DOC = Path(__file__).parents[2] / "docs" / "lists.md"
MARKER = "<!-- openssl-verify-list"
DAY = 86400
ROOT_NAME = {"CN": "交通运输部 交通一卡通根CA 测试", "O": "中华人民共和国交通运输部", "C": "CN"}
LIST_NAME = {"CN": "交通一卡通名单签名 测试", "O": "中华人民共和国交通运输部", "C": "CN"}
VERIFIED = "Signature Verified Successfully"


def documented_commands() -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(re.escape(MARKER) + r"[^\n]*\n```sh\n(.*?)\n```", text, re.DOTALL)
    assert found, f"{DOC} has no ```sh block after {MARKER}"
    return found.group(1)


def openssl_path() -> str:
    tool = shutil.which("openssl")
    assert tool, "the OpenSSL 3 CLI is required for these tests (apt-get install openssl)"
    version = subprocess.run([tool, "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("OpenSSL 3."), version.stdout
    return tool


def run_documented(
    folder: Path, list_der: bytes, root_der: bytes
) -> subprocess.CompletedProcess[str]:
    openssl_path()
    (folder / "list.der").write_bytes(list_der)
    (folder / "root.pem").write_bytes(pem(root_der))
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, "-euo", "pipefail", "-c", documented_commands()],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


def moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class Pki:
    root: SoftwareSigner
    root_der: bytes
    signer: SoftwareSigner
    cert_der: bytes


NOW = int(time.time())


def make_pki(root: SoftwareSigner | None = None, **cert: Any) -> Pki:
    root = root or SoftwareSigner.generate()
    root_der = self_signed_root(
        root, ROOT_NAME, 1, moment(NOW - 365 * DAY), moment(NOW + 3650 * DAY), path_length=1
    )
    signer = SoftwareSigner.generate()
    args: dict[str, Any] = {
        "subject": LIST_NAME,
        "subject_public_key": signer.public_key,
        "issuer_name": ROOT_NAME,
        "serial": 2,
        "not_before": moment(NOW - 30 * DAY),
        "not_after": moment(NOW + 730 * DAY),
        "ca": False,
        "path_length": None,
        "key_usage": {"digital_signature"},
        "extended_key_usage": [LIST_SIGNING_EKU],
    }
    args.update(cert)
    return Pki(root, root_der, signer, issue_certificate(root, **args))


PKI = make_pki()
ISSUERS = [
    IssuerEntry("02113450", 1, 1, IssuerStatus.ACTIVE, "1230"),
    IssuerEntry("0211", 77, 2, IssuerStatus.REVOKED, "0127"),
]


def make_list(
    pki: Pki = PKI, list_type: ListType = ListType.ISSUERS, entries: Any = None, sequence: int = 5
) -> bytes:
    return build_list(
        list_type,
        ISSUERS if entries is None else entries,
        sequence=sequence,
        this_update=NOW - 60,
        next_update=NOW + DAY,
        signer=pki.signer,
        signer_certificate_der=pki.cert_der,
    )


def jtca_reason(data: bytes, root_der: bytes = PKI.root_der) -> ListReason | None:
    try:
        load_list(data, trusted_root_der=root_der, now=NOW, grace_seconds=0)
    except ListRefused as refused:
        return refused.reason
    return None


def test_the_documented_block_uses_the_sm2_commands() -> None:
    block = documented_commands()
    assert f"openssl verify -vfyopt distid:{SM2_DISTID} -CAfile root.pem signer.pem" in block
    assert "openssl pkeyutl -verify -pubin -inkey signer-pub.pem -rawin -digest sm3" in block
    assert f"-pkeyopt distid:{SM2_DISTID} -in tbs.der -sigfile sig.der" in block
    assert LIST_SIGNING_EKU.replace(".", r"\.") in block


@pytest.mark.parametrize("list_type", list(ListType))
def test_openssl_accepts_a_list(tmp_path: Path, list_type: ListType) -> None:
    entries = {
        ListType.ISSUERS: ISSUERS,
        ListType.CITIES: [
            CityEntry(
                "440300", "深圳市", "440000", InteropStatus.CONNECTED, InteropStatus.CONNECTED, NOW
            )
        ],
        ListType.CA_KEYS: [CaKeyEntry(1, SoftwareSigner.generate().public_key, NOW + DAY)],
    }[list_type]
    data = make_list(list_type=list_type, entries=entries, sequence=11)
    assert jtca_reason(data) is None
    done = run_documented(tmp_path, data, PKI.root_der)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signer.pem: OK" in done.stdout
    assert VERIFIED in done.stdout
    # step 5 shows the header: version, listType, sequenceNumber, thisUpdate, nextUpdate
    header = done.stdout.split(VERIFIED, 1)[1]
    assert f"ENUMERATED        :0{list_type.number}" in header
    assert "INTEGER           :0B" in header  # sequence 11
    assert time.strftime("%Y%m%d%H%M%SZ", time.gmtime(NOW - 60)) in header
    # the signed bytes OpenSSL extracted are the TBSList jtca signed
    assert (tmp_path / "tbs.der").read_bytes() == decode_signed_list(data).tbs_der


def test_openssl_accepts_a_list_over_64_kib(tmp_path: Path) -> None:
    entries = [IssuerEntry(f"{i:08d}", i, 1, IssuerStatus.ACTIVE, "1230") for i in range(3000)]
    data = make_list(entries=entries)
    assert len(data) > 65536
    assert data[1] == 0x83  # a three-octet length: the TBSList starts at offset 5
    done = run_documented(tmp_path, data, PKI.root_der)
    assert done.returncode == 0, done.stdout + done.stderr
    assert VERIFIED in done.stdout


def test_openssl_rejects_a_tampered_list(tmp_path: Path) -> None:
    data = make_list()
    at = data.index(b"02113450")
    tampered = data[:at] + b"02113451" + data[at + 8 :]
    assert jtca_reason(tampered) is ListReason.BAD_SIGNATURE
    done = run_documented(tmp_path, tampered, PKI.root_der)
    assert done.returncode != 0
    assert "signer.pem: OK" in done.stdout  # the certificate is still fine
    assert "Signature Verification Failure" in done.stdout + done.stderr
    assert VERIFIED not in done.stdout


def test_openssl_rejects_a_signer_from_another_root(tmp_path: Path) -> None:
    stranger = make_pki()
    data = make_list(stranger)
    assert jtca_reason(data) is ListReason.UNTRUSTED_SIGNER
    done = run_documented(tmp_path, data, PKI.root_der)
    assert done.returncode != 0
    assert "signer.pem: OK" not in done.stdout
    assert VERIFIED not in done.stdout


def test_openssl_rejects_a_signer_without_the_list_signing_eku(tmp_path: Path) -> None:
    signer = SoftwareSigner.generate()
    cert = issue_certificate(
        PKI.root,
        subject=LIST_NAME,
        subject_public_key=signer.public_key,
        issuer_name=ROOT_NAME,
        serial=3,
        not_before=moment(NOW - DAY),
        not_after=moment(NOW + DAY),
        ca=False,
        path_length=None,
        key_usage={"digital_signature"},
        extended_key_usage=["code_signing"],
    )
    # jtca's builder refuses this certificate, so the list is put together from its parts
    content = make_content(
        ListType.ISSUERS, ISSUERS, sequence=5, this_update=NOW - 60, next_update=NOW + DAY
    )
    tbs = encode_tbs(content)
    data = encode_signed_list(tbs, raw_to_der(signer.sign(tbs)), [cert])
    assert jtca_reason(data) is ListReason.UNTRUSTED_SIGNER
    done = run_documented(tmp_path, data, PKI.root_der)
    assert done.returncode != 0
    assert "signer.pem: OK" in done.stdout  # the chain is fine; the purpose is not
    assert VERIFIED not in done.stdout


def test_openssl_needs_the_default_id(tmp_path: Path) -> None:
    """Negative control: without distid OpenSSL 3.0 uses an empty ID and fails."""
    done = run_documented(tmp_path, make_list(), PKI.root_der)
    assert done.returncode == 0, done.stdout + done.stderr
    openssl = openssl_path()
    no_id = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "signer-pub.pem", "-rawin",
         "-digest", "sm3", "-in", "tbs.der", "-sigfile", "sig.der"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert no_id.returncode != 0
    assert VERIFIED not in no_id.stdout
    chain = subprocess.run(
        [openssl, "verify", "-CAfile", "root.pem", "signer.pem"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert chain.returncode != 0
