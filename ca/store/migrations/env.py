"""Alembic environment: the engine comes from ca.store.db.alembic_config."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import ca.store.models  # noqa: F401 - registers the tables on SQLModel.metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=SQLModel.metadata)
    context.run_migrations()
