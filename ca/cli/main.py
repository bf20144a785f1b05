"""The ``jtca`` command line. A command asks nothing except a PIN or a custodian's share at a
hidden prompt, when no ``--pin-source`` or ``--share-file`` names where it is; errors are one
line (with ``--json`` anywhere on the command line: one JSON object on standard error). Commands
act as the officer of this machine's session (``jtca login``, issue #12).

Exit status (docs/cli.md): 0 success; 1 internal or other error; 2 usage error; 3 bad input
(malformed payload, key, image, file or option value); 4 verification failed or payload
rejected, key package or backup refused; 5 token error; 6 not signed in, not authenticated or
not allowed; 7 database error; 8 audit log, list proof, checkpoint or trust anchor refused;
9 split view (``jtca witness cosign``); 69 no authority service, or an extra this install lacks;
75 an operation on the same subject under way elsewhere (try again); 130 interrupted.

``jtca --help``, ``jtca --version`` and shell completion of the command names import none of the
command modules: the names and their one-line help are the table ``COMMANDS`` below (a test
checks it against what each module registers).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

from ca.core.errors import JtcaError

EXIT_USAGE = 2


class UsageError(Exception):
    """A command line argparse (or a handler) refuses; ``field`` names the argument if known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem, not a usage dump; and no
    abbreviated options: ``--share VALUE`` must not pass for ``--share-file`` (a share or a PIN
    is never a command-line value, issue #12)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        named = re.match(r"argument ([^:]+): ", message)
        raise UsageError(
            f"{self.prog}: {message} (see '{self.prog} --help')",
            field=named.group(1) if named else None,
        )


# Every command: the module of ca.cli that registers it (None: a program of its own, picked by
# ca.__main__) and its one-line help, in the order `jtca --help` lists them. A command line naming
# one of them builds (and imports) only that module's parser, so `jtca city keys` never loads the
# QR or token code, and `jtca --help` loads none. tests/integration/test_cli_start.py checks the
# help texts against what each module registers.
COMMANDS: Final[dict[str, tuple[str | None, str]]] = {
    "login": ("auth", "sign in as an officer, with your own token (challenge and response)"),
    "logout": ("auth", "end this machine's session with the service"),
    "whoami": ("auth", "who this machine's session is, and until when"),
    "init": ("service", "create a state folder for the embedded default and start its service"),
    "config": ("service", "which authority service this client talks to"),
    "service": ("service", "the embedded default's service: status, stop"),
    "recover": (
        "service",
        "finish or undo every operation a crash left unfinished (service and this site)",
    ),
    "qr": ("qr", "the transport QR code of the annex"),
    "token": ("token", "keys in PKCS#11 tokens, packages, shares, backups"),
    "audit": ("audit", "the tamper-evident audit log"),
    "ceremony": ("ceremony", "key ceremonies from a reviewed declarative file"),
    "ca": ("ca", "the central QR CA: CA keys, interop certificates"),
    "issuer": ("ca", "QR issuers: registration; an issuer's certificate requests"),
    "officer": ("officer", "officers: personal tokens, enrolment, certificates"),
    "tui": (None, "open the officers' console (sign in as an officer)"),
    "demo": (None, "seed a demo state folder on first use, then open the console on it"),
    "serve": (None, "run the authority service (HTTPS or a Unix socket)"),
    "db": (None, "the database schema: upgrade, status (on the service's machine)"),
    "city": ("city", "city keys (一城一密): apply, deliver, renew, suspend, clean up"),
    "publish": ("publish", "build, sign and publish the signed lists (idempotent; for a timer)"),
    "lists": ("publish", "published lists: history, verify, acknowledgments"),
    "witness": ("witness", "a witness of the audit log: check, cosign, keep copies"),
    "operator": ("operator", "operators: their keys, signed load acknowledgments, list fetching"),
    "policy": ("policy", "the policy in force and its dual-controlled changes"),
    "completion": ("completion", "print the shell completion script: bash, zsh or fish"),
}

_DESCRIPTION: Final = (
    "Key management and certificate authority for the national transport card and QR code "
    "scheme (交通一卡（码）通)."
)


class _Version(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print jtca's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        print(f"jtca {version()}")
        parser.exit()


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("jtca")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def build_parser(only: str | None = None, *, modules: bool = True) -> Parser:
    """The whole command line; or, with ``only``, the parser of that command's module and a
    help-only entry for every other command; with ``modules=False`` help-only entries alone
    (``jtca --help``, ``jtca --version``, completing a command's name)."""
    import importlib

    parser = Parser(prog="jtca", description=_DESCRIPTION)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    wanted: set[str | None]
    if only in COMMANDS:
        wanted = {COMMANDS[only][0]}
    elif modules:
        wanted = {module for module, _ in COMMANDS.values()}
    else:
        wanted = set()
    registered: set[str] = set()
    for name, (module, text) in COMMANDS.items():
        if module is not None and module in wanted:
            if module not in registered:
                importlib.import_module(f"ca.cli.{module}").register(sub)
                registered.add(module)
            continue
        sub.add_parser(name, help=text, add_help=False).set_defaults(handler=_elsewhere)
    return parser


def _elsewhere(args: argparse.Namespace) -> int:
    """A help-only entry: ``serve``, ``db``, ``tui`` and ``demo`` are programs of their own."""
    raise UsageError(f"jtca {args.command}: run it through the jtca command (ca.__main__)")


def command_word(words: Sequence[str]) -> str | None:
    """The command a command line names: its first word that is not an option."""
    return next((word for word in words if not word.startswith("-")), None)


def json_last(words: list[str], command: str | None) -> list[str]:
    """``--json`` given before the command (``jtca --json city keys``) moved to the end, where
    the command's own option reads it: ``--json`` counts anywhere on the command line."""
    if command is None:
        return words
    at = words.index(command)
    if "--json" not in words[:at]:
        return words
    return [w for w in words[:at] if w != "--json"] + words[at:] + ["--json"]


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if "_ARGCOMPLETE" in os.environ:  # a shell asks for completions (ca.cli.completion)
        from ca.cli.completion import complete

        complete(build_parser)

    def run() -> int:
        command = command_word(words)
        parser = build_parser(command, modules=command in COMMANDS)
        args = parser.parse_args(json_last(words, command))
        status: int = args.handler(args)
        return status

    return run_guarded(run, as_json="--json" in words)


# the modules of jtca's optional extras (pyproject.toml), by the name Python imports them as
_EXTRAS: Final = {"textual": "console", "PIL": "images", "zxingcpp": "images", "zint": "images",
                  "psycopg": "postgres"}  # fmt: skip


def run_guarded(run: Callable[[], int], *, as_json: bool = False) -> int:
    """Run a command; errors become one line with a title, never a traceback. With ``as_json``
    (``--json`` on the command line) that line is a JSON object (docs/cli.md):
    ``{"error": {"title", "message", "exit_code", "field"?}}``."""

    def fail(title: str, message: str, exit_code: int, field: object = None) -> int:
        report(title, message, exit_code, field=field, as_json=as_json)
        return exit_code

    try:
        return run()
    except UsageError as exc:
        if as_json:
            return fail("Usage error", str(exc), EXIT_USAGE, exc.field)
        print(f"jtca: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JtcaError as exc:
        message = f"{exc.message}{_sign_in_hint(exc)}"
        return fail(exc.title, message, exc.exit_code, getattr(exc, "field", None))
    except KeyboardInterrupt:
        if as_json:
            return fail("Interrupted", "interrupted", 130)
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
            return fail(
                "Not installed",
                f"this command needs {missing}, which comes with jtca's extra '{extra}': "
                f"pip install 'jtca[{extra}]' (docs/deploy.md)",
                69,
            )
        if os.environ.get("JTCA_DEBUG"):
            raise
        return fail(
            "internal error",
            f"{type(exc).__name__}: {exc} (set JTCA_DEBUG=1 for details)",
            1,
        )


def report(
    title: str, message: str, exit_code: int, *, field: object = None, as_json: bool = False
) -> None:
    """Write one error to standard error: ``jtca: title: message``, or with ``as_json`` the
    object ``{"error": {"title", "message", "exit_code", "field"?}}`` on one line."""
    from hsm.der_scan import shorten_numbers  # a parser's complaint can carry one of 240 digits

    message = shorten_numbers(message)
    if not as_json:
        print(f"jtca: {title}: {message}", file=sys.stderr)
        return
    import json

    error: dict[str, object] = {"title": title, "message": message, "exit_code": exit_code}
    if isinstance(field, str) and field:
        error["field"] = field
    print(json.dumps({"error": error}, ensure_ascii=False), file=sys.stderr)


# The service's refusals of this machine's session (ca.service.auth): say how to get a new one.
SESSION_GONE = frozenset({"session-ended", "session-expired", "unknown-session"})


def _sign_in_hint(exc: JtcaError) -> str:
    if getattr(exc, "status", 0) == 401 and getattr(exc, "reason", None) in SESSION_GONE:
        return " (jtca login --officer ID)"
    return ""


if __name__ == "__main__":
    sys.exit(main())
