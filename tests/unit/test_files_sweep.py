"""Temporary files of ``write_atomically`` carry their writer (pid and start time), so a sweep
removes those a dead writer left and keeps a live writer's (issue #14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from ca.core.files import stray_temporaries, sweep_temporary, write_atomically


def _left_by_a_killed_writer(folder: Path) -> Path:
    """A real writer killed by SIGKILL at the crash point before its rename."""
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from ca.core.files import write_atomically
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
    from ca.core.owners import process_start

    start = process_start(os.getpid())
    assert start is not None
    return start


def test_the_one_atomic_writer_names_its_writer_and_keeps_secrets_private(tmp_path: Path) -> None:
    """hsm.atomic.replace_atomically (behind ca.core.files.write_atomically and the token's secret
    files): until the rename, the temporary file names this process and is mode 0600, so a
    sweep leaves it alone while we live; a bytearray is written whole."""
    import stat

    from hsm.atomic import WRITER, replace_atomically

    seen: list[tuple[str, int]] = []

    def look() -> None:
        for found in tmp_path.iterdir():
            seen.append((found.name, stat.S_IMODE(found.stat().st_mode)))
        assert stray_temporaries(tmp_path, "secret.wrap") == []  # a live writer's: not stray

    target = tmp_path / "secret.wrap"
    replace_atomically(target, bytearray(b"\x01" * 32), mode=0o600, before_rename=look)
    [(name, mode)] = seen
    assert name.startswith(f".secret.wrap.{WRITER}.")
    assert name.endswith(".tmp")
    assert mode == 0o600
    assert target.read_bytes() == b"\x01" * 32
    assert [p.name for p in tmp_path.iterdir()] == ["secret.wrap"]
