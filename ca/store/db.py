"""Engines, sessions and migrations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from ca.core.errors import JtcaError

DATABASE_ENV: Final = "JTCA_DATABASE_URL"
MIGRATIONS: Final = Path(__file__).parent / "migrations"


class StoreError(JtcaError):
    title = "Database error"
    exit_code = 7


def database_url(state: Path) -> str:
    """$JTCA_DATABASE_URL, else a SQLite file under the state folder."""
    url = os.environ.get(DATABASE_ENV)
    if url:
        return url
    state.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(state / 'jtca.db').resolve()}"


_WRITE = "jtca_write"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let BEGIN below be ours
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers (``transaction``) take the lock when the transaction begins, not at their
            # first write: two operators never both read the chain head and then collide.
            # Readers begin a deferred transaction: under WAL they never block a writer, so a
            # console reading the keys never holds up the publisher or another officer.
            if conn.get_execution_options().get(_WRITE):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True)
    raise StoreError(f"unsupported database URL {url.split(':', 1)[0]}: use sqlite or postgresql")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (all migrations by default)."""
    command.upgrade(alembic_config(engine), revision)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed whole, or rolled back whole."""
    with Session(engine) as session:
        try:
            session.connection(execution_options={_WRITE: True})  # SQLite: BEGIN IMMEDIATE
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
