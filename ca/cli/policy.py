"""``jtca policy``  (issue #16)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add ``jtca policy`` to the command line."""
    p = sub.add_parser("policy", help="(being built: issue #16)")
    p.set_defaults(handler=_todo)


def _todo(args: argparse.Namespace) -> int:
    raise SystemExit("jtca policy: not built yet")
