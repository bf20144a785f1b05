"""``jtca tui`` opens the officers' console on the service the client finds (``JTCA_URL``, a
config file, or the embedded default on the state folder); ``jtca demo`` makes the state folder
(``JTCA_STATE``, default ``./state``) a demo one, starts its embedded service, has the service
seed the demo world on first use (``demo.seed``) and opens the console on it. The console is a
client: it never opens the database or an authority token; the only token it opens is the
signing-in officer's own, as ``jtca login`` does (``--token``, ``--module``; ``officer-<id>`` in
the state folder's SoftHSM2 by default). It does not reuse a ``jtca login`` session of this
machine: the console's officer signs in with their token's PIN."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ca.client.http import Client


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from ca.cli.main import run_guarded

    if args[:1] in (["tui"], ["demo"]):
        return run_guarded(lambda: _console(args))
    from ca.cli.main import main as cli_main

    return cli_main(args)


def _console(args: list[str]) -> int:
    from ca.client.http import connect

    parser = argparse.ArgumentParser(prog=f"jtca {args[0]}")
    parser.add_argument("--officer", help="pre-fill the sign-in form with this officer id")
    parser.add_argument(
        "--token", metavar="LABEL", help="the label of your token (default: officer-<id>)"
    )
    parser.add_argument(
        "--module",
        metavar="PATH",
        help="the PKCS#11 module of your token, e.g. a USB key's (default: the embedded SoftHSM2 "
        "under the state folder)",
    )
    if args[0] == "demo":
        parser.add_argument("--no-console", action="store_true", help="seed only")
    options = parser.parse_args(args[1:])
    credentials: Path | None = None
    client: Client
    if args[0] == "demo":
        client, credentials = _demo()
        if options.no_console:
            client.close()
            return 0
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            client.close()
            print("jtca demo: no terminal here; run `jtca demo` in a terminal to open the console")
            return 0
    else:
        client = connect(anonymous=True)
    from tui.app import JtcaApp

    try:
        app = JtcaApp(
            client,
            officer=options.officer,
            demo_credentials=credentials,
            token_label=options.token,
            token_module=options.module,
        )
        app.run()
    finally:
        client.close()
    return app.return_code or 0


def _demo() -> tuple[Client, Path]:
    """Mark the state folder as a demo one, connect (starting its embedded service), have the
    service seed the demo world's history unless it holds it already, and finish the demo at
    this site (the officers' tokens, enrolment, signed work; ``ca.demo.officer_work``)."""
    from ca.client.config import resolve
    from ca.client.embedded import mark_state
    from ca.client.http import connect
    from ca.core.errors import JtcaError
    from ca.ops import demo
    from ca.ops.base import Empty

    target = resolve()
    if target.source != "embedded" or target.state is None:
        raise JtcaError(
            f"jtca demo runs on the embedded default only, but {target.source} names the service "
            f"{target.url}: unset JTCA_URL (and the config file) to run the demo",
            title="Demo refused",
        )
    mark_state(target.state, "demo")
    client = connect(target=target, anonymous=True)
    try:
        status = client.call(demo.STATUS, Empty())
        if status.seeded and status.credentials:
            credentials = Path(status.credentials)
        else:
            print(
                f"jtca demo: seeding {target.state} (root ceremony, officers, city keys, lists)…",
                flush=True,
            )
            credentials = Path(client.call(demo.SEED, Empty()).credentials)
        # the officers' personal tokens, their enrolment and the day's signed work: the demo's
        # client at this site does them (issue #12), resuming an interrupted run
        from ca.demo.officer_work import complete

        complete(client, target.state, report=lambda line: print(line, flush=True))
    except BaseException:
        client.close()
        raise
    print(f"jtca demo: sign-in secrets for the demo officers: {_shown(credentials)}")
    return client, credentials


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
