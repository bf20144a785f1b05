"""Names that become paths or labels (issue #14, point 4): one test per entry point.

Each test runs the real entry point (the ``jtca`` console script where there is one, with a
real SoftHSM2) with hostile names — ``../`` traversal, ``/``, NUL, a leading dot, too long —
and walks the temporary tree before and after: a refused name leaves nothing behind outside
the folder it was meant for, and nothing it names is created anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import NewToken

from hsm.names import BadName, file_name, object_label, path_in, slug, token_label

JTCA = str(Path(sys.executable).with_name("jtca"))

# What a hostile name looks like, per rule broken (a NUL cannot cross a command line: API only)
HOSTILE_TOKEN_LABELS = (
    "../../trav/evil",
    "../evil",
    "a/b",
    "/tmp/evil",
    "..",
    ".hidden",
    "a..b",
    "x" * 33,
    "",
    "with space",
)
HOSTILE_KEY_LABELS = ("../../trav/evil", "a/b", "..", ".hidden", "a..b", "k" * 129, "tab\tlabel")

Tree = dict[str, tuple[str, int, int]]


def tree(root: Path) -> Tree:
    """Every path under ``root``: kind, size, mtime (a symbolic link is not followed)."""
    found: Tree = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            found[str(path.relative_to(root))] = (kind, st.st_size, st.st_mtime_ns)
    return found


def changed(before: Tree, after: Tree) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def outside(paths: set[str], allowed: str) -> set[str]:
    """The paths not inside the folder ``allowed`` (relative to the tree's root)."""
    return {p for p in paths if p != allowed and not p.startswith(allowed + "/")}


def evil(after: Tree) -> set[str]:
    return {p for p in after if "evil" in Path(p).name or "trav" in p.split("/")}


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """A working folder two levels down (``../../`` stays inside the tree) with a victim PIN
    file where ``../../trav/evil.pin`` from the state's SoftHSM2 folder lands."""
    work = tmp_path / "a" / "b"
    (work / "state").mkdir(parents=True)
    victim = work / "trav" / "evil.pin"
    victim.parent.mkdir()
    victim.write_text("victim\n")
    return work


def jtca_in(work: Path, **extra: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = dict(os.environ, JTCA_STATE=str(work / "state"), **extra)
    for variable in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_SERVER_CERT", "JTCA_DATABASE_URL"):
        env.pop(variable, None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [JTCA, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            check=False,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )

    return run


def assert_refused(result: subprocess.CompletedProcess[str], code: int = 3) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


# -- the patterns themselves -----------------------------------------------------------------
def test_patterns_refuse_every_way_out() -> None:
    for check in (token_label, object_label, file_name, slug):
        for bad in ("../x", "a/b", "..", ".x", "a..b", "a\x00b", "", "a\nb", "a\\b", None, 7):
            with pytest.raises(BadName):
                check(bad)
    assert token_label("MOT-ROOT") == "MOT-ROOT"
    assert token_label("witness-w.1") == "witness-w.1"
    assert token_label("x" * 32) == "x" * 32
    with pytest.raises(BadName, match="token label"):
        token_label("x" * 33)
    assert object_label("card-440100-g1") == "card-440100-g1"
    assert file_name("card-440100-g1.to-44.jkp") == "card-440100-g1.to-44.jkp"
    assert slug("issuer-whitelist") == "issuer-whitelist"
    with pytest.raises(BadName):
        slug("Issuer-Whitelist")


def test_path_in_refuses_a_link_out_of_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "victim.pin").write_text("victim\n")
    (folder / "link.pin").symlink_to(tmp_path / "victim.pin")
    with pytest.raises(BadName, match="symbolic link"):
        path_in(folder, "link.pin")
    with pytest.raises(BadName):
        path_in(folder, "../victim.pin")
    assert path_in(folder, "plain.pin") == folder / "plain.pin"


# -- jtca token init: the embedded token and its PIN file ------------------------------------
def test_token_init_refuses_a_label_that_leaves_the_state_folder(place: Path) -> None:
    jtca = jtca_in(place)
    before = tree(place.parent.parent)
    for label in HOSTILE_TOKEN_LABELS:
        result = jtca("token", "init", "--token", label)
        assert_refused(result)
        assert "Bad name" in result.stderr or "Bad input" in result.stderr, result.stderr
    after = tree(place.parent.parent)
    assert outside(changed(before, after), "a/b/state") == set()
    assert (place / "trav" / "evil.pin").read_text() == "victim\n"
    assert not list((place / "state").rglob("*.pin"))
    assert not [p for p in after if p.startswith("a/b/state") and "evil" in p]
    # the same command with a good label makes the token and its PIN file, in the folder
    made = jtca("token", "init", "--token", "GOOD-1")
    assert made.returncode == 0, made.stderr
    assert (place / "state" / "softhsm2" / "GOOD-1.pin").is_file()
    listed = jtca("token", "list", "--json")
    assert '"GOOD-1"' in listed.stdout
    assert "evil" not in listed.stdout


def test_token_init_does_not_follow_a_planted_pin_file_link(place: Path) -> None:
    jtca = jtca_in(place)
    assert jtca("token", "init", "--token", "FIRST").returncode == 0  # makes state/softhsm2
    victim = place / "victim.pin"
    victim.write_text("victim\n")
    (place / "state" / "softhsm2" / "LINKED.pin").symlink_to(victim)
    before = tree(place.parent.parent)
    result = jtca("token", "init", "--token", "LINKED")
    assert result.returncode != 0, result.stdout
    assert victim.read_text() == "victim\n"
    assert outside(changed(before, tree(place.parent.parent)), "a/b/state") == set()


def test_softhsm_token_creation_refuses_hostile_labels(softhsm: Path, tmp_path: Path) -> None:
    from hsm.pkcs11.softhsm2 import init_token, token_labels

    labels = token_labels()
    before = tree(tmp_path)
    tokens_before = tree(softhsm)
    for label in (*HOSTILE_TOKEN_LABELS, "nul\x00label", "../\x00"):
        with pytest.raises(BadName):
            init_token(label, "1234", "5678")
    assert token_labels() == labels
    assert changed(before, tree(tmp_path)) == set()
    assert changed(tokens_before, tree(softhsm)) == set()


# -- key labels at generation and installation -----------------------------------------------
def test_key_labels_are_checked_when_keys_are_made_or_installed(
    new_token: NewToken, snapshot, softhsm: Path
) -> None:  # type: ignore[no-untyped-def]
    import secrets

    from hsm.pkcs11.keys import KeyKind

    _, store, _ = new_token("NAMES")
    before = tree(softhsm)
    for label in (*HOSTILE_KEY_LABELS, "nul\x00label"):
        with pytest.raises(BadName):
            store.generate_sm2(label)
        with pytest.raises(BadName):
            store.generate_sm4(label)
        with pytest.raises(BadName):
            store.install_key(KeyKind.SM4, label, bytearray(secrets.token_bytes(16)))
        with pytest.raises(BadName):
            store.install_key(KeyKind.SM2, label, bytearray(b"\x00" * 31 + b"\x07"))
    assert snapshot(store) == []
    # SoftHSM2 rewrites its own token files on a look-up; nothing else in its folder changes
    assert outside(changed(before, tree(softhsm)), "tokens") == set()
    assert store.generate_sm2("k" * 128).label == "k" * 128


def test_token_keygen_refuses_a_hostile_key_label(place: Path) -> None:
    jtca = jtca_in(place)
    assert jtca("token", "init", "--token", "KEYS").returncode == 0
    before = tree(place.parent.parent)
    for label in HOSTILE_KEY_LABELS:
        for kind in ("sm2", "sm4"):
            result = jtca("token", "keygen", "--token", "KEYS", "--label", label, "--kind", kind)
            assert_refused(result)
            assert "Bad name" in result.stderr, result.stderr
    after = tree(place.parent.parent)
    # SoftHSM2 may touch its own token files on a read-only look-up; nothing else changes
    assert outside(changed(before, after), "a/b/state/softhsm2/tokens") == set()
    assert '"keys": []' in jtca("token", "list", "--token", "KEYS", "--json").stdout


# -- officer and witness tokens ----------------------------------------------------------------
def test_officer_token_label_is_checked_before_the_token_is_made(place: Path) -> None:
    jtca = jtca_in(place, JTCA_TEST_NEW_PIN="officer-pin-1234")
    before = tree(place.parent.parent)
    for label in ("../../trav/evil", "a/b", ".hidden", "x" * 33):
        result = jtca(
            "officer",
            "keygen",
            "--officer",
            "mot-root-1",
            "--create-token",
            "--token",
            label,
            "--pin-source",
            "env:JTCA_TEST_NEW_PIN",
        )
        assert_refused(result)
        assert "Bad name" in result.stderr, result.stderr
    after = tree(place.parent.parent)
    assert outside(changed(before, after), "a/b/state") == set()
    assert not evil({p for p in after if p.startswith("a/b/state")})
    assert (place / "trav" / "evil.pin").read_text() == "victim\n"


def test_personal_token_api_refuses_hostile_labels(tmp_path: Path, softhsm: Path) -> None:
    from ca.site.personal_token import create_softhsm_token
    from hsm.pkcs11.softhsm2 import token_labels

    labels = token_labels()
    before = tree(tmp_path)
    for label in (*HOSTILE_TOKEN_LABELS, "nul\x00"):
        with pytest.raises(BadName):
            create_softhsm_token(softhsm, label, "1234")
    assert token_labels() == labels
    assert changed(before, tree(tmp_path)) == set()


# -- ceremony files ------------------------------------------------------------------------------
EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"


def _ceremony_file(folder: Path, *, holder: str = "MOT-ROOT", root: str = "mot-root-2026") -> Path:
    """The shipped example with its token label ``holder`` and its root key label ``root``."""
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace('label = "MOT-ROOT"', f'label = "{holder}"')
    text = text.replace('label = "mot-root-2026"', f'label = "{root}"')
    path = folder / "plan.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_ceremony_token_label_refused_before_any_token_is_made(place: Path) -> None:
    jtca = jtca_in(place, XDG_CONFIG_HOME=str(place / "config"))
    made = jtca("init")  # the embedded service on SQLite, as an authority's first day
    assert made.returncode == 0, made.stderr
    plan = _ceremony_file(place, holder="../../trav/evil")
    before = tree(place.parent.parent)
    try:
        for _ in range(2):  # a second try finds nothing half-made either
            result = jtca("ceremony", "init-token", str(plan))
            assert_refused(result)
            assert "trav/evil" in result.stderr, result.stderr
        labels = jtca("token", "list", "--json").stdout
    finally:
        jtca("service", "stop")
    assert "evil" not in labels
    after = tree(place.parent.parent)
    assert outside(changed(before, after), "a/b/state") == set()
    assert not evil({p for p in after if p.startswith("a/b/state")})
    assert (place / "trav" / "evil.pin").read_text() == "victim\n"


def test_ceremony_plan_refuses_a_key_label_that_is_a_path(place: Path) -> None:
    jtca = jtca_in(place)
    plans = []
    for i, label in enumerate(("../../../../tmp/evil", "a/b", ".hidden", "k" * 129)):
        folder = place / f"plan-{i}"
        folder.mkdir()
        plans.append(_ceremony_file(folder, root=label))
    before = tree(place.parent.parent)
    for plan in plans:
        result = jtca("ceremony", "plan", str(plan))
        assert_refused(result)
        assert "root.label" in result.stderr, result.stderr
    assert changed(before, tree(place.parent.parent)) == set()


# -- list types ----------------------------------------------------------------------------------
def test_list_types_are_a_closed_set(place: Path) -> None:
    from ca.lists.asn1 import ListType
    from ca.publish.publisher import archive_path, current_path

    jtca = jtca_in(place)
    before = tree(place.parent.parent)
    for bad in ("../../trav/evil", "issuer-whitelist/../../evil", ".hidden"):
        with pytest.raises(ValueError, match="is not a valid ListType"):
            ListType(bad)
        for args in (
            ("publish", "--list", bad, "--out", str(place / "out")),
            ("lists", "history", "--list", bad),
        ):
            result = jtca(*args)
            assert_refused(result, code=2)  # a usage error: not one of the list types
    assert changed(before, tree(place.parent.parent)) == set()
    for kind in ListType:
        # every list type the publisher turns into a file name fits the slug pattern
        assert slug(kind.value) == kind.value
        out = place / "out"
        assert current_path(out, kind).parent == out
        assert archive_path(out, kind, 7).parent.parent == out / "archive"


# -- key package file names ----------------------------------------------------------------------
def test_a_site_writes_packages_only_under_plain_names(tmp_path: Path) -> None:
    from ca.site.packages import _file_in
    from hsm.errors import JtcaError

    out = tmp_path / "out"
    out.mkdir()
    for bad in ("../evil.jkp", "a/evil.jkp", ".evil.jkp", "", "/tmp/evil.jkp"):
        with pytest.raises(JtcaError):
            _file_in(out, bad)
    assert _file_in(out, "card-440100-g1.to-44.jkp") == out / "card-440100-g1.to-44.jkp"


def test_package_file_names_are_checked() -> None:
    from ca.ops.packages import package_file_name

    for label, recipient in (("../../evil", "44"), ("card", "../44"), (".card", "44")):
        with pytest.raises(BadName):
            package_file_name(label, recipient)
    assert package_file_name("card-440100-g1", "44") == "card-440100-g1.to-44.jkp"
