"""``jtca qr inspect`` / ``spec-check`` and the command line's error contract.

Payloads are made with the issuing API and software keys; the clock is fixed with --now.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ca.cli.main import main
from ca.qr.codec import expiry_end
from ca.qr.issue import issue_interop_certificate, issue_user_certificate, sign_ride
from hsm.signer import SoftwareSigner

NOW = 1_790_000_000  # 2026-09-21T14:13:20Z
NOW_ISO = "2026-09-21T14:13:20Z"


@pytest.fixture(scope="module")
def chain() -> dict[str, object]:
    ca, issuer, user = (SoftwareSigner.generate() for _ in range(3))
    interop = issue_interop_certificate(
        ca,
        ca_index=3,
        issuer_id="02113450",
        expiry="0620",
        serial=0x010203,
        issuer_public_key=issuer.public_key,
    )
    user_cert = issue_user_certificate(
        issuer,
        interop,
        issuer_data="JTCA-CLI-TEST-01",
        account_number="31040000000000000042",
        account_type=2,
        single_ride_limit=30000,
        user_public_key=user.public_key,
        expires_at=NOW + 3600,
        qr_validity=60,
        extension=bytes(range(32)),
    )
    payload = sign_ride(user, interop, user_cert, generated_at=NOW - 10).encode()
    return {"ca": ca, "payload": payload}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def ca_arg(chain: dict[str, object]) -> str:
    ca = chain["ca"]
    assert isinstance(ca, SoftwareSigner)
    return f"3={ca.public_key.compressed.hex()}"


def test_inspect_json_contract(
    capsys: pytest.CaptureFixture[str], chain: dict[str, object]
) -> None:
    payload = chain["payload"]
    assert isinstance(payload, bytes)
    status, out, err = run(
        capsys,
        "qr",
        "inspect",
        "--hex",
        payload.hex(),
        "--json",
        "--ca-key",
        ca_arg(chain),
        "--accept-issuer",
        "02113450",
        "--now",
        "2020-06-15T00:00:00Z",
        "--fare",
        "200",
    )
    assert status == 0, err
    report = json.loads(out)
    assert set(report) == {"guide", "interop_cert", "user_cert", "ride", "signatures", "checks"}
    ic, uc = report["interop_cert"], report["user_cert"]
    assert ic["issuer_id"] == "02113450"
    assert ic["expiry"] == "0620"
    assert ic["serial"] == 0x010203
    assert ic["ca_index"] == 3
    assert ic["service_id"] == "01010000"
    assert ic["valid_through"] == "2020-06-30T23:59:59Z"
    assert ic["issuer_public_key"] == payload[23:56].hex()
    assert ic["offsets"]["issuer_id"] == 10
    assert ic["offsets"]["ca_signature"] == 56
    assert uc["account_number"] == "31040000000000000042"
    assert uc["single_ride_limit"] == 30000
    assert uc["qr_validity"] == 60
    assert uc["extension_length"] == 32
    assert uc["extension"] == bytes(range(32)).hex()
    assert uc["offsets"]["issuer_signature"] == 230  # 198 + L
    assert uc["issuer_signature"].startswith("15")
    assert len(uc["issuer_signature"]) == 130
    assert report["ride"]["offsets"]["generated_at"] == 295
    assert report["ride"]["generated_at"] == "2026-09-21T14:13:10Z"
    assert report["guide"]["data_length"] == 361
    assert report["guide"]["structure_version"] == 0
    assert report["signatures"] == {"ca": "valid", "issuer": "valid", "user": "valid"}
    checks = report["checks"]
    assert checks["now"] == "2020-06-15T00:00:00Z"
    assert checks["interop_cert_expiry"]["status"] == "ok"
    # In 2020 the code was generated six years in the future.
    assert checks["generation_time"]["status"] == "not-yet-valid"
    assert checks["issuer_whitelist"] == "listed"
    assert checks["fare"] == {"fare": 200, "single_ride_limit": 30000, "status": "ok"}
    assert checks["acceptor"]["accepted"] is False
    assert checks["acceptor"]["reason"] == "qr-not-yet-valid"
    # every hex value is lowercase
    assert all(c not in "ABCDEF" for c in json.dumps(report["interop_cert"]))


def test_inspect_clock_checks_follow_now(
    capsys: pytest.CaptureFixture[str], chain: dict[str, object]
) -> None:
    payload = chain["payload"]
    assert isinstance(payload, bytes)
    status, out, _ = run(
        capsys,
        "qr",
        "inspect",
        "--b64",
        base64.b64encode(payload).decode(),
        "--json",
        "--ca-key",
        ca_arg(chain),
        "--accept-issuer",
        "02113450",
        "--now",
        NOW_ISO,
    )
    assert status == 0
    checks = json.loads(out)["checks"]
    assert checks["generation_time"]["status"] == "ok"
    assert checks["user_cert_expiry"]["status"] == "ok"
    # the interop certificate expired at the end of June 2020
    assert checks["interop_cert_expiry"]["status"] == "expired"
    assert checks["acceptor"]["reason"] == "interop-cert-expired"
    assert expiry_end("0620") < NOW


def test_inspect_without_ca_key_says_unknown(
    capsys: pytest.CaptureFixture[str], chain: dict[str, object]
) -> None:
    payload = chain["payload"]
    assert isinstance(payload, bytes)
    status, out, _ = run(capsys, "qr", "inspect", "--hex", payload.hex(), "--json")
    assert status == 0
    report = json.loads(out)
    assert report["signatures"]["ca"] == "unknown-ca-key"
    assert report["signatures"]["issuer"] == "valid"
    assert report["checks"]["issuer_whitelist"] == "not-checked"


def test_inspect_reports_invalid_signatures(
    capsys: pytest.CaptureFixture[str], chain: dict[str, object]
) -> None:
    payload = bytearray(chain["payload"])  # type: ignore[arg-type]
    payload[130] ^= 0x01  # inside the user certificate's issuer data: issuer and user sigs break
    status, out, _ = run(
        capsys,
        "qr",
        "inspect",
        "--hex",
        payload.hex(),
        "--json",
        "--ca-key",
        ca_arg(chain),
    )
    assert status == 0
    assert json.loads(out)["signatures"] == {"ca": "valid", "issuer": "invalid", "user": "invalid"}
    status, _, _ = run(
        capsys,
        "qr",
        "inspect",
        "--hex",
        payload.hex(),
        "--ca-key",
        ca_arg(chain),
        "--require-accepted",
    )
    assert status == 4


def test_inspect_table_shows_every_field_with_offset(
    capsys: pytest.CaptureFixture[str], chain: dict[str, object], tmp_path: Path
) -> None:
    payload = chain["payload"]
    assert isinstance(payload, bytes)
    file = tmp_path / "ride.bin"
    file.write_bytes(payload)
    status, out, _ = run(capsys, "qr", "inspect", str(file), "--now", NOW_ISO)
    assert status == 0
    lines = out.splitlines()
    assert any(line.split()[:3] == ["10", "4", "issuer_id"] for line in lines if line.strip())
    assert any(
        line.split()[:3] == ["230", "65", "issuer_signature"] for line in lines if line.strip()
    )
    assert "unknown-ca-key" in out
    assert "acceptor verdict: REJECTED" in out


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (["qr", "inspect", "--hex", "zz"], 3, "--hex: not hexadecimal"),
        (["qr", "inspect", "--b64", "!!!"], 3, "--b64: not valid base64"),
        (["qr", "inspect", "--hex", "8001"], 3, "guide.data_length at offset 1"),
        (["qr", "inspect", "--hex", "00"], 3, "guide"),
        (["qr", "inspect", "/nonexistent/file"], 3, "cannot read /nonexistent/file"),
        (["qr", "inspect", "--hex", "80", "--ca-key", "x"], 3, "expected INDEX=HEXPOINT"),
        (["qr", "inspect", "--hex", "80", "--ca-key", "300=02"], 3, "outside 0-255"),
        (["qr", "inspect", "--hex", "80", "--ca-key", "1=0200"], 3, "--ca-key index 1"),
        (["qr", "inspect", "--hex", "80", "--now", "yesterday"], 3, "--now 'yesterday'"),
        (["qr", "inspect", "--hex", "80", "--accept-issuer", "12a"], 3, "cn8"),
        (["qr", "inspect"], 2, "usage error"),
        (["qr", "frobnicate"], 2, "usage error"),
    ],
)
def test_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], status: int, needle: str
) -> None:
    got, out, err = run(capsys, *args)
    assert got == status
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("jtca: ")
    assert needle in err
    assert "Traceback" not in err


def test_malformed_payload_names_field_and_offset(
    capsys: pytest.CaptureFixture[str], chain: dict[str, object]
) -> None:
    payload = bytearray(chain["payload"])  # type: ignore[arg-type]
    payload[3] = 0x25  # record header
    status, _, err = run(capsys, "qr", "inspect", "--hex", payload.hex())
    assert status == 3
    assert "interop_cert.record_header at offset 3" in err
    assert "0x25" in err


def test_spec_check_reports_the_annex_figures(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "qr", "spec-check", "--json")
    assert status == 0
    findings = {f["code"]: f for f in json.loads(out)}
    assert set(findings) == {
        "data-size",
        "length-field",
        "display-size",
        "error-correction",
        "symbology",
    }
    figures = findings["data-size"]["figures"]
    assert figures["payload_bytes"] == 332
    assert figures["annex_version_capacity_L"] == 32  # ISO/IEC 18004 table 7, version 2-L
    assert figures["needed_version_base_L"] == 12
    assert figures["needed_modules_base_L"] == 65
    assert figures["needed_version_base_M"] == 14
    assert figures["needed_version_with_extension_M"] == 15
    status, out, _ = run(capsys, "qr", "spec-check")
    assert status == 0
    assert "[data-size]" in out
    assert "65×65" in out


def test_console_script_never_shows_a_traceback() -> None:
    jtca = Path(sys.executable).with_name("jtca")
    result = subprocess.run(
        [str(jtca), "qr", "inspect", "--hex", "80" + "00" * 10],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.startswith("jtca: Malformed data: guide.data_length at offset 1")
    assert "Traceback" not in result.stderr
