"""The command line's start (issue #17): `jtca --help` and `jtca --version` import no command
module and none of the heavy libraries; the table of commands in ca.cli.main agrees with what
each module registers; shell completion through argcomplete answers a real bash; progress bars
are drawn only on a terminal."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pty
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from ca.cli.main import COMMANDS, Parser, build_parser

JTCA = str(Path(sys.executable).with_name("jtca"))
HEAVY = ("sqlalchemy", "sqlmodel", "pkcs11", "tongsuopy", "alembic", "fastapi", "httpx")

# Runs jtca's console script in-process, then lists every module it imported on stderr.
PROBE = """
import json, sys
from ca.__main__ import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, JTCA_STATE=str(tmp_path / "state"))
    for variable in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_SERVER_CERT", "JTCA_DATABASE_URL"):
        env.pop(variable, None)
    return env


def imported_by(tmp_path: Path, *argv: str) -> tuple[int, str, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        check=False,
        timeout=60,
    )
    report = json.loads(result.stderr.splitlines()[-1])
    return report["status"], result.stdout, set(report["modules"])


@pytest.mark.parametrize("argv", [["--help"], ["--version"], [], ["completion", "bash"]])
def test_start_imports_no_command_module_and_no_heavy_library(
    tmp_path: Path, argv: list[str]
) -> None:
    status, stdout, modules = imported_by(tmp_path, *argv)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
    commands = {f"ca.cli.{module}" for module, _ in COMMANDS.values() if module is not None}
    loaded = sorted(commands & modules)
    assert loaded == (["ca.cli.completion"] if argv[:1] == ["completion"] else [])
    assert {"ca.ops", "ca.client", "hsm.sm", "asn1crypto", "pydantic"}.isdisjoint(modules)
    if argv == ["--help"]:
        assert status == 0
        for name in COMMANDS:
            assert name in stdout
        assert "--version" in stdout
    if argv == []:
        assert status == 2  # a usage error: no command


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    result = subprocess.run(
        [JTCA, "--version"], capture_output=True, text=True, env=clean_env(tmp_path), check=True
    )
    assert result.stdout == f"jtca {version('jtca')}\n"
    assert result.stderr == ""


def registered(module: str) -> dict[str, str]:
    """The commands a module of ca.cli registers, with their one-line help."""
    parser = Parser(prog="jtca")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    importlib.import_module(f"ca.cli.{module}").register(sub)
    return {action.dest: action.help or "" for action in sub._choices_actions}


def test_the_table_of_commands_is_what_each_module_registers() -> None:
    modules = {module for module, _ in COMMANDS.values() if module is not None}
    table = {name: text for name, (module, text) in COMMANDS.items() if module is not None}
    found: dict[str, str] = {}
    for module in sorted(modules):
        names = registered(module)
        assert {n for n, (m, _) in COMMANDS.items() if m == module} == set(names), module
        found |= names
    assert found == table
    # the whole parser lists every command, in the table's order, with the table's help
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(sub.choices) == list(COMMANDS)
    assert {a.dest: a.help for a in sub._choices_actions} == {
        n: t for n, (_, t) in COMMANDS.items()
    }


def test_one_command_builds_only_its_module_and_help_entries_for_the_rest() -> None:
    parser = build_parser("city")
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMANDS)
    assert "keys" in str(sub.choices["city"].format_help())
    args = parser.parse_args(["city", "keys", "--expiring", "30"])
    assert args.expiring == 30


def complete(tmp_path: Path, line: str) -> list[str]:
    """What jtca answers a shell through argcomplete's protocol for ``line`` (cursor at its end)."""
    out = tmp_path / "completions"
    env = clean_env(tmp_path) | {
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "_ARGCOMPLETE_IFS": "\n",
    }
    subprocess.run([JTCA], env=env, check=True, timeout=60, capture_output=True)
    return sorted(word.strip() for word in out.read_text().split("\n") if word.strip())


def test_argcomplete_protocol_completes_commands_and_subcommands(tmp_path: Path) -> None:
    assert complete(tmp_path, "jtca ci") == ["city"]
    assert complete(tmp_path, "jtca c") == ["ca", "ceremony", "city", "completion", "config"]
    assert "keys" in complete(tmp_path, "jtca city k")
    assert {"bash", "fish", "zsh"} <= set(complete(tmp_path, "jtca completion "))
    assert "--expiring" in complete(tmp_path, "jtca city keys --exp")


