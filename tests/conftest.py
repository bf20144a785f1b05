"""For the whole suite: embedded services started by the tests stop when the run ends.

A command-line test runs the real ``jtca`` against a state folder of its own; the first command
starts that folder's embedded service (``ca.client.embedded``), a process of its own session.
They exit by themselves when idle (``JTCA_IDLE_EXIT``, short here); at the end of the run every
one still alive under this run's temporary folder is stopped, so nothing outlives pytest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("JTCA_IDLE_EXIT", "120")


@pytest.fixture(autouse=True)
def _own_session_files(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's signed-in sessions (``jtca login``) live in its own folder, never in the
    home directory of whoever runs the suite (issue #12)."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("JTCA_SESSION", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _stop_embedded_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    from ca.client.embedded import PID_FILE, stop

    base = tmp_path_factory.getbasetemp()
    for pid_file in base.rglob(PID_FILE):
        stop(pid_file.parent, timeout=10.0)
