"""The embedded default: a ``jtca serve`` on a Unix socket in the state folder, started by the
first client that needs it and reused by the next ones. It exits by itself after a while with
no request (``JTCA_IDLE_EXIT`` seconds, default 900). Its log is ``state/logs/service.log``.

Two clients starting at once take a lock file in the state folder; the second finds the first
one's service answering. The service is a process of its own session (never a child that dies
with the command, never holding the command's terminal or pipes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx

from ca.client.config import STATE_MARKER, socket_path
from ca.core.errors import JtcaError

IDLE_ENV: Final = "JTCA_IDLE_EXIT"
DEFAULT_IDLE: Final = 900
START_TIMEOUT: Final = 90.0
PID_FILE: Final = "jtca-service.pid"
LOG_FILE: Final = Path("logs") / "service.log"


class EmbeddedStartFailed(JtcaError):
    title = "Embedded service did not start"
    exit_code = 69


def mark_state(state: Path, kind: str = "embedded") -> None:
    """Make ``state`` a jtca state folder (``jtca init``, ``jtca demo``)."""
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)  # tokens, PIN files, the database and the socket live here
    marker = state / STATE_MARKER
    if not marker.exists():
        marker.write_text(
            "# a jtca state folder: tokens (softhsm2/), database (jtca.db unless "
            "JTCA_DATABASE_URL), published lists, the embedded service's socket and log\n"
            f'kind = "{kind}"\ncreated = {int(time.time())}\n',
            encoding="utf-8",
        )


def state_kind(state: Path) -> str:
    try:
        data = tomllib.loads((state / STATE_MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "embedded"
    kind = data.get("kind")
    return kind if isinstance(kind, str) else "embedded"


def answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock), verify=False),  # no TLS on the socket
            base_url="http://jtca",
            timeout=5.0,
        ) as http:
            return http.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _start_lock(state: Path) -> Iterator[None]:
    fd = os.open(state / ".service.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_running(state: Path) -> Path:
    """The embedded service's socket, starting the service if none answers."""
    sock = socket_path(state)
    if answers(sock):
        return sock
    with _start_lock(state):
        if answers(sock):
            return sock
        log_path = state / LOG_FILE
        log_path.parent.mkdir(parents=True, exist_ok=True)
        idle = os.environ.get(IDLE_ENV, str(DEFAULT_IDLE))
        command = [
            sys.executable, "-m", "ca", "serve", "--embedded",
            "--state", str(state.resolve()), "--uds", str(sock), "--idle-exit", idle,
        ]  # fmt: skip
        with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
            process = subprocess.Popen(
                command, stdin=devnull, stdout=log, stderr=log, start_new_session=True,
                close_fds=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if answers(sock):
                return sock
            if process.poll() is not None:
                break
            time.sleep(0.05)
        tail = _tail(log_path)
        raise EmbeddedStartFailed(
            f"the embedded service on {state} did not answer on {sock}"
            + (f"; its log ends: {tail}" if tail else f"; see {log_path}")
        )


def stop(state: Path, timeout: float = 30.0) -> bool:
    """Stop the embedded service of ``state`` (SIGTERM: it finishes requests in flight)."""
    import signal

    pid_file = state / PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
