"""Migration 0014 (issue #16, point 2) on SQLite and PostgreSQL: operators and report rows made
before it are kept (no key, no nonce: report-only operators and imported rows); afterwards an
operator's key is unique, a signed acknowledgment's nonce is unique per operator; the downgrade
drops the new columns and keeps the rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from db_fixtures import postgres_server_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ca.store.db import alembic_config, make_engine, migrate

T0 = 1_790_000_000
OPERATOR = (
    "INSERT INTO list_operator (operator_id, name, province, registered_at, registered_by) "
    "VALUES (:id, :id, '440000', :t, 'ca-op-1')"
)
ACK = (
    "INSERT INTO list_ack (operator_id, list_type, sequence, loaded_at, terminals, reported_at, "
    "report) VALUES (:id, 'city-list', :seq, :t, 10, :t, :report)"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def at_0013(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'jtca.db'}")
        migrate(engine, "0013")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    server = postgres_server_url()
    name = f"jtca_mig14_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.rsplit("/", 1)[0] + "/" + name)
    migrate(engine, "0013")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_0014_keeps_rows_adds_unique_keys_and_nonces_and_downgrades(at_0013: Engine) -> None:
    engine = at_0013
    with engine.begin() as conn:
        conn.execute(sa.text(OPERATOR), {"id": "old-op", "t": T0})
        conn.execute(sa.text(ACK), {"id": "old-op", "seq": 1, "t": T0, "report": "a" * 64})
    migrate(engine, "0014")
    with engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT public_key, cities FROM list_operator WHERE operator_id = 'old-op'")
        ).one() == (None, None)
        assert conn.execute(sa.text("SELECT nonce, signature, list_sm3 FROM list_ack")).one() == (
            None,
            None,
            None,
        )
    key = "04" + "11" * 64
    with engine.begin() as conn:
        conn.execute(sa.text(OPERATOR), {"id": "new-op", "t": T0})
        conn.execute(
            sa.text(
                "UPDATE list_operator SET public_key = :k, cities = '440100' "
                "WHERE operator_id = 'new-op'"
            ),
            {"k": key},
        )
        for seq in (1, 2):  # imported rows: no nonce, several per operator
            conn.execute(sa.text(ACK), {"id": "new-op", "seq": seq, "t": T0, "report": "b" * 64})
        conn.execute(
            sa.text(
                "UPDATE list_ack SET nonce = 'n1' WHERE sequence = 1 AND operator_id = 'new-op'"
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:  # one nonce, once per operator
        conn.execute(
            sa.text(
                "UPDATE list_ack SET nonce = 'n1' WHERE sequence = 2 AND operator_id = 'new-op'"
            )
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:  # one key, one operator
        conn.execute(
            sa.text("UPDATE list_operator SET public_key = :k WHERE operator_id = 'old-op'"),
            {"k": key},
        )
    command.downgrade(alembic_config(engine), "0013")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("list_ack")}
        assert "nonce" not in columns
        assert conn.execute(sa.text("SELECT count(*) FROM list_ack")).scalar_one() == 3
        assert conn.execute(sa.text("SELECT count(*) FROM list_operator")).scalar_one() == 2
