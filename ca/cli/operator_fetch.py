"""``jtca operator fetch`` (issue #16, point 1-2): the operators' reference client for lists."""

from __future__ import annotations

from typing import Any


def register(osub: Any) -> None:
    """Add ``fetch`` to ``jtca operator``'s subcommands ``osub``."""
