"""``jtca completion bash|zsh|fish``: the shell's completion script, made by argcomplete.

The script calls ``jtca`` back with argcomplete's environment protocol (``_ARGCOMPLETE``,
``COMP_LINE``, ``COMP_POINT``); ``ca.cli.main`` then builds only the parser of the command
being typed (help-only entries for the others) and lets argcomplete answer.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, NoReturn

SHELLS = ("bash", "zsh", "fish")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "completion",
        help="print the shell completion script: bash, zsh or fish",
        description="Print the completion script for a shell. bash: "
        '`eval "$(jtca completion bash)"` in ~/.bashrc; zsh: the same in ~/.zshrc (after '
        "compinit); fish: `jtca completion fish > ~/.config/fish/completions/jtca.fish`.",
    )
    p.add_argument("shell", choices=SHELLS, help="the shell")
    p.set_defaults(handler=cmd_completion)


def cmd_completion(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(["jtca"], shell=args.shell), end="")
    return 0


def typed_words() -> list[str]:
    """The words of the line being completed before the cursor, the one being typed left out."""
    line = os.environ.get("COMP_LINE", "")
    point = int(os.environ.get("COMP_POINT", len(line)) or len(line))
    line = line[:point]
    words = line.split()[1:]
    if words and not line.endswith((" ", "\t")):
        words = words[:-1]  # the word under the cursor is what is being completed
    return words


def complete(build_parser: Callable[..., argparse.ArgumentParser]) -> NoReturn:
    """Answer the shell (argcomplete writes the candidates and exits the process)."""
    import argcomplete

    from ca.cli.main import COMMANDS, command_word

    command = command_word(typed_words())
    argcomplete.autocomplete(build_parser(command, modules=command in COMMANDS))
    raise SystemExit(0)  # argcomplete exits by itself; this is never reached
