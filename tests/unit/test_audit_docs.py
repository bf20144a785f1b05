"""docs/audit.md's worked example, run as written (issue #13, point 1).

The page promises an auditor can recompute entries, leaf hashes, a root and a checkpoint's
signature from the docs alone with ``printf`` and the OpenSSL command line. This test takes every
``<!-- audit-example: run -->`` block of the page, runs them one after the other with ``/bin/sh``
in an empty folder (the files of one step are there for the next), and checks:

- each step prints exactly the ``<!-- audit-example: output -->`` block that follows it;
- jtca's own code agrees: the files parse as log entries (``ca.log.entry``) whose leaf hashes,
  and whose two-entry root (``ca.log.merkle``), are the hex the docs print; the checkpoint the
  page shows verifies with ``ca.log.note`` under the page's key, its root is that root and its
  key ID is the one printed;
- what the prose claims around it holds (one byte changed: ``Verification failure``; sizes;
  the empty tree's hash; the signature types, seal statements and finding codes are the code's).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

import ca.log.audit
import ca.log.verify
from ca.log.entry import LogEntry
from ca.log.merkle import SM3_HASHER, MemoryTree, node_hash
from ca.log.note import CHECKPOINT_TYPE, COSIGNATURE_TYPE, Checkpoint, Verifier, verify_checkpoint
from ca.log.verify import SEAL_DOMAIN, seal_key_statement
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3
from policies.rules import LogPolicy

DOC: Final = Path(__file__).parents[2] / "docs" / "audit.md"
RUN: Final = "<!-- audit-example: run -->"
OUTPUT: Final = "<!-- audit-example: output -->"
SHELL: Final = "/bin/sh"


@dataclass(frozen=True)
class Step:
    script: str
    output: str


def _block_after(text: str, marker_at: int, fence: str) -> str:
    """The fenced block right after the marker at ``marker_at``: ```<fence> … ```."""
    rest = text[marker_at:].split("\n", 1)[1]
    opening = f"```{fence}\n"
    assert rest.startswith(opening), f"the block after the marker is not ```{fence}"
    body, closing, _ = rest[len(opening) :].partition("\n```\n")
    assert closing, "an unclosed block"
    return body + "\n"


def steps(text: str) -> list[Step]:
    found: list[Step] = []
    markers = sorted(
        [(m.start(), "run") for m in re.finditer(re.escape(RUN), text)]
        + [(m.start(), "output") for m in re.finditer(re.escape(OUTPUT), text)]
    )
    kinds = [kind for _, kind in markers]
    assert kinds == ["run", "output"] * (len(kinds) // 2), "each run block has one output block"
    for (run_at, _), (out_at, _) in zip(markers[::2], markers[1::2], strict=True):
        found.append(Step(_block_after(text, run_at, "sh"), _block_after(text, out_at, "text")))
    return found


STEPS: Final = steps(DOC.read_text(encoding="utf-8"))


def _run(step: Step, folder: Path, locale: str) -> str:
    env = {**os.environ, "LC_ALL": locale}
    done = subprocess.run(
        [SHELL, "-e", "-c", step.script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )
    assert done.returncode == 0, f"{step.script}\n→ exit {done.returncode}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def worked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The example run once in an empty folder: the folder and each step's output."""
    assert shutil.which("openssl"), "the OpenSSL 3 command line is required (Debian's openssl)"
    folder = tmp_path_factory.mktemp("audit-example")
    return folder, [_run(step, folder, "C.UTF-8") for step in STEPS]


def _hexes(output: str) -> list[str]:
    return re.findall(r"^SM3\(stdin\)= ([0-9a-f]{64})$", output, re.M)


def test_the_page_has_the_worked_example() -> None:
    assert len(STEPS) >= 5
    scripts = "".join(step.script for step in STEPS)
    for needed in ("printf '\\000'", "printf '\\001'", "openssl dgst -sm3", "-verify audit.pub"):
        assert needed in scripts


def test_every_step_prints_what_the_page_shows(worked: tuple[Path, list[str]]) -> None:
    _, outputs = worked
    for step, output in zip(STEPS, outputs, strict=True):
        assert output == step.output, step.script


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_the_example_runs_the_same_in_any_locale(tmp_path: Path, locale: str) -> None:
    for step in STEPS:
        assert _run(step, tmp_path, locale) == step.output, step.script


