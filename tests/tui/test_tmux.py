"""The real ``jtca tui`` console script in a real terminal (tmux): it starts the embedded service
on the demo state folder (a process of its own, over the Unix socket), then type the officer id
and the PIN, read the dashboard off the screen, quit with ctrl+q."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from demo_world import Demo

from ca.client.embedded import stop

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
WAIT = 60.0  # seconds, at most, for each thing to appear


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=30)


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session).stdout


def wait_for(session: str, text: str) -> str:
    """The screen once ``text`` is on it. On failure, every different screen seen while
    waiting is shown (a notification that explains a refusal fades after 10 s)."""
    deadline = time.monotonic() + WAIT
    shown = ""
    seen: list[str] = []
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        if not seen or seen[-1] != shown:
            seen.append(shown)
        time.sleep(0.2)
    history = "\n---- then ----\n".join(seen[-6:])
    raise AssertionError(f"{text!r} did not appear within {WAIT} s; the screens seen:\n{history}")


def alive(session: str) -> bool:
    return tmux("has-session", "-t", session).returncode == 0


def test_jtca_tui_in_tmux(demo: Demo) -> None:
    jtca = Path(sys.executable).with_name("jtca")
    session = f"jtca-test-{uuid.uuid4().hex[:8]}"
    env = {
        "JTCA_STATE": str(demo.state),
        "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
        "TERM": "xterm-256color",
        "JTCA_IDLE_EXIT": "60",
    }
    command = " ".join(f"{k}={v}" for k, v in env.items()) + f" {jtca} tui"
    started = tmux("new-session", "-d", "-x", "100", "-y", "30", "-s", session, command)
    assert started.returncode == 0, started.stderr
    try:
        wait_for(session, "officer id")
        tmux("send-keys", "-t", session, "-l", "gd-1")
        tmux("send-keys", "-t", session, "Enter")
        time.sleep(1.0)  # keys typed ahead go to the field that has the focus when they arrive
        tmux("send-keys", "-t", session, "-l", demo.credentials.pins["gd-1"])
        tmux("send-keys", "-t", session, "Enter")
        wait_for(session, "Keys in scope")  # the dashboard's counts came from the service
        shown = wait_for(session, "gd-1 · provincial-officer")
        assert "Published lists" in shown
        assert "Keys in scope" in shown
        assert "Dormant" in shown
        tmux("send-keys", "-t", session, "C-q")
        deadline = time.monotonic() + WAIT
        while alive(session) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(session), screen(session)
        assert (demo.state / "jtca-service.pid").is_file()  # the embedded service it started
    finally:
        if alive(session):
            tmux("kill-session", "-t", session)
        stop(demo.state)
