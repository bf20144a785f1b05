"""The migrations build exactly the tables the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

import ca.store.models  # noqa: F401 - registers the tables
from ca.store.db import database_url, migrate
from ca.store.models import AuditEvent, AuditHead


def test_migrations_match_models(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert differences == []
    with Session(engine) as session:
        head = session.exec(select(AuditHead)).one()
    assert (head.id, head.seq) == (1, 0)


def test_migrating_twice_changes_nothing(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    migrate(engine)
    with Session(engine) as session:
        assert len(session.exec(select(AuditHead)).all()) == 1


def test_default_database_is_sqlite_under_the_state_folder(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("JTCA_DATABASE_URL", raising=False)
    assert (
        database_url(tmp_path / "state")
        == f"sqlite:///{(tmp_path / 'state' / 'jtca.db').resolve()}"
    )
    monkeypatch.setenv("JTCA_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert database_url(tmp_path) == "postgresql+psycopg://u@h/db"


def test_times_after_2038_fit(database) -> None:  # type: ignore[no-untyped-def]
    """A 20-year root made in 2026 expires in 2046: Unix times need 64 bits (BIGINT)."""
    from ca.log import audit
    from ca.store.db import transaction

    _, engine = database
    year_2100 = 4_102_444_800
    with transaction(engine) as session:
        audit.append(session, actor="t", action="t", subject="t", at=year_2100)
    with Session(engine) as session:
        row = session.exec(select(AuditEvent)).one()
        assert row.at == year_2100
        assert row.leaf_hash == audit.entry(session, 1).leaf_hash().hex()