def test_bash_completes_through_the_script_jtca_prints(tmp_path: Path) -> None:
    script = subprocess.run(
        [JTCA, "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    (tmp_path / "jtca.bash").write_text(script)
    run = f"""
source {tmp_path / "jtca.bash"}
ask() {{
    COMP_LINE="$1"; COMP_POINT=${{#COMP_LINE}}; read -ra COMP_WORDS <<< "$1"
    [[ "$1" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
    _python_argcomplete jtca "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
    printf '%s|' "${{COMPREPLY[@]}}"; echo
}}
ask "jtca ci"
ask "jtca c"
ask "jtca lists "
"""
    env = clean_env(tmp_path) | {"PATH": f"{Path(JTCA).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "--norc", "-c", run], capture_output=True, text=True, env=env, check=True
    )
    city, c, lists = result.stdout.splitlines()
    assert [w.strip() for w in city.split("|") if w] == ["city"]
    assert {w.strip() for w in c.split("|") if w} == {
        "ca",
        "ceremony",
        "city",
        "completion",
        "config",
    }
    assert {"history", "verify", "approve"} <= {w.strip() for w in lists.split("|") if w}


ZSH_ASK = """
autoload -U compinit && compinit -u -D
source {script}
# the completion system's display is replaced by a print of what the script offers it
_describe() {{ print -rl -- "${{(@P)2}}" }}
ask() {{
    BUFFER="$1"; CURSOR=${{#BUFFER}}; words=(${{=BUFFER}}); [[ "$1" == *" " ]] && words+=("")
    _python_argcomplete; print -- "=="
}}
ask "jtca ci"
ask "jtca c"
ask "jtca lists "
"""

FISH_ASK = """
source {script}
complete -C "jtca ci"; echo ==
complete -C "jtca c"; echo ==
complete -C "jtca lists "; echo ==
"""


@pytest.mark.parametrize(
    ("shell", "argv", "ask"),
    [
        ("zsh", ["zsh", "-f", "-c"], ZSH_ASK),
        ("fish", ["fish", "--no-config", "-c"], FISH_ASK),
    ],
)
def test_zsh_and_fish_complete_through_the_script_jtca_prints(
    tmp_path: Path, shell: str, argv: list[str], ask: str
) -> None:
    """The real shell (Debian's zsh and fish, installed by scripts/bootstrap) sources the script
    and asks it, as bash does above: each answer is a word and its one-line help."""
    script = subprocess.run(
        [JTCA, "completion", shell], capture_output=True, text=True, check=True
    ).stdout
    (tmp_path / f"jtca.{shell}").write_text(script)
    env = clean_env(tmp_path) | {"PATH": f"{Path(JTCA).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [*argv, ask.format(script=tmp_path / f"jtca.{shell}")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    answers = result.stdout.split("==\n")[:3]
    words = [
        {line.split("\t" if shell == "fish" else ":", 1)[0] for line in a.splitlines() if line}
        for a in answers
    ]
    assert words[0] == {"city"}, result.stdout
    assert words[1] == {"ca", "ceremony", "city", "completion", "config"}, result.stdout
    assert {"history", "verify", "approve"} <= words[2], result.stdout
    assert "city keys (一城一密)" in answers[0]  # the command's help comes with it


# -- progress bars: on a terminal only ----------------------------------------------------------
BUNDLE_RUN = """
import json, sys
from ca.cli.progress import tracked
from ca.log.verify import _entry, verify_bundle
entries = [{"seq": n, "at": 1_790_000_000 + n, "kind": "event", "actor": "a", "action": "x",
            "subject": "s", "object_sm3": None, "details": "{}"} for n in range(1, 1201)]
for entry in entries:  # each row as the database holds it: with its leaf hash
    entry["leaf_hash"] = _entry(entry).leaf_hash().hex()
bundle = json.dumps({"format": "jtca-log-bundle/1", "entries": entries, "size": 1200,
                     "nodes": [], "checkpoints": []}).encode()
report = verify_bundle(bundle, checkpoints=[], audit_keys=[],
                       track=lambda e: tracked(e, len(e), "verifying the audit log",
                                               json_output="--json" in sys.argv))
print(report.entries)
"""


def run_bundle(tmp_path: Path, *, tty: bool, json_output: bool = False) -> tuple[str, bytes]:
    argv = [sys.executable, "-c", BUNDLE_RUN, *(["--json"] if json_output else [])]
    if not tty:
        result = subprocess.run(argv, capture_output=True, check=True, timeout=120)
        return result.stdout.decode(), result.stderr
    leader, follower = pty.openpty()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower) as process:
        os.close(follower)
        stdout, _ = process.communicate(timeout=120)
        assert process.returncode == 0
    drawn = b""
    try:
        while chunk := os.read(leader, 65536):
            drawn += chunk
    except OSError:  # the terminal's other end is closed: all is read
        pass
    os.close(leader)
    return stdout.decode(), drawn


def test_progress_is_drawn_on_a_terminal_and_never_into_a_pipe(tmp_path: Path) -> None:
    out, drawn = run_bundle(tmp_path, tty=True)
    assert out == "1200\n"
    assert b"verifying the audit log [" in drawn
    assert b"100% 1200/1200" in drawn
    assert drawn.endswith(b"\r")  # erased at the end
    out, piped = run_bundle(tmp_path, tty=False)
    assert (out, piped) == ("1200\n", b"")
    out, on_json = run_bundle(tmp_path, tty=True, json_output=True)
    assert (out, on_json) == ("1200\n", b"")


def test_the_start_bench_runs(tmp_path: Path) -> None:
    """bench/cli_start.py runs whole (its figures are ratios for a person; no timing asserted)."""
    bench = Path(__file__).resolve().parents[2] / "bench" / "cli_start.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--rounds", "1", "--no-service"],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        check=True,
        timeout=120,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("python -c pass")
    assert [line.split()[1] for line in lines[1:3]] == ["--help", "--version"]
    assert all("× bare" in line for line in lines[1:3])
    assert lines[3].startswith("goal: at most 6× bare: ")
