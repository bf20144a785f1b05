"""The layout explains itself (issue #17, point 6), and docs/code.md says how.

- ``ca/`` holds packages only, besides ``__init__.py`` and ``__main__.py`` (the console script);
- every package of ``ca/`` and ``hsm/`` says in its ``__init__`` docstring what it holds, and
  names there only modules it has;
- a module name used in more than one package is one domain seen from the service's layers and at
  most one module outside them, or is listed in docs/code.md's "Names that repeat" with every
  module that has it;
- every package of ``ca/`` is in docs/code.md's tables.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_DOC = (ROOT / "docs" / "code.md").read_text(encoding="utf-8")
LAYERS = ("ca/ops/", "ca/service/", "ca/api/", "ca/cli/", "tui/screens/")
TOP = ("ca", "hsm", "policies", "tui")


def packages(top: str) -> list[Path]:
    return sorted(
        p.parent for p in (ROOT / top).rglob("__init__.py") if "migrations" not in p.parts
    )


def modules() -> list[str]:
    found = []
    for top in TOP:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if path.name in {"__init__.py", "__main__.py"} or "/migrations/" in rel:
                continue
            found.append(rel)
    return sorted(found)


def repeats_table() -> dict[str, set[str]]:
    section = CODE_DOC.split("## Names that repeat", 1)[1]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            table[cells[0].strip("`")] = set(re.findall(r"`([\w/]+\.py)`", cells[1]))
    return table


def test_ca_holds_packages_only() -> None:
    loose = sorted(
        p.name for p in (ROOT / "ca").glob("*.py") if p.name not in {"__init__.py", "__main__.py"}
    )
    assert loose == [], f"modules loose in ca/ (put them in the package they belong to): {loose}"
    # the names the issue found overlapping are gone, and load_policy has a module of its name
    for gone in ("usage", "keyreport", "tokens", "requests", "signing"):
        assert not (ROOT / "ca" / f"{gone}.py").exists()
    in_force = (ROOT / "ca" / "policy" / "in_force.py").read_text(encoding="utf-8")
    assert "\ndef load_policy(" in in_force


def test_every_package_says_what_it_holds() -> None:
    every = packages("ca") + packages("hsm")
    stems = {p.stem for package in every for p in package.glob("*.py")} - {"__init__"}
    for package in every:
        init = package / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        rel = package.relative_to(ROOT).as_posix()
        assert doc, f"{rel}/__init__.py: no docstring saying what it holds"
        assert len(doc) >= 40, f"{rel}/__init__.py: a docstring too short to say what it holds"
        own = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir()}
        for word in re.findall(r"``([a-z_0-9]+)``", doc):
            assert word in own or word not in stems, (
                f"{rel}/__init__.py names ``{word}``, a module of another package, not of {rel}"
            )


def test_every_ca_package_is_on_the_map() -> None:
    for package in packages("ca"):
        rel = package.relative_to(ROOT).as_posix()
        if rel == "ca" or rel.count("/") > 1:
            continue
        assert f"`{rel}/`" in CODE_DOC, f"docs/code.md does not say what {rel}/ holds"


def clashes(by_name: dict[str, list[str]], explained: dict[str, set[str]]) -> dict[str, str]:
    """Each name used for different things, with what is wrong: repeated outside the layers
    and not explained, explained with other modules than the tree has, or explained but no
    longer repeated."""
    wrong = {}
    for name, where in by_name.items():
        outside = [w for w in where if not w.startswith(LAYERS)]
        if name in explained:
            if len(outside) <= 1:
                wrong[name] = "listed in 'Names that repeat' but no longer repeated"
            elif explained[name] != set(where):
                wrong[name] = f"listed as {sorted(explained[name])}, the tree has {sorted(where)}"
        elif len(outside) > 1:  # more than one domain module and its layers
            wrong[name] = f"used by {sorted(where)}, not in docs/code.md's 'Names that repeat'"
    for name in explained.keys() - by_name.keys():
        wrong[name] = "listed in 'Names that repeat', no such module"
    return wrong


def test_a_repeated_module_name_is_one_domain_or_explained() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for rel in modules():
        by_name[Path(rel).stem].append(rel)
    assert len(repeats_table()) >= 5  # the table was found and read
    assert clashes(by_name, repeats_table()) == {}


def test_the_clashes_the_issue_found_would_be_caught() -> None:
    """The rule on the tree before the regrouping: ca/usage.py beside ca/citykeys/usage.py, and
    ca/keyreport.py beside ca/citykeys/report.py and ca/qr/report.py."""
    before = {
        "usage": ["ca/usage.py", "ca/citykeys/usage.py"],
        "report": ["ca/citykeys/report.py", "ca/qr/report.py"],
        "city": ["ca/citykeys/city.py", "ca/cli/city.py", "ca/ops/city.py", "ca/service/city.py"],
        "errors": ["hsm/errors.py", "ca/core/errors.py"],
    }
    found = clashes(before, {"errors": {"hsm/errors.py", "ca/core/errors.py"}})
    assert sorted(found) == ["report", "usage"]
    assert "no longer repeated" in clashes({"x": ["ca/a/x.py"]}, {"x": {"ca/a/x.py"}})["x"]
