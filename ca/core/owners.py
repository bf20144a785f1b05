"""Who owns an unfinished operation, and whether that process is still there (issue #14).

An owner is ``host:pid:start`` where ``start`` is the process's start time in clock ticks since
boot (``/proc/PID/stat`` field 22), so a pid reused by another process is not mistaken for the
owner. An owner on another host is taken as gone once its intent is older than the lease.
Pure: used by the service's intents (``ca.store.intents``) and a site's (``ca.site.journal``).
"""

from __future__ import annotations

import os
import socket
from typing import Final

# a temporary file's writer is named the same way (hsm.atomic)
from hsm.atomic import process_start as process_start

LEASE_SECONDS: Final = 3600  # an owner on another host: gone after this long


def this_owner() -> str:
    """This process, as an owner: ``host:pid:start``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid) or '?'}"


def owner_alive(owner: str, *, began_at: int, now: int, lease: int = LEASE_SECONDS) -> bool:
    """Whether the process that began an intent may still be working on it."""
    parts = owner.split(":")
    if len(parts) != 3:
        return False  # not an owner this code wrote
    host, pid_text, start = parts
    if host != socket.gethostname():
        return now - began_at < lease
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return start == (process_start(pid) or "?")
    found = process_start(pid)
    return found is not None and (start == "?" or found == start)
