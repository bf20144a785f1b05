"""Named crash points for the crash harness (issue #14, ``tests/crash/``).

Every boundary of a multi-step operation — before and after each token call, each file write,
each database commit — calls ``crash_point("name")``. In production it does nothing but read one
environment variable once. The harness sets:

- ``JTCA_CRASH_AT="name"`` or ``"name:N"``: the process kills itself with SIGKILL (a power cut,
  no clean-up, no ``finally``) at the Nth time it reaches that point (the first by default).
  Several, comma-separated, are allowed.
- ``JTCA_CRASH_TRACE=PATH``: every point reached is appended to PATH, one name per line, so the
  harness learns an operation's boundaries by running it once.

Imports nothing of jtca: the token layer, the file layer and the service all use it.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Final

CRASH_ENV: Final = "JTCA_CRASH_AT"
TRACE_ENV: Final = "JTCA_CRASH_TRACE"

_lock = threading.Lock()
_counts: dict[str, int] = {}
_targets: dict[str, int] | None = None


def _parse(spec: str) -> dict[str, int]:
    targets: dict[str, int] = {}
    for part in spec.split(","):
        part = part.strip()
        name, _, nth = part.rpartition(":")  # names hold ':' themselves (operation:step)
        if not (name and nth.isdigit() and int(nth) > 0):
            name, nth = part, "1"
        if name:
            targets[name] = int(nth)
    return targets


def crash_point(name: str) -> None:
    """A boundary named ``name``: maybe traced, maybe the place this process dies."""
    global _targets
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with _lock, open(trace, "a", encoding="utf-8") as out:
            out.write(name + "\n")
            out.flush()
    if _targets is None:
        _targets = _parse(os.environ.get(CRASH_ENV, ""))
    if not _targets or name not in _targets:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == _targets[name]
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Forget the counts and re-read the environment (tests that change it in one process)."""
    global _targets
    with _lock:
        _counts.clear()
        _targets = None
