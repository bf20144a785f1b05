"""Docs true (issue #17): every link of README.md and docs/**/*.md resolves inside the repository.

Links are read as Markdown reads them: inline ``[text](target)`` and ``![alt](target)``,
reference definitions ``[name]: target`` and HTML ``href``/``src``; fenced code blocks and code
spans are examples, not links. A target is a file (or folder) of the repository, relative to the
page, never outside it and never a URL; a ``#anchor`` into a Markdown page names one of its
headings (GitHub's slugs). The last test checks that CI checks formatting (``ruff format``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HTML = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose(text: str) -> str:
    """The page without fenced code blocks and code spans."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every link in a Markdown page's prose."""
    prose = _prose(text)
    found = []
    for pattern in (_INLINE, _REFERENCE, _HTML):
        for match in pattern.finditer(prose):
            line = prose.count("\n", 0, match.start()) + 1
            found.append((line, match.group(1)))
    return sorted(found)


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes for a page's headings (lower case, punctuation dropped, spaces
    to hyphens, repeats numbered -1, -2, ...)."""
    made: set[str] = set()
    seen: dict[str, int] = {}
    for match in _HEADING.finditer(_FENCE.sub("", text)):
        heading = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1)).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        made.add(slug if count == 0 else f"{slug}-{count}")
    return made


def problem(page: Path, target: str, root: Path = ROOT) -> str | None:
    """Why ``target`` (a link of ``page``) does not resolve inside the repository, or None."""
    if not target:
        return "empty link"
    if _SCHEME.match(target) or target.startswith("//"):
        return "leads outside the repository (a URL)"
    path, _, anchor = target.partition("#")
    if path.startswith("/"):
        return "absolute path (links are relative to the page)"
    file = (page.parent / path).resolve() if path else page
    if not file.is_relative_to(root):
        return "leads outside the repository"
    if not file.exists():
        return f"no such file {file.relative_to(root).as_posix()}"
    if anchor and file.suffix == ".md" and anchor not in anchors(file.read_text("utf-8")):
        return f"no heading #{anchor} in {file.relative_to(root).as_posix()}"
    return None


def test_the_pages_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/cli.md", "docs/ceremony.md", "docs/policy.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    text = page.read_text("utf-8")
    broken = [
        f"{page.relative_to(ROOT)}:{line}: ({target}) {why}"
        for line, target in links(text)
        if (why := problem(page, target)) is not None
    ]
    assert not broken, "\n".join(broken)


def test_the_readme_links_the_docs() -> None:
    """The README's links are real (the walk above would pass a README with none)."""
    targets = [t for _, t in links((ROOT / "README.md").read_text("utf-8"))]
    assert "docs/cli.md" in targets
    assert len(targets) >= 10


def test_the_checker_catches_what_it_must(tmp_path: Path) -> None:
    """Every kind of bad link is found; code examples and good links are not."""
    text = (
        "# Title\n\n## A heading, with `code`\n\n"
        "[ok](#a-heading-with-code) [ok2](other.md#other-page) [up ok](../README.md)\n"
        "[web](https://example.org/x) [out](../../etc/passwd) [gone](nowhere.md)\n"
        "[bad anchor](other.md#no-such-heading) ![img](missing.png)\n"
        "[ref]: /abs/path.md\n"
        '<a href="http://example.org">x</a>\n'
        "`[not a link](nowhere.md)`\n\n```\n[not a link either](nowhere.md)\n```\n"
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Readme\n", "utf-8")
    (tmp_path / "docs" / "other.md").write_text("# Other page\n", "utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(text, "utf-8")
    found = {t: problem(page, t, tmp_path) for _, t in links(text)}
    assert found == {
        "#a-heading-with-code": None,
        "other.md#other-page": None,
        "../README.md": None,
        "https://example.org/x": "leads outside the repository (a URL)",
        "../../etc/passwd": "leads outside the repository",
        "nowhere.md": "no such file docs/nowhere.md",
        "other.md#no-such-heading": "no heading #no-such-heading in docs/other.md",
        "missing.png": "no such file docs/missing.png",
        "/abs/path.md": "absolute path (links are relative to the page)",
        "http://example.org": "leads outside the repository (a URL)",
    }


# -- formatting is checked by CI (issue #17) -----------------------------------------------------
def test_ci_checks_formatting(tmp_path: Path) -> None:
    """``.ci/run`` runs ``make test``, which runs ``scripts/test`` (``set -e``), which runs
    ``ruff format --check .``; that command fails on a drifted file and passes a formatted one."""
    assert "exec make test" in (ROOT / ".ci" / "run").read_text("utf-8")
    assert re.search(r"^test:\n\tscripts/test$", (ROOT / "Makefile").read_text("utf-8"), re.M)
    script = (ROOT / "scripts" / "test").read_text("utf-8")
    assert "set -euo pipefail" in script
    assert re.search(r"^echo \"== ruff format\"; +ruff format --check \.$", script, re.M)
    ruff = Path(sys.executable).with_name("ruff")
    drifted = tmp_path / "drifted.py"
    drifted.write_text("x = [1,\n  2]\n", "utf-8")
    check = [str(ruff), "format", "--check", "--no-cache", str(drifted)]
    assert subprocess.run(check, capture_output=True, check=False).returncode == 1
    drifted.write_text("x = [1, 2]\n", "utf-8")
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0
