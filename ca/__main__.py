"""The ``jtca`` console script: picks the program by its first word and imports only that one,
so ``jtca --help`` and client commands never load the database or token layers.

- ``serve``, ``db``: the authority's own machine (``ca.api.server``);
- ``tui``, ``demo``: the officers' console (``tui.main``);
- everything else: the command line, a client of the service (``ca.cli.main``).

Imports are by name (``importlib``) on purpose: this dispatcher is the one module that sits
above every layer, and it holds no logic.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

PROGRAMS = {"serve": "ca.api.server", "db": "ca.api.server", "tui": "tui.main", "demo": "tui.main"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(PROGRAMS.get(args[0] if args else "", "ca.cli.main"))
    status: int = module.main(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
