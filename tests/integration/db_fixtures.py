"""Fresh databases for the integration suite: a SQLite file, and a new database on the
PostgreSQL test server (scripts/pg-test-server; `make test` starts and stops it)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ca.store.db import make_engine, migrate

ROOT = Path(__file__).resolve().parents[2]


def postgres_server_url() -> str:
    url = os.environ.get("JTCA_TEST_POSTGRES_URL")
    if url:
        return url
    started = subprocess.run(
        [str(ROOT / "scripts" / "pg-test-server"), "start"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode == 0, f"cannot start the PostgreSQL test server: {started.stderr}"
    url = started.stdout.strip()
    os.environ["JTCA_TEST_POSTGRES_URL"] = url
    return url


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A migrated, empty database of ``kind`` ('sqlite' or 'postgresql')."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'jtca.db'}"
        engine = make_engine(url)
        migrate(engine)
        try:
            yield url, engine
        finally:
            engine.dispose()
        return
    server = postgres_server_url()
    name = f"jtca_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    migrate(engine)
    try:
        yield url, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
