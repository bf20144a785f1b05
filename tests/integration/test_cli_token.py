"""``jtca token`` through the real console script on the embedded SoftHSM2 of a temp state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_desks import share_args, write_shares

JTCA = str(Path(sys.executable).with_name("jtca"))


@pytest.fixture
def jtca(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = dict(os.environ, JTCA_STATE=str(tmp_path / "state"))
    env.pop("SOFTHSM2_CONF", None)

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [JTCA, "token", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,  # a share is typed at a prompt only when no file is named
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_move_a_key_back_it_up_and_refuse_replays(jtca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for label in ("MIN", "PROV", "PROV2"):
        jtca("init", "--token", label)
    assert json.loads(jtca("list", "--json").stdout)["tokens"] == ["MIN", "PROV", "PROV2"]
    sender = json.loads(
        jtca("keygen", "--token", "MIN", "--label", "sender", "--kind", "sm2", "--json").stdout
    )
    card = json.loads(
        jtca("keygen", "--token", "MIN", "--label", "card", "--kind", "sm4", "--json").stdout
    )
    assert len(card["check_value"]) == 6
    transport = json.loads(
        jtca(
            "keygen",
            "--token",
            "PROV",
            "--label",
            "transport",
            "--kind",
            "sm2",
            "--transport",
            "--json",
        ).stdout
    )
    package = tmp_path / "card.pkg"
    jtca(
        "export",
        "--token",
        "MIN",
        "--key",
        card["uri"],
        "--sender-key",
        sender["uri"],
        "--to",
        transport["public_key"],
        "--recipient",
        "Guangdong",
        "--out",
        str(package),
    )
    imported = json.loads(
        jtca(
            "import",
            "--token",
            "PROV",
            "--package",
            str(package),
            "--transport-key",
            transport["uri"],
            "--trusted-sender",
            sender["public_key"],
            "--json",
        ).stdout
    )
    assert imported["check_value"] == card["check_value"]
    again = jtca(
        "import",
        "--token",
        "PROV",
        "--package",
        str(package),
        "--transport-key",
        transport["uri"],
        "--trusted-sender",
        sender["public_key"],
        "--label",
        "x",
        ok=False,
    )
    assert again.returncode == 4
    assert again.stderr.startswith("jtca: Key package refused: replayed:")

    archive = tmp_path / "prov.backup.json"
    shares = json.loads(
        jtca(
            "backup",
            "--token",
            "PROV",
            "--threshold",
            "2",
            "--custodians",
            "3",
            "--out",
            str(archive),
            "--json",
        ).stdout
    )["shares"]
    assert len(shares) == 3
    files = write_shares(tmp_path / "custodians", shares)
    checked = jtca("check-shares", *share_args([files[0], files[2]]))
    assert "combine" in checked.stdout
    restored = json.loads(
        jtca(
            "restore",
            "--token",
            "PROV2",
            "--archive",
            str(archive),
            *share_args(files[1:]),
            "--json",
        ).stdout
    )
    assert {k["label"] for k in restored["restored"]} == {"card", "transport"}
    transport2 = next(k for k in restored["restored"] if k["label"] == "transport")
    assert transport2["public_key"] == transport["public_key"]
    replay = jtca(
        "import",
        "--token",
        "PROV2",
        "--package",
        str(package),
        "--transport-key",
        transport2["uri"],
        "--trusted-sender",
        sender["public_key"],
        "--label",
        "y",
        ok=False,
    )
    assert replay.returncode == 4
    assert "replayed" in replay.stderr


def test_errors_are_one_line(jtca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = jtca("list", "--token", "NOPE", ok=False)
    assert missing.returncode == 5
    assert missing.stderr.count("\n") == 1
    assert "jtca token init --token NOPE" in missing.stderr
    jtca("init", "--token", "T")
    refused = jtca("destroy", "--token", "T", "--key", "pkcs11:token=T;object=k", ok=False)
    assert refused.returncode == 3
    assert "--yes" in refused.stderr
    bad_uri = jtca("destroy", "--token", "T", "--key", "token=T", "--yes", ok=False)
    assert bad_uri.returncode == 3
    assert "--key: " in bad_uri.stderr
    bad = write_shares(tmp_path / "bad", ["JTCA1-2OF3-1-00000000-AAAA-00000000"])
    bad_share = jtca("check-shares", *share_args(bad), ok=False)
    assert bad_share.returncode == 3
    assert "checksum" in bad_share.stderr
    # a share is never a command-line argument: the option is gone, and a value is refused
    on_line = jtca("check-shares", "JTCA1-2OF3-1-00000000-AAAA-00000000", ok=False)
    assert on_line.returncode == 2
    no_option = jtca("restore", "--token", "T", "--archive", "x", "--share", "s", ok=False)
    assert no_option.returncode == 2
    assert "unrecognized arguments: --share s" in no_option.stderr
    for result in (missing, refused, bad_uri, bad_share, on_line, no_option):
        assert "Traceback" not in result.stderr


def test_the_local_tool_needs_no_service_and_makes_no_database(jtca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`jtca token` works on this machine's tokens only: in a folder `jtca init` never made it
    starts no service, writes no database and nothing to an audit log, and still does its work."""
    jtca("init", "--token", "SITE")
    made = json.loads(
        jtca("keygen", "--token", "SITE", "--label", "k", "--kind", "sm4", "--json").stdout
    )
    destroyed = json.loads(
        jtca("destroy", "--token", "SITE", "--key", made["uri"], "--yes", "--json").stdout
    )
    assert destroyed["objects"] == 1
    state = tmp_path / "state"
    assert sorted(p.name for p in state.iterdir()) == ["softhsm2"]
    assert not list(state.rglob("*.db"))
    assert not list(state.rglob("*.sock"))
