"""Temporary files of ``write_atomically`` carry their writer (pid and start time), so a sweep
removes those a dead writer left and keeps a live writer's (issue #14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from ca.files import sweep_temporary, write_atomically


def _left_by_a_killed_writer(folder: Path) -> Path:
    """A real writer killed by SIGKILL at the crash point before its rename."""
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from ca.files import write_atomically
        write_atomically(Path({str(folder / "city-list.der")!r}), b"half a list")
        """
    )
    env = dict(os.environ, JTCA_CRASH_AT="files.write:before-rename")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (left,) = folder.glob(".city-list.der.*.tmp")
    return left


def test_a_dead_writers_temporary_file_is_removed_a_live_ones_kept(tmp_path: Path) -> None:
    write_atomically(tmp_path / "city-list.der", b"the whole list")
    dead = _left_by_a_killed_writer(tmp_path)
    assert (tmp_path / "city-list.der").read_bytes() == b"the whole list"  # never half served
    live = tmp_path / f".other.der.{os.getpid()}-{_start()}.abcd1234.tmp"
    live.write_bytes(b"being written")
    old = tmp_path / "sub" / ".ca-key-list.der.k3j4h5g6.tmp"  # an older jtca's, no writer
    old.parent.mkdir()
    old.write_bytes(b"x")
    removed = sweep_temporary(tmp_path)
    assert sorted(removed) == sorted([dead, old])
    assert live.exists()
    assert not dead.exists()
    assert not old.exists()
    assert (tmp_path / "city-list.der").read_bytes() == b"the whole list"


def _start() -> str:
    from ca.owners import process_start

    start = process_start(os.getpid())
    assert start is not None
    return start
