"""Errors of the command line (issue #17): with --json anywhere on the command line they are one
JSON object on standard error; hostile files are named with the offset and the bytes, never a
parser's 240-digit number; ca/cli/main.py's docstring lists the exit statuses docs/cli.md
lists, and every JtcaError's exit status is one of them."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ca
import ca.cli.main as cli_main
import hsm
from ca.cli.main import json_last, main, run_guarded
from ca.core.errors import BadInput, CodecError, JtcaError
from hsm.der_scan import broken_element, explain

ROOT = Path(__file__).resolve().parents[2]
JTCA = str(Path(sys.executable).with_name("jtca"))


def error_of(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    document = json.loads(line)
    assert list(document) == ["error"]
    error: dict[str, object] = document["error"]
    return error


def test_a_usage_error_with_json_is_json_naming_the_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["city", "keys", "--expiring", "soon", "--json"]) == 2
    error = error_of(capsys)
    assert error["title"] == "Usage error"
    assert error["exit_code"] == 2
    assert error["field"] == "--expiring"
    assert "invalid int value: 'soon'" in str(error["message"])
    # --json before the command: still JSON, and read by the command itself
    assert main(["--json", "nonsense"]) == 2
    assert error_of(capsys)["field"] == "COMMAND"
    assert main(["--json", "city", "keys", "--expiring", "-"]) == 2
    assert error_of(capsys)["field"] == "--expiring"
    assert json_last(["--json", "qr", "spec-check"], "qr") == ["qr", "spec-check", "--json"]
    assert main(["--json", "qr", "spec-check"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["code"] == "data-size"


def test_without_json_errors_stay_one_line_of_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["city", "keys", "--expiring", "soon"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("jtca: usage error: jtca city keys: argument --expiring")
    assert len(captured.err.splitlines()) == 1


def test_a_jtca_error_with_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.toml"
    assert main(["ceremony", "plan", str(missing), "--json"]) == 3
    error = error_of(capsys)
    assert error == {
        "title": "Ceremony refused",
        "message": f"cannot read {missing}: No such file or directory",
        "exit_code": 3,
    }


def test_field_internal_error_and_missing_extra_as_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def malformed() -> int:
        raise CodecError("guide.qr_type", 2, "unknown type 0x07")

    assert run_guarded(malformed, as_json=True) == 3
    assert error_of(capsys) == {
        "title": "Malformed data",
        "message": "guide.qr_type at offset 2: unknown type 0x07",
        "exit_code": 3,
        "field": "guide.qr_type",
    }

    def broken() -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.delenv("JTCA_DEBUG", raising=False)
    assert run_guarded(broken, as_json=True) == 1
    error = error_of(capsys)
    assert error["exit_code"] == 1
    assert str(error["message"]).startswith("ZeroDivisionError: division by zero")

    def headless() -> int:
        raise ModuleNotFoundError("No module named 'textual'", name="textual")

    assert run_guarded(headless, as_json=True) == 69
    error = error_of(capsys)
    assert (error["title"], error["exit_code"]) == ("Not installed", 69)
    assert "jtca[console]" in str(error["message"])

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_guarded(interrupted, as_json=True) == 130
    assert error_of(capsys)["exit_code"] == 130


def test_a_240_digit_number_never_reaches_the_reader(capsys: pytest.CaptureFixture[str]) -> None:
    def garbage() -> int:
        raise BadInput("Insufficient data - " + "7" * 240 + " bytes requested")

    assert run_guarded(garbage) == 3
    err = capsys.readouterr().err
    assert "7" * 21 not in err
    assert "<a 240-digit number>" in err


# -- hostile files given to real commands --------------------------------------------------------
def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JTCA_STATE=str(tmp_path / "state"))
    for variable in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_SERVER_CERT", "JTCA_DATABASE_URL"):
        env.pop(variable, None)
    return subprocess.run(
        [JTCA, *argv], capture_output=True, text=True, env=env, check=False, timeout=120
    )


def test_ceremony_plan_of_a_binary_file_names_the_byte(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_bytes(b'[ceremony]\nname = "x"\n' + bytes([0xC3, 0x28, 0xFF, 0x00]) * 4)
    result = run(tmp_path, "ceremony", "plan", str(plan))
    assert result.returncode == 3
    assert result.stderr == (
        f"jtca: Ceremony refused: {plan}: not UTF-8 text: byte offset 22: invalid continuation "
        "byte (bytes there: c3 28 ff 00 c3 28 ff 00)\n"
    )
    result = run(tmp_path, "ceremony", "plan", str(plan), "--json")
    assert json.loads(result.stderr)["error"]["exit_code"] == 3
    assert "UnicodeDecodeError" not in result.stderr


# a SEQUENCE whose inner element's length field is 100 octets of ff: asn1crypto's message
# carries that length (241 digits) in full
HUGE_LENGTH = b"\x30\x66\x04\xe4" + b"\xff" * 100
CUT_SHORT = b"\x30\x82\x01\x00\x02\x01\x05"  # says 256 bytes, 3 follow
TRAILING = b"\x30\x03\x02\x01\x05\xde\xad"  # two bytes after the end of the structure


def test_garbage_certificates_are_explained_by_offset_and_hex(tmp_path: Path) -> None:
    cases = {
        "cut-short": (CUT_SHORT, "at offset 0: a length of 256 bytes, but the file has 3 left"),
        "trailing": (TRAILING, "at offset 5: 2 bytes after the end of the structure (bytes "
                     "there: de ad)"),
        "huge-length": (HUGE_LENGTH, "at offset 2: a length field of 100 octets (0xffffffffffff"
                        "ffff…): too long (bytes there: 04 e4 ff ff"),
        "random": (bytes(range(7, 200)), "at offset 10: 183 bytes after the end of the structure"),
    }  # fmt: skip
    for name, (data, expected) in cases.items():
        cert = tmp_path / f"{name}.der"
        cert.write_bytes(data)
        result = run(
            tmp_path, "witness", "init", "--name", "w", "--dir", str(tmp_path / f"w-{name}"),
            "--audit-cert", str(cert),
        )  # fmt: skip
        assert result.returncode == 3, result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith(f"jtca: Trust anchor refused: {cert}: "), line
        assert expected in line, line
        assert re.search(r"\d{21}", line) is None, line
        assert "internal error" not in line


def test_explain_names_offset_problem_and_bytes() -> None:
    from asn1crypto import x509

    with pytest.raises(ValueError, match=r"\d{240}"):  # what reached the reader before
        x509.Certificate.load(HUGE_LENGTH, strict=True).native  # noqa: B018
    assert broken_element(b"") == (0, "no bytes")
    assert broken_element(b"\x30\x80\x00\x00") == (0, "an indefinite length (not DER)")
    assert broken_element(b"\x30\x03\x02\x01\x05") is None
    long_length = b"\x04\x89" + b"\x01" * 9 + b"\x00"
    assert explain(long_length) == (
        "at offset 0: a length field of 9 octets (0x0101010101010101…): too long "
        "(bytes there: 04 89 01 01 01 01 01 01 01 01 01 00)"
    )
    # every header fits: the parser's own complaint, first line, numbers shortened
    assert explain(b"\x30\x03\x02\x01\x05", "wrong\n  while parsing X") == "wrong"
    assert explain(b"\x05\x00", "x" + "9" * 30) == "x<a 30-digit number>"


def test_garbage_interop_request_and_key_package_are_explained() -> None:
    from ca.qr.cert_request import RequestRefused, read_request
    from hsm.envelope import PackageRefused, read_package

    with pytest.raises(RequestRefused, match=r"malformed request: at offset 0: a length of 256"):
        read_request(CUT_SHORT)
    with pytest.raises(PackageRefused) as refused:
        read_package(TRAILING)
    assert "at offset 5: 2 bytes after the end of the structure" in str(refused.value)


# -- the exit statuses: the docstring, docs/cli.md and the errors agree ---------------------------
def documented() -> set[int]:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    table = text.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    return {int(n) for n in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}


def in_docstring() -> set[int]:
    doc = cli_main.__doc__ or ""
    section = doc.split("Exit status (docs/cli.md):", 1)[1].split("\n\n", 1)[0]
    return {int(n) for n in re.findall(r"(?:^|;)\s*(\d+) ", section)}


def every_error_class() -> list[type[JtcaError]]:
    for package in (ca, hsm):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)
    found: list[type[JtcaError]] = []
    todo: list[type[JtcaError]] = [JtcaError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_exit_statuses_agree_with_docs_cli_md() -> None:
    docs = documented()
    assert {0, 1, 2, 3, 4, 5, 6, 7, 8, 69, 75, 130} <= docs
    assert in_docstring() == docs
    for cls in every_error_class():
        assert cls.exit_code in docs, (cls, cls.exit_code)


def test_a_hostile_log_bundle_is_bad_input_naming_the_entry() -> None:
    from ca.log.verify import verify_bundle

    good = {"seq": 1, "at": 1, "kind": "event", "actor": "a", "action": "x", "subject": "s",
            "object_sm3": None, "details": "{}", "leaf_hash": "00"}  # fmt: skip
    cases = {
        "not an object": ([5], "entries[0]: not an object"),
        "missing keys": ([good, {"seq": 2}], "entries[1]: no at, kind, actor"),
        "seq": ([good | {"seq": "9" * 300}], "entries[0].seq: '9999"),
        "seal_key": ([good | {"seal_key": [1]}], "entries[0].seal_key: '[1]' is not an integer"),
    }
    for name, (entries, expected) in cases.items():
        bundle = json.dumps({"format": "jtca-log-bundle/1", "entries": entries, "size": 1,
                             "nodes": [], "checkpoints": []}).encode()  # fmt: skip
        with pytest.raises(BadInput) as refused:
            verify_bundle(bundle, checkpoints=[], audit_keys=[], source="b.json")
        assert str(refused.value).startswith("b.json: not a jtca log bundle: "), name
        assert expected in str(refused.value), (name, str(refused.value))
        assert len(str(refused.value)) < 200
