"""The ``jtca`` console script: ``jtca tui`` opens the officers' console; ``jtca demo`` seeds a
demo state folder (first run) and opens the console on it; every other command is the CLI
(``ca.cli.main``). It lives here because only ``tui`` may import textual, and the console sits
above ``ca`` in the layers."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["tui"], ["demo"]):
        from ca.cli.main import run_guarded

        return run_guarded(lambda: _console(args))
    from ca.cli.main import main as cli_main

    return cli_main(args)


def _console(args: list[str]) -> int:
    from pathlib import Path

    parser = argparse.ArgumentParser(prog=f"jtca {args[0]}")
    parser.add_argument("--officer", help="pre-fill the sign-in form with this officer id")
    if args[0] == "demo":
        parser.add_argument("--no-console", action="store_true", help="seed only")
    options = parser.parse_args(args[1:])
    if args[0] == "demo":
        import time

        from ca.demodata import CREDENTIALS, is_seeded, seed
        from ca.tokens import state_dir

        state = state_dir()
        if not is_seeded(state):
            print(f"jtca demo: seeding {state} (root ceremony, officers, city keys, lists)…")
            seed(state, int(time.time()))
        print(f"jtca demo: sign-in secrets for the demo officers: {state / CREDENTIALS}")
        if getattr(options, "no_console", False):
            return 0
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            print("jtca demo: no terminal here; run `jtca demo` in a terminal to open the console")
            return 0
        os.environ.setdefault("JTCA_STATE", str(Path(state)))
    from tui.app import JtcaApp

    app = JtcaApp(officer=options.officer, demo=args[0] == "demo")
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
