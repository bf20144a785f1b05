"""The ``jtca`` command line. A command asks nothing except a PIN or a custodian's share at a
hidden prompt, when no ``--pin-source`` or ``--share-file`` names where it is; errors are one
line. Commands act as the officer of this machine's session (``jtca login``, issue #12).

Exit status (docs/cli.md): 0 success; 1 internal or other error; 2 usage error; 3 bad input
(malformed payload, key, image or option value); 4 verification failed or payload rejected;
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

from ca.errors import JtcaError

EXIT_USAGE = 2


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem, not a usage dump; and no
    abbreviated options: ``--share VALUE`` must not pass for ``--share-file`` (a share or a PIN
    is never a command-line value, issue #12)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


# The module that registers each command: a command line naming one of them builds (and
# imports) only that module's parser, so `jtca city keys` never loads the QR or token code.
COMMANDS: dict[str, str] = {
    "login": "auth",
    "logout": "auth",
    "whoami": "auth",
    "init": "service",
    "config": "service",
    "service": "service",
    "recover": "service",
    "qr": "qr",
    "token": "token",
    "audit": "audit",
    "ceremony": "ceremony",
    "ca": "ca",
    "issuer": "ca",
    "officer": "officer",
    "city": "city",
    "publish": "publish",
    "lists": "publish",
    "witness": "witness",
    "operator": "operator",
    "policy": "policy",
}


def build_parser(only: str | None = None) -> Parser:
    """The whole command line, or only the module that registers the command ``only``."""
    import importlib

    parser = Parser(
        prog="jtca",
        description="Key management and certificate authority for the national transport card "
        "and QR code scheme (交通一卡（码）通).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    if only in COMMANDS:
        importlib.import_module(f"ca.cli.{COMMANDS[only]}").register(sub)
        return parser
    modules = dict.fromkeys(COMMANDS.values())
    for module in modules:
        if module == "city":  # keep the help's order: the console's entries before city
            for name, text in (
                ("tui", "open the officers' console (sign in as an officer)"),
                ("demo", "seed a demo state folder on first use, then open the console on it"),
                ("serve", "run the authority service (HTTPS or a Unix socket)"),
                ("db", "the database schema: upgrade, status (on the service's machine)"),
            ):
                handler = _server_only if name in ("serve", "db") else _console_only
                sub.add_parser(name, help=text, add_help=False).set_defaults(handler=handler)
        importlib.import_module(f"ca.cli.{module}").register(sub)
    return parser


def _console_only(args: argparse.Namespace) -> int:
    raise UsageError(f"jtca {args.command}: run it through the jtca command (tui.main)")


def _server_only(args: argparse.Namespace) -> int:
    raise UsageError(f"jtca {args.command}: run it through the jtca command (ca.entry)")


def main(argv: Sequence[str] | None = None) -> int:
    def run() -> int:
        words = list(sys.argv[1:] if argv is None else argv)
        parser = build_parser(words[0] if words else None)
        args = parser.parse_args(words)
        status: int = args.handler(args)
        return status

    return run_guarded(run)


# the modules of jtca's optional extras (pyproject.toml), by the name Python imports them as
_EXTRAS: Final = {"textual": "console", "PIL": "images", "zxingcpp": "images", "zint": "images",
                  "psycopg": "postgres"}  # fmt: skip


def run_guarded(run: Callable[[], int]) -> int:
    """Run a command; errors become one line with a title, never a traceback."""
    try:
        return run()
    except UsageError as exc:
        print(f"jtca: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JtcaError as exc:
        print(f"jtca: {exc.title}: {exc.message}{_sign_in_hint(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("jtca: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (jtca ... | head): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # the last line of defence: never a traceback for a user
        missing = (exc.name or "") if isinstance(exc, ImportError) else ""
        extra = _EXTRAS.get(missing.split(".")[0])
        if extra is not None:  # an extra this install lacks (issue #16: a headless install)
            print(
                f"jtca: Not installed: this command needs {missing}, which comes with jtca's "
                f"extra '{extra}': pip install 'jtca[{extra}]' (docs/deploy.md)",
                file=sys.stderr,
            )
            return 69
        if os.environ.get("JTCA_DEBUG"):
            raise
        print(
            f"jtca: internal error: {type(exc).__name__}: {exc} (set JTCA_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return 1


# The service's refusals of this machine's session (ca.service.auth): say how to get a new one.
SESSION_GONE = frozenset({"session-ended", "session-expired", "unknown-session"})


def _sign_in_hint(exc: JtcaError) -> str:
    if getattr(exc, "status", 0) == 401 and getattr(exc, "reason", None) in SESSION_GONE:
        return " (jtca login --officer ID)"
    return ""


if __name__ == "__main__":
    sys.exit(main())
