"""Progress bars on ``jtca token backup`` and ``jtca token restore`` (issue #17), through the real
console script on the embedded SoftHSM2 of a temp state: drawn on standard error when it is a
terminal, erased at the end; nothing when it is piped or with ``--json``; the output the same."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

JTCA = str(Path(sys.executable).with_name("jtca"))
KEYS = 210  # a bar is drawn from 200 items of work (ca.cli.progress.MIN_TOTAL)
MAKE_KEYS = f"""
from ca.vault.embedded import embedded_token
store = embedded_token("MANY").store
for n in range({KEYS}):
    store.generate_sm4(f"key-{{n:03d}}")
"""


@dataclass(frozen=True)
class Site:
    env: dict[str, str]
    folder: Path
    archive: Path
    share_files: list[Path]


def run(site: Site, *args: str, tty: bool) -> tuple[str, bytes]:
    """``jtca token …``: its standard output, and what it wrote to standard error (a terminal
    with ``tty``, else a pipe)."""
    argv = [JTCA, "token", *args]
    if not tty:
        result = subprocess.run(
            argv, capture_output=True, env=site.env, timeout=300, stdin=subprocess.DEVNULL
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.decode(), result.stderr
    leader, follower = pty.openpty()
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=follower, env=site.env, stdin=subprocess.DEVNULL
    ) as process:
        os.close(follower)
        stdout, _ = process.communicate(timeout=300)
    drawn = b""
    try:
        while chunk := os.read(leader, 65536):
            drawn += chunk
    except OSError:  # the terminal's other end is closed: all is read
        pass
    os.close(leader)
    assert process.returncode == 0, drawn
    return stdout.decode(), drawn


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A token of 210 keys, backed up once (the archive and its shares for the restores)."""
    folder = tmp_path_factory.mktemp("token-progress")
    env = dict(os.environ, JTCA_STATE=str(folder / "state"))
    env.pop("SOFTHSM2_CONF", None)
    subprocess.run([sys.executable, "-c", MAKE_KEYS], env=env, check=True, timeout=300)
    archive = folder / "many.backup.json"
    made = Site(env, folder, archive, [])
    out, _ = run(
        made, "backup", "--token", "MANY", "--threshold", "2", "--custodians", "3",
        "--out", str(archive), "--json", tty=False,
    )  # fmt: skip
    shares = json.loads(out)["shares"]
    files = []
    for n, share in enumerate(shares[:2]):
        path = folder / f"share-{n}.txt"
        path.write_text(share + "\n")
        files.append(path)
    return Site(env, folder, archive, files)


def test_backup_draws_its_bar_on_a_terminal_only(site: Site) -> None:
    def backup(name: str, *, tty: bool, json_output: bool = False) -> tuple[str, bytes]:
        out = site.folder / name
        return run(
            site, "backup", "--token", "MANY", "--threshold", "2", "--custodians", "3",
            "--out", str(out), *(["--json"] if json_output else []), tty=tty,
        )  # fmt: skip

    out, drawn = backup("on-a-terminal.json", tty=True)
    assert out.startswith(f"wrote {site.folder / 'on-a-terminal.json'}; give one share")
    assert b"backing up the token [" in drawn
    assert f"100% {KEYS}/{KEYS}".encode() in drawn
    assert drawn.endswith(b"\r")  # erased at the end
    archive = json.loads((site.folder / "on-a-terminal.json").read_text())
    assert len(archive["keys"]) == KEYS

    out, piped = backup("piped.json", tty=False)
    assert out.startswith("wrote ")
    assert piped == b""
    out, on_json = backup("json.json", tty=True, json_output=True)
    assert len(json.loads(out)["shares"]) == 3
    assert on_json == b""


def test_restore_draws_its_bar_on_a_terminal_only(site: Site) -> None:
    def restore(token: str, *, tty: bool, json_output: bool = False) -> tuple[str, bytes]:
        run(site, "init", "--token", token, tty=False)
        shares = [a for path in site.share_files for a in ("--share-file", str(path))]
        return run(
            site, "restore", "--token", token, "--archive", str(site.archive), *shares,
            *(["--json"] if json_output else []), tty=tty,
        )  # fmt: skip

    out, drawn = restore("ON-A-TERMINAL", tty=True)
    lines = out.splitlines()
    assert len(lines) == KEYS
    assert all(line.startswith("restored pkcs11:token=ON-A-TERMINAL;") for line in lines)
    assert b"restoring the token [" in drawn
    assert f"100% {KEYS}/{KEYS}".encode() in drawn
    assert drawn.endswith(b"\r")  # erased at the end

    out, piped = restore("PIPED", tty=False)
    assert len(out.splitlines()) == KEYS
    assert piped == b""
    out, on_json = restore("JSON", tty=True, json_output=True)
    assert len(json.loads(out)["restored"]) == KEYS
    assert on_json == b""
