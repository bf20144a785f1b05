"""A PostgreSQL server of a test's own (issue #16: the two roles, the restore drill): a second
cluster started with scripts/pg-test-server in a temporary folder on a free loopback port, its
superuser ``jtca`` trusted on loopback, stopped and removed after."""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"{name}: Debian's postgresql is needed (scripts/bootstrap installs it)"
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Cluster:
    port: int

    def url(self, user: str = "jtca", database: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def dsn(self, user: str = "jtca", database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={database}"

    def psql(self, *args: str, user: str = "jtca", database: str = "postgres") -> str:
        done = subprocess.run(
            [pg_bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(user, database), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """As root the cluster belongs to the postgres user, who cannot enter pytest's folders
    (mode 0700): the data folder is a fresh one directly under /tmp."""
    port = free_port()
    folder = Path(tempfile.gettempdir()) / f"jtca-pg-{uuid.uuid4().hex[:12]}"
    env = dict(os.environ, JTCA_PG_DIR=str(folder), JTCA_PG_PORT=str(port))
    server = str(ROOT / "scripts" / "pg-test-server")
    started = subprocess.run(
        [server, "start"], env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr
    try:
        yield Cluster(port)
    finally:
        subprocess.run([server, "stop"], env=env, capture_output=True, timeout=120, check=False)