def test_jtca_reads_the_same_entries_and_hashes(worked: tuple[Path, list[str]]) -> None:
    folder, outputs = worked
    first = LogEntry.parse((folder / "entry-1.txt").read_bytes())
    second = LogEntry.parse((folder / "entry-2.txt").read_bytes())
    assert (first.seq, first.kind, first.object_sm3) == (1, "event", None)
    assert (second.seq, second.kind) == (2, "certificate")
    assert second.object_sm3 == sm3(b"abc").hex() == _hexes(outputs[0])[0]
    assert [first.leaf_hash().hex(), second.leaf_hash().hex()] == _hexes(outputs[1])
    assert (folder / "leaf-1.bin").read_bytes() == first.leaf_hash()
    assert (folder / "leaf-2.bin").read_bytes() == second.leaf_hash()
    tree = MemoryTree()
    tree.append(first.encode())
    tree.append(second.encode())
    root = tree.root()
    assert root == node_hash(first.leaf_hash(), second.leaf_hash())
    assert _hexes(outputs[2]) == [root.hex()]
    assert outputs[2].splitlines()[1] == base64.b64encode(root).decode()
    # the prose: the sizes, and the nine bytes of 广东省
    assert len(first.encode()) == 176
    assert len(second.encode()) == 235
    assert "`entry-1.txt` is 176 bytes" in DOC.read_text(encoding="utf-8")


def test_jtca_verifies_the_pages_checkpoint(worked: tuple[Path, list[str]]) -> None:
    folder, outputs = worked
    key = SM2PublicKey.from_pem((folder / "audit.pub").read_bytes())
    origin = LogPolicy().origin
    verifier = Verifier(origin, key)
    checkpoint, note = verify_checkpoint((folder / "checkpoint").read_bytes(), [verifier])
    tree = MemoryTree()
    for name in ("entry-1.txt", "entry-2.txt"):
        tree.append((folder / name).read_bytes())
    assert checkpoint == Checkpoint(origin, 2, tree.root())
    assert (folder / "body.txt").read_bytes() == note.body == checkpoint.body()
    assert (folder / "checkpoint.sig").read_bytes() == note.signatures[0].signature
    printed = outputs[4].split()
    assert printed[:4] == printed[4:] == [f"{b:02x}" for b in verifier.key_id]


def test_one_byte_changed_and_openssl_refuses(
    worked: tuple[Path, list[str]], tmp_path: Path
) -> None:
    folder, _ = worked
    for name in ("audit.pub", "checkpoint.sig"):
        shutil.copy(folder / name, tmp_path / name)
    body = (folder / "body.txt").read_bytes()
    (tmp_path / "body.txt").write_bytes(body.replace(b"\n2\n", b"\n3\n"))
    verify = next(line for s in STEPS for line in s.script.splitlines() if "-verify" in line)
    done = subprocess.run(
        [SHELL, "-c", verify], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "Verification failure" in done.stdout + done.stderr


# -- the rest of the page says what the code does ---------------------------------------------
TEXT: Final = DOC.read_text(encoding="utf-8")


def test_the_page_states_the_codes_constants() -> None:
    assert SM3_HASHER.empty_root().hex().startswith("1ab21d83")
    assert "(no input: 1ab21d83…)" in TEXT
    assert CHECKPOINT_TYPE == b"\xff" + b"jtca/sm2-sm3"
    assert '`0xFF ‖ "jtca/sm2-sm3"`' in TEXT
    assert COSIGNATURE_TYPE == b"\xff" + b"jtca/sm2-sm3-cosignature/v1"
    assert '`0xFF ‖ "jtca/sm2-sm3-cosignature/v1"`' in TEXT
    assert SEAL_DOMAIN == b"jtca-log-seal/1\n"
    assert "`jtca-log-seal/1` LF ‖ the entry's 32-byte leaf hash" in TEXT
    assert seal_key_statement(9, 7, "KEY") == b"jtca-log-seal-key/2\nseq 9\nat 7\nkey KEY\n"
    assert "jtca-log-seal-key/2 LF seq <seq> LF at <at> LF key <public_key hex> LF" in TEXT
    assert f"default {LogPolicy().origin}" in TEXT
    assert f"(default {LogPolicy().checkpoint_seconds}, 1–3600" in TEXT
    assert f"(K, default {LogPolicy().witness_quorum}; 0–16)" in TEXT


def _finding_codes_in_code() -> set[str]:
    codes: set[str] = set()
    for module in (ca.log.verify, ca.log.audit):
        assert module.__file__ is not None
        source = Path(module.__file__).read_text(encoding="utf-8")
        codes |= set(
            re.findall(r"Finding\(\s*[^,()]+(?:\([^()]*\))?[^,()]*,\s*\"([a-z-]+)\"", source)
        )
    return codes


def test_the_findings_table_lists_every_finding_the_verifier_makes() -> None:
    table = TEXT.split("| finding | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", table, re.M))
    in_code = _finding_codes_in_code()
    assert len(in_code) >= 10, in_code
    assert documented == in_code
