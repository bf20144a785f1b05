"""``jtca token backup`` and ``restore`` cut by SIGKILL (issue #14), through the real console
script on the embedded SoftHSM2: the process dies at a named crash point (``JTCA_CRASH_AT``),
then the rerun or the site's recovery (``jtca recover``'s site part) must leave the token whole
or empty — never a half-restored token, never 'Duplicate key label', never a stray temporary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_desks import share_args, write_shares

JTCA = str(Path(sys.executable).with_name("jtca"))
KILLED = -signal.SIGKILL


class World:
    """A state folder with a source token holding an SM2 key, a transport key that opened a
    key package (so the archive carries a replay marker) and an SM4 key, and its backup."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.env = dict(
            os.environ,
            JTCA_STATE=str(tmp_path / "state"),
            XDG_STATE_HOME=str(tmp_path / "xdg-state"),  # the site journal of this client
        )
        for variable in ("SOFTHSM2_CONF", "JTCA_CRASH_AT", "JTCA_CRASH_TRACE"):
            self.env.pop(variable, None)

    def jtca(self, *args: str, crash: str | None = None, ok: bool = True) -> Any:
        env = dict(self.env, **({"JTCA_CRASH_AT": crash} if crash else {}))
        result = subprocess.run(
            [JTCA, "token", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in result.stderr, result.stderr
        if crash is not None:
            assert result.returncode == KILLED, (crash, result.returncode, result.stderr)
        elif ok:
            assert result.returncode == 0, (args, result.stderr)
        return result

    def data(self, *args: str) -> Any:
        return json.loads(self.jtca(*args, "--json").stdout)

    def keys(self, token: str) -> list[dict[str, Any]]:
        return sorted(self.data("list", "--token", token)["keys"], key=lambda k: k["label"])

    @property
    def journal(self) -> Path:
        return self.tmp / "xdg-state" / "jtca" / "site-intents"

    def open_intents(self) -> list[dict[str, Any]]:
        folder = self.journal / "open"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def settled(self) -> list[dict[str, Any]]:
        folder = self.journal / "done"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def recover_site(self) -> list[dict[str, Any]]:
        """The site part of ``jtca recover`` (its service part needs a signed-in officer)."""
        code = (
            "import json, ca.site.backup_recovery\n"
            "from ca.site.recovery import recover_site_here\n"
            "print(json.dumps(recover_site_here()))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        found: list[dict[str, Any]] = json.loads(result.stdout)
        return found


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path, list[Path]]:
    world = World(tmp_path_factory.mktemp("backup-source"))
    for label in ("MIN", "SRC"):
        world.jtca("init", "--token", label)
    sender = world.data("keygen", "--token", "MIN", "--label", "sender", "--kind", "sm2")
    card = world.data("keygen", "--token", "MIN", "--label", "card", "--kind", "sm4")
    transport = world.data(
        "keygen", "--token", "SRC", "--label", "transport", "--kind", "sm2", "--transport"
    )
    world.data("keygen", "--token", "SRC", "--label", "signing", "--kind", "sm2")
    package = world.tmp / "card.pkg"
    world.jtca(
        "export", "--token", "MIN", "--key", card["uri"], "--sender-key", sender["uri"],
        "--to", transport["public_key"], "--recipient", "SRC", "--out", str(package),
    )  # fmt: skip
    world.jtca(
        "import", "--token", "SRC", "--package", str(package), "--transport-key",
        transport["uri"], "--trusted-sender", sender["public_key"],
    )  # fmt: skip
    archive = world.tmp / "backups" / "src.backup.json"
    archive.parent.mkdir()
    shares = world.data(
        "backup", "--token", "SRC", "--threshold", "2", "--custodians", "3", "--out", str(archive)
    )["shares"]
    return world, archive, write_shares(world.tmp / "custodians", shares)


@pytest.fixture
def world(source: tuple[World, Path, list[Path]], tmp_path: Path) -> tuple[World, Path, list[Path]]:
    """A fresh state folder of its own, with an empty token DST and the source's archive."""
    _, archive, shares = source
    world = World(tmp_path)
    world.jtca("init", "--token", "DST")
    copy = tmp_path / archive.name
    copy.write_bytes(archive.read_bytes())
    return world, copy, shares


def _identity(keys: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(k["label"], k["kind"], k["public_key"]) for k in keys]


def _archived(archive: Path) -> list[tuple[str, str, str | None]]:
    doc = json.loads(archive.read_text())
    return sorted((e["label"], e["kind"], e.get("public_key")) for e in doc["keys"])


def _restore(
    world: World, archive: Path, shares: list[Path], crash: str | None = None, ok: bool = True
) -> Any:
    return world.jtca(
        "restore", "--token", "DST", "--archive", str(archive), *share_args(shares[:2]),
        "--json", crash=crash, ok=ok,
    )  # fmt: skip


@pytest.mark.parametrize(
    "crash",
    [
        "token.restore:after-intent",
        "token.restore:after-key",
        "token.restore:after-key:2",
        "token.restore:before-markers",
        "token.restore:before-end",
    ],
)
def test_a_cut_restore_is_finished_by_its_rerun(
    world: tuple[World, Path, list[Path]], crash: str
) -> None:
    w, archive, shares = world
    _restore(w, archive, shares, crash=crash)
    (cut,) = w.open_intents()
    assert cut["operation"] == "token.restore"
    # the intent named every key of the archive before the first went in
    assert sorted(k["label"] for k in cut["plan"]["keys"]) == [a[0] for a in _archived(archive)]
    in_token = [k["label"] for k in w.keys("DST")]
    # noted as installed, or installed and cut before the note
    assert set(cut["progress"].get("installed", {})) <= set(in_token)
    rerun = json.loads(_restore(w, archive, shares).stdout)
    assert sorted(rerun["adopted"]) == in_token
    assert _identity(w.keys("DST")) == _archived(archive)  # each key once, the archive's
    assert w.open_intents() == []
    (done,) = [i for i in w.settled() if i["id"] == cut["id"]]
    assert done["state"] == "completed"
    noted = set(done["progress"].get("installed", {})) | set(done["progress"].get("adopted", {}))
    assert sorted(noted) == [a[0] for a in _archived(archive)]  # every CKA_ID noted


def test_a_restored_token_refuses_the_replayed_package_after_a_cut(
    world: tuple[World, Path, list[Path]], source: tuple[World, Path, list[Path]]
) -> None:
    """The replay markers, made last, are completed by the rerun."""
    w, archive, shares = world
    _restore(w, archive, shares, crash="token.restore:before-markers")
    _restore(w, archive, shares)
    doc = json.loads(archive.read_text())
    assert len(doc["imported_packages"]) == 1
    src, _, _ = source
    transport = next(k for k in w.keys("DST") if k["label"] == "transport")
    sender = next(k for k in src.keys("MIN") if k["label"] == "sender")
    replay = w.jtca(
        "import", "--token", "DST", "--package", str(src.tmp / "card.pkg"), "--transport-key",
        transport["uri"], "--trusted-sender", sender["public_key"], "--label", "again", ok=False,
    )  # fmt: skip
    assert replay.returncode == 4
    assert "replayed" in replay.stderr


@pytest.mark.parametrize("crash", ["token.restore:after-key", "token.restore:after-key:2"])
def test_recovery_rolls_a_half_restore_back(
    world: tuple[World, Path, list[Path]], crash: str
) -> None:
    w, archive, shares = world
    _restore(w, archive, shares, crash=crash)
    assert w.keys("DST") != []
    (item,) = w.recover_site()
    assert (item["operation"], item["result"]) == ("token.restore", "rolled-back")
    assert w.keys("DST") == []  # no half-restored token
    assert w.open_intents() == []
    assert w.recover_site() == []  # idempotent: nothing left
    _restore(w, archive, shares)
    assert _identity(w.keys("DST")) == _archived(archive)


def test_recovery_rolls_a_restore_cut_after_its_last_key_forward(
    world: tuple[World, Path, list[Path]],
) -> None:
    w, archive, shares = world
    _restore(w, archive, shares, crash="token.restore:before-markers")
    (item,) = w.recover_site()
    assert item["result"] == "rolled-forward"
    assert "1 replay marker(s) completed" in item["outcome"]
    assert _identity(w.keys("DST")) == _archived(archive)
    again = json.loads(_restore(w, archive, shares).stdout)  # done already: all adopted
    assert sorted(again["adopted"]) == [a[0] for a in _archived(archive)]
    assert _identity(w.keys("DST")) == _archived(archive)


def test_another_key_under_an_archived_label_is_never_touched(
    world: tuple[World, Path, list[Path]],
) -> None:
    w, archive, shares = world
    _restore(w, archive, shares, crash="token.restore:after-key:2")
    (cut,) = w.open_intents()
    (first,) = cut["progress"]["installed"]  # the second is in, not yet noted
    first_key = next(k for k in w.keys("DST") if k["label"] == first)
    w.jtca("destroy", "--token", "DST", "--key", first_key["uri"], "--yes")
    kind = next(a[1] for a in _archived(archive) if a[0] == first)
    other = w.data("keygen", "--token", "DST", "--label", first, "--kind", kind)
    refused = _restore(w, archive, shares, ok=False)
    assert refused.returncode == 4
    assert f"already holds another key labelled {first!r}" in refused.stderr
    assert "Duplicate key label" not in refused.stderr
    # the other key stays; what the cut run restored beside it is rolled back
    assert [k["uri"] for k in w.keys("DST")] == [other["uri"]]
    assert w.open_intents() == []
    (done,) = [i for i in w.settled() if i["id"] == cut["id"]]
    assert done["state"] == "rolled-back"


def test_a_cut_backup_leaves_only_a_temporary_the_next_backup_removes(
    world: tuple[World, Path, list[Path]],
) -> None:
    w, _, _ = world
    w.data("keygen", "--token", "DST", "--label", "k", "--kind", "sm2")
    folder = w.tmp / "out"
    folder.mkdir()
    out = folder / "dst.json"
    backup = ["backup", "--token", "DST", "--threshold", "2", "--custodians", "3", "--json"]
    w.jtca(*backup, "--out", str(out), crash="token.backup:before-rename")
    assert not out.exists()
    (stray,) = folder.glob(".dst.json.*.tmp")
    (cut,) = w.open_intents()
    assert cut["plan"]["archive"] == str(out)
    # the next backup — into another file of the folder — removes it
    w.jtca(*backup, "--out", str(folder / "other.json"))
    assert not stray.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["other.json"]
    assert w.open_intents() == []
    settled = {i["id"]: i for i in w.settled()}
    assert settled[cut["id"]]["state"] == "rolled-back"


def test_recovery_removes_a_cut_backups_temporary(world: tuple[World, Path, list[Path]]) -> None:
    w, _, _ = world
    out = w.tmp / "dst.json"
    backup = ["backup", "--token", "DST", "--threshold", "2", "--custodians", "3", "--json"]
    w.jtca(*backup, "--out", str(out), crash="token.backup:before-rename")
    assert list(w.tmp.glob(".dst.json.*.tmp"))
    (item,) = w.recover_site()
    assert (item["operation"], item["result"]) == ("token.backup", "rolled-back")
    assert not list(w.tmp.glob(".dst.json.*.tmp"))
    w.jtca(*backup, "--out", str(out), crash="token.backup:after-write")
    (item,) = w.recover_site()
    assert item["result"] == "rolled-forward"  # the archive is whole; its shares were never shown
    assert "make a new backup" in item["outcome"]
